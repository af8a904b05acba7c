"""Hearing audio: where there is speech (silero-vad) and whose voice it is (resemblyzer).

One module for what the quality gate, the duplex channel check and diarization all listen with.
`speech_segments` finds speech in one channel; `activity_outside` and `planned_uncovered` compare
it with where speech was planned; `voice_embedding` is a voice's fingerprint at a fixed loudness.
Heavy imports (torch, silero-vad, resemblyzer) happen on first use, so the interval functions cost
nothing to import.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from .audio import normalize_loudness, resample

Interval = tuple[float, float]

VAD_RATE = 16000  # silero-vad, resemblyzer and pyannote all work at 16 kHz
SPEAKER_LUFS = -23.0  # voices are embedded at this loudness (so the speaker check compares like with like)


# --- interval algebra (seconds) ---------------------------------------------------------------


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping and non-empty: the form the other interval functions expect."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def subtract_intervals(base: Iterable[Interval], removal: Iterable[Interval]) -> list[Interval]:
    """The parts of `base` that no interval of `removal` covers."""
    remaining = merge_intervals(base)
    for cut_start, cut_end in merge_intervals(removal):
        pieces: list[Interval] = []
        for start, end in remaining:
            if cut_end <= start or cut_start >= end:
                pieces.append((start, end))
                continue
            if start < cut_start:
                pieces.append((start, cut_start))
            if cut_end < end:
                pieces.append((cut_end, end))
        remaining = pieces
    return remaining


def intersect_intervals(first: Iterable[Interval], second: Iterable[Interval]) -> list[Interval]:
    """Where both sets of intervals cover the time."""
    a, b = merge_intervals(first), merge_intervals(second)
    common: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            common.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return common


def _widen(intervals: Iterable[Interval], by: float) -> list[Interval]:
    return merge_intervals((start - by, end + by) for start, end in intervals)


def activity_outside(segments: list[Interval], planned: list[Interval], tolerance: float) -> list[Interval]:
    """Speech found more than `tolerance` seconds away from every planned interval (leaks, echoes, stray noise)."""
    return subtract_intervals(segments, _widen(planned, tolerance))


def planned_uncovered(planned: list[Interval], segments: list[Interval], tolerance: float) -> list[Interval]:
    """Planned speech with no speech found within `tolerance` seconds (a silent or truncated render)."""
    return subtract_intervals(planned, _widen(segments, tolerance))


# --- voice activity ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _silero() -> tuple[Any, Callable[..., list[dict[str, int]]]]:
    """The ONNX model, loaded once per process; importing silero_vad sets torch to one thread, so undo that."""
    import torch

    threads = torch.get_num_threads()
    import silero_vad

    torch.set_num_threads(threads)
    with warnings.catch_warnings():
        # silero_vad 6.2 locates its model with a deprecated importlib.resources call
        warnings.filterwarnings("ignore", message="path is deprecated", category=DeprecationWarning)
        model = silero_vad.load_silero_vad(onnx=True)
    return model, silero_vad.get_speech_timestamps


def speech_segments(
    audio: np.ndarray, sample_rate: int, *, threshold: float = 0.5, min_silence_ms: int = 100, min_speech_ms: int = 60
) -> list[Interval]:
    """Where silero-vad hears speech in mono float32 audio in [-1, 1] at any rate: (start, end) in seconds."""
    if audio.ndim != 1:
        raise ValueError(f"speech_segments takes mono audio (one channel at a time), got shape {audio.shape}")
    import torch

    samples = resample(np.asarray(audio, dtype=np.float32), sample_rate, VAD_RATE)
    if samples.size == 0:
        return []
    model, get_speech_timestamps = _silero()
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(samples)),
        model,
        threshold=threshold,
        sampling_rate=VAD_RATE,
        min_speech_duration_ms=min_speech_ms,
        min_silence_duration_ms=min_silence_ms,
    )
    return [(stamp["start"] / VAD_RATE, stamp["end"] / VAD_RATE) for stamp in stamps]


@lru_cache(maxsize=1)
def voice_encoder() -> Any:
    """resemblyzer's encoder (its weights ship in the package), once per process."""
    with warnings.catch_warnings():
        # webrtcvad, which resemblyzer imports, still imports the deprecated pkg_resources
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        # and resemblyzer itself a deprecated scipy.ndimage namespace
        warnings.filterwarnings("ignore", message="Please import `binary_dilation`", category=DeprecationWarning)
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


def voice_embedding(audio: np.ndarray) -> np.ndarray:
    """resemblyzer's embedding of 16 kHz audio brought to `SPEAKER_LUFS` first: its features are mel power
    without a log, so a level change alone moves the cosine (a tenth of the amplitude: 0.92 -> 0.68)."""
    leveled = normalize_loudness(audio, VAD_RATE, SPEAKER_LUFS).audio
    return voice_encoder().embed_utterance(leveled)
