"""Quality gate: every rendered utterance is measured, trimmed, and kept or rendered again.

TTS fails in known ways: silence or noise around the speech, long silences inside it, clipping or
a wrong level, dropped words or a runaway (too few or too many morae per second), poor quality,
the wrong voice. Each check measures one of these and says what is wrong by the recipe's
thresholds (`qc.*`). The render stage calls the gate after every attempt: a failing utterance is
rendered again with another seed, and after `render.max_attempts` the row is rejected with the
check and its score (at once for a deterministic backend, whose re-render would be the same). The
scores of the kept utterance go into the sample JSON (per turn) and the manifest (per sample), where
`koe run --where` can select on them later.

Short speech (under `qc.min_seconds_for_model_checks`, 1 s) is measured but not judged by the
checks that need more of it: DNSMOS and speaker similarity when less speech is heard, pace when the
reading predicts less (one or two morae are a few VAD frames: their pace is the detector's edges).
In an utterance whose reading predicts under that, silero-vad often hears nothing in a hummed うん;
there the audible sound counts as the speech, so only true silence fails. The turn's `skipped`
score names the checks not judged ("vad" when the audible sound stood in for silero-vad).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from .audio import Leveled, resample
from .listen import speech_segments, voice_embedding
from .readings import count_morae, estimate_seconds
from .recipe import QCConfig
from .speakers import Speaker

QC_RATE = 16000  # silero-vad, DNSMOS and resemblyzer all listen at 16 kHz
SPEAKER_EXCERPT_SECONDS = 6.0  # of the middle of an utterance, for the speaker check
REFERENCE_TEXT = "今日はいい天気ですね。少し散歩に出かけてみましょうか。"  # rendered as the voice's reference
FLAT_TOP = 0.999  # of the peak: a sample this close to it is on a flat top
SILENT_PEAK = 1e-3  # a quieter utterance has no tops to speak of
AUDIBLE_FRAME_SECONDS = 0.01
AUDIBLE_FLOOR_DBFS = -60.0  # quieter frames are silence ...
AUDIBLE_RANGE_DB = 30.0  # ... and so are frames this far under the loudest one


@dataclass
class Utterance:
    """One rendered turn as the checks see it."""

    audio: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    reading: str  # katakana reading of what it should say
    speaker: Speaker
    heard: np.ndarray | None = None  # the audio at QC_RATE, made once
    speech: list[tuple[float, float]] | None = None  # silero-vad's speech segments (seconds), found once

    @property
    def at_qc_rate(self) -> np.ndarray:
        if self.heard is None:
            self.heard = resample(self.audio, self.sample_rate, QC_RATE)
        return self.heard

    @property
    def segments(self) -> list[tuple[float, float]]:
        if self.speech is None:
            self.speech = speech_segments(self.at_qc_rate, QC_RATE)
        return self.speech


class Check(Protocol):
    """Measures an utterance (scores named `<check>_<what>`), then judges the scores by the recipe.

    `needs_speech` says what must last `qc.min_seconds_for_model_checks` for the verdict to count:
    the speech heard ("heard"), the speech the reading predicts ("predicted"), or nothing (None).
    """

    name: str
    needs_speech: str | None

    def measure(self, utterance: Utterance) -> dict[str, float]: ...

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None: ...


class SilenceCheck:
    """silero-vad: where speech starts and ends (the rest is trimmed) and the longest pause inside."""

    name = "silence"
    needs_speech = None

    @staticmethod
    def bounds(config: QCConfig) -> str:
        return f"speech heard, pauses inside it at most {config.max_pause_seconds:g} s"

    def measure(self, utterance: Utterance) -> dict[str, float]:
        segments = utterance.segments
        if not segments:
            return {"speech_start": 0.0, "speech_end": 0.0, "longest_pause": 0.0, "speech_seconds": 0.0}
        pauses = [b[0] - a[1] for a, b in zip(segments, segments[1:], strict=False)]
        return {
            "speech_start": round(segments[0][0], 3),
            "speech_end": round(segments[-1][1], 3),
            "longest_pause": round(max(pauses, default=0.0), 3),
            "speech_seconds": round(sum(b - a for a, b in segments), 3),
        }

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None:
        if scores["speech_seconds"] == 0:
            return "no speech heard"
        if scores["longest_pause"] > config.max_pause_seconds:
            return f"a {scores['longest_pause']:.2f} s silence inside the speech (> {config.max_pause_seconds} s)"
        return None


class LevelCheck:
    """Clipping, DC offset and loudness: numbers any player would notice.

    Clipping is measured as flat tops: the share of samples within 0.1% of the utterance's own peak.
    Audio is scaled (never clipped) before it is judged, so a render the backend clipped shows its
    flat tops at whatever level it was scaled to; natural speech has a handful of such samples
    (at most 0.012% of an OpenJTalk render, measured over the bank), clipped speech percents.
    """

    name = "level"
    needs_speech = None

    @staticmethod
    def bounds(config: QCConfig) -> str:
        low, high = config.rms_dbfs
        return (
            f"flat tops at most {config.max_clipped_share:.2%} of samples, DC offset at most "
            f"{config.max_dc_offset:g}, RMS {low:g}..{high:g} dBFS"
        )

    def measure(self, utterance: Utterance) -> dict[str, float]:
        audio = utterance.audio.astype(np.float64)
        magnitude = np.abs(audio)
        rms = math.sqrt(float(np.mean(audio**2))) if audio.size else 0.0
        peak = float(magnitude.max()) if audio.size else 0.0
        flat = float(np.mean(magnitude >= FLAT_TOP * peak)) if peak > SILENT_PEAK else 0.0
        return {
            "clipped_share": round(flat, 6),
            "dc_offset": round(abs(float(np.mean(audio))) if audio.size else 0.0, 6),
            "rms_dbfs": round(20 * math.log10(rms) if rms > 0 else -120.0, 2),
        }

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None:
        if scores["clipped_share"] > config.max_clipped_share:
            return f"clipped ({scores['clipped_share']:.2%} of samples at the peak)"
        if scores["dc_offset"] > config.max_dc_offset:
            return f"DC offset {scores['dc_offset']:.3f}"
        low, high = config.rms_dbfs
        if not low <= scores["rms_dbfs"] <= high:
            return f"level {scores['rms_dbfs']:.1f} dBFS outside [{low}, {high}]"
        return None


class PaceCheck:
    """Morae per second of speech: too slow is a runaway or stray sound, too fast is dropped words."""

    name = "pace"
    needs_speech = "predicted"

    @staticmethod
    def bounds(config: QCConfig) -> str:
        low, high = config.morae_per_second
        return f"{low:g}..{high:g} morae per second of speech"

    def measure(self, utterance: Utterance) -> dict[str, float]:
        seconds = sum(b - a for a, b in utterance.segments)
        return {"morae_per_second": round(count_morae(utterance.reading) / seconds, 3) if seconds else 0.0}

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None:
        low, high = config.morae_per_second
        pace = scores["morae_per_second"]
        if pace < low:
            return f"{pace:.1f} morae/s, slower than {low} (runaway or extra sound)"
        if pace > high:
            return f"{pace:.1f} morae/s, faster than {high} (truncated or dropped words)"
        return None


@lru_cache(maxsize=1)
def _dnsmos() -> Any:
    """speechmos's DNSMOS models (ONNX, shipped with the package), loaded once per process."""
    from speechmos import dnsmos

    dnsmos.run(np.full(QC_RATE, 0.01, dtype=np.float32), sr=QC_RATE)  # builds and caches its sessions
    return dnsmos.dnsmos


