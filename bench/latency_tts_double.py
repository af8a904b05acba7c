"""Test double for a GPU TTS model (CosyVoice-like), for benchmarks and tests: a fixed latency per call,
and a log of every call.

Named as a double on purpose: it stands in for the model call only. It waits `latency_seconds` (a
GPU forward pass that holds no CPU) and returns a tone whose length follows the text, so everything
around it — the Ray actor pool, shard tasks, dispatch — runs for real. Each call appends `<actor id>
<call key> <start> <end>` (epoch seconds) to `calls_dir/<pid>.log`, from which `gpu_saturation.py`
counts calls and reconstructs how busy every actor was; the call key (from text and seed) matches
the request in `dispatch_probe.py`'s log. `tts.backend: bench.latency_tts_double`.
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
from pydantic import BaseModel, ConfigDict

NEEDS_REFERENCE_AUDIO = False


def call_key(text: str, seed: int) -> str:
    """Names one synthesis request on both sides of the Ray call: the task that sends it, the actor that runs it."""
    return hashlib.sha1(f"{seed}:{text}".encode()).hexdigest()[:16]


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_seconds: float = 0.0
    seconds_per_char: float = 0.2
    max_chars: int = 80
    calls_dir: str | None = None


class Backend:
    name = "latency-tts-double"
    sample_rate = 24000
    deterministic = False  # it stands in for a sampling model (CosyVoice): failed renders are retried as there

    def __init__(self, latency_seconds: float, seconds_per_char: float, max_chars: int, calls_dir: str | None):
        self.latency_seconds = latency_seconds
        self.seconds_per_char = seconds_per_char
        self.max_chars = max_chars
        self.calls_dir = calls_dir

    def describe(self) -> dict:
        return {"model": "latency-tts-double"}

    def synthesize(self, text: str, speaker, seed: int) -> np.ndarray:
        start = time.time()
        time.sleep(self.latency_seconds)
        end = time.time()
        if self.calls_dir:
            self._log(call_key(text, seed), start, end)
        frames = int(len(text) * self.seconds_per_char * self.sample_rate)
        pitch = 110.0 * 2 ** (speaker.openjtalk.half_tone / 12)
        return (0.3 * np.sin(2 * np.pi * pitch * np.arange(frames) / self.sample_rate)).astype(np.float32)

    def _log(self, key: str, start: float, end: float) -> None:
        import ray

        actor = ray.get_runtime_context().get_actor_id() if ray.is_initialized() else None
        with open(os.path.join(self.calls_dir, f"{os.getpid()}.log"), "a") as log:
            log.write(f"{actor or 'none'} {key} {start:.6f} {end:.6f}\n")
