"""The Hub test double against the real `huggingface_hub` client: it speaks the protocol the client uses.

In-process calls run with Xet disabled (the double does not speak it) and pass the double's endpoint explicitly, as
`constants.ENDPOINT` is read once at import; the subprocess test sets both through the environment (`client_env`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils._runtime import is_xet_available

from tests.hub_server import INITIAL_COMMIT_MESSAGE, HubServerDouble, hub_server_fixture

TOKEN = "hf_koe_test_token"
REPO = "koe/corpus"
TEXT = b'{"rows": 3}\n'
SHARDS = {f"shards/train-{i:03d}.tar": bytes([i]) * 1000 + b"\0" + bytes(range(256)) * (i + 1) for i in range(3)}
BAD_CARD = "---\nconfigs:\n- config_name: default\n  data_files: 7\n---\n# koe corpus\n"
GOOD_CARD = "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: shards/*.tar\n---\n"

hub_server = hub_server_fixture(token=TOKEN)
small_pages = hub_server_fixture("small_pages", token=TOKEN, tree_page_size=2)


@pytest.fixture(autouse=True)
def client_setup(monkeypatch):
    """Xet off (the double only speaks the legacy LFS protocol); telemetry off, or the client's User-Agent would
    fetch an agent registry from constants.ENDPOINT, the real Hub in this process."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    assert not is_xet_available()


def api_for(server: HubServerDouble, token: str | bool = TOKEN) -> HfApi:
    return HfApi(endpoint=server.url, token=token)


def operations(files: dict[str, bytes]) -> list[CommitOperationAdd]:
    """Fresh operations each time: the client refuses to commit one twice."""
    return [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_only_known_routes(server: HubServerDouble) -> None:
    """No request went to Xet (or anywhere else the double does not serve)."""
    assert [r.path for r in server.requests if r.route == "unknown" or "xet" in r.path] == []


def test_create_repo_private_and_exist_ok(hub_server):
    api = api_for(hub_server)
    url = api.create_repo(REPO, repo_type="dataset", private=True)
    assert (url.repo_type, url.repo_id) == ("dataset", REPO)
    api.create_repo(REPO, repo_type="dataset", private=True, exist_ok=True)
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(REPO, repo_type="dataset")
    assert conflict.value.response.status_code == 409

    assert hub_server.repo(REPO).private
    assert [c.message for c in hub_server.commits(REPO)] == [INITIAL_COMMIT_MESSAGE]
    info = api.repo_info(REPO, repo_type="dataset")
    assert (info.id, info.private, info.siblings, info.sha) == (REPO, True, [], hub_server.commits(REPO)[-1].oid)
    with pytest.raises(RepositoryNotFoundError):  # a private repo hides from a caller without the token
        api_for(hub_server, token=False).repo_info(REPO, repo_type="dataset")


def test_commit_uploads_lfs_files_once_and_skips_unchanged_files(hub_server, tmp_path):
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    sent = {"manifest.json": TEXT, **SHARDS}
    info = api.create_commit(REPO, operations(sent), commit_message="Publish", repo_type="dataset")

    assert hub_server.files(REPO) == sent
    assert sorted(hub_server.lfs_uploads) == sorted((sha256(data), len(data)) for data in SHARDS.values())
    head = hub_server.commits(REPO)[-1]
    assert (head.oid, head.message, sorted(head.added), head.deleted) == (info.oid, "Publish", sorted(sent), ())
    legacy_path = ["create_repo", "preupload", "lfs_batch", "commit"]  # with PUTs and verifies after the batch
    assert [r.route for r in hub_server.requests if r.route not in ("lfs_upload", "lfs_verify")] == legacy_path
    assert hub_server.export(REPO, "main", tmp_path / "out") == tmp_path / "out"
    assert (tmp_path / "out" / "shards" / "train-001.tar").read_bytes() == SHARDS["shards/train-001.tar"]

    seen = len(hub_server.requests)
    again = api.create_commit(REPO, operations(sent), commit_message="Publish again", repo_type="dataset")
    assert again.oid == info.oid  # nothing changed: no commit, and no LFS object sent a second time
    assert [r.route for r in hub_server.requests[seen:]] == ["preupload", "lfs_batch", "repo_info"]
    assert len(hub_server.commits(REPO)) == 2
    assert len(hub_server.lfs_uploads) == len(SHARDS)
    assert_only_known_routes(hub_server)


def test_list_repo_tree_follows_pages(small_pages):
    api = api_for(small_pages)
    api.create_repo(REPO, repo_type="dataset")
    assert list(api.list_repo_tree(REPO, repo_type="dataset", recursive=True)) == []
    api.create_commit(REPO, operations({"manifest.json": TEXT, **SHARDS}), commit_message="m", repo_type="dataset")

    entries = {entry.path: entry for entry in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert sorted(entries) == sorted(["manifest.json", "shards", *SHARDS])
    assert len([r for r in small_pages.requests if r.route == "tree"]) == 1 + 3  # the empty listing, then 5 entries
    assert entries["manifest.json"].lfs is None and entries["manifest.json"].size == len(TEXT)
    for path, data in SHARDS.items():
        assert (entries[path].lfs.sha256, entries[path].lfs.size) == (sha256(data), len(data))
    assert not hasattr(entries["shards"], "lfs")  # a RepoFolder

    top = [entry.path for entry in api.list_repo_tree(REPO, repo_type="dataset")]
    assert sorted(top) == ["manifest.json", "shards"]
    inside = [entry.path for entry in api.list_repo_tree(REPO, "shards", repo_type="dataset")]
    assert sorted(inside) == sorted(SHARDS)
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree(REPO, repo_type="dataset", revision="no-such-branch"))
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(REPO, "no-such-folder", repo_type="dataset"))


