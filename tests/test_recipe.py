from pathlib import Path

import pytest

from pipeline.recipe import RecipeError, load_recipe
from tests.conftest import DEMO_RECIPE


def test_demo_recipe_is_valid():
    recipe = load_recipe(DEMO_RECIPE)
    assert recipe.name == "demo"
    assert [s.name for s in recipe.sources] == ["magpie", "automultiturn"]
    assert all(s.local_path and s.local_path.is_file() for s in recipe.sources)


def test_unknown_key_is_named_with_the_file(make_recipe):
    path = make_recipe(tts={"backend": "openjtalk", "sampel_rate": 16000})
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert str(path) in str(error.value)
    assert "tts.sampel_rate: unknown key" in str(error.value)


def test_wrong_type_is_named(make_recipe):
    with pytest.raises(RecipeError, match=r"output\.rows_per_shard"):
        load_recipe(make_recipe(output={"rows_per_shard": "many"}))


def test_all_problems_are_reported_at_once(make_recipe):
    path = make_recipe(output={"rows_per_shard": 0}, render={"turn_gap": 1})
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    message = str(error.value)
    assert "output.rows_per_shard" in message and "render.turn_gap: unknown key" in message


def test_missing_corpus_file_is_named(make_recipe, tmp_path):
    path = make_recipe()
    (tmp_path / "corpus.jsonl").unlink()
    with pytest.raises(RecipeError, match=r"sources\.0: dataset file not found: .*corpus\.jsonl"):
        load_recipe(path)


def test_missing_speaker_bank_is_named(make_recipe):
    with pytest.raises(RecipeError, match=r"speakers\.bank: speaker bank not found"):
        load_recipe(make_recipe(speakers={"bank": "nowhere/bank.yaml"}))


def test_hub_dataset_needs_a_pinned_revision(make_recipe):
    path = make_recipe()
    with pytest.raises(RecipeError, match="pin it with 'revision'"):
        load_recipe(path, ["sources.0.dataset=llm-jp/magpie-sft-v1.0"])
    recipe = load_recipe(path, ["sources.0.dataset=llm-jp/magpie-sft-v1.0", "sources.0.revision=abc123"])
    assert recipe.sources[0].local_path is None


def test_unknown_adapter_and_backend(make_recipe):
    with pytest.raises(RecipeError, match=r"sources\.0\.adapter: unknown adapter 'nope'"):
        load_recipe(make_recipe(adapter="nope"))
    with pytest.raises(RecipeError, match=r"tts: unknown TTS backend 'espeak'"):
        load_recipe(make_recipe(tts={"backend": "espeak"}))
    with pytest.raises(RecipeError, match=r"options\.voice: unknown key"):
        load_recipe(make_recipe(tts={"backend": "openjtalk", "options": {"voice": "x"}}))


def test_set_overrides_with_typed_values(make_recipe):
    recipe = load_recipe(make_recipe(), ["tts.sample_rate=16000", "seed=99", "render.turn_gap_seconds=0.25"])
    assert recipe.tts.sample_rate == 16000 and recipe.seed == 99 and recipe.render.turn_gap_seconds == 0.25


def test_set_is_validated_like_the_file(make_recipe):
    with pytest.raises(RecipeError, match=r"tts\.sample_rat: unknown key"):
        load_recipe(make_recipe(), ["tts.sample_rat=16000"])
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        load_recipe(make_recipe(), ["seed"])
    with pytest.raises(RecipeError, match=r"no list item sources\.5"):
        load_recipe(make_recipe(), ["sources.5.name=x"])


def test_not_a_recipe(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(RecipeError, match="YAML mapping"):
        load_recipe(bad)


def test_fingerprint_ignores_execution_but_not_content(make_recipe):
    path = make_recipe()
    base = load_recipe(path).fingerprint()
    assert load_recipe(path, ["execution.cpus_per_task=2"]).fingerprint() == base
    assert load_recipe(path, ["seed=8"]).fingerprint() != base


def test_fingerprint_follows_the_bank_content_not_its_path(make_recipe, tmp_path):
    import shutil

    import numpy as np
    import soundfile as sf
    import yaml

    bank_dir = tmp_path / "bank_a"
    bank_dir.mkdir()
    sf.write(bank_dir / "s1.wav", 0.1 * np.sin(np.arange(24000 * 4) / 5), 24000)
    speakers = [
        {"id": f"s{i}", "name": "x", "gender": "f", "age_band": "30s", "license": "CC0", "source": "t"}
        | ({"reference_audio": "s1.wav", "transcript": "はい。"} if i == 1 else {})
        for i in (1, 2)
    ]
    (bank_dir / "bank.yaml").write_text(yaml.safe_dump({"speakers": speakers}))
    copy = Path(shutil.copytree(bank_dir, tmp_path / "elsewhere" / "bank_b"))
    path = make_recipe()
    original = load_recipe(path, [f"speakers.bank={bank_dir / 'bank.yaml'}"]).fingerprint()
    assert load_recipe(path, [f"speakers.bank={copy / 'bank.yaml'}"]).fingerprint() == original
    sf.write(copy / "s1.wav", 0.2 * np.sin(np.arange(24000 * 4) / 5), 24000)  # a re-recorded voice
    assert load_recipe(path, [f"speakers.bank={copy / 'bank.yaml'}"]).fingerprint() != original


def test_a_set_value_that_is_not_yaml_is_a_recipe_error():
    with pytest.raises(RecipeError, match=r"--set 'output.rows_per_shard=\[1': not valid YAML"):
        load_recipe(DEMO_RECIPE, ["output.rows_per_shard=[1"])


def test_deep_yaml_and_alias_bombs_are_recipe_errors(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: x\nsources: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(RecipeError, match="nested too deeply"):
        load_recipe(deep)
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh", strict=False)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\nname: x\n")
    with pytest.raises(RecipeError, match="alias bomb"):
        load_recipe(bomb)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\n")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(binary)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("seed=" + "9" * 5000, "unreadable YAML value"),  # more digits than Python converts to an int
        ("name=" + "a" * 1_000_000, "(1000000 characters) must be 1 to 32 letters"),
        ("output.rows_per_shard=" + "[" * 100_000, "--set 'output.rows_per_shard=[[[["),
        ("a.b.c=" + "&x [1] " * 10, "--set 'a.b.c=&x"),
    ],
)
def test_huge_set_values_are_one_short_recipe_error(override, message):
    with pytest.raises(RecipeError) as raised:
        load_recipe(DEMO_RECIPE, [override])
    text = str(raised.value)
    assert message in text and len(text) < 1000


def test_the_old_execution_max_attempts_says_what_it_became(make_recipe):
    with pytest.raises(RecipeError, match="execution.max_attempts meant three retries and is split: row_attempts"):
        load_recipe(make_recipe(), ["execution.max_attempts=2"])
    recipe = load_recipe(make_recipe(), ["execution.row_attempts=2", "execution.model_call_retries=0"])
    assert (recipe.execution.row_attempts, recipe.execution.shard_task_attempts) == (2, 3)


def test_an_unknown_kind_lists_the_known_ones(make_recipe):
    with pytest.raises(RecipeError, match="unknown kind 'podcast'; known: captions, dpo, duplex, sft"):
        load_recipe(make_recipe(), ["kind=podcast"])
