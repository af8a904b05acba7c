"""The captioner interface: the seam every audio-captioning model sits behind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

CAPTION_SAMPLE_RATE = 16000  # what Qwen3-Omni's audio encoder takes; clips are resampled to it


@dataclass(frozen=True)
class Caption:
    text: str
    finish_reason: str | None  # "stop", or "length" when cut off at max tokens


class Captioner(Protocol):
    """Mono float32 audio in [-1, 1] at `CAPTION_SAMPLE_RATE` (at most 30 s) in, one caption out."""

    name: str

    def describe(self) -> dict[str, Any]:
        """Model id and revision and the sampling parameters, recorded in every sample."""

    def caption(self, audio: np.ndarray, seed: int) -> Caption:
        """One caption for one clip, sampled with `seed` (a retry passes another); raises on transport or
        model errors (the row is retried)."""
