"""Render retries for the TTS failure modes, and the Ray GPU actor pool around the model double in bench/."""

from __future__ import annotations

import json
import random
import tarfile
import threading
import time

import numpy as np
import pytest

from pipeline.keys import attempt_seed
from pipeline.recipe import RenderConfig, load_recipe
from pipeline.records import Dialogue, Rejected, Turn
from pipeline.render import render_dialogue, render_turn
from pipeline.speakable import split_for_tts
from pipeline.speakers import load_bank
from pipeline.tts import EmptyAudio
from tests.conftest import BANK


class ScriptedBackend:
    """A backend whose output per call is scripted: audio lengths in seconds, or None for nothing."""

    name = "scripted"
    sample_rate = 16000
    max_chars = 1000
    deterministic = False  # each call gives what the script says next, as a sampling backend's seeds would

    def __init__(self, seconds_per_call: list[float | None]):
        self.script = list(seconds_per_call)
        self.seeds: list[int] = []

    def describe(self) -> dict:
        return {"model": "scripted"}

    def synthesize(self, text, speaker, seed):
        self.seeds.append(seed)
        seconds = self.script.pop(0)
        if seconds is None:
            raise EmptyAudio("nothing came out")
        return np.full(int(seconds * self.sample_rate), 0.1, dtype=np.float32)


@pytest.fixture(scope="module")
def speaker():
    return load_bank(BANK).speakers[0]


def _turn() -> Turn:
    # 20 morae: about 2.7 s at a natural pace
    return Turn("user", "今日はいい天気ですね", tts_text="キョーワイイテンキデスネ", reading="キョーワイイテンキデスネ")


def test_a_good_render_is_kept_with_the_first_seed(speaker):
    backend = ScriptedBackend([1.6])
    turn = _turn()
    audio = render_turn(turn, speaker, backend, seed=11, sample_rate=16000, config=RenderConfig())
    assert audio.size == int(1.6 * 16000)
    assert backend.seeds == [11] and turn.seed == 11


def test_empty_and_runaway_renders_are_retried_with_new_seeds(speaker):
    backend = ScriptedBackend([None, 40.0, 1.5])
    turn = _turn()
    render_turn(turn, speaker, backend, seed=11, sample_rate=16000, config=RenderConfig())
    assert backend.seeds == [attempt_seed(11, 0), attempt_seed(11, 1), attempt_seed(11, 2)]
    assert len(set(backend.seeds)) == 3
    assert turn.seed == attempt_seed(11, 2)


def test_a_render_that_never_fits_is_rejected_with_the_reason(speaker):
    backend = ScriptedBackend([0.1, 0.1, 0.1])
    with pytest.raises(Rejected, match=r"audio too short for its text \(0\.1 s, expected about .* after 3 render"):
        render_turn(_turn(), speaker, backend, seed=1, sample_rate=16000, config=RenderConfig())
    backend = ScriptedBackend([None, None])
    with pytest.raises(Rejected, match="no audio after 2 render"):
        render_turn(_turn(), speaker, backend, seed=1, sample_rate=16000, config=RenderConfig(max_attempts=2))
    backend = ScriptedBackend([60.0])
    with pytest.raises(Rejected, match="audio too long for its text"):
        render_turn(_turn(), speaker, backend, seed=1, sample_rate=16000, config=RenderConfig(max_attempts=1))


def test_a_deterministic_backend_is_rendered_once_for_a_length_that_does_not_fit(speaker):
    class Fixed(ScriptedBackend):
        deterministic = True  # the same text gives the same audio, whatever the seed

    backend = Fixed([0.1, 0.1, 0.1])
    with pytest.raises(Rejected, match=r"too short .* after 1 render \(deterministic backend: a re-render would give"):
        render_turn(_turn(), speaker, backend, seed=1, sample_rate=16000, config=RenderConfig())
    assert backend.seeds == [1]


def test_the_backends_silence_around_a_one_word_turn_is_not_a_runaway(speaker):
    hai = Turn("user", "はい", tts_text="はい", reading="ハイ")  # 2 morae: about 0.27 s of speech
    render_turn(hai, speaker, ScriptedBackend([1.0]), seed=1, sample_rate=16000, config=RenderConfig())
    with pytest.raises(Rejected, match=r"audio too long for its text \(3\.0 s"):
        render_turn(
            hai, speaker, ScriptedBackend([3.0]), seed=1, sample_rate=16000, config=RenderConfig(max_attempts=1)
        )


def test_backend_errors_are_not_mistaken_for_bad_renders(speaker):
    class Broken(ScriptedBackend):
        def synthesize(self, text, speaker, seed):
            raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        render_turn(_turn(), speaker, Broken([]), seed=1, sample_rate=16000, config=RenderConfig())


class JitteredBackend:
    """The real OpenJTalk backend behind a random delay per call, counting the calls it holds at once: requests
    sent together then finish out of order, as a remote server's do."""

    def __init__(self, backend, short_pieces: int):
        self.backend, self.name, self.sample_rate = backend, backend.name, backend.sample_rate
        self.max_chars = short_pieces  # long turns are split into several pieces
        self.describe = backend.describe
        self.random = random.Random(0)
        self.lock = threading.Lock()
        self.held = self.most_held = 0

    def synthesize(self, text, speaker, seed):
        with self.lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            delay = self.random.uniform(0, 0.05)
        time.sleep(delay)
        try:
            return self.backend.synthesize(text, speaker, seed)
        finally:
            with self.lock:
                self.held -= 1


