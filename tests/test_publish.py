"""`koe publish` against a local Hub double (tests/hub_server.py) on 127.0.0.1, through the real huggingface_hub."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard

from pipeline.shards import file_sha256
from tests.conftest import koe
from tests.hub_server import HubServerDouble, hub_server_fixture

TOKEN = "hf_koeTestTokenThatMustNeverBeSeen0123456789"
REPO_ID = "koe-tester/demo-speech"
WRITES = {"create_repo", "create_branch", "preupload", "commit", "lfs_batch", "lfs_upload", "validate_yaml"}

hub = hub_server_fixture("hub", token=TOKEN)


@pytest.fixture
def api(hub, monkeypatch):
    """huggingface_hub in this process, pointed at the double with Xet off (the double speaks LFS, not Xet)."""
    from huggingface_hub import HfApi, constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # it would ask huggingface.co itself
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
    return HfApi(endpoint=hub.url, token=TOKEN)


def client_env(server: HubServerDouble, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    """The environment of a user publishing to the double: endpoint, their token, a private HF_HOME."""
    env = {**server.client_env, "HF_HOME": str(home), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env["HF_TOKEN"] = token or ""
    return env


def publish(server, home, *args: str, check: bool = True, token: str | None = TOKEN):
    return koe("publish", *args, check=check, env=client_env(server, home, token))


def files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def card_of(server, repo_id: str = REPO_ID, revision: str = "main") -> DatasetCard:
    return DatasetCard(server.files(repo_id, revision)["README.md"].decode("utf-8"))


def test_publish_uploads_shards_manifests_and_card_and_a_rerun_sends_nothing(hub, demo_output, tmp_path):
    import datasets

    home = tmp_path / "hf_home"
    dry = publish(hub, home, str(demo_output), "--repo-id", REPO_ID, "--dry-run")
    tars = sorted((demo_output / "shards").glob("*.tar"))
    for tar in tars:
        assert f"upload  data/demo/train/{tar.name}" in dry.stdout
    assert "(new repo)" in dry.stdout and "upload  README.md" in dry.stdout
    assert not [r for r in hub.requests if r.route in WRITES]  # a dry run changes nothing

    first = publish(hub, home, str(demo_output), "--repo-id", REPO_ID)
    assert "published demo/train" in first.stdout
    files = hub.files(REPO_ID)
    for tar in tars:
        assert files[f"data/demo/train/{tar.name}"] == tar.read_bytes()
    assert files["manifests/demo/train/manifest.parquet"] == (demo_output / "manifest.parquet").read_bytes()
    summary = json.loads(files["manifests/demo/train/summary.json"])
    assert summary["samples"] == 10 and summary["shards"] == [t.stem for t in tars]
    assert sorted(oid for oid, _ in hub.lfs_uploads) == sorted(
        {file_sha256(t) for t in tars} | {hashlib.sha256(files["manifests/demo/train/manifest.parquet"]).hexdigest()}
    )
    messages = [c.message for c in hub.commits(REPO_ID)[1:]]
    assert messages == ["koe: demo/train shards 1-5 of 5", "koe: demo/train manifests and dataset card"]

    card = card_of(hub)  # the card's configs find exactly the uploaded shards
    (config,) = card.data.to_dict()["configs"]
    (split,) = config["data_files"]
    assert sorted(p for p in files if fnmatch.fnmatch(p, split["path"])) == [f"data/demo/train/{t.name}" for t in tars]
    rows = datasets.load_dataset(str(hub.export(REPO_ID, "main", tmp_path / "clone")), "demo", split="train")
    assert len(rows) == 10 and rows[0]["json"]["recipe"] == "demo"

    commits, uploads = len(hub.commits(REPO_ID)), len(hub.lfs_uploads)
    again = publish(hub, home, str(demo_output), "--repo-id", REPO_ID)
    assert "0 file(s) to upload" in again.stdout and "8 already on the Hub" in again.stdout
    assert "nothing to do" in again.stdout
    assert (len(hub.commits(REPO_ID)), len(hub.lfs_uploads)) == (commits, uploads)

    for result in (dry, first, again):  # the token: used, and never seen
        assert TOKEN not in result.stdout + result.stderr
    signed = {"lfs_upload"}  # storage URLs are signed by the Hub and take no token, as S3 does
    assert all(r.authorized for r in hub.requests if r.route in WRITES - signed)
    assert not files_holding(tmp_path, TOKEN) and not files_holding(demo_output, TOKEN)
    assert not [path for path, data in hub.files(REPO_ID).items() if TOKEN.encode() in data]


def test_an_interrupted_publish_resumes_and_uploads_nothing_twice(hub, api, demo_output, monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError

    from pipeline import publish as publishing

    monkeypatch.setattr(publishing, "COMMIT_MAX_FILES", 2)

    def fail_the_next_commit(line: str) -> None:  # the connection goes down after the first commit
        hub.fail_next("commit", status=503)

    plan = publishing.plan_publish(demo_output, REPO_ID, api=api)
    with pytest.raises(HfHubHTTPError):
        publishing.execute(plan, private=False, api=api, echo=fail_the_next_commit)
    assert len(hub.commits(REPO_ID)) == 2  # the repo's first commit and one of shards

    plan = publishing.plan_publish(demo_output, REPO_ID, api=api)
    assert plan.unchanged == 2 and len(plan.data) == 3
    publishing.execute(plan, private=False, api=api, echo=lambda line: None)
    assert Counter(oid for oid, _ in hub.lfs_uploads).most_common(1)[0][1] == 1  # each object sent once
    assert {p for p in hub.files(REPO_ID) if p.endswith(".tar")} == {
        f"data/demo/train/{t.name}" for t in (demo_output / "shards").glob("*.tar")
    }
    assert [c.message for c in hub.commits(REPO_ID)[1:]] == [
        "koe: demo/train shards 1-2 of 5",
        "koe: demo/train shards 1-2 of 3",
        "koe: demo/train shards 3-3 of 3",
        "koe: demo/train manifests and dataset card",
    ]


def test_an_output_that_does_not_validate_is_refused_before_the_hub_is_asked(hub, demo_copy, tmp_path):
    tar = sorted((demo_copy / "shards").glob("*.tar"))[0]
    tar.write_bytes(tar.read_bytes()[:-2000])
    result = publish(hub, tmp_path, str(demo_copy), "--repo-id", REPO_ID, check=False)
    assert result.returncode == 2 and "does not validate" in result.stderr and tar.name in result.stderr
    assert hub.requests == []


def test_a_second_config_joins_the_card_and_files_the_output_lost_are_removed(
    hub, api, demo_output, duplex_output, tmp_path
):
    from huggingface_hub import CommitOperationAdd

    publish(hub, tmp_path, str(demo_output), "--repo-id", REPO_ID)
    stale = "data/demo/train/demo-000099.tar"  # e.g. from an earlier run with smaller shards
    api.create_commit(REPO_ID, [CommitOperationAdd(stale, b"\0old shard")], commit_message="old", repo_type="dataset")
    dry = publish(hub, tmp_path, str(demo_output), "--repo-id", REPO_ID, "--dry-run")
    assert f"delete  {stale}" in dry.stdout and stale in hub.files(REPO_ID)
    publish(hub, tmp_path, str(demo_output), "--repo-id", REPO_ID)
    assert stale not in hub.files(REPO_ID)

    publish(hub, tmp_path, str(duplex_output), "--repo-id", REPO_ID)
    card = card_of(hub)
    configs = {c["config_name"]: c["data_files"] for c in card.data.to_dict()["configs"]}
    assert configs == {
        "demo": [{"split": "train", "path": "data/demo/train/*.tar"}],
        "duplex_magpie": [{"split": "train", "path": "data/duplex_magpie/train/*.tar"}],
    }
    assert "| demo | train | sft | 10 |" in card.text and "| duplex_magpie | train | duplex |" in card.text
    assert any(p.startswith("data/demo/train/") for p in hub.files(REPO_ID))  # the first config is kept


def test_private_repos_and_branches(hub, demo_output, tmp_path):
    publish(hub, tmp_path, str(demo_output), "--repo-id", "koe-tester/private-speech", "--private")
    assert hub.repo("koe-tester/private-speech").private

    publish(hub, tmp_path, str(demo_output), "--repo-id", REPO_ID, "--revision", "v1")
    assert "README.md" in hub.files(REPO_ID, "v1") and "README.md" not in hub.files(REPO_ID, "main")
    assert 'revision="v1"' in card_of(hub, REPO_ID, "v1").text

    before = len(hub.commits(REPO_ID, "main"))
    refused = publish(hub, tmp_path, str(demo_output), "--repo-id", REPO_ID, "--private", check=False)
    assert refused.returncode == 2 and "is public" in refused.stderr
    assert len(hub.commits(REPO_ID, "main")) == before


def test_without_a_token_the_hub_refuses_and_koe_says_how_to_give_one(hub, demo_output, tmp_path):
    result = publish(hub, tmp_path, str(demo_output), "--repo-id", REPO_ID, token=None, check=False)
    assert result.returncode == 2
    assert "401" in result.stderr and "set HF_TOKEN or run `hf auth login`" in result.stderr


def test_shard_sizes_far_from_a_gigabyte_get_advice_and_commits_stay_bounded():
    from pipeline.publish import RepoFile, _batches, shard_size_warnings

    assert shard_size_warnings([900 * 10**6] * 40) == []
    assert shard_size_warnings([40_000] * 5) == []  # a small output: one small shard is fine
    assert "lower output.rows_per_shard" in shard_size_warnings([10**9, 7 * 10**9])[0]
    assert "raise output.rows_per_shard" in shard_size_warnings([20 * 10**6] * 3000)[0]
    files = [RepoFile(f"data/c/train/c-{i:06d}.tar", 3 * 10**9, "0" * 64) for i in range(13)]
    batches = _batches(files)
    assert [len(b) for b in batches] == [6, 6, 1]  # 20 GB a commit at most
    assert [f for b in batches for f in b] == files


def test_published_captions_carry_every_clips_credit(hub, captions_output, tmp_path):
    import csv
    import io

    publish(hub, tmp_path, str(captions_output), "--repo-id", "koe-tester/fsd50k-captions")
    files = hub.files("koe-tester/fsd50k-captions")
    credits = list(csv.DictReader(io.StringIO(files["manifests/captions_fsd50k/train/attribution.csv"].decode())))
    written = json.loads(files["manifests/captions_fsd50k/train/summary.json"])["samples"]
    assert len(credits) == written == 5
    assert all(row["credit"] and row["license"].startswith("http") and row["source_url"] for row in credits)
    card = card_of(hub, "koe-tester/fsd50k-captions")
    assert "## FSD50K attribution" in card.text and "cc-by-4.0" in card.data.to_dict()["license"]


def test_an_unreachable_hub_is_one_line_and_a_dry_run_plans_offline(demo_output, tmp_path):
    """A closed port on 127.0.0.1 stands for no network: the client's retries end, then one clear line."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed}", "HF_HOME": str(tmp_path / "home"), "HF_TOKEN": TOKEN}
    planned = koe("publish", str(demo_output), "--repo-id", "org/koe", "--dry-run", env=env)
    assert "the Hub could not be reached" in planned.stdout + planned.stderr
    assert "planned from the local output alone" in planned.stdout + planned.stderr and "to upload" in planned.stdout
    refused = koe("publish", str(demo_output), "--repo-id", "org/koe", env=env, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("the Hub could not be reached (")
