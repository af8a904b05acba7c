"""The four production recipes: valid for the cluster as written, and runnable here by one --set."""

from __future__ import annotations

import json
import tarfile

import pytest

from pipeline.executors import InlineExecutor
from pipeline.manifest import read_manifest
from pipeline.recipe import RecipeError, load_recipe
from pipeline.run import run_recipe
from pipeline.validate import validate_output
from tests.conftest import REPO

SEED_RECIPES = ["sft_magpie", "sft_automultiturn", "dpo_hh_rlhf", "dpo_chatbot_arena"]


@pytest.mark.parametrize("name", SEED_RECIPES)
def test_production_recipe_targets_the_hub_and_cosyvoice(name):
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml")
    source = recipe.sources[0]
    assert source.local_path is None and "/" in source.dataset and source.revision
    assert recipe.tts.backend == "cosyvoice2" and recipe.tts.num_gpus == 1
    assert recipe.tts.runtime_env  # the CosyVoice environment, loaded from cluster/
    assert recipe.speakers.bank.name == "reference_bank.yaml"


@pytest.mark.parametrize("name", SEED_RECIPES)
def test_embedded_profile_runs_the_bundled_rows(name, tmp_path):
    recipe = load_recipe(REPO / "recipes" / f"{name}.yaml", ["profile=embedded"])
    assert recipe.tts.backend == "openjtalk" and recipe.tts.num_gpus == 0
    summary = run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    rows = read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()
    lines = sum(1 for line in source_lines(recipe) if line.strip())
    assert summary.inputs == len(rows) == lines
    assert summary.statuses["written"] >= 3 and summary.statuses["failed"] == 0
    assert all(r["reason"] for r in rows if r["status"] == "rejected")
    assert validate_output(tmp_path / "out").ok


def source_lines(recipe):
    return recipe.sources[0].local_path.read_text().splitlines()


def test_explicit_set_wins_over_the_profile():
    recipe = load_recipe(REPO / "recipes" / "sft_magpie.yaml", ["profile=embedded", "output.rows_per_shard=7"])
    assert recipe.output.rows_per_shard == 7 and recipe.tts.backend == "openjtalk"


def test_unknown_profile_is_named():
    with pytest.raises(RecipeError, match="profile 'laptop' is not defined in 'profiles' \\(defined: embedded, triton\\)"):
        load_recipe(REPO / "recipes" / "sft_magpie.yaml", ["profile=laptop"])


def test_dpo_samples_keep_chosen_and_rejected_as_text(tmp_path):
    recipe = load_recipe(REPO / "recipes" / "dpo_hh_rlhf.yaml", ["profile=embedded"])
    run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    with tarfile.open(tmp_path / "out" / "shards" / "dpo_hh_rlhf-000000.tar") as tar:
        sample = json.loads(tar.extractfile("hh_rlhf-hh-0002.json").read())
    assert sample["kind"] == "dpo"
    assert sample["chosen"].startswith("それなら") and sample["rejected"] == "現金が一番です。"
    spoken = [t for t in sample["turns"] if "start" in t]
    assert [t["role"] for t in spoken] == ["user", "user"]  # both human turns of the conversation
    assert all(t["reading"] and t["seed"] is not None for t in spoken)
    rows = {r["key"]: r for r in read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()}
    assert rows["hh_rlhf-hh-0004"]["reason"] == "missing column 'rejected'"
    assert rows["hh_rlhf-hh-0005"]["reason"] == "no user turn"


def test_dpo_pairs_without_two_replies_end_in_the_manifest_as_rejected(make_recipe, tmp_path):
    human = [{"from": "human", "value": "おすすめの本を教えてください。"}]
    rows = [
        {"id": "ok", "conversations": human, "chosen": "『坊っちゃん』はいかがでしょう。", "rejected": "ありません。"},
        {"id": "empty", "conversations": human, "chosen": "", "rejected": "ありません。"},
        {"id": "dots", "conversations": human, "chosen": "はい、どうぞ。", "rejected": "……"},
        {"id": "same", "conversations": human, "chosen": "本です。", "rejected": "本です。 "},
    ]
    recipe = load_recipe(make_recipe(rows, adapter="hh_rlhf", kind="dpo"))
    summary = run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    assert summary.statuses["written"] == 1
    rows = {r["row_id"]: r for r in read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()}
    assert rows["ok"]["status"] == "written"
    assert {row_id: (r["status"], r["reason"]) for row_id, r in rows.items() if row_id != "ok"} == {
        "empty": ("rejected", "chosen is empty"),
        "dots": ("rejected", "rejected has no words (punctuation only)"),
        "same": ("rejected", "chosen and rejected are identical"),
    }
    assert validate_output(tmp_path / "out").ok


def test_dpo_kind_needs_sources_with_replies(make_recipe):
    with pytest.raises(RecipeError, match="kind 'dpo' needs chosen and rejected replies; sources \\['src'\\]"):
        load_recipe(make_recipe(), ["kind=dpo"])


def test_generic_adapter_takes_a_column_mapping(make_recipe, tmp_path):
    rows = [{"uid": "u1", "question": "富士山の高さは？", "answer": "三千七百七十六メートルです。"}]
    path = make_recipe(rows, adapter="generic")
    with pytest.raises(RecipeError, match="'columns' goes with adapter 'generic'"):
        load_recipe(path)
    recipe = load_recipe(path, ['sources.0.columns={"id": "uid", "prompt": "question", "response": "answer"}'])
    summary = run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    assert summary.statuses["written"] == 1
    assert read_manifest(tmp_path / "out" / "manifest.parquet").column("key").to_pylist() == ["src-u1"]


def test_missing_cosyvoice_model_stops_the_run_before_any_shard(tmp_path, reference_bank):
    from pipeline.errors import BackendSetupError

    recipe = load_recipe(
        REPO / "recipes" / "sft_magpie.yaml",
        ["profile=embedded", f"speakers.bank={reference_bank}", "tts.backend=cosyvoice2"]
        + ['tts.options={"model_dir": "/nonexistent/CosyVoice2-0.5B"}'],
    )
    with pytest.raises(BackendSetupError, match="CosyVoice model folder not found on this node"):
        run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    assert not (tmp_path / "out").exists()
