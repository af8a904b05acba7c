"""Render: the voiced turns of one dialogue, in order, into one mono 16-bit waveform.

Each turn's offsets in the waveform are written back onto the turn, so the sample JSON can say
where every spoken turn lies in the FLAC. Every kept turn is brought to `render.loudness_lufs`
(BS.1770-4, its gain limited so that the peak stays at -1 dBFS; nothing is ever clipped), and its
measured loudness and the gain applied are written onto the turn too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .audio import Leveled, normalize_loudness, resample, to_int16
from .keys import attempt_seed
from .qc import QualityGate
from .readings import estimate_seconds
from .recipe import RenderConfig
from .records import Alignment, Dialogue, Rejected, Turn
from .speakable import split_for_tts
from .speakers import Speaker
from .timing import timed
from .tts import AligningBackend, EmptyAudio, TTSBackend

Aligner = Callable[[np.ndarray, int, str], Alignment]  # (audio, sample rate, spoken text) -> timed words
# How a turn's pieces (its text split to the backend's length limit) are sent: one after another, or all at
# once through a row's thread pool. Either gives the same list, in the pieces' order.
FanOut = Callable[[Callable[[str], Any], list[str]], list[Any]]


def in_order(call: Callable[[str], Any], pieces: list[str]) -> list[Any]:
    return [call(piece) for piece in pieces]


EDGE_SILENCE_SECONDS = 1.0  # a backend's own silence around the speech (OpenJTalk: 0.3 s on each side)
DETERMINISTIC = "deterministic backend: a re-render would give the same audio"


def implausible(seconds: float, expected: float | None, ratio: tuple[float, float]) -> str | None:
    """Why a render's length does not fit its text (dropped words, runaway), or None.

    The expectation is of speech; a render also holds the backend's silence around it, which
    `EDGE_SILENCE_SECONDS` allows for: without it, a correct はい (0.3 s of speech in 1.0 s) is "too long".
    """
    if seconds <= 0:
        return "no audio"
    if expected:
        if seconds < ratio[0] * expected:
            return f"audio too short for its text ({seconds:.1f} s, expected about {expected:.1f} s)"
        if seconds > ratio[1] * expected + EDGE_SILENCE_SECONDS:
            return f"audio too long for its text ({seconds:.1f} s, expected about {expected:.1f} s)"
    return None


def synthesize_text(
    text: str, speaker: Speaker, backend: TTSBackend, seed: int, fan_out: FanOut = in_order
) -> np.ndarray:
    """One text through the backend, split to its length limit, pieces joined."""
    pieces = fan_out(lambda piece: backend.synthesize(piece, speaker, seed), split_for_tts(text, backend.max_chars))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def synthesize_aligned(
    turn: Turn,
    speaker: Speaker,
    backend: TTSBackend,
    seed: int,
    aligner: Aligner | None,
    fan_out: FanOut = in_order,
) -> tuple[np.ndarray, Alignment]:
    """A turn's audio and its timed words: from the backend when it knows its durations, else by `aligner`."""
    if isinstance(backend, AligningBackend):
        pieces, alignments, offset = [], [], 0
        texts = split_for_tts(turn.tts_text or "", backend.max_chars)
        for audio, alignment in fan_out(lambda piece: backend.synthesize_aligned(piece, speaker, seed), texts):
            alignments.append(alignment.shifted(offset / backend.sample_rate))
            pieces.append(audio)
            offset += audio.size
        if not pieces:
            raise EmptyAudio("nothing to say")
        merged = Alignment(
            alignments[0].unit,
            alignments[0].method,
            [w for a in alignments for w in a.words],
            [p for a in alignments for p in a.pauses],
        )
        return np.concatenate(pieces), merged
    if aligner is None:
        raise ValueError(f"backend {backend.name!r} does not time its words: set duplex.ctc_model_dir")
    audio = synthesize_text(turn.tts_text or "", speaker, backend, seed, fan_out)
    return audio, aligner(audio, backend.sample_rate, turn.spoken_text or "")