def _dialogue() -> Dialogue:
    texts = [
        ("user", "キョーワ イイ テンキ デスネ。 サンポニ イキマセンカ。"),
        (
            "assistant",
            "イイデスネ。 コーエンマデ アルキマショー。 ベントーモ モッテ イキマス。 ノミモノワ ワタシガ カイマス。",
        ),
        ("user", "アリガトー ゴザイマス。"),
    ]
    return Dialogue(
        "k", "s", 0, "d", [Turn(role, text, tts_text=text, reading=text.replace(" ", "")) for role, text in texts]
    )


def test_a_rows_requests_sent_at_once_give_the_same_audio_as_one_by_one(openjtalk):
    bank = load_bank(BANK)
    speakers = {"user": bank.speakers[0], "assistant": bank.speakers[1]}
    config = RenderConfig()
    made = {}
    for requests in (1, 6):
        backend = JitteredBackend(openjtalk, short_pieces=16)
        dialogue = _dialogue()
        pcm = render_dialogue(dialogue, ("user", "assistant"), speakers, backend, 5, 24000, config, None, requests)
        made[requests] = (pcm.tobytes(), [(t.start, t.end, t.seed, t.gain_db) for t in dialogue.turns])
        pieces = sum(len(split_for_tts(t.tts_text, backend.max_chars)) for t in dialogue.turns)
        assert pieces == 8 and backend.most_held == min(requests, pieces)  # the cap, not one per turn
    assert made[1] == made[6]


def test_with_requests_at_once_the_first_rejected_turn_in_order_is_reported(speaker):
    class RejectsLongTexts(ScriptedBackend):
        def synthesize(self, text, speaker, seed):
            time.sleep(0.05 if "2" in text else 0)  # the later turn fails first
            return np.zeros(0 if len(text) > 4 else 16000, dtype=np.float32)

    turns = [Turn("user", t, tts_text=t, reading=t) for t in ("アイウ", "エオカキクケコ1", "サシスセソタチ2")]
    with pytest.raises(Rejected, match=r"^turn 2: no audio after 3 render"):
        render_dialogue(
            Dialogue("k", "s", 0, "d", turns),
            ("user",),
            {"user": speaker},
            RejectsLongTexts([]),
            1,
            16000,
            RenderConfig(),
            None,
            4,
        )


def test_gpu_stage_runs_in_an_actor_pool(local_gpu_ray, make_recipe, tmp_path):
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    rows = [{"id": f"r{i}", "conversations": [{"role": "user", "content": f"質問その{i}です。"}]} for i in range(6)]
    calls = tmp_path / "calls"
    calls.mkdir()
    recipe = load_recipe(
        make_recipe(rows),
        [
            "tts.backend=bench.latency_tts_double",
            f"tts.options={json.dumps({'latency_seconds': 0.01, 'calls_dir': str(calls)})}",
            "qc.enabled=false",  # the double's audio is no speech
            "tts.num_gpus=1",
            "tts.cpus_per_actor=0",  # the two local CPUs go to shard tasks
            "tts.concurrency=2",
            "execution.items_in_flight=2",  # each shard task keeps two requests in flight
        ],
    )
    summary = run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    assert summary.statuses["written"] == 6
    served_by = [line.split()[0] for log in calls.iterdir() for line in log.read_text().splitlines()]
    assert len(served_by) == 6 and "none" not in served_by  # every call ran inside an actor
    assert len(set(served_by)) == 2  # one actor per advertised GPU, both used
    with tarfile.open(tmp_path / "out" / "shards" / "t-000000.tar") as tar:
        sample = json.loads(tar.extractfile("src-r0.json").read())
    assert sample["render"]["model"] == "latency-tts-double"


def test_a_model_that_cannot_load_on_a_gpu_actor_stops_the_run_and_fails_no_row(
    local_gpu_ray, make_recipe, reference_bank, tmp_path
):
    """The shard tasks start while the actors load; a failed load cancels them, and no row is marked failed."""
    from pipeline.errors import BackendSetupError
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    rows = [{"id": f"r{i}", "conversations": [{"role": "user", "content": f"質問その{i}です。"}]} for i in range(6)]
    recipe = load_recipe(
        make_recipe(rows, speakers={"bank": str(reference_bank)}),
        [
            "tts.backend=cosyvoice2",
            'tts.options={"model_dir": "/nonexistent/CosyVoice2-0.5B"}',
            "tts.num_gpus=1",
            "tts.cpus_per_actor=0",
        ],
    )
    with pytest.raises(BackendSetupError, match="could not load its backend: .*CosyVoice model folder not found"):
        run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    assert not list((tmp_path / "out" / "shards").glob("*.tar"))
    assert not list((tmp_path / "out" / "_state").glob("*.parquet"))  # no shard recorded its rows as failed


def test_gpu_stage_without_gpus_fails_before_any_work(make_recipe, tmp_path):
    ray = pytest.importorskip("ray")
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="error")
    try:
        rows = [{"id": "a", "conversations": [{"role": "user", "content": "はい"}]}]
        recipe = load_recipe(make_recipe(rows), ["tts.backend=bench.latency_tts_double", "tts.num_gpus=1"])
        with pytest.raises(ValueError, match="needs GPUs, and this Ray cluster has 0"):
            run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    finally:
        ray.shutdown()
