"""The quality gate: bad renders are caught by the right check, good OpenJTalk renders pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.qc import QualityGate, ReferenceVoices
from pipeline.readings import count_morae, kana_reading
from pipeline.recipe import QCConfig, RenderConfig
from pipeline.records import Rejected, Turn
from pipeline.render import render_turn
from pipeline.speakers import Speaker
from tests.conftest import koe

RATE = 48000
TEXTS = [
    "最近、週末に近所の公園を散歩するようになりました。",
    "日本の伝統的なお正月の過ごし方を教えてください。",
    "はい、そうです。",
    "データベースの設計について、初心者にも分かるように説明してもらえますか？",
]
ESPEAK_REFERENCE = Path(__file__).parent / "data" / "espeak_ng_ja_reference.flac"


@pytest.fixture(scope="module")
def gate(openjtalk):
    return QualityGate(
        QCConfig(), ReferenceVoices(lambda text, s: (openjtalk.synthesize(text, s, 0), openjtalk.sample_rate))
    )


def test_morae_count_small_kana_with_the_one_before():
    assert count_morae("キョーワ") == 3 and count_morae("シャシン") == 3 and count_morae("ガッコー") == 4


def test_good_openjtalk_renders_of_every_speaker_pass(gate, openjtalk, bank_speakers):
    for index, speaker in enumerate(bank_speakers):
        text = TEXTS[index % len(TEXTS)]
        verdict = gate.judge(openjtalk.synthesize(text, speaker, 0), RATE, kana_reading(text), speaker)
        assert verdict.problem is None, (speaker.id, text, verdict.scores)
        assert verdict.scores["speaker_similarity"] > 0.8 and verdict.scores["dnsmos_p808"] > 2.5


@pytest.fixture(scope="module")
def good(openjtalk, bank_speakers):
    return openjtalk.synthesize(TEXTS[0], bank_speakers[0], 0)


def judge(gate, audio, speaker):
    return gate.judge(audio, RATE, kana_reading(TEXTS[0]), speaker)


def test_silence_is_caught_by_the_silence_check(gate, good, bank_speakers):
    assert judge(gate, np.zeros_like(good), bank_speakers[0]).problem == "silence: no speech heard"


def test_a_long_silence_inside_is_caught_by_the_silence_check(gate, good, bank_speakers):
    middle = good.size // 2
    gapped = np.concatenate([good[:middle], np.zeros(2 * RATE, np.float32), good[middle:]])
    verdict = judge(gate, gapped, bank_speakers[0])
    assert verdict.problem.startswith("silence: a ") and verdict.scores["silence_longest_pause"] > 1.5


def test_clipped_audio_is_caught_by_the_level_check(gate, good, bank_speakers):
    verdict = judge(gate, np.clip(good * 20, -1, 1), bank_speakers[0])
    assert verdict.problem.startswith("level: clipped")


def test_a_truncated_render_is_caught_by_the_pace_check(gate, good, bank_speakers):
    verdict = judge(gate, good[: good.size // 3], bank_speakers[0])
    assert verdict.problem.startswith("pace:") and "faster than" in verdict.problem


def test_a_runaway_render_is_caught_by_the_pace_check(gate, good, bank_speakers):
    verdict = judge(gate, np.concatenate([good, good, good]), bank_speakers[0])
    assert verdict.problem.startswith("pace:") and "slower than" in verdict.problem


def test_the_wrong_voice_is_caught_by_the_speaker_check(gate, good, bank_speakers):
    """A speaker whose reference recording is another synthesiser's voice (eSpeak NG): OpenJTalk is not them."""
    espeak = {**bank_speakers[0].model_dump(), "id": "espeak", "reference_audio": ESPEAK_REFERENCE}
    other = Speaker.model_validate(espeak)
    verdict = judge(gate, good, other)
    assert verdict.problem.startswith("speaker: speaker similarity") and verdict.scores["speaker_similarity"] < 0.7