def render_turn(
    turn: Turn,
    speaker: Speaker,
    backend: TTSBackend,
    seed: int,
    sample_rate: int,
    config: RenderConfig,
    aligned: bool = False,
    aligner: Aligner | None = None,
    gate: QualityGate | None = None,
    fan_out: FanOut = in_order,
) -> np.ndarray:
    """Render a turn, re-rendering with new seeds while its length does not fit the text.

    Neural TTS fails in known ways (nothing, dropped words, runaway repetition); a length far from
    what the reading predicts catches the gross cases here, before any heavier quality check.
    With `aligned`, the turn's words are timed too (`turn.alignment`, seconds in the returned audio).
    With a `gate`, every render must also pass the quality checks; the kept one's scores are `turn.qc`.
    Each render is leveled (`render.loudness_lufs`) before it is judged, and again once the gate has
    trimmed it, so the gate measures, and the turn keeps, audio at the target loudness.
    A deterministic backend (`backend.deterministic`) is rendered once: what fails, fails again.
    """
    expected = estimate_seconds(turn.reading) if turn.reading else None
    deterministic = bool(getattr(backend, "deterministic", False))  # not said: a sampling backend
    rate = backend.sample_rate

    def level(audio: np.ndarray) -> Leveled:
        return normalize_loudness(audio, rate, config.loudness_lufs)

    problem = "no audio"
    for attempt in range(1 if deterministic else config.max_attempts):
        turn.seed = attempt_seed(seed, attempt)
        alignment = None
        try:
            with timed("render"):
                if aligned:
                    audio, alignment = synthesize_aligned(turn, speaker, backend, turn.seed, aligner, fan_out)
                else:
                    audio = synthesize_text(turn.tts_text or "", speaker, backend, turn.seed, fan_out)
        except EmptyAudio:
            audio = np.zeros(0, dtype=np.float32)
        seconds = audio.size / rate
        if alignment is not None and alignment.words:  # speech only: silence around a short aizuchi dwarfs it
            seconds = alignment.words[-1].end - alignment.words[0].start
        problem = implausible(seconds, expected, config.duration_ratio)
        if problem is None and alignment is not None and not alignment.words:
            problem = "no word could be aligned"
        if problem is not None:
            continue
        words = alignment.words if alignment is not None else []  # duplex keeps just these: they count
        span = (int(words[0].start * rate), int(math.ceil(words[-1].end * rate))) if words else None
        leveled = normalize_loudness(audio, rate, config.loudness_lufs, within=span)
        audio, gain_db = leveled.audio, leveled.gain_db
        if gate is not None:  # timed words must stay where they are: no trimming then
            with timed("qc"):
                verdict = gate.judge(audio, rate, turn.reading or "", speaker, trim=alignment is None, level=level)
            audio, problem, turn.qc = verdict.audio, verdict.problem, verdict.scores
            gain_db += verdict.gain_db
        if problem is None:
            turn.alignment = alignment
            turn.loudness_lufs, turn.gain_db = round(leveled.loudness_lufs, 2), round(gain_db, 2)
            return resample(audio, rate, sample_rate)
    if deterministic:
        raise Rejected(f"{problem} after 1 render ({DETERMINISTIC})")
    raise Rejected(f"{problem} after {config.max_attempts} render(s)")


def render_dialogue(
    dialogue: Dialogue,
    roles: tuple[str, ...],
    speakers: dict[str, Speaker],
    backend: TTSBackend,
    seed: int,
    sample_rate: int,
    config: RenderConfig,
    gate: QualityGate | None = None,
    requests_in_flight: int = 1,
) -> np.ndarray:
    """Voiced turns joined by silence; sets each turn's speaker, seed, start and end.

    With `requests_in_flight` above 1, the dialogue's synthesis requests (every turn, and every piece of a
    turn split to the backend's length limit) are sent up to that many at once: a remote backend then has a
    row's requests at its server together instead of one after another. The pieces are joined in order,
    so the audio is the same, and a rejected turn is reported as the first one in order, as it is one by one.
    """
    turns = dialogue.spoken_turns(roles)

    def render(turn: Turn, fan_out: FanOut) -> np.ndarray:
        try:
            speaker = speakers[turn.role]
            return render_turn(turn, speaker, backend, seed, sample_rate, config, gate=gate, fan_out=fan_out)
        except Rejected as rejected:
            raise Rejected(f"turn {dialogue.turns.index(turn) + 1}: {rejected.reason}") from None

    if requests_in_flight > 1:
        # Two pools: the turns' threads only wait on their pieces, sent through the other, so none starves.
        with (
            ThreadPoolExecutor(max_workers=requests_in_flight) as requests,
            ThreadPoolExecutor(max_workers=max(1, len(turns))) as turn_threads,
        ):

            def at_once(call: Callable[[str], Any], pieces: list[str]) -> list[Any]:
                return list(requests.map(call, pieces))

            futures = [turn_threads.submit(render, turn, at_once) for turn in turns]
            rendered = [future.result() for future in futures]  # the first failure in turn order is raised
    else:
        rendered = [render(turn, in_order) for turn in turns]
    gap = np.zeros(round(config.turn_gap_seconds * sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    position = 0
    for turn, audio in zip(turns, rendered, strict=True):
        if parts:
            parts.append(gap)
            position += gap.size
        turn.speaker = speakers[turn.role].id
        turn.start = round(position / sample_rate, 6)
        position += audio.size
        turn.end = round(position / sample_rate, 6)
        parts.append(audio)
    return to_int16(np.concatenate(parts))
