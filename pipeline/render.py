"""Render: the voiced turns of one dialogue, in order, into one mono 16-bit waveform.

Each turn's offsets in the waveform are written back onto the turn, so the sample JSON can say
where every spoken turn lies in the FLAC.
"""

from __future__ import annotations

import numpy as np

from .audio import resample, to_int16
from .records import Dialogue, Turn
from .speakable import split_for_tts
from .speakers import Speaker
from .tts import TTSBackend


def render_turn(turn: Turn, speaker: Speaker, backend: TTSBackend, seed: int, sample_rate: int) -> np.ndarray:
    pieces = [backend.synthesize(text, speaker, seed) for text in split_for_tts(turn.tts_text or "", backend.max_chars)]
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise RuntimeError(f"{backend.name} returned no audio")
    return resample(audio, backend.sample_rate, sample_rate)


def render_dialogue(
    dialogue: Dialogue,
    roles: tuple[str, ...],
    speakers: dict[str, Speaker],
    backend: TTSBackend,
    seed: int,
    sample_rate: int,
    gap_seconds: float,
) -> np.ndarray:
    """Voiced turns joined by `gap_seconds` of silence; sets each turn's speaker, start and end."""
    gap = np.zeros(round(gap_seconds * sample_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    position = 0
    for turn in dialogue.spoken_turns(roles):
        if parts:
            parts.append(gap)
            position += gap.size
        audio = render_turn(turn, speakers[turn.role], backend, seed, sample_rate)
        turn.speaker = speakers[turn.role].id
        turn.start = round(position / sample_rate, 6)
        position += audio.size
        turn.end = round(position / sample_rate, 6)
        parts.append(audio)
    return to_int16(np.concatenate(parts))
