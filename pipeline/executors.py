"""Executors decide where shard jobs run; they know nothing of what a job does.

`InlineExecutor` runs jobs one after another in this process (debugging, tests, benchmarks of the
stage logic). `RayExecutor` runs them as Ray tasks on a local Ray instance or a cluster, keeps a
bounded number in flight (back-pressure: memory stays flat however long the corpus), retries
failed tasks, and streams per-row progress back to the driver.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .job import ShardJob, process_shard
from .recipe import Recipe
from .records import ManifestRow
from .shards import DoneRecord, Output
from .speakers import Speaker
from .tts import BackendSetupError, load_backend

logger = logging.getLogger(__name__)
HELPER_TIMEOUT_SECONDS = 30.0  # a progress call that takes longer is given up on: progress never stalls a run


@dataclass
class Callbacks:
    on_row: Callable[[ManifestRow], None]  # a row finished (progress)
    on_failed: Callable[[ShardJob, str], None]  # a shard task failed every attempt


def _disk_full(exc: BaseException) -> bool:
    """No row is to blame for a full disk: the run stops, and resumes once there is room."""
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class InlineExecutor:
    name = "inline"

    def run(self, jobs: Iterable[ShardJob], recipe: Recipe, output: Output, callbacks: Callbacks) -> None:
        for job in jobs:
            try:
                process_shard(job, recipe, output, callbacks.on_row)
            except Exception as exc:
                if _disk_full(exc):
                    raise
                callbacks.on_failed(job, f"{type(exc).__name__}: {exc}")


def load_stage_model(stage: str, backend: str, options: dict):
    """The model of a recipe's GPU stage: a TTS backend, or a captioner."""
    if stage == "captioner":
        from .captioners import load_captioner

        return load_captioner(backend, options)
    return load_backend(backend, options)


class ModelActor:
    """One model (on its GPU) serving calls from many shard tasks: a TTS backend or a captioner.

    Created with `max_concurrency` = the stage's `concurrency`, so several requests share the loaded
    model; the actor runs in the stage's own `runtime_env` (CosyVoice and vLLM pin their own torch).
    """

    def __init__(self, stage: str, backend: str, options: dict):
        self.model = load_stage_model(stage, backend, options)

    def info(self) -> dict:
        model = self.model
        names = ("sample_rate", "max_chars", "deterministic")
        facts = {name: getattr(model, name) for name in names if hasattr(model, name)}
        return {"name": model.name, "describe": model.describe(), **facts}

    def call(self, method: str, *args):
        return getattr(self.model, method)(*args)


@dataclass
class ModelPool:
    """The GPU actors, and one `info` call per actor that completes when its model has loaded (or failed to).

    Shard tasks start while the models load (worker start-up and the first rows' text stage overlap
    the load); the driver watches `loaded` and stops the run at the first actor that cannot load.
    """

    actors: list
    loaded: list


def backend_info(loaded_ref) -> dict:
    """An actor's backend description; a model that failed to load is a setup error, not a row error."""
    import ray

    try:
        return ray.get(loaded_ref)
    except ray.exceptions.RayActorError as exc:
        if not exc.actor_init_failed:
            raise
        cause = next((line for line in reversed(str(exc).splitlines()) if line.strip()), "unknown error")
        raise BackendSetupError(f"a model actor could not load its backend: {cause}") from None


class ActorPoolModel:
    """A model's interface inside shard tasks, answered by a pool of `ModelActor`s."""

    def __init__(self, pool: ModelPool, start: int):
        self.actors = pool.actors
        self._loaded = pool.loaded[0]
        self._start = start  # ties go to different actors in different shard tasks
        self._outstanding = [0] * len(self.actors)
        self._lock = threading.Lock()

    @cached_property
    def _info(self) -> dict:
        return backend_info(self._loaded)  # the first render waits here while the model is still loading

    @property
    def name(self) -> str:
        return self._info["name"]

    def describe(self) -> dict:
        return self._info["describe"]

    def call(self, method: str, *args):
        """On the actor with the fewest of this task's requests outstanding (round-robin is blind to load)."""
        import ray

        count = len(self.actors)
        with self._lock:
            chosen = min(range(count), key=lambda a: (self._outstanding[a], (a - self._start) % count))
            self._outstanding[chosen] += 1
        try:
            return ray.get(self.actors[chosen].call.remote(method, *args))
        finally:
            with self._lock:
                self._outstanding[chosen] -= 1


class ActorPoolBackend(ActorPoolModel):
    """The TTS backend interface over the pool."""

    @property
    def sample_rate(self) -> int:
        return self._info["sample_rate"]

    @property
    def max_chars(self) -> int:
        return self._info["max_chars"]

    @property
    def deterministic(self) -> bool:
        return bool(self._info.get("deterministic", False))

    def synthesize(self, text: str, speaker: Speaker, seed: int) -> np.ndarray:
        return self.call("synthesize", text, speaker, seed)


class ActorPoolCaptioner(ActorPoolModel):
    """The captioner interface over the pool."""

    def caption(self, audio: np.ndarray, seed: int):
        return self.call("caption", audio, seed)