class QualityCheck:
    """DNSMOS. Its P.808 model (about 25 ms a clip here) always runs; the larger SIG/BAK/OVRL model
    (about 210 ms per 9 s window) only with `qc.dnsmos_full`, so QC stays a small part of a render."""

    name = "dnsmos"
    needs_speech = "heard"

    def __init__(self, full: bool):
        self.full = full

    @staticmethod
    def bounds(config: QCConfig) -> str:
        return f"DNSMOS P.808 at least {config.min_dnsmos:g}" + (
            " (SIG/BAK/OVRL also measured)" if config.dnsmos_full else ""
        )

    def measure(self, utterance: Utterance) -> dict[str, float]:
        model = _dnsmos()
        audio = np.clip(utterance.at_qc_rate, -0.999, 0.999)
        if self.full:
            scores = model(audio, QC_RATE, False)
            return {name: round(float(scores[f"{name}_mos"]), 3) for name in ("p808", "ovrl", "sig", "bak")}
        window = int(9.01 * QC_RATE)  # the P.808 model's input, as speechmos builds it
        while 0 < audio.size < window:
            audio = np.append(audio, audio)
        features = model.audio_melspec(audio=audio[:window][:-160]).astype("float32")[np.newaxis]
        return {"p808": round(float(model.p808_onnx_sess.run(None, {"input_1": features})[0][0][0]), 3)}

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None:
        if scores["p808"] < config.min_dnsmos:
            return f"DNSMOS P.808 {scores['p808']:.2f} < {config.min_dnsmos}"
        return None


