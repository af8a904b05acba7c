"""Gain staging, deterministic backends and short utterances, on the real OpenJTalk backend and the real gate.

No valid row may be lost to a render artefact: a render whose HTS peaks overshoot int16 is scaled, not
clipped; every kept turn is at the recipe's loudness; a deterministic backend is not rendered again for a
check the same audio would fail; one-word turns are kept in every voice of the bank.
"""

from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import pyopenjtalk
import pytest
import soundfile as sf

from pipeline.audio import PEAK_CEILING, decode_flac, loudness_lufs, normalize_loudness
from pipeline.kinds import kind_named
from pipeline.kinds.duplex import CHANNELS, DuplexComposer
from pipeline.kinds.speech import speak_turns
from pipeline.qc import make_gate
from pipeline.readings import kana_reading
from pipeline.recipe import DuplexConfig, QCConfig, RenderConfig, load_recipe
from pipeline.records import Dialogue, Rejected, SourceItem, Turn
from pipeline.render import render_turn
from pipeline.speakers import assign_speakers

RATE = 24000
TARGET = RenderConfig().loudness_lufs
LOUD = "おはよう"  # HTS peaks 1.7-2.4x int16 full scale in every voice of the bank (raw peaks 55639-79107)
SHORT = ["はい", "そうですね", "おはよう", "うん", "ええ", "いいえ", "なるほど", "へえ", "ね", "えっ"]  # 1-4 morae
LONG = [
    "最近、週末に近所の公園を散歩するようになりました。",
    "データベースの設計について、初心者にも分かるように説明してもらえますか？",
]


@pytest.fixture(scope="module")
def gate(openjtalk):
    """The recipe's gate with the default thresholds, as `koe run` makes it."""
    return make_gate(QCConfig(), openjtalk)


def _turn(text: str) -> Turn:
    return Turn("user", text, spoken_text=text, tts_text=text, reading=kana_reading(text))


def _full_scale(pcm: np.ndarray) -> int:
    return int(np.sum(np.abs(pcm.astype(np.int32)) >= 32767))


def test_a_render_over_int16_is_kept_unclipped_and_its_gain_is_in_the_json(make_recipe):
    turns = [{"role": "user", "content": LOUD}, {"role": "assistant", "content": "はい"}]
    rows = [{"id": "loud", "conversations": turns}]
    recipe = load_recipe(make_recipe(rows))
    maker = kind_named(recipe.kind).row_maker(recipe)
    item = SourceItem("src", 0, rows[0], "src-loud", "loud")
    voice = assign_speakers(maker.bank, item.key, recipe.seed)["user"].openjtalk
    raw, _ = pyopenjtalk.tts(LOUD, speed=voice.speed, half_tone=voice.half_tone)
    assert np.abs(raw).max() > 32767 * 1.5  # the raw render overshoots int16: clipping it lost this row before
    members, row = maker.make(item, "t-000000")
    assert row.status == "written"
    pcm, rate = decode_flac(members["flac"])
    assert _full_scale(pcm) == 0 and np.abs(pcm).max() <= PEAK_CEILING * 32768 + 1
    turn = json.loads(members["json"])["turns"][0]
    # the backend's output (scaled under -1 dBFS) is still louder than the target: brought down to it
    assert turn["loudness_lufs"] > TARGET + 3 and turn["gain_db"] < -3
    assert abs(turn["loudness_lufs"] + turn["gain_db"] - TARGET) < 1.0
    assert abs(loudness_lufs(pcm[:, 0].astype(np.float64) / 32768, rate) - TARGET) < 1.0
    assert turn["qc"]["level_clipped_share"] < 1e-4 and row.qc_rms_dbfs > -30


