"""The output's state is checked, not trusted: a completion record of another recipe or of an edited
corpus is not adopted, and an unreadable one is no record (the shard is redone, the file named)."""

from __future__ import annotations

import pytest

from pipeline.executors import InlineExecutor
from pipeline.recipe import load_recipe
from pipeline.run import OutputConflict, run_recipe
from pipeline.shards import DoneRecord, Output
from pipeline.validate import validate_output
from tests.conftest import write_jsonl

ROWS = [{"id": f"r{i}", "conversations": [{"role": "user", "content": f"{i}番目の質問です。"}]} for i in range(4)]


def _run(recipe_path, out, *overrides):
    recipe = load_recipe(recipe_path, ["qc.enabled=false", "output.rows_per_shard=2", *overrides])
    return run_recipe(recipe, out, InlineExecutor(), show_progress=False), recipe


def test_shards_of_another_recipe_are_redone_even_without_run_json(make_recipe, tmp_path):
    path, out = make_recipe(ROWS), tmp_path / "out"
    _run(path, out)
    (out / "run.json").unlink()
    summary, recipe = _run(path, out, "seed=8")
    assert summary.shards_skipped == 0 and summary.shards == 2
    records = [DoneRecord.read(p) for p in sorted(Output(out).state_dir.glob("*.done.json"))]
    assert {r.recipe_fingerprint for r in records} == {recipe.fingerprint()}
    assert validate_output(out).ok


def test_an_edited_local_corpus_is_noticed(make_recipe, tmp_path):
    path, out = make_recipe(ROWS), tmp_path / "out"
    _, recipe = _run(path, out)
    before = recipe.fingerprint()
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, [*ROWS[:3], {"id": "r3", "conversations": [{"role": "user", "content": "書き直した質問。"}]}])
    assert load_recipe(path, ["qc.enabled=false", "output.rows_per_shard=2"]).fingerprint() != before
    with pytest.raises(OutputConflict, match="different recipe"):
        _run(path, out)
    (out / "run.json").unlink()
    summary, _ = _run(path, out)
    assert summary.shards_skipped == 0  # no stale shard adopted
    assert validate_output(out).ok


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"shard": 1}', b"\xff\xfe"])
def test_an_unreadable_completion_record_is_no_record(make_recipe, tmp_path, garbage):
    path, out = make_recipe(ROWS), tmp_path / "out"
    _run(path, out)
    done = sorted(Output(out).state_dir.glob("*.done.json"))[0]
    done.write_bytes(garbage)
    report = validate_output(out)
    assert not report.ok and any(str(done) in problem and "unreadable completion record" in problem
                                 for problem in report.problems)
    summary, _ = _run(path, out)
    assert summary.shards_skipped == 1  # the other shard is kept, this one redone
    assert validate_output(out).ok


@pytest.mark.parametrize("garbage", [b"", b"PAR1 not parquet", b"\xff" * 100])
def test_a_garbage_manifest_part_heals_by_redoing_its_shard(make_recipe, tmp_path, garbage):
    path, out = make_recipe(ROWS), tmp_path / "out"
    _run(path, out)
    before = {tar.name: tar.read_bytes() for tar in Output(out).shards_dir.glob("*.tar")}
    part = sorted(Output(out).state_dir.glob("*.manifest.parquet"))[1]
    part.write_bytes(garbage)
    report = validate_output(out)
    assert not report.ok and any(str(part) in problem for problem in report.problems)
    summary, _ = _run(path, out)
    assert (summary.shards_skipped, summary.inputs, summary.statuses["written"]) == (1, 4, 4)
    assert validate_output(out).ok
    assert {tar.name: tar.read_bytes() for tar in Output(out).shards_dir.glob("*.tar")} == before  # redone alike


def test_validate_fails_an_output_whose_run_did_not_finish(make_recipe, tmp_path):
    import json

    path, out = make_recipe(ROWS), tmp_path / "out"
    _run(path, out)
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({"recipe_fingerprint": record["recipe_fingerprint"], "state": "running"}))
    assert any("the run did not finish" in p for p in validate_output(out).problems)
    (out / "run.json").write_text(json.dumps({**record, "state": "incomplete", "shards_failed": ["t-000001"]}))
    assert any(p.endswith("shards whose task failed: t-000001") for p in validate_output(out).problems)
    (out / "run.json").write_text("")
    assert any("unreadable run record" in p for p in validate_output(out).problems)
    (out / "run.json").unlink()
    assert any("run.json: missing" in p for p in validate_output(out).problems)


@pytest.mark.parametrize("garbage", [b"", b"[1, 2]", b"{oops"])
def test_an_unreadable_run_json_is_taken_as_missing(make_recipe, tmp_path, garbage):
    path, out = make_recipe(ROWS), tmp_path / "out"
    _run(path, out)
    (out / "run.json").write_bytes(garbage)
    summary, _ = _run(path, out)
    assert summary.shards_skipped == 2  # each shard's own record still matched
    assert validate_output(out).ok
