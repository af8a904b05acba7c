"""The dataset card: YAML the Hub and `datasets` read, written from what the outputs hold."""

from __future__ import annotations

import shutil

import pytest
from huggingface_hub import DatasetCard

from pipeline.card import hub_license, render_card, summarize
from pipeline.publish import shard_paths
from pipeline.stats import collect


def summary_of(output, config: str | None = None, split: str = "train") -> dict:
    facts = collect(output)
    config = config or facts.recipe["name"]
    _, data_files = shard_paths(config, split, [r.shard for r in facts.shards])
    return summarize(facts, config, split, data_files)


@pytest.mark.parametrize(
    "name, hub_id",
    [
        ("CC0 1.0", "cc0-1.0"),
        ("CC BY 3.0", "cc-by-3.0"),
        ("CC BY 4.0", "cc-by-4.0"),
        ("CC BY 3.0 ES", "cc-by-3.0"),  # a jurisdiction port: the Hub names only the generic license
        ("apache-2.0", "apache-2.0"),
        ("mit", "mit"),
        ("CC0-1.0 or CC-BY (per clip, see each sample's clip.license)", "other"),
    ],
)
def test_licenses_are_named_as_the_hub_names_them(name, hub_id):
    assert hub_license(name) == hub_id


def test_the_card_of_the_demo_has_valid_yaml_and_the_facts_of_the_output(demo_output):
    from datasets.utils.metadata import MetadataConfigs

    summary = summary_of(demo_output)
    card = DatasetCard(render_card("koe-test/demo-speech", "main", [summary]))
    data = card.data.to_dict()
    assert data["language"] == ["ja"]
    assert data["license"] == ["apache-2.0", "other"]  # magpie and AutoMultiTurn, listed per source in the body
    assert {"audio", "webdataset"} <= set(data["tags"])
    assert "audio-text-to-text" in data["task_categories"]
    assert data["configs"] == [
        {"config_name": "demo", "data_files": [{"split": "train", "path": "data/demo/train/*.tar"}]}
    ]
    configs = MetadataConfigs.from_dataset_card_data(card.data)  # what `datasets` reads of it
    assert configs["demo"]["data_files"] == [{"split": "train", "path": "data/demo/train/*.tar"}]
    assert summary["samples"] == 10 and summary["rows"] == {"written": 10, "rejected": 7, "failed": 0}
    assert 0.01 < summary["audio_hours"] < 0.02
    body = card.text
    for fact in (
        "| demo | train | sft | 10 |",
        "apache-2.0",
        "other",
        "openjtalk",
        "DNSMOS P.808 ≥ 2.5",
        'load_dataset("koe-test/demo-speech", "demo", split="train", streaming=True)',
        "{demo-000000..demo-000004}.tar",
        "CC-BY-3.0 (HTS voice 'mei'",
    ):
        assert fact in body, fact
    assert "FSD50K" not in body
    assert render_card("koe-test/demo-speech", "main", [summary_of(demo_output)]) == str(card)  # deterministic


def test_a_card_over_several_configs_lists_each_and_a_branch_in_its_loading_code(demo_output, duplex_output):
    card = DatasetCard(render_card("koe-test/ja", "v2", [summary_of(duplex_output), summary_of(demo_output)]))
    names = [c["config_name"] for c in card.data.to_dict()["configs"]]
    assert names == ["demo", "duplex_magpie"]
    assert {"audio-to-audio", "audio-text-to-text"} <= set(card.data.to_dict()["task_categories"])
    assert 'split="train", revision="v2", streaming=True' in card.text
    assert "/resolve/v2/data/duplex_magpie/train/" in card.text
    assert "Turn-taking: gaps drawn from a lognormal distribution" in card.text
    assert "(24000 Hz, stereo, 16-bit FLAC)" in card.text and "(24000 Hz, mono, 16-bit FLAC)" in card.text


def test_a_captions_card_credits_fsd50k_and_takes_the_clips_licenses(captions_output):
    summary = summary_of(captions_output)
    card = DatasetCard(render_card("koe-test/fsd50k-captions", "main", [summary]))
    assert summary["clip_licenses"] and set(summary["clip_licenses"]) <= {"CC0 1.0", "CC BY 3.0", "CC BY 4.0"}
    licenses = card.data.to_dict()["license"]
    assert "cc-by-4.0" in licenses and "other" not in licenses  # the clips' own, plus FSD50K's labels
    assert card.data.to_dict()["language"] == ["en"]
    assert "## FSD50K attribution" in card.text and "attribution.csv" in card.text
    assert "Qwen" not in card.text and "captioner-double" in card.text  # the model that was used, as served


def test_the_card_loads_with_datasets_from_a_folder_laid_out_as_the_repo(demo_output, tmp_path):
    import datasets

    facts = collect(demo_output)
    paths, _ = shard_paths("demo", "train", [r.shard for r in facts.shards])
    for path, record in zip(paths, facts.shards, strict=True):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(demo_output / "shards" / f"{record.shard}.tar", tmp_path / path)
    (tmp_path / "README.md").write_text(render_card("koe-test/demo", "main", [summary_of(demo_output)]))
    rows = datasets.load_dataset(str(tmp_path), "demo", split="train")
    assert sorted(rows["__key__"]) == sorted(s.key for s in facts.samples)


def test_shards_move_into_numbered_folders_before_a_folder_passes_the_hubs_limit():
    paths, glob = shard_paths("c", "train", [f"c-{i:06d}" for i in range(5)], per_folder=5)
    assert glob == "data/c/train/*.tar" and paths[0] == "data/c/train/c-000000.tar"
    paths, glob = shard_paths("c", "train", [f"c-{i:06d}" for i in range(12)], per_folder=5)
    assert glob == "data/c/train/*/*.tar"
    assert paths[4] == "data/c/train/0000/c-000004.tar" and paths[5] == "data/c/train/0001/c-000005.tar"
    assert max(sum(p.startswith(f"data/c/train/{n:04d}/") for p in paths) for n in range(3)) <= 5
