"""User-channel augmentation for duplex samples, as Moshi trained its model to hear real users.

Only the user channel (right) changes: a gain, noise from a folder of recordings at a drawn
signal-to-noise ratio, and an echo of the assistant channel (a user's microphone picks up the
model's own voice). The assistant channel, which the model learns to speak, stays clean. Every
value drawn is returned for the sample JSON.

Nothing is clipped: when gain, echo and noise take the user channel's peak over -1 dBFS, the whole
channel is scaled down to it (speech, echo and noise alike, so the drawn ratios hold), and that
gain is recorded as `peak_limit_db` (0 when the peak stayed under).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import PEAK_CEILING, resample
from .recipe import AugmentConfig

ASSISTANT, USER = 0, 1
NOISE_EXTENSIONS = {".wav", ".flac", ".ogg"}


@lru_cache(maxsize=2)
def _noise_files(folder: Path) -> tuple[Path, ...]:
    files = tuple(sorted(p for p in folder.rglob("*") if p.suffix.lower() in NOISE_EXTENSIONS))
    if not files:
        raise ValueError(f"duplex.augment.noise_dir {folder} holds no .wav/.flac/.ogg recordings")
    return files


def _noise(path: Path, frames: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """`frames` of the recording from a drawn offset, looped when it is shorter, as mono at `sample_rate`."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    noise = resample(audio.mean(axis=1), rate, sample_rate)
    if noise.size == 0:
        raise ValueError(f"noise recording {path} is empty")
    offset = int(rng.integers(noise.size))
    return np.resize(np.roll(noise, -offset), frames)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def augment_user_channel(stereo: np.ndarray, sample_rate: int, config: AugmentConfig, rng: np.random.Generator) -> dict:
    """Augment `stereo[:, 1]` in place; returns what was applied."""
    user, assistant = stereo[:, USER], stereo[:, ASSISTANT]
    applied: dict = {}
    echo_gain = float(rng.uniform(*config.echo_gain))
    echo_delay = float(rng.uniform(*config.echo_delay_seconds))
    shift = int(round(echo_delay * sample_rate))
    if echo_gain > 0 and shift < user.size:
        user[shift:] += echo_gain * assistant[: user.size - shift]
    applied["echo"] = {"gain": round(echo_gain, 4), "delay_seconds": round(echo_delay, 4)}
    gain_db = float(rng.uniform(*config.gain_db))
    user *= 10 ** (gain_db / 20)
    applied["gain_db"] = round(gain_db, 3)
    applied["noise"] = None
    if config.noise_dir is not None:
        files = _noise_files(config.noise_dir)
        path = files[int(rng.integers(len(files)))]
        snr_db = float(rng.uniform(*config.noise_snr_db))
        noise = _noise(path, user.size, sample_rate, rng)
        speech, level = _rms(user[np.abs(user) > 1e-4]), _rms(noise)
        if speech > 0 and level > 0:
            user += noise * (speech / level) / 10 ** (snr_db / 20)
        applied["noise"] = {"file": path.name, "snr_db": round(snr_db, 3)}
    peak = float(np.max(np.abs(user))) if user.size else 0.0
    limit = min(1.0, PEAK_CEILING / peak) if peak > 0 else 1.0
    user *= limit
    applied["peak_limit_db"] = round(20 * math.log10(limit), 3)
    return applied