def test_rendered_turns_land_within_1_lu_of_the_target(openjtalk, bank_speakers, gate):
    measured = []
    for speaker in bank_speakers[::3]:
        for text in [LOUD, "わあああ！", *LONG]:
            turn = _turn(text)
            audio = render_turn(turn, speaker, openjtalk, 1, RATE, RenderConfig(), gate=gate)
            assert audio.size >= 0.4 * RATE and np.abs(audio).max() <= PEAK_CEILING
            measured.append(pyloudnorm.Meter(RATE).integrated_loudness(audio.astype(np.float64)))
    assert max(abs(value - TARGET) for value in measured) < 1.0, measured


def test_a_lower_target_and_no_target(openjtalk, bank_speakers):
    turn = _turn(LONG[0])
    quiet = render_turn(turn, bank_speakers[3], openjtalk, 1, RATE, RenderConfig(loudness_lufs=-30.0))
    assert abs(loudness_lufs(quiet, RATE) + 30) < 1.0 and turn.gain_db < -10
    as_given = render_turn(turn, bank_speakers[3], openjtalk, 1, RATE, RenderConfig(loudness_lufs=None))
    assert turn.gain_db == 0.0 and abs(loudness_lufs(as_given, RATE) - turn.loudness_lufs) < 0.5


def test_the_peak_limit_keeps_normalization_from_clipping():
    clicks = np.zeros(48000, dtype=np.float32)
    clicks[::4800] = 0.5  # peaky: reaching -10 LUFS would need peaks far over full scale
    leveled = normalize_loudness(clicks, 48000, -10.0)
    assert np.isclose(np.abs(leveled.audio).max(), PEAK_CEILING) and leveled.loudness_lufs < -30
    short = 0.3 * np.sin(np.arange(4800) / 8).astype(np.float32)  # 0.1 s: shorter than one BS.1770 block
    assert abs(loudness_lufs(normalize_loudness(short, 48000, -23.0).audio, 48000) + 23) < 0.01


class Counting:
    """OpenJTalk behind a counter; `deterministic` as the test says (a double that samples otherwise)."""

    def __init__(self, backend, deterministic: bool):
        self.backend, self.deterministic, self.calls = backend, deterministic, 0
        self.name, self.sample_rate, self.max_chars = backend.name, backend.sample_rate, backend.max_chars

    def describe(self):
        return self.backend.describe()

    def synthesize(self, text, speaker, seed):
        self.calls += 1
        return self.backend.synthesize(text, speaker, seed)


@pytest.fixture(scope="module")
def strict_gate(openjtalk):
    """The real gate with a speaker threshold no render reaches: every render fails it."""
    return make_gate(QCConfig(min_speaker_similarity=0.999), openjtalk)


def test_a_deterministic_backend_failing_a_check_is_rendered_once_and_rejected_saying_why(
    openjtalk, bank_speakers, strict_gate
):
    counting = Counting(openjtalk, deterministic=True)
    with pytest.raises(Rejected) as rejected:
        render_turn(_turn(LONG[0]), bank_speakers[0], counting, 5, RATE, RenderConfig(), gate=strict_gate)
    assert counting.calls == 1
    reason = rejected.value.reason
    assert reason.startswith("speaker: speaker similarity")
    assert reason.endswith(" after 1 render (deterministic backend: a re-render would give the same audio)")
    assert openjtalk.deterministic is True


def test_a_sampling_backend_is_still_rendered_again_with_new_seeds(openjtalk, bank_speakers, strict_gate):
    counting = Counting(openjtalk, deterministic=False)
    with pytest.raises(Rejected, match=r"^speaker: .* after 3 render\(s\)$"):
        render_turn(_turn(LONG[0]), bank_speakers[0], counting, 5, RATE, RenderConfig(), gate=strict_gate)
    assert counting.calls == 3


def test_short_turns_are_kept_in_every_voice_through_the_full_gate(openjtalk, bank_speakers, gate):
    kept, skipped = 0, {}
    for text in SHORT:
        for speaker in bank_speakers:
            turn = _turn(text)
            render_turn(turn, speaker, openjtalk, 1, RATE, RenderConfig(), gate=gate)  # raises Rejected if not kept
            kept += 1
            skipped[(text, speaker.id)] = set(turn.qc["skipped"].split(","))
    assert kept == len(SHORT) * 20
    assert all({"dnsmos", "speaker", "pace"} <= checks for checks in skipped.values())
    assert any("vad" in checks for (text, _), checks in skipped.items() if text == "うん")  # silero-vad missed it


