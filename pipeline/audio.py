"""Audio helpers shared by rendering and validation: resampling, gain staging, 16-bit conversion, FLAC bytes.

Gain staging: koe never clips what a backend renders. Audio over the peak ceiling (-1 dBFS) is
scaled down whole (`peak_safe`), and each kept utterance is brought to the recipe's loudness
(`normalize_loudness`, ITU-R BS.1770-4 through pyloudnorm) with its gain limited so that the peak
stays under the same ceiling.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

PEAK_CEILING_DBFS = -1.0  # highest sample peak koe writes: headroom for resampling's overshoot
PEAK_CEILING = 10 ** (PEAK_CEILING_DBFS / 20)
LOUDNESS_BLOCK_SECONDS = 0.4  # BS.1770's gating block
SILENT_LUFS = -120.0  # what a silent clip measures (below BS.1770's absolute gate of -70 LUFS)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate == to_rate:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def peak_safe(audio: np.ndarray, ceiling: float = PEAK_CEILING) -> np.ndarray:
    """`audio` scaled down whole when its peak is over `ceiling` (full scale = 1), never clipped; else as it is."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= ceiling:
        return audio
    return (audio * (ceiling / peak)).astype(audio.dtype, copy=False)


def loudness_lufs(audio: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4, K-weighted and gated; pyloudnorm) of mono audio in LUFS.

    BS.1770 measures blocks of 400 ms; a shorter clip (a one-word aizuchi from a neural backend) is
    measured as a single block the length of the clip, i.e. its K-weighted mean square, ungated:
    padding it with silence to 400 ms would dilute it and overstate the gain it needs. A silent
    clip (below the absolute gate) measures `SILENT_LUFS`.
    """
    import pyloudnorm

    samples = np.asarray(audio, dtype=np.float64)
    if samples.size < 2:
        return SILENT_LUFS
    block = min(LOUDNESS_BLOCK_SECONDS, (samples.size - 0.5) / sample_rate)  # half a sample short of the clip
    value = float(pyloudnorm.Meter(sample_rate, block_size=block).integrated_loudness(samples))
    return value if math.isfinite(value) and value > SILENT_LUFS else SILENT_LUFS


@dataclass(frozen=True)
class Leveled:
    """Audio after gain staging, with what was measured and applied (recorded per turn in the sample JSON)."""

    audio: np.ndarray
    loudness_lufs: float  # of the audio as it came, before any gain
    gain_db: float  # applied: toward the target, limited by the peak ceiling (0 when nothing was done)


def normalize_loudness(
    audio: np.ndarray,
    sample_rate: int,
    target_lufs: float | None,
    ceiling: float = PEAK_CEILING,
    within: tuple[int, int] | None = None,
) -> Leveled:
    """`audio` brought to `target_lufs`, its gain limited so that the sample peak stays at or under `ceiling`.

    `within` (samples) is the part whose loudness counts, e.g. the speech of a render whose words are
    timed, cut out later; the gain applies to all of it. With no target only the ceiling applies
    (`peak_safe`). Silence is left as it is. Audio whose peak-to-loudness ratio is over the headroom
    (target to ceiling) lands below the target.
    """
    measured = loudness_lufs(audio if within is None else audio[within[0] : within[1]], sample_rate)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak == 0.0:
        return Leveled(audio, measured, 0.0)
    gain_db = 0.0 if target_lufs is None or measured <= SILENT_LUFS else target_lufs - measured
    gain_db = min(gain_db, 20 * math.log10(ceiling / peak))
    if target_lufs is None and gain_db >= 0:
        return Leveled(audio, measured, 0.0)
    leveled = (audio * 10 ** (gain_db / 20)).astype(np.float32)
    return Leveled(leveled, measured, gain_db)


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
