"""The demo recipe through the real CLI, local Ray and real OpenJTalk, read back as users will."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from pipeline.executors import InlineExecutor
from pipeline.manifest import read_manifest
from pipeline.recipe import load_recipe
from pipeline.run import run_recipe
from pipeline.validate import validate_output
from tests.conftest import DEMO_RECIPE, koe

DEMO_INPUT_LINES = sum(
    1
    for f in ("magpie_sft.jsonl", "automultiturn.jsonl")
    for line in open(DEMO_RECIPE.parent / "data" / f)
    if line.strip()
)


def _rows(out: Path) -> dict[str, dict]:
    return {r["key"]: r for r in read_manifest(out / "manifest.parquet").to_pylist()}


def _tar_members(out: Path) -> dict[str, bytes]:
    members = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as handle:
            for info in handle:
                members[info.name] = handle.extractfile(info).read()
    return members


def test_every_input_row_is_accounted_for(demo_output):
    rows = list(_rows(demo_output).values())
    statuses = [r["status"] for r in rows]
    assert len(rows) == DEMO_INPUT_LINES
    assert statuses.count("written") + statuses.count("rejected") + statuses.count("failed") == len(rows)
    assert statuses.count("written") == 10 and statuses.count("failed") == 0
    run = json.loads((demo_output / "run.json").read_text())
    assert run["state"] == "complete" and run["summary"]["inputs"] == DEMO_INPUT_LINES


def test_bad_rows_are_rejected_with_their_reason(demo_output):
    reasons = {r["key"]: r["reason"] for r in _rows(demo_output).values() if r["status"] == "rejected"}
    assert reasons["magpie-demo-0006"] == "turn 1: empty text after making it speakable"
    assert reasons["magpie-demo-0007"] == "missing column 'conversations'"
    assert reasons["magpie-demo-0008"] == "turn 3 content is int, expected a string"
    assert reasons["magpie-row7"].startswith("line is not valid JSON")
    assert any(r == "duplicate id 'demo-0004' (first at magpie row 3)" for r in reasons.values())
    assert reasons["automultiturn-row3"] == "missing column 'q1'"


def test_samples_follow_the_contract(demo_output):
    members = _tar_members(demo_output)
    keys = {name.split(".", 1)[0] for name in members}
    written = {k for k, r in _rows(demo_output).items() if r["status"] == "written"}
    assert keys == written
    assert set(members) == {f"{k}.{ext}" for k in keys for ext in ("flac", "json")}
    sample = json.loads(members["magpie-demo-0004.json"])
    assert sample["schema_version"] == 1 and sample["kind"] == "sft" and sample["recipe"] == "demo"
    assert sample["source"] == {
        "name": "magpie",
        "dataset": "data/magpie_sft.jsonl",
        "revision": "",
        "split": "train",
        "row_id": "demo-0004",
        "row_index": 3,
        "license": "apache-2.0",
    }
    user_turns = [t for t in sample["turns"] if t["role"] == "user"]
    assistant_turns = [t for t in sample["turns"] if t["role"] == "assistant"]
    assert len(user_turns) == 2 and len(assistant_turns) == 2
    assert all("start" not in t and t["text"] for t in assistant_turns)
    first, second = user_turns
    assert first["start"] == 0 and first["end"] < second["start"] < second["end"] <= sample["audio"]["duration"]
    assert second["start"] - first["end"] == pytest.approx(0.5, abs=1e-4)
    assert first["speaker"] == second["speaker"] == sample["speakers"]["user"]
    assert sample["render"]["backend"] == "openjtalk" and "pyopenjtalk-plus" in sample["render"]["model"]
    markdown = json.loads(members["magpie-demo-0003.json"])["turns"][0]
    assert markdown["text"].startswith("# 質問") and markdown["spoken_text"].startswith("質問。カレーを")


def test_validate_accepts_the_demo(demo_output):
    result = koe("validate", str(demo_output))
    assert "OK, 10 samples in 5 shard(s)" in result.stdout


def test_datasets_loads_audio_and_json(demo_output):
    datasets = pytest.importorskip("datasets")
    tars = sorted(str(p) for p in (demo_output / "shards").glob("*.tar"))
    dataset = datasets.load_dataset("webdataset", data_files=tars, split="train")
    assert dataset.num_rows == 10
    assert isinstance(dataset.features["flac"], datasets.Audio)
    row = dataset[0]
    decoded = row["flac"].get_all_samples()
    assert decoded.sample_rate == 24000
    assert decoded.data.shape[1] == row["json"]["audio"]["num_samples"]
    assert row["__key__"] == row["json"]["key"]


def test_runs_are_deterministic_across_executors(demo_output, tmp_path):
    """The same recipe and seed give byte-identical shards inline as on Ray."""
    summary = run_recipe(load_recipe(DEMO_RECIPE), tmp_path / "inline", InlineExecutor(), show_progress=False)
    assert summary.statuses["written"] == 10
    assert _tar_members(tmp_path / "inline") == _tar_members(demo_output)
    for tar in (demo_output / "shards").glob("*.tar"):
        assert (tmp_path / "inline" / "shards" / tar.name).read_bytes() == tar.read_bytes()


def test_rows_made_concurrently_are_written_in_order(demo_output, tmp_path):
    recipe = load_recipe(DEMO_RECIPE, ["execution.items_in_flight=3"])
    run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    for tar in (demo_output / "shards").glob("*.tar"):
        assert (tmp_path / "out" / "shards" / tar.name).read_bytes() == tar.read_bytes()


def test_rerun_skips_finished_shards_and_refuses_another_recipe(demo_copy):
    before = {p.name: p.stat().st_mtime_ns for p in (demo_copy / "shards").glob("*.tar")}
    summary = run_recipe(load_recipe(DEMO_RECIPE), demo_copy, InlineExecutor(), show_progress=False)
    assert summary.shards_skipped == 5 and summary.inputs == DEMO_INPUT_LINES
    assert {p.name: p.stat().st_mtime_ns for p in (demo_copy / "shards").glob("*.tar")} == before
    result = koe(
        "run", str(DEMO_RECIPE), "--output", str(demo_copy), "--set", "seed=1", "--executor", "inline", check=False
    )
    assert result.returncode == 2 and "different recipe" in result.stderr


def test_limit_runs_the_first_rows(tmp_path):
    result = koe(
        "run", str(DEMO_RECIPE), "-o", str(tmp_path / "out"), "--limit", "3", "--executor", "inline", "--no-progress"
    )
    assert "3 rows: 3 written" in result.stdout
    assert validate_output(tmp_path / "out").ok


def _flip_byte_in_member(tar: Path, member_suffix: str) -> None:
    with tarfile.open(tar) as handle:
        info = next(i for i in handle if i.name.endswith(member_suffix))
        offset = info.offset_data + info.size // 2
    data = bytearray(tar.read_bytes())
    data[offset] ^= 0xFF
    tar.write_bytes(bytes(data))


def test_validate_catches_a_corrupted_flac(demo_copy):
    tar = demo_copy / "shards" / "demo-000000.tar"
    _flip_byte_in_member(tar, ".flac")
    result = koe("validate", str(demo_copy), check=False)
    assert result.returncode == 1
    assert "demo-000000.tar: checksum differs from its completion record" in result.stderr
    assert "FLAC checksum differs from the manifest" in result.stderr


def test_validate_catches_a_truncated_shard(demo_copy):
    tar = demo_copy / "shards" / "demo-000003.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 3])
    report = validate_output(demo_copy)
    assert not report.ok
    assert any("demo-000003.tar" in p for p in report.problems)
    assert any("missing from shard demo-000003" in p for p in report.problems)


def test_validate_catches_a_missing_shard_and_a_stray_one(demo_copy):
    shutil.move(demo_copy / "shards" / "demo-000001.tar", demo_copy / "shards" / "stray-000009.tar")
    problems = validate_output(demo_copy).problems
    assert any("stray-000009.tar: shard not referenced by the manifest" in p for p in problems)
    assert any(p.startswith("demo-000001.tar: in the manifest but missing") for p in problems)
    assert any("manifest places it in shard demo-000001" in p for p in problems)


def test_validate_catches_a_manifest_that_lost_a_row(demo_copy):
    import pyarrow.parquet as pq

    table = pq.read_table(demo_copy / "manifest.parquet")
    pq.write_table(table.slice(1), demo_copy / "manifest.parquet")
    problems = validate_output(demo_copy).problems
    assert any("not in the manifest as written" in p for p in problems)


@pytest.mark.parametrize(
    ("fixture", "stages"),
    [("demo_output", {"ingest", "text", "render", "qc", "write"}), ("duplex_output", {"text", "render", "compose"})],
)
def test_the_run_record_gives_the_time_per_stage_from_its_shards(fixture, stages, request):
    from pipeline.shards import DoneRecord, Output
    from pipeline.timing import STAGES

    output = Output(request.getfixturevalue(fixture))
    seconds = json.loads(output.run_path.read_text())["summary"]["stage_seconds"]
    assert stages <= set(seconds) <= set(STAGES) and all(seconds[stage] > 0 for stage in stages)
    records = [DoneRecord.read(output.done_path(tar.stem)) for tar in output.shard_tars()]
    for stage in set(seconds) - {"ingest"}:  # the driver reads the corpus; the shard jobs do the rest
        assert seconds[stage] == pytest.approx(sum(r.stage_seconds.get(stage, 0.0) for r in records), abs=0.01)
