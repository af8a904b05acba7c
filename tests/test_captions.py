"""Captions: windows, caption checks and retries, and captions runs end to end."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.captioners import Caption
from pipeline.kinds.captions import caption_problem, caption_window, windows
from pipeline.records import Rejected


def test_long_clips_are_split_into_equal_windows_of_at_most_30_s():
    assert windows(12.0, 30) == [(0.0, 12.0)]
    assert windows(30.0, 30) == [(0.0, 30.0)]
    assert windows(61.0, 30) == [(0.0, 20.333333), (20.333333, 40.666667), (40.666667, 61.0)]


@pytest.mark.parametrize(
    ("caption", "problem"),
    [
        (Caption("A dog barks twice in a quiet room.", "stop"), None),
        (Caption("   ", "stop"), "empty caption"),
        (Caption("A long description that goes on and", "length"), "caption cut off at max tokens"),
        (Caption("犬が二回吠えています。", "stop"), "caption is not English"),
        (Caption("A café door creaks open and a man says naïvely hello.", "stop"), None),  # a few accents pass
        (Caption("Собака лает дважды.", "stop"), "caption is not English"),
        (Caption("1234 ...", "stop"), "caption is not English"),
    ],
)
def test_caption_problems(caption, problem):
    assert caption_problem(caption) == problem


class ScriptedCaptioner:
    """Answers from a script, recording the seeds it was asked with."""

    name = "scripted"

    def __init__(self, answers: list[Caption]):
        self.answers = list(answers)
        self.seeds: list[int] = []

    def describe(self) -> dict:
        return {"model": "scripted"}

    def caption(self, audio, seed):
        self.seeds.append(seed)
        return self.answers.pop(0)


def test_bad_captions_are_asked_again_with_new_seeds_then_rejected():
    captioner = ScriptedCaptioner([Caption("", "stop"), Caption("犬です", "stop"), Caption("A dog barks.", "stop")])
    assert caption_window(captioner, np.zeros(16000, np.float32), seed=5, attempts=3) == ("A dog barks.", 3)
    assert captioner.seeds[0] == 5 and len(set(captioner.seeds)) == 3
    never = ScriptedCaptioner([Caption("cut", "length")] * 2)
    with pytest.raises(Rejected, match=r"caption cut off at max tokens after 2 attempt\(s\)"):
        caption_window(never, np.zeros(16000, np.float32), seed=5, attempts=2)


# The vllm captioner's own tests are in tests/test_captioner_vllm.py.


# --- end to end: the openai captioner against a local server ---------------------------------------


def test_a_captions_run_writes_shards_that_validate_and_load(tmp_path):
    import datasets

    from pipeline.manifest import read_manifest
    from tests.chat_server import ChatServerDouble
    from tests.conftest import koe, run_captions

    with ChatServerDouble() as server:
        server.script(["500", "japanese", "429:0", "length"])  # retried by the client, or asked again
        run_captions(server.url, tmp_path / "out")
    koe("validate", str(tmp_path / "out"))
    manifest = {row["row_id"]: row for row in read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()}
    assert len(manifest) == 12  # every clip of the collection is accounted for
    kept = {rid for rid, row in manifest.items() if row["status"] == "written"}
    assert kept == {"990000101", "990000102", "990000103", "990000201", "990000202"}  # CC0 and CC BY only
    assert "does not allow commercial use" in manifest["990000104"]["reason"]
    assert manifest["990000205"]["reason"].startswith("audio file")
    shards = sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar"))
    rows = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train")
    assert len(rows) == 5
    for row in rows:
        document = row["json"]
        assert document["caption"] and document["captions"][0]["start"] == 0.0
        assert document["clip"]["credit"] and document["clip"]["license"] and document["clip"]["labels"]
        assert document["captioner"]["model"] == "captioner-double"
        decoded = row["flac"].get_all_samples()
        assert decoded.sample_rate == 44100  # the clip as it was, not the model's 16 kHz


def test_a_long_clip_is_captioned_window_by_window():
    from pipeline.kinds.captions import caption_clip

    captioner = ScriptedCaptioner([Caption(f"Window {i} has rain.", "stop") for i in range(3)])
    heard: list[int] = []
    original = captioner.caption

    def caption(audio, seed):
        heard.append(audio.size)
        return original(audio, seed)

    captioner.caption = caption
    pcm = np.zeros((65 * 44100, 2), dtype=np.int16)  # a stereo clip at its own rate
    windows_ = caption_clip(captioner, pcm, 44100, seed=9, window_seconds=30, attempts=1)
    assert [(w.start, w.end, w.text) for w in windows_] == [
        (0.0, 21.666667, "Window 0 has rain."),
        (21.666667, 43.333333, "Window 1 has rain."),
        (43.333333, 65.0, "Window 2 has rain."),
    ]
    assert all(abs(size - 21.666667 * 16000) <= 1 for size in heard)  # mono 16 kHz, one window each
    assert len(set(captioner.seeds)) == 3


def test_the_captioner_runs_in_a_gpu_actor_pool(tmp_path):
    ray = pytest.importorskip("ray")
    from pipeline.executors import RayExecutor
    from pipeline.recipe import load_recipe
    from pipeline.run import run_recipe
    from tests.chat_server import ChatServerDouble
    from tests.conftest import REPO

    with ChatServerDouble() as server:
        recipe = load_recipe(
            REPO / "recipes" / "captions_fsd50k.yaml",
            ["profile=server", f"captioner.options.base_url={server.url}", "captioner.options.model=captioner-double"]
            + ["captioner.num_gpus=1", "captioner.cpus_per_actor=0", "captioner.concurrency=2"],
        )
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="error")
        try:
            summary = run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
        finally:
            ray.shutdown()
        agents = {r.headers.get("user-agent", "") for r in server.chat_requests}
    assert summary.statuses["written"] == 5 and summary.statuses["rejected"] == 7
    assert agents and all("OpenAI" in agent for agent in agents)


def test_koe_estimate_says_what_it_cannot_forecast_for_captions():
    from tests.conftest import REPO, koe

    result = koe("estimate", str(REPO / "recipes" / "captions_fsd50k.yaml"), "--set", "profile=server", check=False)
    assert result.returncode == 2 and "a captions recipe's audio is its clips" in result.stderr
    assert "Traceback" not in result.stderr