class SpeakerCheck:
    """resemblyzer: cosine similarity to the assigned speaker's reference voice, both at one loudness."""

    name = "speaker"
    needs_speech = "heard"

    def __init__(self, reference: ReferenceVoices):
        self.reference = reference

    @staticmethod
    def bounds(config: QCConfig) -> str:
        return f"cosine similarity to the speaker's reference at least {config.min_speaker_similarity:g}"

    def measure(self, utterance: Utterance) -> dict[str, float]:
        heard = utterance.at_qc_rate
        excerpt = int(SPEAKER_EXCERPT_SECONDS * QC_RATE)  # a voice is known from a few seconds; cost stays flat
        start = max(0, (heard.size - excerpt) // 2)
        embedding = voice_embedding(heard[start : start + excerpt])
        return {"similarity": round(float(np.dot(embedding, self.reference.embedding(utterance.speaker))), 4)}

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None:
        if scores["similarity"] < config.min_speaker_similarity:
            return f"speaker similarity {scores['similarity']:.2f} < {config.min_speaker_similarity}"
        return None


@lru_cache(maxsize=1)
def load_transcriber(model_dir: str, device: str):
    """A speech recognizer from a local folder (a transformers ASR checkpoint, e.g. Whisper or ReazonSpeech):
    audio at 16 kHz in, text out. Nothing is downloaded; a missing folder or package stops the run."""
    from .errors import BackendSetupError

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise BackendSetupError(f"ASR model folder {folder} not found on this node (or has no config.json)")
    try:
        from transformers import pipeline
    except ImportError as exc:
        raise BackendSetupError(f"the ASR check needs transformers ({exc}): pip install 'koe[align]'") from None
    recognizer = pipeline("automatic-speech-recognition", model=str(folder), device=device)
    return lambda audio: recognizer({"raw": audio, "sampling_rate": QC_RATE})["text"]


class TranscriptCheck:
    """ASR round trip: the character error rate of what a recognizer hears, on katakana readings (so that
    kanji spelled another way is no error)."""

    name = "asr"
    needs_speech = None

    def __init__(self, transcribe):
        self.transcribe = transcribe  # 16 kHz float32 audio -> text

    @staticmethod
    def bounds(config: QCConfig) -> str:
        return f"ASR round trip ({config.asr_model_dir}) with a reading CER at most {config.max_cer:g}"

    def measure(self, utterance: Utterance) -> dict[str, float]:
        """The transcript goes through the same text stage as a corpus turn (a recognizer writes digits and
        English too), and is scored as the gold set is (`character_error_rate`: spelling variants fold)."""
        from .readings import character_error_rate, kana_reading
        from .speakable import make_speakable

        heard = kana_reading(make_speakable(self.transcribe(utterance.at_qc_rate)))
        return {"cer": round(character_error_rate([(heard, utterance.reading)]), 4)}

    def problem(self, scores: dict[str, float], config: QCConfig) -> str | None:
        if scores["cer"] > config.max_cer:
            return f"the recognizer heard something else (CER {scores['cer']:.2f} > {config.max_cer})"
        return None


class ReferenceVoices:
    """Each speaker's reference embedding: their recording, or (embedded bank) the backend saying a fixed text."""

    def __init__(self, synthesize):
        self.synthesize = synthesize  # (text, speaker) -> (audio, rate), used when a speaker has no recording
        self._cache: dict[str, np.ndarray] = {}

    def embedding(self, speaker: Speaker) -> np.ndarray:
        if speaker.id not in self._cache:
            if speaker.reference_audio:
                audio, rate = sf.read(Path(speaker.reference_audio), dtype="float32", always_2d=True)
                audio = audio.mean(axis=1)
            else:
                audio, rate = self.synthesize(REFERENCE_TEXT, speaker)
            self._cache[speaker.id] = voice_embedding(resample(audio, rate, QC_RATE))
        return self._cache[speaker.id]


@dataclass
class Verdict:
    audio: np.ndarray  # trimmed to the speech, with `qc.edge_seconds` kept on both sides (and leveled)
    scores: dict[str, float | str]  # `<check>_<what>` numbers, and `skipped`: the checks not judged
    problem: str | None  # "<check>: <why>", or None when every check passed
    gain_db: float = 0.0  # applied by `level` to the trimmed audio


def audible_segments(audio: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """From the first to the last audible 10 ms frame (over -60 dBFS and within 30 dB of the loudest), or none.

    Stands in for silero-vad on short utterances it does not hear (a hummed うん): true silence stays silent.
    """
    frame = int(AUDIBLE_FRAME_SECONDS * sample_rate)
    count = audio.size // frame
    if count == 0:
        return []
    power = np.mean(np.square(audio[: count * frame].reshape(count, frame), dtype=np.float64), axis=1)
    level = 10 * np.log10(np.maximum(power, 1e-20))
    audible = np.flatnonzero((level > AUDIBLE_FLOOR_DBFS) & (level > level.max() - AUDIBLE_RANGE_DB))
    if audible.size == 0:
        return []
    return [(audible[0] * frame / sample_rate, (audible[-1] + 1) * frame / sample_rate)]


def gate_checks(config: QCConfig, transcribes: bool = False) -> list[type]:
    """The checks the gate runs on every utterance, in order; `koe describe` lists the same."""
    checks: list[type] = [SilenceCheck, LevelCheck, PaceCheck]
    if config.dnsmos:
        checks.append(QualityCheck)
    if config.speaker_similarity:
        checks.append(SpeakerCheck)
    if transcribes or config.asr_model_dir:
        checks.append(TranscriptCheck)
    return checks


class QualityGate:
    def __init__(self, config: QCConfig, references: ReferenceVoices, transcribe=None):
        """`transcribe` (16 kHz audio -> text) stands in for the recognizer of `qc.asr_model_dir` in tests."""
        self.config = config
        made = {
            QualityCheck: lambda: QualityCheck(config.dnsmos_full),
            SpeakerCheck: lambda: SpeakerCheck(references),
            TranscriptCheck: lambda: TranscriptCheck(
                transcribe or load_transcriber(config.asr_model_dir, config.asr_device)
            ),
        }
        self.checks: list[Check] = [made.get(check, check)() for check in gate_checks(config, transcribe is not None)]

    def judge(
        self,
        audio: np.ndarray,
        sample_rate: int,
        reading: str,
        speaker: Speaker,
        trim: bool = True,
        level: Callable[[np.ndarray], Leveled] | None = None,
    ) -> Verdict:
        """Trim the utterance to its speech (unless its words are timed in it), measure it, and say the first
        problem found (if any) by the checks that can judge speech this short (see the module docstring).

        `level` (the render stage's loudness normalization) is applied to the trimmed audio before it is
        measured, so that the scores are those of the audio kept."""
        shortest = self.config.min_seconds_for_model_checks
        predicted = estimate_seconds(reading) if reading else 0.0
        utterance = Utterance(audio, sample_rate, reading, speaker)
        skipped: list[str] = []
        if not utterance.segments and predicted < shortest:
            utterance.speech = audible_segments(utterance.at_qc_rate, QC_RATE)
            if utterance.speech:
                skipped.append("vad")
        gain_db = 0.0
        if trim and utterance.segments:  # trimmed: the speech, `edge_seconds` before and after it, and nothing else
            edge = self.config.edge_seconds
            begin = max(0, int((utterance.segments[0][0] - edge) * sample_rate))
            end = min(audio.size, int(math.ceil((utterance.segments[-1][1] + edge) * sample_rate)))
            shift = begin / sample_rate
            heard = utterance.at_qc_rate[int(shift * QC_RATE) : int(math.ceil(end / sample_rate * QC_RATE))]
            speech = [(a - shift, b - shift) for a, b in utterance.segments]
            piece = audio[begin:end]
            if level is not None:
                leveled = level(piece)
                piece, gain_db = leveled.audio, leveled.gain_db
                heard = (heard * 10 ** (gain_db / 20)).astype(np.float32)  # resampling is linear: the same gain
            utterance = Utterance(piece, sample_rate, reading, speaker, heard=heard, speech=speech)
        heard_seconds = sum(b - a for a, b in utterance.segments)
        too_short = {"heard": heard_seconds < shortest, "predicted": predicted < shortest, None: False}
        scores: dict[str, float | str] = {}
        problem = None
        for check in self.checks:
            measured = check.measure(utterance)
            scores.update({f"{check.name}_{name}": value for name, value in measured.items()})
            if too_short[check.needs_speech]:
                skipped.append(check.name)
            elif problem is None and (why := check.problem(measured, self.config)):
                problem = f"{check.name}: {why}"
        scores["skipped"] = ",".join(skipped)
        return Verdict(utterance.audio, scores, problem, gain_db)


SAMPLE_SCORES = {  # manifest column: (turn score, worst is the lowest?)
    "qc_dnsmos": ("dnsmos_p808", True),
    "qc_speaker_similarity": ("speaker_similarity", True),
    "qc_longest_pause": ("silence_longest_pause", False),
    "qc_morae_per_second": ("pace_morae_per_second", True),
    "qc_rms_dbfs": ("level_rms_dbfs", True),
}


def judged(scores: dict[str, float | str], name: str) -> bool:
    """Whether the check behind score `name` (`<check>_<what>`) judged this turn (short turns skip some)."""
    return name in scores and name.split("_", 1)[0] not in str(scores.get("skipped", "")).split(",")


def sample_scores(turn_scores: list[dict[str, float | str]]) -> dict[str, float | None]:
    """The manifest's QC columns: each score's worst value over a sample's turns, of the checks that judged them."""
    columns: dict[str, float | None] = {}
    for column, (score, lowest) in SAMPLE_SCORES.items():
        values = [scores[score] for scores in turn_scores if judged(scores, score)]
        columns[column] = (min(values) if lowest else max(values)) if values else None
    return columns


@lru_cache(maxsize=4)
def make_gate(config: QCConfig, backend) -> QualityGate | None:
    """The recipe's gate; voices without a recording are referenced by `backend` saying a fixed text.

    One per process and backend, so the reference voices are made once, not once per shard job.
    """
    if not config.enabled:
        return None
    references = ReferenceVoices(lambda text, speaker: (backend.synthesize(text, speaker, 0), backend.sample_rate))
    return QualityGate(config, references)
