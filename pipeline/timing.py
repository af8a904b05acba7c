"""Seconds spent in each stage of the chain, for the run summary and `run.json`.

Stages are timed where their work is done, never around another timed stage, so the times add up
without counting anything twice: `text` (parse and speak), `render` (TTS calls, with word alignment),
`qc` (the quality gate), `compose` (the duplex timeline, mix, channel check and augmentation),
`caption` (captioner calls), `write` (FLAC, JSON and the tar). `ingest` (reading corpus rows) is
the driver's. Times are summed over the rows and turns in flight, so with several at once a stage
can add up to more than the wall time.

The clock is per process: a shard job reads what it added (`StageClock.since`), one job at a time
per process as executors run them, and its completion record keeps it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("ingest", "text", "render", "qc", "compose", "caption", "write")


class StageClock:
    def __init__(self):
        self._lock = threading.Lock()
        self._seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        if stage not in self._seconds:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self._seconds[stage] += elapsed

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)

    def since(self, snapshot: dict[str, float]) -> dict[str, float]:
        """Seconds per stage added since `snapshot`; only the stages that took any time."""
        now = self.snapshot()
        return {stage: round(now[stage] - snapshot[stage], 3) for stage in STAGES if now[stage] > snapshot[stage]}


CLOCK = StageClock()
timed = CLOCK.timed


def add_stage_seconds(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    """Two stage-time records summed, in stage order."""
    return {s: round(total.get(s, 0.0) + more.get(s, 0.0), 3) for s in STAGES if s in total or s in more}
