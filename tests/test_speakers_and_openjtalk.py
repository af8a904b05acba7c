import os
from collections import Counter

import numpy as np
import pytest

from pipeline.audio import to_int16
from pipeline.recipe import RenderConfig
from pipeline.records import Turn
from pipeline.render import render_turn
from pipeline.speakers import assign_speakers, load_bank
from pipeline.tts import load_backend
from tests.conftest import BANK


@pytest.fixture(scope="module")
def bank():
    return load_bank(BANK)


@pytest.fixture(scope="module")
def backend():
    return load_backend("openjtalk", {"max_chars": 200})


def test_bank_has_20_distinct_embedded_voices(bank):
    assert len(bank.speakers) == 20
    assert len({(s.openjtalk.half_tone, s.openjtalk.speed) for s in bank.speakers}) == 20


def test_assignment_is_deterministic_balanced_and_never_shares(bank):
    keys = [f"src-{i}" for i in range(4000)]
    first = [assign_speakers(bank, k, 1) for k in keys]
    again = [assign_speakers(bank, k, 1) for k in keys]
    assert [(a["user"].id, a["assistant"].id) for a in first] == [(a["user"].id, a["assistant"].id) for a in again]
    assert all(a["user"].id != a["assistant"].id for a in first)
    users = Counter(a["user"].id for a in first)
    assert set(users) == {s.id for s in bank.speakers}
    assert max(users.values()) < 1.35 * 4000 / 20 and min(users.values()) > 0.65 * 4000 / 20
    other_seed = [assign_speakers(bank, k, 2)["user"].id for k in keys]
    assert other_seed != [a["user"].id for a in first]


def _median_f0(audio: np.ndarray, rate: int) -> float:
    """Median F0 of voiced frames (YIN's cumulative-mean-normalized difference), to compare pitch."""
    frame, f0s = int(0.04 * rate), []
    taus = np.arange(1, int(rate / 60))
    for start in range(0, audio.size - 2 * frame, frame):
        x = audio[start : start + 2 * frame].astype(np.float64)
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        diff = np.array([np.sum((x[:frame] - x[t : t + frame]) ** 2) for t in taus])
        normalized = diff * taus / np.maximum(np.cumsum(diff), 1e-12)
        below = np.flatnonzero(normalized < 0.15)
        if below.size:
            i = below[0]
            while i + 1 < normalized.size and normalized[i + 1] < normalized[i]:
                i += 1
            f0s.append(rate / taus[i])
    return float(np.median(f0s))


def test_openjtalk_renders_real_speech_at_the_recipe_rate(bank, backend):
    turn = Turn(role="user", text="", tts_text="今日はいい天気ですね。散歩に行きましょう。")
    audio = render_turn(turn, bank.speakers[4], backend, seed=0, sample_rate=24000, config=RenderConfig())
    assert audio.dtype == np.float32
    assert 1.5 < audio.size / 24000 < 6.0
    assert np.abs(audio).max() <= 1.0 and np.sqrt(np.mean(audio**2)) > 0.02
    audio16k = render_turn(turn, bank.speakers[4], backend, seed=0, sample_rate=16000, config=RenderConfig())
    assert abs(audio16k.size / 16000 - audio.size / 24000) < 0.01


def test_speaker_variants_differ_in_pitch_and_speed(bank, backend):
    turn = Turn(role="user", text="", tts_text="あらゆる現実を、すべて自分のほうへねじ曲げたのだ。")
    low, high = bank.by_id("spk01"), bank.by_id("spk10")  # -4 and +5 semitones, same speed
    f_low = _median_f0(render_turn(turn, low, backend, 0, 24000, RenderConfig()), 24000)
    f_high = _median_f0(render_turn(turn, high, backend, 0, 24000, RenderConfig()), 24000)
    assert 1.5 < f_high / f_low < 1.85  # 9 semitones apart is a ratio of 2 ** (9 / 12) = 1.68
    slow = render_turn(turn, bank.by_id("spk05"), backend, 0, 24000, RenderConfig())  # 0.92x
    fast = render_turn(turn, bank.by_id("spk15"), backend, 0, 24000, RenderConfig())  # 1.08x
    assert slow.size > fast.size * 1.1


def test_conversion_to_16_bit_clips_instead_of_wrapping():
    loud = np.array([1.7, -1.7, 0.5, -1.0, 1.0], dtype=np.float32)
    pcm = to_int16(loud)
    assert pcm.tolist() == [32767, -32768, 16384, -32768, 32767]


def test_openjtalk_is_deterministic(bank, backend):
    a = backend.synthesize("繰り返しても同じ音です。", bank.speakers[0], seed=1)
    b = backend.synthesize("繰り返しても同じ音です。", bank.speakers[0], seed=2)
    assert np.array_equal(a, b)


def test_a_bank_is_parsed_once_per_process_until_its_file_changes(tmp_path):
    bank_file = tmp_path / "bank.yaml"
    bank_file.write_text(BANK.read_text(encoding="utf-8"), encoding="utf-8")
    first = load_bank(bank_file)
    assert load_bank(bank_file) is first  # fingerprint, preflight and every shard job ask for it
    edited = BANK.read_text(encoding="utf-8").replace("speakers:", "speakers:  # edited", 1)
    bank_file.write_text(edited, encoding="utf-8")
    later = bank_file.stat().st_mtime_ns + 1_000_000  # a different time even on a coarse file system clock
    os.utime(bank_file, ns=(later, later))
    assert load_bank(bank_file) is not first and load_bank(bank_file).speakers == first.speakers
