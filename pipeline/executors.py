"""Executors decide where shard jobs run; they know nothing of what a job does.

`InlineExecutor` runs jobs one after another in this process (debugging, tests, benchmarks of the
stage logic). `RayExecutor` runs them as Ray tasks on a local Ray instance or a cluster, keeps a
bounded number in flight (back-pressure: memory stays flat however long the corpus), retries
failed tasks, and streams per-row progress back to the driver.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .job import ShardJob, process_shard
from .recipe import Recipe
from .records import ManifestRow
from .shards import DoneRecord, Output


@dataclass
class Callbacks:
    on_row: Callable[[ManifestRow], None]  # a row finished (progress)
    on_failed: Callable[[ShardJob, str], None]  # a shard task failed every attempt


class InlineExecutor:
    name = "inline"

    def run(self, jobs: Iterable[ShardJob], recipe: Recipe, output: Output, callbacks: Callbacks) -> None:
        for job in jobs:
            try:
                process_shard(job, recipe, output, callbacks.on_row)
            except Exception as exc:
                callbacks.on_failed(job, f"{type(exc).__name__}: {exc}")


def _run_shard_task(job: ShardJob, recipe: Recipe, output: Output, inbox) -> DoneRecord:
    return process_shard(job, recipe, output, lambda row: inbox.put.remote(row))


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    def _connect(self):
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=True,
                log_to_driver=True,
            )
        return ray

    def run(self, jobs: Iterable[ShardJob], recipe: Recipe, output: Output, callbacks: Callbacks) -> None:
        ray = self._connect()

        @ray.remote(num_cpus=0)
        class RowInbox:
            """Per-row progress from tasks to the driver, drained every half second."""

            def __init__(self):
                self.rows: list[ManifestRow] = []

            def put(self, row: ManifestRow) -> None:
                self.rows.append(row)

            def drain(self) -> list[ManifestRow]:
                rows, self.rows = self.rows, []
                return rows

        inbox = RowInbox.remote()
        execution = recipe.execution
        task = ray.remote(_run_shard_task).options(
            num_cpus=execution.cpus_per_task,
            max_retries=execution.max_attempts - 1,
            retry_exceptions=True,
        )
        cluster_cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
        limit = execution.max_tasks_in_flight or max(1, int(2 * cluster_cpus / execution.cpus_per_task))

        def drain() -> None:
            for row in ray.get(inbox.drain.remote()):
                callbacks.on_row(row)

        pending: Iterator[ShardJob] = iter(jobs)
        in_flight: dict = {}
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < limit:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                else:
                    in_flight[task.remote(job, recipe, output, inbox)] = job
            if not in_flight:
                break
            finished, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            drain()
            for ref in finished:
                job = in_flight.pop(ref)
                try:
                    ray.get(ref)
                except Exception as exc:  # the task failed every attempt
                    callbacks.on_failed(job, f"{type(exc).__name__}: {exc}".splitlines()[0])
        drain()


def make_executor(name: str, ray_address: str | None):
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        return RayExecutor(ray_address)
    raise ValueError(f"unknown executor {name!r}: use 'ray' or 'inline'")
