"""Captions: one sound clip into its original audio, kept losslessly, and English captions of it.

The captioner hears mono 16 kHz audio of at most 30 s; the shard keeps the clip as it was (FLAC
at its own rate and channels). A clip longer than `captioner.window_seconds` is split into equal
windows, each captioned on its own and kept with its times. A caption that is empty, cut off at
max tokens, or not English is asked for again with another seed, up to `captioner.max_attempts`
times; then the clip is rejected with the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import resample
from .captioners import CAPTION_SAMPLE_RATE, Caption, Captioner
from .keys import derived_int
from .records import Rejected

CJK_OR_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
MIN_LATIN_SHARE = 0.9  # of a caption's letters


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    text: str
    attempts: int


def read_clip(path: str | Path) -> tuple[np.ndarray, int]:
    """The clip's samples as stored (int16, frames x channels) and its rate; unreadable or empty is rejected."""
    try:
        pcm, rate = sf.read(path, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, OSError) as exc:
        raise Rejected(f"audio unreadable: {exc}") from None
    if pcm.shape[0] == 0:
        raise Rejected("audio is empty")
    return pcm, rate


def model_input(pcm: np.ndarray, rate: int) -> np.ndarray:
    """What the captioner hears: mono float32 at 16 kHz."""
    return resample(pcm.astype(np.float32).mean(axis=1) / 32768, rate, CAPTION_SAMPLE_RATE)


def windows(seconds: float, longest: float) -> list[tuple[float, float]]:
    """Equal windows of at most `longest` seconds covering the clip (one window when it is short enough)."""
    count = max(1, math.ceil(seconds / longest - 1e-9))
    step = seconds / count
    return [(round(i * step, 6), round(seconds if i == count - 1 else (i + 1) * step, 6)) for i in range(count)]


def caption_problem(caption: Caption) -> str | None:
    """Why a caption cannot be kept, or None."""
    text = caption.text.strip()
    if not text:
        return "empty caption"
    if caption.finish_reason == "length":
        return "caption cut off at max tokens"
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() for c in letters)
    if CJK_OR_KANA.search(text) or not letters or latin < MIN_LATIN_SHARE * len(letters):
        return "caption is not English"
    return None


def caption_window(captioner: Captioner, audio: np.ndarray, seed: int, attempts: int) -> tuple[str, int]:
    """A kept caption and how many tries it took; `Rejected` when no try gave one."""
    problem = ""
    for attempt in range(attempts):
        caption = captioner.caption(audio, derived_int(seed, attempt) if attempt else seed)
        problem = caption_problem(caption)
        if problem is None:
            return caption.text.strip(), attempt + 1
    raise Rejected(f"{problem} after {attempts} attempt(s)")


def caption_clip(
    captioner: Captioner, pcm: np.ndarray, rate: int, seed: int, window_seconds: float, attempts: int
) -> list[Window]:
    heard = model_input(pcm, rate)
    spans = windows(pcm.shape[0] / rate, window_seconds)
    captioned = []
    for index, (start, end) in enumerate(spans):
        piece = heard[int(start * CAPTION_SAMPLE_RATE) : int(end * CAPTION_SAMPLE_RATE)]
        try:
            text, tries = caption_window(captioner, piece, derived_int(seed, "window", index), attempts)
        except Rejected as rejected:
            where = f"window {start:.1f}-{end:.1f} s: " if len(spans) > 1 else ""
            raise Rejected(f"{where}{rejected.reason}") from None
        captioned.append(Window(start, end, text, tries))
    return captioned