def test_commit_on_a_branch_leaves_main_alone(hub_server):
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    api.create_commit(REPO, operations({"manifest.json": TEXT}), commit_message="main", repo_type="dataset")
    api.create_branch(REPO, branch="staging", repo_type="dataset")
    api.create_branch(REPO, branch="staging", repo_type="dataset", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_branch(REPO, branch="staging", repo_type="dataset")
    assert conflict.value.response.status_code == 409

    api.create_commit(REPO, operations(SHARDS), commit_message="stage", repo_type="dataset", revision="staging")
    assert hub_server.files(REPO) == {"manifest.json": TEXT}
    assert hub_server.files(REPO, "staging") == {"manifest.json": TEXT, **SHARDS}
    assert [c.message for c in hub_server.commits(REPO, "staging")] == [INITIAL_COMMIT_MESSAGE, "main", "stage"]
    with pytest.raises(RevisionNotFoundError):  # commits go to an existing branch
        api.create_commit(REPO, operations(SHARDS), commit_message="x", repo_type="dataset", revision="nope")


def test_deletions_and_parent_commit(hub_server):
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    first = api.create_commit(
        REPO, operations({"manifest.json": TEXT, **SHARDS}), commit_message="m", repo_type="dataset"
    )
    second = api.create_commit(
        REPO,
        [CommitOperationDelete("shards/"), CommitOperationAdd("notes.txt", b"notes\n")],
        commit_message="Drop the shards",
        repo_type="dataset",
        parent_commit=first.oid,
    )
    head = hub_server.commits(REPO)[-1]
    assert (head.oid, head.added, sorted(head.deleted)) == (second.oid, ("notes.txt",), sorted(SHARDS))
    assert hub_server.files(REPO) == {"manifest.json": TEXT, "notes.txt": b"notes\n"}

    with pytest.raises(HfHubHTTPError) as stale:
        api.create_commit(
            REPO, operations({"late.txt": b"x"}), commit_message="late", repo_type="dataset", parent_commit=first.oid
        )
    assert stale.value.response.status_code == 412
    with pytest.raises(EntryNotFoundError):
        api.create_commit(REPO, [CommitOperationDelete("gone.txt")], commit_message="rm", repo_type="dataset")


def test_hf_hub_download_of_regular_and_lfs_files(hub_server, tmp_path):
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset", private=True)
    api.create_commit(REPO, operations({"manifest.json": TEXT, **SHARDS}), commit_message="m", repo_type="dataset")

    def download(filename: str, repo_id: str = REPO) -> bytes:
        path = hf_hub_download(
            repo_id, filename, repo_type="dataset", endpoint=hub_server.url, token=TOKEN, cache_dir=tmp_path
        )
        return Path(path).read_bytes()

    assert download("manifest.json") == TEXT
    assert download("shards/train-002.tar") == SHARDS["shards/train-002.tar"]
    # the LFS file came through the "CDN", fetched without the token as from a signed URL
    (cdn_get,) = [r for r in hub_server.requests if r.route == "lfs_download"]
    assert not cdn_get.authorized and "authorization" not in cdn_get.headers
    assert api.file_exists(REPO, "manifest.json", repo_type="dataset")
    assert not api.file_exists(REPO, "missing.json", repo_type="dataset")

    with pytest.raises(EntryNotFoundError):
        download("missing.json")
    with pytest.raises(RepositoryNotFoundError):
        download("manifest.json", repo_id="koe/no-such-repo")
    assert_only_known_routes(hub_server)


def test_writes_need_the_token(hub_server):
    api_for(hub_server).create_repo(REPO, repo_type="dataset")
    for token in (False, "hf_wrong_token"):
        with pytest.raises(HfHubHTTPError) as denied:
            api_for(hub_server, token=token).create_commit(
                REPO, operations({"manifest.json": TEXT}), commit_message="m", repo_type="dataset"
            )
        assert denied.value.response.status_code == 401
        with pytest.raises(HfHubHTTPError) as denied:
            api_for(hub_server, token=token).create_repo("koe/other", repo_type="dataset")
        assert denied.value.response.status_code == 401
    assert hub_server.files(REPO) == {}
    assert [r.headers.get("authorization") for r in hub_server.requests if r.authorized] == ["Bearer <redacted>"]


def test_a_card_with_bad_configs_is_refused_before_any_upload(hub_server):
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    with pytest.raises(ValueError, match="data_files"):
        api.create_commit(
            REPO, operations({"README.md": BAD_CARD.encode(), **SHARDS}), commit_message="m", repo_type="dataset"
        )
    assert [r.route for r in hub_server.requests] == ["create_repo", "validate_yaml"]
    assert hub_server.lfs_uploads == []

    api.create_commit(REPO, operations({"README.md": GOOD_CARD.encode()}), commit_message="m", repo_type="dataset")
    assert hub_server.files(REPO) == {"README.md": GOOD_CARD.encode()}


@pytest.mark.parametrize("failure", [{"status": 500}, {"drop": True}])
def test_a_failed_commit_is_retried_without_uploading_again(hub_server, failure):
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    hub_server.fail_next("commit", **failure)
    with pytest.raises(HfHubHTTPError if "status" in failure else httpx2.HTTPError):
        api.create_commit(REPO, operations(SHARDS), commit_message="m", repo_type="dataset")
    assert hub_server.files(REPO) == {}
    assert len(hub_server.lfs_uploads) == len(SHARDS)

    api.create_commit(REPO, operations(SHARDS), commit_message="m", repo_type="dataset")
    assert hub_server.files(REPO) == SHARDS
    assert len(hub_server.lfs_uploads) == len(SHARDS)  # the objects stored before the failure were not sent again


def test_a_dropped_lfs_upload_is_sent_again_by_the_client(hub_server):
    """The client retries a PUT whose connection dropped itself (after its 1 s backoff); nothing was stored from it."""
    api = api_for(hub_server)
    api.create_repo(REPO, repo_type="dataset")
    hub_server.fail_next("lfs_upload", drop=True)
    api.create_commit(REPO, operations(SHARDS), commit_message="m", repo_type="dataset")
    assert hub_server.files(REPO) == SHARDS
    assert sorted(hub_server.lfs_uploads) == sorted((sha256(data), len(data)) for data in SHARDS.values())
    assert len([r for r in hub_server.requests if r.route == "lfs_upload"]) == len(SHARDS) + 1


def test_model_repos_work_too(hub_server, tmp_path):
    api = api_for(hub_server)
    api.create_repo("koe/aligner")
    api.upload_file(path_or_fileobj=b"weights\0", path_in_repo="model.bin", repo_id="koe/aligner")
    assert hub_server.files("koe/aligner", repo_type="model") == {"model.bin": b"weights\0"}
    assert api.model_info("koe/aligner").siblings[0].rfilename == "model.bin"
    path = hf_hub_download("koe/aligner", "model.bin", endpoint=hub_server.url, token=TOKEN, cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"weights\0"


def test_a_subprocess_client_configured_by_environment(hub_server, tmp_path):
    folder = tmp_path / "out"
    for path, data in {"manifest.json": TEXT, **SHARDS}.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    script = textwrap.dedent(
        f"""
        from huggingface_hub import HfApi, hf_hub_download
        HfApi().create_repo({REPO!r}, repo_type="dataset", exist_ok=True)
        HfApi().upload_folder(folder_path={str(folder)!r}, repo_id={REPO!r}, repo_type="dataset")
        print(hf_hub_download({REPO!r}, "shards/train-000.tar", repo_type="dataset"))
        """
    )
    env = {**os.environ, **hub_server.client_env, "HF_HOME": str(tmp_path / "hf-home")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert hub_server.files(REPO) == {"manifest.json": TEXT, **SHARDS}
    assert Path(result.stdout.strip()).read_bytes() == SHARDS["shards/train-000.tar"]
    assert_only_known_routes(hub_server)
