"""Test double for a GPU TTS model (CosyVoice-like) that cannot run here.

Named as a double on purpose: it stands in for the model call only. It waits a fixed latency (a GPU
forward pass) and returns a tone whose length follows the text, so everything around it — the
Ray actor pool, retries, sharding — runs for real. `tts.backend: tests.gpu_tts_double`.
"""

from __future__ import annotations

import os
import time

import numpy as np
from pydantic import BaseModel, ConfigDict

NEEDS_REFERENCE_AUDIO = False


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_seconds: float = 0.0
    seconds_per_char: float = 0.1
    max_chars: int = 80
    calls_dir: str | None = None  # each call appends "<actor id or 'none'>" to calls_dir/<pid>.log


class Backend:
    name = "gpu-tts-double"
    sample_rate = 24000

    def __init__(self, latency_seconds: float, seconds_per_char: float, max_chars: int, calls_dir: str | None):
        self.latency_seconds = latency_seconds
        self.seconds_per_char = seconds_per_char
        self.max_chars = max_chars
        self.calls_dir = calls_dir

    def describe(self) -> dict:
        return {"model": "gpu-tts-double"}

    def synthesize(self, text: str, speaker, seed: int) -> np.ndarray:
        time.sleep(self.latency_seconds)
        if self.calls_dir:
            import ray

            actor = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None
            with open(os.path.join(self.calls_dir, f"{os.getpid()}.log"), "a") as log:
                log.write(f"{actor or 'none'}\n")
        frames = int(len(text) * self.seconds_per_char * self.sample_rate)
        pitch = 110.0 * 2 ** (speaker.openjtalk.half_tone / 12)
        return (0.3 * np.sin(2 * np.pi * pitch * np.arange(frames) / self.sample_rate)).astype(np.float32)
