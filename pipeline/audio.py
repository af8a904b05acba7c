"""Audio helpers shared by rendering and validation: resampling, 16-bit conversion, FLAC bytes."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
import soxr


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] to 16-bit PCM; resampling can overshoot, so clip first."""
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def encode_flac(pcm16: np.ndarray, sample_rate: int) -> bytes:
    """Lossless and deterministic for the same samples (same libsndfile)."""
    buffer = io.BytesIO()
    sf.write(buffer, pcm16, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    return audio, rate