def _run_shard_task(
    job: ShardJob, recipe: Recipe, output: Output, inbox, pool: ModelPool | None
) -> DoneRecord | OSError:
    """A shard's task; a full disk is handed back, not raised, so that Ray neither retries nor logs it."""
    proxy = ActorPoolCaptioner if recipe.kind == "captions" else ActorPoolBackend
    model = proxy(pool, start=job.index) if pool else None
    try:
        return process_shard(job, recipe, output, lambda row: inbox.put.remote(row), model)
    except OSError as exc:
        if _disk_full(exc):
            return exc
        raise


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address
        self.pool_gpus = 0.0  # GPUs held by the model actors of the last run

    def _connect(self):
        import ray

        if not ray.is_initialized():
            # ray.init installs its own SIGTERM handler, and its core worker one that prints a stack dump;
            # the caller's (the CLI's clean stop) is put back.
            on_sigterm = signal.getsignal(signal.SIGTERM)
            ray.init(
                address=self.address,
                include_dashboard=False,
                logging_level=logging.WARNING,
                configure_logging=True,
                log_to_driver=True,
            )
            if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
                signal.signal(signal.SIGTERM, on_sigterm)
        return ray

    def run(self, jobs: Iterable[ShardJob], recipe: Recipe, output: Output, callbacks: Callbacks) -> None:
        ray = self._connect()

        @ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
        class RowInbox:
            """Per-row progress from tasks to the driver, drained every half second.

            Progress only: rows reach the manifest through each shard's own part. So an inbox that dies
            is restarted (the rows it held are not counted on the bar), and the run carries on.
            """

            def __init__(self):
                self.rows: list[ManifestRow] = []

            def put(self, row: ManifestRow) -> None:
                self.rows.append(row)

            def drain(self) -> list[ManifestRow]:
                rows, self.rows = self.rows, []
                return rows

        inbox = RowInbox.options(name=f"koe-row-inbox-{uuid.uuid4().hex[:8]}").remote()
        pool = self._model_pool(ray, recipe) if recipe.model_stage.num_gpus > 0 else None
        execution = recipe.execution
        task = ray.remote(_run_shard_task).options(
            num_cpus=execution.cpus_per_task,
            max_retries=execution.max_attempts - 1,
            retry_exceptions=True,
        )
        limit = execution.max_tasks_in_flight or self._default_tasks_in_flight(ray, recipe, pool)

        def drain() -> None:
            try:
                rows = ray.get(inbox.drain.remote(), timeout=HELPER_TIMEOUT_SECONDS)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                logger.warning("progress inbox restarting (%s); rows it held are not shown", type(exc).__name__)
                return
            for row in rows:
                callbacks.on_row(row)

        pending: Iterator[ShardJob] = iter(jobs)
        in_flight: dict = {}
        loading = list(pool.loaded) if pool else []  # actors not yet known to have loaded their model
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < limit:
                job = next(pending, None)
                if job is None:
                    exhausted = True
                else:
                    in_flight[task.remote(job, recipe, output, inbox, pool)] = job
            if not in_flight:
                break
            finished, _ = ray.wait(list(in_flight) + loading, num_returns=1, timeout=0.5)
            if loading:  # before any task's result: a task that failed because a model did not load is no row error
                loading = self._check_loaded(ray, loading, in_flight)
            drain()
            for ref in (ref for ref in finished if ref in in_flight):
                job = in_flight.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # the task failed every attempt
                    callbacks.on_failed(job, f"{type(exc).__name__}: {exc}".splitlines()[0])
                    continue
                if isinstance(result, OSError):  # the disk is full
                    for task_ref in in_flight:
                        ray.cancel(task_ref, force=True)
                    raise result
        drain()

    @staticmethod
    def _check_loaded(ray, loading: list, in_flight: dict) -> list:
        """The actors still loading; a failed load cancels every shard task and stops the run."""
        loaded, loading = ray.wait(loading, num_returns=len(loading), timeout=0)
        for ref in loaded:
            try:
                backend_info(ref)
            except BackendSetupError:
                for task_ref in in_flight:
                    ray.cancel(task_ref, force=True)
                raise
        return loading

    @staticmethod
    def _default_tasks_in_flight(ray, recipe: Recipe, pool: ModelPool | None) -> int:
        """With GPU actors: enough requests to keep every slot busy with a short queue (2x), and no more,
        so shards finish one after another instead of all at the end. Without: 2 tasks per CPU."""
        execution = recipe.execution
        if pool:
            slots = len(pool.actors) * recipe.model_stage.concurrency
            return math.ceil(2 * slots / execution.items_in_flight) + 1  # +1: covers another task's drain
        cluster_cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
        return max(1, int(2 * cluster_cpus / execution.cpus_per_task))

    def _model_pool(self, ray, recipe: Recipe) -> ModelPool:
        """Actors sized to the cluster's GPUs; fails at once when the cluster has none to give."""
        stage = "captioner" if recipe.kind == "captions" else "tts"
        config = recipe.model_stage
        gpus = ray.cluster_resources().get("GPU", 0)
        count = config.actors or int(gpus // config.num_gpus)
        if count < 1 or count * config.num_gpus > gpus:
            raise ValueError(
                f"{stage}.num_gpus={config.num_gpus} with {config.actors or 'auto'} actor(s) needs GPUs, and this Ray "
                f"cluster has {gpus:g}; join a GPU cluster with --ray-address, or run the embedded backend "
                "(--set profile=embedded)"
            )
        options = {
            "num_gpus": config.num_gpus,
            "num_cpus": config.cpus_per_actor,
            "max_concurrency": config.concurrency,
            "max_restarts": -1,
        }
        if config.accelerator_type:
            options["accelerator_type"] = config.accelerator_type
        if config.runtime_env:
            options["runtime_env"] = config.runtime_env
        actor_class = ray.remote(ModelActor).options(**options, max_task_retries=recipe.execution.max_attempts)
        actors = [actor_class.remote(stage, config.backend, config.options) for _ in range(count)]
        self.pool_gpus = count * config.num_gpus
        return ModelPool(actors, [actor.info.remote() for actor in actors])


def make_executor(name: str, ray_address: str | None):
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        return RayExecutor(ray_address)
    raise ValueError(f"unknown executor {name!r}: use 'ray' or 'inline'")
