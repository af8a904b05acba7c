"""Embedded offline TTS: OpenJTalk with its HTS voice (pyopenjtalk-plus).

It ships its dictionary and one voice ("mei", CC BY 3.0), needs no GPU and no network, and is
deterministic: the seed changes nothing, so a render that fails a check is not rendered again. The
bank's 20 speakers are pitch/speed variants of that one voice.

pyopenjtalk returns float64 samples on an int16 scale whose HTS peaks overshoot it (by up to 7.7 dB
for おはよう in the bank's voices): they are scaled down whole to the -1 dBFS ceiling, never clipped.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..audio import peak_safe
from ..records import Alignment
from ..speakers import Speaker
from .openjtalk_timing import openjtalk_timing

INT16_SCALE = 32768.0


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_chars: int = Field(default=200, gt=0, description="longest text per synthesis call")


class Backend:
    name = "openjtalk"
    sample_rate = 48000
    deterministic = True  # the HTS engine samples nothing: the seed is ignored

    def __init__(self, max_chars: int):
        import pyopenjtalk

        self._pyopenjtalk = pyopenjtalk
        self.max_chars = max_chars

    def describe(self) -> dict[str, Any]:
        return {"model": f"pyopenjtalk-plus {version('pyopenjtalk-plus')} (HTS voice mei)"}

    def synthesize(self, text: str, speaker: Speaker, seed: int) -> np.ndarray:
        voice = speaker.openjtalk
        return self._to_unit_scale(*self._pyopenjtalk.tts(text, speed=voice.speed, half_tone=voice.half_tone))

    def synthesize_aligned(self, text: str, speaker: Speaker, seed: int) -> tuple[np.ndarray, Alignment]:
        """`synthesize`, rendered from the very labels whose durations were computed, so the timings are exact."""
        voice = speaker.openjtalk
        timing = openjtalk_timing(text, voice.speed)
        audio = self._to_unit_scale(
            *self._pyopenjtalk.synthesize(timing.labels, speed=voice.speed, half_tone=voice.half_tone)
        )
        if audio.size != timing.num_samples:
            raise RuntimeError(f"OpenJTalk rendered {audio.size} samples, its duration model {timing.num_samples}")
        return audio, timing.alignment

    def _to_unit_scale(self, samples: np.ndarray, rate: int) -> np.ndarray:
        if rate != self.sample_rate:
            raise RuntimeError(f"pyopenjtalk returned {rate} Hz, expected {self.sample_rate} Hz")
        # Samples are on an int16 scale and HTS peaks can overshoot it: scale, never clip.
        return peak_safe((samples / INT16_SCALE).astype(np.float32))
