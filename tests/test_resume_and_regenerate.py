"""Crash-safe resume and subset regeneration, on real OpenJTalk renders through the real CLI."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from pipeline.manifest import SCHEMA, read_manifest
from pipeline.validate import validate_output
from tests.conftest import DEMO_RECIPE, REPO, koe

STABLE_COLUMNS = [c for c in SCHEMA.names if c != "render_seconds"]  # a timing, not content


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


def _manifest(out: Path) -> list[dict]:
    return read_manifest(out / "manifest.parquet").select(STABLE_COLUMNS).to_pylist()


def _members(tar_bytes: bytes) -> dict[str, bytes]:
    import io

    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return {info.name: tar.extractfile(info).read() for info in tar}


def _demo_args(out: Path, executor: str = "inline") -> list[str]:
    """The demo with 2-row shards: many shards, so many places to crash and to regenerate."""
    return [
        "run",
        str(DEMO_RECIPE),
        "-o",
        str(out),
        "--no-progress",
        "--executor",
        executor,
        "--set",
        "output.rows_per_shard=2",
    ]


def _demo_run(out: Path, *flags: str, executor: str = "inline", check: bool = True):
    return koe(*_demo_args(out, executor), *flags, check=check)


def _start_run(out: Path, executor: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "pipeline", *_demo_args(out, executor)]
    return subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _kill_hard(process: subprocess.Popen) -> None:
    """kill -9 of the whole process group: the driver and, on Ray, its local cluster with it."""
    try:
        import os

        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    _demo_run(out)
    return out


@pytest.mark.parametrize("executor", ["inline", "ray"])
def test_killed_runs_resume_to_a_byte_identical_output(clean_run, tmp_path, executor):
    out = tmp_path / "out"
    chance = random.Random(f"kill-{executor}")
    kills = 0
    for _ in range(4):
        process = _start_run(out, executor)
        time.sleep(chance.uniform(2.0, 7.0))
        if process.poll() is None:
            _kill_hard(process)
            kills += 1
    assert kills >= 2, "the runs finished before they could be killed: kill earlier"
    finish = _demo_run(out, executor=executor)
    assert "17 rows: 10 written, 7 rejected, 0 failed" in finish.stdout
    assert _shards(out) == _shards(clean_run)
    assert _manifest(out) == _manifest(clean_run)
    assert validate_output(out).ok
    assert not list((out / "shards").glob(".*.partial"))


def test_a_damaged_finished_shard_is_redone(clean_run, tmp_path):
    import shutil

    out = Path(shutil.copytree(clean_run, tmp_path / "out"))
    victim = out / "shards" / "demo-000001.tar"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))  # same size: only the checksum can tell
    result = _demo_run(out)
    assert "(8 already done" in result.stdout
    assert _shards(out) == _shards(clean_run)


def test_regenerating_a_few_ids_rewrites_only_their_shards(clean_run, tmp_path):
    import shutil

    out = Path(shutil.copytree(clean_run, tmp_path / "out"))
    before_shards, before_rows = _shards(out), {r["key"]: r for r in _manifest(out)}
    preview = _demo_run(out, "--ids", "demo-0002", "--ids", "automultiturn-row1", "--dry-run")
    assert "would regenerate 2 row(s) {'written': 2} in 2 shard(s)" in preview.stdout
    assert "demo-000000: 1 row(s)" in preview.stdout and "demo-000006: 1 row(s)" in preview.stdout
    assert _shards(out) == before_shards  # a dry run changes nothing

    result = _demo_run(out, "--ids", "demo-0002", "--ids", "automultiturn-row1")
    assert "2 row(s) regenerated" in result.stdout
    after_shards, after_rows = _shards(out), {r["key"]: r for r in _manifest(out)}
    changed = {name for name in before_shards if before_shards[name] != after_shards[name]}
    assert changed == {"demo-000000.tar", "demo-000006.tar"}
    for name in changed:
        old, new = _members(before_shards[name]), _members(after_shards[name])
        assert old.keys() == new.keys()
        different = {member.split(".")[0] for member in old if old[member] != new[member]}
        assert different <= {"magpie-demo-0002", "automultiturn-row1"}
    for key, row in after_rows.items():
        regenerated = key in {"magpie-demo-0002", "automultiturn-row1"}
        assert row["generation"] == (1 if regenerated else 0)
        if not regenerated:
            assert row == before_rows[key]
    sample = json.loads(_members(after_shards["demo-000000.tar"])["magpie-demo-0002.json"])
    old_sample = json.loads(_members(before_shards["demo-000000.tar"])["magpie-demo-0002.json"])
    assert sample["render"]["seed"] != old_sample["render"]["seed"]  # a new seed, so a new render
    assert sample["speakers"] == old_sample["speakers"]  # the same voice
    assert validate_output(out).ok


def test_regenerating_by_query_and_source(clean_run, tmp_path):
    import shutil

    out = Path(shutil.copytree(clean_run, tmp_path / "out"))
    _demo_run(out, "--where", "status == 'rejected'", "--sources", "automultiturn")
    rows = {r["key"]: r for r in _manifest(out)}
    assert rows["automultiturn-row3"]["generation"] == 1 and rows["automultiturn-row3"]["status"] == "rejected"
    assert all(r["generation"] == 0 for k, r in rows.items() if k != "automultiturn-row3")
    bad = _demo_run(out, "--where", "colour == 'red'", check=False)
    assert bad.returncode == 2 and "--where" in bad.stderr and "columns:" in bad.stderr


def test_regenerating_needs_an_output(tmp_path):
    result = _demo_run(tmp_path / "nothing", "--ids", "x", check=False)
    assert result.returncode == 2 and "nothing to regenerate yet" in result.stderr


def test_a_selection_that_matches_nothing_says_so(demo_copy):
    for flags in (["--ids", "no-such-row"], ["--where", "duration > 99999"], ["--ids", "no-such-row", "--dry-run"]):
        result = koe("run", "recipes/demo.yaml", "--output", str(demo_copy), *flags, check=False)
        assert result.returncode == 2, flags
        assert "the selection matches no row of its manifest" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_ids_file_is_one_line(demo_copy, tmp_path):
    result = koe("run", "recipes/demo.yaml", "--output", str(demo_copy), "--ids-file", str(tmp_path / "none"), check=False)
    assert result.returncode == 2 and "--ids-file" in result.stderr and "Traceback" not in result.stderr