def test_short_duplex_turns_are_kept_in_every_voice(openjtalk, bank_speakers, gate):
    for text in ["はい", "うん", "ええ"]:
        for speaker in bank_speakers:
            turn = _turn(text)
            audio = render_turn(turn, speaker, openjtalk, 1, RATE, RenderConfig(), aligned=True, gate=gate)
            assert turn.alignment.words and np.abs(audio).max() <= PEAK_CEILING


def test_long_turns_are_judged_by_every_check_and_short_silence_still_fails(openjtalk, bank_speakers, gate):
    turn = _turn(LONG[1])
    render_turn(turn, bank_speakers[5], openjtalk, 1, RATE, RenderConfig(), gate=gate)
    assert turn.qc["skipped"] == ""
    silent = gate.judge(np.zeros(48000, dtype=np.float32), 48000, "ウン", bank_speakers[5])
    assert silent.problem == "silence: no speech heard"


def _compose(backend, voices, **duplex):
    composer = DuplexComposer(backend, RenderConfig(), DuplexConfig.model_validate(duplex), RATE, False, None)
    dialogue = Dialogue("t-0", "t", 0, "0", [Turn(role, text) for role, text in DUPLEX_TURNS])
    speak_turns(dialogue, tuple(CHANNELS), 600, tts_reads_kana=False)
    return composer.compose(dialogue, voices, seed=11)


DUPLEX_TURNS = [
    ("user", "おはよう！最近、週末に近所の公園を散歩するようになりました。季節の花がきれいで、気分転換になります。"),
    ("assistant", "わあああ！それは素敵ですね。散歩は体にも心にも良いと言われています。どんな花が咲いていましたか。"),
]
BUSY = {"aizuchi": {"rate_per_minute": 40, "min_turn_seconds": 2.0}}


def test_duplex_turns_and_aizuchi_are_level_matched_and_the_mix_never_clips(openjtalk, bank_speakers, tmp_path):
    voices = {"user": bank_speakers[19], "assistant": bank_speakers[9]}
    clean = _compose(openjtalk, voices, **BUSY)
    assert _full_scale(clean.pcm) == 0
    levels = {}
    for event in clean.events:
        piece = clean.pcm[int(event.start * RATE) : int(event.end * RATE), event.channel].astype(np.float64) / 32768
        if piece.size >= 0.4 * RATE:
            levels.setdefault(event.kind, []).append(loudness_lufs(piece, RATE))
    assert set(levels) == {"turn", "aizuchi"}
    assert all(abs(value - TARGET) < 1.0 for values in levels.values() for value in values), levels

    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hum.wav", 0.3 * np.sin(np.arange(RATE) * 2 * np.pi * 60 / RATE), RATE)
    loud = {"enabled": True, "noise_dir": str(noise), "gain_db": [15, 15], "echo_gain": [0.2, 0.2]}
    augmented = _compose(openjtalk, voices, **BUSY, augment=loud)
    applied = augmented.augmentation
    assert applied["gain_db"] == 15.0 and applied["peak_limit_db"] < -6  # +15 dB would have clipped by 6 dB and more
    assert _full_scale(augmented.pcm) == 0
    assert np.abs(augmented.pcm[:, CHANNELS["user"]]).max() == round(PEAK_CEILING * 32768)
    assert np.array_equal(augmented.pcm[:, CHANNELS["assistant"]], clean.pcm[:, CHANNELS["assistant"]])
    quiet = _compose(openjtalk, voices, **BUSY, augment={"enabled": True, "gain_db": [-6, -6]})
    assert quiet.augmentation["peak_limit_db"] == 0.0
