"""Recipe kinds own their chains: `koe describe` tells each recipe's chain, and a new kind needs only its module."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.describe import describe
from pipeline.executors import InlineExecutor
from pipeline.kinds import KINDS
from pipeline.kinds.speech import SpeechKind
from pipeline.qc import gate_checks, make_gate
from pipeline.recipe import QCConfig, load_recipe
from pipeline.run import run_recipe
from pipeline.shards import output_samples
from pipeline.validate import validate_output
from tests.conftest import REPO, koe

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
NAMES = "|".join(KINDS)
COMPARED = re.compile(
    rf"""(==|!=)\s*["']({NAMES})["']|["']({NAMES})["']\s*(==|!=)|\bin\s*[(\[{{][^)\]}}]*["']({NAMES})["']"""
)


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_describe_names_the_backend_and_where_the_model_runs(path):
    recipe = load_recipe(path)
    stage = recipe.model_stage
    shown = koe("describe", str(path)).stdout
    assert f"backend {stage.backend!r}" in shown
    if stage.num_gpus:
        assert re.search(r"GPU actor pool \(\w+\): .*" + re.escape(f"{stage.concurrency} request(s)"), shown)
    else:
        assert "in each shard task's process (CPU)" in shown
    assert f"kind {recipe.kind}" in shown and f"shards of {recipe.output.rows_per_shard} input rows" in shown


def test_describe_applies_overrides_as_the_run_does():
    shown = koe("describe", "recipes/sft_magpie.yaml", "--set", "profile=embedded", "--set", "qc.min_dnsmos=3.1").stdout
    assert "backend 'openjtalk'" in shown and "GPU actor pool" not in shown
    assert "DNSMOS P.808 at least 3.1" in shown


def test_describe_fails_on_a_bad_recipe_in_one_message():
    result = koe("describe", "recipes/demo.yaml", "--set", "kind=podcast", check=False)
    assert result.returncode == 2 and "unknown kind 'podcast'" in result.stderr and "Traceback" not in result.stderr


def test_the_described_checks_are_the_gates(openjtalk):
    config = QCConfig()
    gate = make_gate(config, openjtalk)
    described = [step.what.split(":")[0] for step in describe(load_recipe(REPO / "recipes" / "demo.yaml"))]
    assert [type(check) for check in gate.checks] == gate_checks(config)
    assert [check.name for check in gate_checks(config)] == [w for w in described if w in {"silence", "level",
        "pace", "dnsmos", "speaker"}]  # fmt: skip


def test_no_module_outside_kinds_compares_a_kind_with_its_name():
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sorted((REPO / "pipeline").rglob("*.py"))
        if "kinds" not in path.relative_to(REPO / "pipeline").parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if COMPARED.search(line)
    ]
    assert not found, "\n".join(found)


class AssistantReading(SpeechKind):
    """A fifth kind, as a user would add one: the assistant's replies read aloud (TTS data), nothing else."""

    name = "assistant_reading"
    summary = "the assistant's turns spoken one after another (mono)"
    voiced_roles = ("assistant",)
    task_categories = ("text-to-speech",)


def test_a_fifth_kind_runs_validates_and_publishes_from_its_module_alone(monkeypatch, make_recipe, tmp_path):
    monkeypatch.setitem(KINDS, AssistantReading.name, AssistantReading())
    rows = [
        {
            "id": f"r{i}",
            "conversations": [{"role": "user", "content": "質問です。"}, {"role": "assistant", "content": a}],
        }
        for i, a in enumerate(["今日は晴れです。", "明日は雨でしょう。"])
    ]
    recipe = load_recipe(make_recipe(rows, kind="assistant_reading", qc={"enabled": False}))
    assert "kind assistant_reading" in "\n".join(step.what for step in describe(recipe))
    out = tmp_path / "out"
    summary = run_recipe(recipe, out, InlineExecutor(), show_progress=False)
    assert summary.statuses["written"] == 2, summary.rejects
    report = validate_output(out)
    assert report.ok, report.problems
    documents = [sample.document for sample in output_samples(out)]
    assert {d["kind"] for d in documents} == {"assistant_reading"}
    for document in documents:
        user, assistant = document["turns"]
        assert "start" in assistant and "start" not in user  # only the kind's role was voiced
        assert list(document["speakers"]) == ["assistant"]

    from pipeline.card import render_card, summarize
    from pipeline.stats import collect

    card = render_card("me/data", "main", [summarize(collect(Path(out)), "default", "train", "data/*.tar")])
    assert "text-to-speech" in card and "**assistant_reading**" in card


COMMON_FIELDS = {"schema_version", "key", "kind", "recipe"}


@pytest.fixture(scope="module")
def dpo_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "out"
    recipe = load_recipe(REPO / "recipes" / "dpo_hh_rlhf.yaml", ["profile=embedded"])
    run_recipe(recipe, out, InlineExecutor(), limit=3, show_progress=False)
    return out


@pytest.mark.parametrize("fixture", ["demo_output", "dpo_output", "duplex_output", "captions_output"])
def test_the_card_and_the_readme_describe_every_field_a_sample_has(fixture, request):
    documents = [sample.document for sample in output_samples(request.getfixturevalue(fixture))]
    kind = KINDS[documents[0]["kind"]]
    for document in documents:
        assert list(document)[:4] == ["schema_version", "key", "kind", "recipe"]
        assert set(document) - COMMON_FIELDS == set(kind.json_fields), document["key"]
        assert set(kind.required_fields) <= set(document)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sample_format = readme[readme.index("## Sample format") : readme.index("## Manifest")]
    missing = [f for f in kind.json_fields if f"`{f}`" not in sample_format and f'"{f}"' not in sample_format]
    assert not missing, f"README's sample format does not name {missing} of kind {kind.name}"