def test_the_gate_trims_the_silence_around_the_speech(gate, good, bank_speakers):
    padded = np.concatenate([np.zeros(RATE, np.float32), good, np.zeros(RATE, np.float32)])
    verdict = judge(gate, padded, bank_speakers[0])
    assert verdict.problem is None and verdict.audio.size < good.size  # OpenJTalk's own silence goes too


class BrokenFirstBackend:
    """OpenJTalk, except that the first render of each text comes out clipped (a bad seed)."""

    deterministic = False  # another seed gives other audio, as a sampling backend's would

    def __init__(self, backend):
        self.backend, self.seen = backend, set()
        self.name, self.sample_rate, self.max_chars = backend.name, backend.sample_rate, backend.max_chars

    def describe(self):
        return self.backend.describe()

    def synthesize(self, text, speaker, seed):
        audio = self.backend.synthesize(text, speaker, seed)
        if text not in self.seen:
            self.seen.add(text)
            return np.clip(audio * 20, -1, 1)
        return audio


def test_a_failing_render_is_rendered_again_then_rejected_with_the_check(gate, openjtalk, bank_speakers):
    turn = Turn("user", TEXTS[1], spoken_text=TEXTS[1], tts_text=TEXTS[1], reading=kana_reading(TEXTS[1]))
    render_turn(turn, bank_speakers[0], BrokenFirstBackend(openjtalk), 7, 24000, RenderConfig(), gate=gate)
    assert turn.seed != 7 and turn.qc["level_clipped_share"] < 1e-4  # the second seed's render was kept (no flat tops)

    class AlwaysClipped(BrokenFirstBackend):
        def synthesize(self, text, speaker, seed):
            return np.clip(self.backend.synthesize(text, speaker, seed) * 20, -1, 1)

    with pytest.raises(Rejected, match=r"level: clipped \(.*\) after 3 render\(s\)"):
        render_turn(turn, bank_speakers[0], AlwaysClipped(openjtalk), 7, 24000, RenderConfig(), gate=gate)


def test_scores_reach_the_manifest_and_koe_qc_shows_their_spread(demo_copy):
    from pipeline.manifest import read_manifest

    rows = read_manifest(demo_copy / "manifest.parquet").to_pylist()
    written = [row for row in rows if row["status"] == "written"]
    assert all(row["qc_dnsmos"] and row["qc_speaker_similarity"] and row["qc_morae_per_second"] for row in written)
    result = koe("qc", str(demo_copy))
    assert "dnsmos_p808" in result.stdout and "0 turn(s) fail" in result.stdout
    assert (demo_copy / "qc_scores.parquet").is_file()
    preview = koe("run", "recipes/demo.yaml", "--output", str(demo_copy), "--where", "qc_dnsmos < 3.3", "--dry-run")
    assert "row" in preview.stdout


def test_the_asr_round_trip_catches_a_render_that_says_something_else(openjtalk, bank_speakers, good, tmp_path):
    """The recognizer is a double (no ASR model here); the reading, the edit distance and the verdict are real."""
    from pipeline.errors import BackendSetupError

    def recognizer_double(audio):
        return "今日は雨が降っています。" if audio.size > 3 * 16000 else TEXTS[2]

    references = ReferenceVoices(lambda text, s: (openjtalk.synthesize(text, s, 0), openjtalk.sample_rate))
    gate = QualityGate(QCConfig(), references, transcribe=recognizer_double)
    verdict = judge(gate, good, bank_speakers[0])
    assert verdict.problem.startswith("asr: the recognizer heard something else") and verdict.scores["asr_cer"] > 0.5
    short = openjtalk.synthesize(TEXTS[2], bank_speakers[0], 0)
    assert gate.judge(short, RATE, kana_reading(TEXTS[2]), bank_speakers[0]).scores["asr_cer"] == 0.0
    with pytest.raises(BackendSetupError, match="ASR model folder .* not found"):
        QualityGate(QCConfig(asr_model_dir=str(tmp_path / "missing")), references)
