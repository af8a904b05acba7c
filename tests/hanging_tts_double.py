"""Test double for a GPU TTS model that stops answering, as a wedged GPU or a deadlocked server does.

It is bench/latency_tts_double.py's tone, except that its calls in one process never return: the
first process to make a call claims `hang_marker` (an exclusive create that records its pid), and
every call it gets from then on sleeps for good. Every other process answers, the restarted actor
included (a new process). With `hang_every_call`, every call in every process hangs.
`tts.backend: tests.hanging_tts_double`.
"""

from __future__ import annotations

import os
import time

from bench.latency_tts_double import Backend as LatencyBackend
from bench.latency_tts_double import Options as LatencyOptions

NEEDS_REFERENCE_AUDIO = False
FOREVER_SECONDS = 24 * 3600


class Options(LatencyOptions):
    hang_marker: str | None = None
    hang_every_call: bool = False


class Backend(LatencyBackend):
    name = "hanging-tts-double"

    def __init__(self, hang_marker: str | None, hang_every_call: bool, **options):
        super().__init__(**options)
        self.hang_marker = hang_marker
        self.hang_every_call = hang_every_call

    def describe(self) -> dict:
        return {"model": "hanging-tts-double"}

    def synthesize(self, text: str, speaker, seed: int):
        if self.hang_every_call or self._claimed():
            time.sleep(FOREVER_SECONDS)
        return super().synthesize(text, speaker, seed)

    def _claimed(self) -> bool:
        """Whether this process is the one that hangs: the first to make a call."""
        if not self.hang_marker:
            return False
        try:
            descriptor = os.open(self.hang_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(self.hang_marker) as marker:
                return marker.read().strip() == str(os.getpid())
        with os.fdopen(descriptor, "w") as marker:
            marker.write(str(os.getpid()))
        return True
