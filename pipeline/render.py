"""Render: the voiced turns of one dialogue, in order, into one mono 16-bit waveform.

Each turn's offsets in the waveform are written back onto the turn, so the sample JSON can say
where every spoken turn lies in the FLAC.
"""

from __future__ import annotations

import numpy as np

from .audio import resample, to_int16
from .keys import derived_int
from .readings import estimate_seconds
from .recipe import RenderConfig
from .records import Dialogue, Rejected, Turn
from .speakable import split_for_tts
from .speakers import Speaker
from .tts import EmptyAudio, TTSBackend


def attempt_seed(seed: int, attempt: int) -> int:
    """The first render uses the sample's seed; each retry a new one derived from it."""
    if attempt == 0:
        return seed
    return derived_int(seed, attempt)


def implausible(seconds: float, expected: float | None, ratio: tuple[float, float]) -> str | None:
    """Why a render's length does not fit its text (dropped words, runaway), or None."""
    if seconds <= 0:
        return "no audio"
    if expected:
        if seconds < ratio[0] * expected:
            return f"audio too short for its text ({seconds:.1f} s, expected about {expected:.1f} s)"
        if seconds > ratio[1] * expected:
            return f"audio too long for its text ({seconds:.1f} s, expected about {expected:.1f} s)"
    return None


def synthesize_text(text: str, speaker: Speaker, backend: TTSBackend, seed: int) -> np.ndarray:
    """One text through the backend, split to its length limit, pieces joined."""
    pieces = [backend.synthesize(piece, speaker, seed) for piece in split_for_tts(text, backend.max_chars)]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def render_turn(
    turn: Turn,
    speaker: Speaker,
    backend: TTSBackend,
    seed: int,
    sample_rate: int,
    config: RenderConfig,
) -> np.ndarray:
    """Render a turn, re-rendering with new seeds while its length does not fit the text.

    Neural TTS fails in known ways (nothing, dropped words, runaway repetition); a length far from
    what the reading predicts catches the gross cases here, before any heavier quality check.
    """
    expected = estimate_seconds(turn.reading) if turn.reading else None
    problem = "no audio"
    for attempt in range(config.max_attempts):
        turn.seed = attempt_seed(seed, attempt)
        try:
            audio = synthesize_text(turn.tts_text or "", speaker, backend, turn.seed)
        except EmptyAudio:
            audio = np.zeros(0, dtype=np.float32)
        problem = implausible(audio.size / backend.sample_rate, expected, config.duration_ratio)
        if problem is None:
            return resample(audio, backend.sample_rate, sample_rate)
    raise Rejected(f"{problem} after {config.max_attempts} render(s)")


def render_dialogue(
    dialogue: Dialogue,
    roles: tuple[str, ...],
    speakers: dict[str, Speaker],
    backend: TTSBackend,
    seed: int,
    sample_rate: int,
    config: RenderConfig,
) -> np.ndarray:
    """Voiced turns joined by silence; sets each turn's speaker, seed, start and end."""
    gap = np.zeros(round(config.turn_gap_seconds * sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    position = 0
    for turn in dialogue.spoken_turns(roles):
        if parts:
            parts.append(gap)
            position += gap.size
        try:
            audio = render_turn(turn, speakers[turn.role], backend, seed, sample_rate, config)
        except Rejected as rejected:
            raise Rejected(f"turn {dialogue.turns.index(turn) + 1}: {rejected.reason}") from None
        turn.speaker = speakers[turn.role].id
        turn.start = round(position / sample_rate, 6)
        position += audio.size
        turn.end = round(position / sample_rate, 6)
        parts.append(audio)
    return to_int16(np.concatenate(parts))
