"""Executors decide where shard jobs run; they know nothing of what a job does.

`InlineExecutor` runs jobs one after another in this process (debugging, tests, benchmarks of the
stage logic). `RayExecutor` runs them as Ray tasks on a local Ray instance or a cluster, keeps a
bounded number in flight (back-pressure: memory stays flat however long the corpus), retries
failed tasks, and streams per-row progress back to the driver.

Nothing waits on Ray without a deadline: joining a cluster (`execution.connect_timeout_seconds`),
the GPU actors' start (`execution.model_load_timeout_seconds`), every model call
(`execution.model_call_timeout_seconds`: the row is tried again elsewhere, and the actor that went
silent is restarted), and the driver's own helper calls.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BackendSetupError
from .job import ShardJob, process_shard
from .kinds import kind_named
from .recipe import Recipe
from .records import ManifestRow
from .shards import DoneRecord, Output
from .speakers import Speaker
from .tts import load_backend

logger = logging.getLogger(__name__)
HELPER_TIMEOUT_SECONDS = 30.0  # a progress call that takes longer is given up on: progress never stalls a run
RECHECK_SECONDS = 1.0  # how often a shard task looks whether a restarted or late actor answers again
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"  # what a node advertises, and `accelerator_type=` asks for
GCS_DEFAULT_PORT = 6379  # `ray start --head` without --port
HANDSHAKE_SECONDS_PER_TRY = 40  # one of Ray's GCS connection tries, when the port answers but not as a GCS


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


class ModelCallTimeout(RuntimeError):
    """A model call had no answer in time: a row error (the row is tried again), and its actor is restarted.

    Not a TimeoutError: that is an OSError, which the command line takes for a file's fault."""


class ModelUnavailable(BackendSetupError):
    """No actor of the pool answers: the shard task stops (its rows are not marked failed)."""


def _last_line(exc: BaseException) -> str:
    return next((line.strip() for line in reversed(str(exc).splitlines()) if line.strip()), type(exc).__name__)


def _setup_failure(exc: BaseException) -> str | None:
    """Why an actor could not start, when `exc` says it never will (a failed __init__ or runtime_env); else None."""
    import ray

    if isinstance(exc, ray.exceptions.RuntimeEnvSetupError):
        return f"its runtime_env could not be set up: {_last_line(exc)}"
    if isinstance(exc, ray.exceptions.RayActorError) and exc.actor_init_failed:
        return f"it could not load its backend: {_last_line(exc)}"
    return None


def backend_info(loaded_ref, timeout: float = HELPER_TIMEOUT_SECONDS) -> dict:
    """An actor's backend description; a model that failed to load is a setup error, not a row error."""
    import ray

    try:
        return ray.get(loaded_ref, timeout=timeout)
    except (ray.exceptions.RayActorError, ray.exceptions.RuntimeEnvSetupError) as exc:
        reason = _setup_failure(exc)
        if reason is None:
            raise
        raise BackendSetupError(f"a model actor could not start: {reason}") from None


class ModelWarden:
    """Restarts the pool's actors that stop answering: one per run, so that the many shard tasks that
    see one actor go silent restart it once, not once each.

    A shard task reports a call that had no answer in time, with the wall-clock time it sent it. The
    actor is killed (Ray restarts it: `max_restarts=-1`) unless it is restarting already, or the
    call was sent before its current process was seen answering (that call may have waited out a
    restart, which is no sign that the new process hangs). A restarted actor that has not reloaded
    its model within the load timeout is restarted again.
    """

    def __init__(self, actor_names: list[str], load_timeout: float):
        import ray

        # by name, not by handle: handles would be constructor arguments in the object store, which a
        # restarted warden may not get back (Ray warns of it on every run, ray-project/ray#53727)
        actors = [ray.get_actor(name) for name in actor_names]
        self.actors = actors
        self.load_timeout = load_timeout
        self.trusted_since = [0.0] * len(actors)  # answers count from then: the current process had loaded
        self.reloading: dict[int, tuple] = {}  # actor -> (its info call, when it was restarted)
        self.notes: list[str] = []

    def report(self, index: int, sent_at: float, reason: str) -> bool:
        self._check()
        if index in self.reloading or sent_at < self.trusted_since[index]:
            return False
        self._restart(index, reason)
        return True

    def poll(self) -> list[str]:
        """What happened since the last poll (the driver logs it); also notices reloads that finished."""
        self._check()
        notes, self.notes = self.notes, []
        return notes

    def _restart(self, index: int, reason: str) -> None:
        import ray

        try:
            ray.kill(self.actors[index], no_restart=False)
        except Exception as exc:  # gone for good: nothing to restart
            self.trusted_since[index] = math.inf
            self.notes.append(f"model actor {index} {reason}, and could not be restarted: {_last_line(exc)}")
            return
        self.reloading[index] = (self.actors[index].info.remote(), time.time())
        self.notes.append(f"model actor {index} {reason}: restarted it")

    def _check(self) -> None:
        import ray

        for index, (ref, since) in list(self.reloading.items()):
            if ray.wait([ref], timeout=0)[0]:
                del self.reloading[index]
                try:
                    ray.get(ref, timeout=HELPER_TIMEOUT_SECONDS)
                    self.trusted_since[index] = time.time()
                    self.notes.append(f"model actor {index} answers again")
                except Exception as exc:  # it cannot start any more: never restarted by us again
                    self.trusted_since[index] = math.inf
                    self.notes.append(f"model actor {index} did not come back: {_last_line(exc)}")
            elif time.time() - since > self.load_timeout:
                self._restart(index, f"did not reload its model within {self.load_timeout:g} s")


@dataclass
class ModelPool:
    """The GPU actors, one `info` call per actor that completes when its model has loaded (or failed to),
    the warden that restarts silent actors, and the deadlines of a call and of a (re)load.

    Shard tasks start while the models load (worker start-up and the first rows' text stage overlap
    the load) and use an actor once its model has loaded; the driver watches `loaded`, and stops the
    run at the first actor that cannot load, or when none has loaded in time.
    """

    actors: list
    loaded: list
    warden: object
    call_timeout: float
    load_timeout: float


class ActorPoolModel:
    """A model's interface inside shard tasks, answered by a pool of `ModelActor`s.

    Each call goes to the actor with the fewest of this task's requests outstanding, among those
    known to answer. An actor joins once its model has loaded; one whose call had no answer in time,
    or that died, leaves until an `info` call to it returns (after Ray restarted it, it has reloaded).
    The bookkeeping is per task and O(actors) per call, whatever the concurrency.
    """

    def __init__(self, pool: ModelPool, start: int):
        self.actors = pool.actors
        self._pool = pool
        self._start = start  # ties go to different actors in different shard tasks
        self._outstanding = [0] * len(self.actors)
        self._lock = threading.Lock()
        self._ready: set[int] = set()
        # actor -> (the call that answers once it is up, when it was sent, whether it is the first load)
        self._waiting: dict[int, tuple] = {i: (ref, time.time(), True) for i, ref in enumerate(pool.loaded)}
        self._gone: dict[int, str] = {}  # actors that cannot start any more, and why
        self._info_value: dict | None = None
        self._next_check = 0.0

    @property
    def _info(self) -> dict:
        if self._info_value is None:
            self._wait_for_an_actor()  # the first render waits here while the model is still loading
        return self._info_value

    @property
    def name(self) -> str:
        return self._info["name"]

    def describe(self) -> dict:
        return self._info["describe"]

    def call(self, method: str, *args):
        import ray

        index = self._choose()
        timeout = self._pool.call_timeout
        sent = time.time()
        try:
            return ray.get(self.actors[index].call.remote(method, *args), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            reason = f"did not answer a {method} call within {timeout:g} s (execution.model_call_timeout_seconds)"
            self._suspend(index)
            self._pool.warden.report.remote(index, sent, reason)  # not waited on
            raise ModelCallTimeout(f"model actor {index} {reason}; it is being restarted") from None
        except ray.exceptions.RayActorError:
            self._suspend(index)  # it died: Ray restarts it, and it is used again once it answers
            raise
        finally:
            with self._lock:
                self._outstanding[index] -= 1

    def _choose(self) -> int:
        if self._waiting and time.monotonic() >= self._next_check:
            self._admit(0)
        while True:
            with self._lock:
                if self._ready:
                    count = len(self.actors)
                    chosen = min(self._ready, key=lambda a: (self._outstanding[a], (a - self._start) % count))
                    self._outstanding[chosen] += 1
                    return chosen
            self._wait_for_an_actor()

    def _suspend(self, index: int) -> None:
        with self._lock:
            self._ready.discard(index)
            if index not in self._waiting and index not in self._gone:
                self._waiting[index] = (self.actors[index].info.remote(), time.time(), False)

    def _wait_for_an_actor(self) -> None:
        """Until an actor answers (or has answered): bounded by the load timeout."""
        deadline = time.monotonic() + self._pool.load_timeout
        while True:
            with self._lock:
                if self._ready and self._info_value is not None:
                    return
                if not self._waiting:
                    reasons = "; ".join(sorted(set(self._gone.values())))
                    raise ModelUnavailable(f"every model actor is gone: {reasons or 'none was started'}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelUnavailable(
                    f"no model actor answered within {self._pool.load_timeout:g} s "
                    "(execution.model_load_timeout_seconds)"
                )
            self._admit(min(left, RECHECK_SECONDS))

    def _admit(self, timeout: float) -> None:
        """Actors whose `info` call has returned answer again; waits up to `timeout` for one."""
        import ray

        self._next_check = time.monotonic() + RECHECK_SECONDS
        with self._lock:
            waiting = dict(self._waiting)
        if not waiting:
            return
        refs = [entry[0] for entry in waiting.values()]
        if timeout > 0:
            ray.wait(refs, num_returns=1, timeout=timeout)
        done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        for index, (ref, sent, first) in waiting.items():
            if ref in done:
                self._answered(index, ref)
            elif not first and time.time() - sent > self._pool.call_timeout:
                # Silent even to `info`: tell the warden (it ignores this while the actor restarts), ask again.
                reason = f"did not answer an info call within {self._pool.call_timeout:g} s"
                self._pool.warden.report.remote(index, sent, reason)
                with self._lock:
                    if self._waiting.get(index, (None,))[0] is ref:
                        self._waiting[index] = (self.actors[index].info.remote(), time.time(), False)

    def _answered(self, index: int, ref) -> None:
        import ray

        try:
            info = ray.get(ref, timeout=HELPER_TIMEOUT_SECONDS)
        except (ray.exceptions.RayActorError, ray.exceptions.RuntimeEnvSetupError) as exc:
            reason = _setup_failure(exc)
            with self._lock:
                if self._waiting.get(index, (None,))[0] is not ref:
                    return
                if reason is None:  # it died while (re)loading: Ray restarts it again
                    self._waiting[index] = (self.actors[index].info.remote(), time.time(), False)
                else:
                    del self._waiting[index]
                    self._gone[index] = reason
            return
        except ray.exceptions.GetTimeoutError:
            return
        with self._lock:
            if self._waiting.get(index, (None,))[0] is ref:
                del self._waiting[index]
                self._ready.add(index)
                if self._info_value is None:
                    self._info_value = info


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


POOL_PROXIES = {"tts": ActorPoolBackend, "captioner": ActorPoolCaptioner}  # by the kind's model stage


def _run_shard_task(
    job: ShardJob, recipe: Recipe, output: Output, inbox, pool: ModelPool | None
) -> DoneRecord | OSError:
    """A shard's task; a full disk is handed back, not raised, so that Ray neither retries nor logs it."""
    proxy = POOL_PROXIES[kind_named(recipe.kind).model_stage]
    model = proxy(pool, start=job.index) if pool else None
    try:
        return process_shard(job, recipe, output, lambda row: inbox.put.remote(row), model)
    except OSError as exc:
        if _disk_full(exc):
            return exc
        raise


def pool_capacity(nodes: list[dict], num_gpus: float, accelerator_type: str | None = None) -> tuple[int, float]:
    """How many actors of `num_gpus` GPUs each fit on the cluster's alive nodes, and the GPUs counted.

    An actor cannot span nodes, so each node counts on its own. With `accelerator_type`, only the
    nodes that advertise the resource `accelerator_type:<type>` count: Ray gives each node with a
    detected accelerator that resource, and an actor created with `accelerator_type=` requests it.
    `nodes` is what `ray.nodes()` returns.
    """
    wanted = f"{ACCELERATOR_RESOURCE_PREFIX}{accelerator_type}" if accelerator_type else None
    actors, gpus = 0, 0.0
    for node in nodes:
        resources = node.get("Resources") or {}
        if not node.get("Alive") or (wanted and resources.get(wanted, 0) <= 0):
            continue
        node_gpus = float(resources.get("GPU", 0))
        gpus += node_gpus
        actors += math.floor(round(node_gpus / num_gpus, 6))
    return actors, gpus


def accelerator_types(nodes: list[dict]) -> list[str]:
    """The accelerator types the alive nodes advertise, e.g. ['H200']."""
    found = {
        name.removeprefix(ACCELERATOR_RESOURCE_PREFIX)
        for node in nodes
        if node.get("Alive")
        for name in (node.get("Resources") or {})
        if name.startswith(ACCELERATOR_RESOURCE_PREFIX)
    }
    return sorted(found)


class RayConnectError(RuntimeError):
    """Ray could not be started or joined; the message is one line that says why and what to do."""


def _effective_address(address: str | None) -> tuple[str | None, str]:
    """The address ray.init will use, and how to name it: Ray reads RAY_ADDRESS when none (or 'auto') is given."""
    from_env = os.environ.get("RAY_ADDRESS") or None
    if address in (None, "auto") and from_env:
        return from_env, f"{from_env} (RAY_ADDRESS)"
    return address, str(address)


def _gcs_endpoint(address: str, shown: str) -> tuple[str, int] | None:
    """HOST and PORT of a plain GCS address ('HOST:PORT', '[IPv6]:PORT'); None for 'auto', 'local', 'ray://...'."""
    if "://" in address:
        if address.startswith("ray://"):
            return None  # Ray Client: its own connection logic
        raise RayConnectError(
            f"Ray address {shown} is a URL (a dashboard's, as `ray job submit --address` takes); koe joins a "
            f"cluster at its GCS address, HOST:PORT (port {GCS_DEFAULT_PORT} unless `ray start --port` chose "
            "another), or 'auto' on one of its nodes"
        )
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d+)", address)
    return (match.group(1), int(match.group(2))) if match else None


def check_reachable(address: str, shown: str, timeout: float) -> None:
    """Fails at once, in one line, when nothing accepts a connection at `address` within `timeout`.

    Ray's own connection to an address that does not answer waits for minutes (20 tries of about 40 s
    each in Ray 2.60), printing warnings; this probe says why in a second or in `timeout`.
    """
    endpoint = _gcs_endpoint(address, shown)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except socket.gaierror:
        why = f"no host named {host!r}"
    except ConnectionRefusedError:
        why = (
            f"nothing listens on port {port} (a cluster's GCS port is {GCS_DEFAULT_PORT} unless `ray start --port` "
            "chose another)"
        )
    except TimeoutError:
        why = f"no answer within {timeout:g} s (execution.connect_timeout_seconds): a firewall, or the wrong host?"
    except OSError as exc:
        why = exc.strerror or str(exc)
    raise RayConnectError(f"cannot reach the Ray cluster at {shown}: {why}")


@contextmanager
def _bounded_handshake(timeout: float):
    """Ray tries its GCS connection `RAY_gcs_server_port_wait_time_s` times (20 by default), up to about 40 s
    each when the port answers but not as a Ray GCS (the dashboard's, say): koe allows `timeout` / 40 tries,
    at least one, unless that variable is set. A refused token fails each try in about a second."""
    name = "RAY_gcs_server_port_wait_time_s"
    if name in os.environ:
        yield
        return
    os.environ[name] = str(max(1, round(timeout / HANDSHAKE_SECONDS_PER_TRY)))
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def connection_failure(shown: str, exc: BaseException) -> str:
    """One line for a failed ray.init: token authentication named as such, else Ray's own last word.

    Ray 2.60 (`ray start --head`, or any cluster started with RAY_AUTH_MODE=token) may require a token;
    a client sends one only when RAY_AUTH_MODE=token, read from RAY_AUTH_TOKEN, the file
    RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token.
    """
    chain = _exception_chain(exc)
    text = "\n".join(str(e) for e in chain)
    token_file = Path.home() / ".ray" / "auth_token"
    where = f"{token_file} (or in RAY_AUTH_TOKEN, or the file RAY_AUTH_TOKEN_PATH names)"
    refused = "InvalidAuthToken" in text or "Unauthenticated" in text
    if refused or any(type(e).__name__ == "AuthenticationError" for e in chain):
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            return (
                f"the Ray cluster at {shown} requires token authentication, and this process sends no token: "
                f"export RAY_AUTH_MODE=token, with the cluster's token in {where}"
            )
        if not refused:  # token mode, and no token here
            return f"RAY_AUTH_MODE=token but there is no token here: put the cluster's token in {where}"
        source = (
            "RAY_AUTH_TOKEN"
            if os.environ.get("RAY_AUTH_TOKEN")
            else os.environ.get("RAY_AUTH_TOKEN_PATH") or str(token_file)
        )
        return (
            f"the Ray cluster at {shown} refused the token from {source}: use the cluster's own token "
            "(`ray get-auth-token` on its head; on KubeRay, the auth_token of the cluster's Secret)"
        )
    lines = [line.strip() for e in chain for line in str(e).splitlines() if line.strip()]
    meaningful = [line for line in lines if not line.startswith(("Traceback", "File ", "^"))]
    detail = meaningful[-1] if meaningful else type(exc).__name__
    if "Timed out while waiting for GCS" in text:
        hint = f"is {shown} a cluster's GCS address (port {GCS_DEFAULT_PORT} by default, not the dashboard's)?"
        detail = f"{detail.rstrip('.')}; {hint}"
    return f"cannot join the Ray cluster at {shown}: {detail}"


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address
        self.pool_gpus = 0.0  # GPUs held by the model actors of the last run

    def _connect(self, connect_timeout: float = 60.0):
        import ray

        if ray.is_initialized():
            return ray
        address, shown = _effective_address(self.address)
        if address not in (None, "auto", "local"):
            check_reachable(address, shown, connect_timeout)
        # ray.init installs its own SIGTERM handler, and its core worker one that prints a stack dump;
        # the caller's (the CLI's clean stop) is put back.
        on_sigterm = signal.getsignal(signal.SIGTERM)
        joining = address not in (None, "local")  # else ray.init starts a local instance: its own waits stand
        bounded = _bounded_handshake(connect_timeout) if joining else nullcontext()
        try:
            with bounded:
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    configure_logging=True,
                    log_to_driver=True,
                )
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            if not joining:
                raise RayConnectError(f"could not start a local Ray instance: {_last_line(exc)}") from None
            raise RayConnectError(connection_failure(shown, exc)) from None
        if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
        return ray

    def run(self, jobs: Iterable[ShardJob], recipe: Recipe, output: Output, callbacks: Callbacks) -> None:
        execution = recipe.execution
        ray = self._connect(execution.connect_timeout_seconds)

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
        task = ray.remote(_run_shard_task).options(
            num_cpus=execution.cpus_per_task,
            max_retries=execution.shard_task_attempts - 1,
            retry_exceptions=True,
        )
        limit = execution.max_tasks_in_flight or self._default_tasks_in_flight(ray, recipe, pool)

        def drain() -> None:
            try:
                rows = ray.get(inbox.drain.remote(), timeout=HELPER_TIMEOUT_SECONDS)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                logger.warning("progress inbox restarting (%s); rows it held are not shown", type(exc).__name__)
                rows = []
            for row in rows:
                callbacks.on_row(row)
            if pool:
                try:
                    notes = ray.get(pool.warden.poll.remote(), timeout=HELPER_TIMEOUT_SECONDS)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    notes = []  # the warden restarts too; what it had to say is lost
                for note in notes:
                    logger.warning("%s", note)

        pending: Iterator[ShardJob] = iter(jobs)
        in_flight: dict = {}
        loading = list(pool.loaded) if pool else []  # actors not yet known to have loaded their model
        load_deadline = time.monotonic() + execution.model_load_timeout_seconds
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
                loading = self._check_loaded(ray, loading, in_flight, pool, recipe, load_deadline)
            drain()
            for ref in (ref for ref in finished if ref in in_flight):
                job = in_flight.pop(ref)
                try:
                    result = ray.get(ref, timeout=HELPER_TIMEOUT_SECONDS)  # finished: at hand
                except Exception as exc:  # the task failed every attempt
                    callbacks.on_failed(job, f"{type(exc).__name__}: {exc}".splitlines()[0])
                    continue
                if isinstance(result, OSError):  # the disk is full
                    for task_ref in in_flight:
                        ray.cancel(task_ref, force=True)
                    raise result
        drain()

    @staticmethod
    def _check_loaded(ray, loading: list, in_flight: dict, pool: ModelPool, recipe: Recipe, deadline: float) -> list:
        """The actors still loading. A failed load, or none loaded by the deadline, cancels every shard task and
        stops the run; past the deadline with some loaded, the run carries on with those."""

        def stop(error: BaseException):
            for task_ref in in_flight:
                ray.cancel(task_ref, force=True)
            raise error

        loaded, loading = ray.wait(loading, num_returns=len(loading), timeout=0)
        for ref in loaded:
            try:
                backend_info(ref)
            except BackendSetupError as exc:
                stop(exc)
            except ray.exceptions.RayActorError as exc:  # its process died while loading: Ray restarts it
                logger.warning("a model actor died while loading its model (%s); Ray restarts it", _last_line(exc))
        if loading and time.monotonic() > deadline:
            config, total = recipe.model_stage, len(pool.loaded)
            seconds = recipe.execution.model_load_timeout_seconds
            if len(loading) == total:
                accelerator = f" ({config.accelerator_type})" if config.accelerator_type else ""
                stop(
                    BackendSetupError(
                        f"none of the {total} model actor(s) loaded its model within {seconds:g} s "
                        f"(execution.model_load_timeout_seconds): are {config.num_gpus:g} GPU(s){accelerator} free "
                        "for each (`ray status`)? does its runtime_env start (a py_executable that does not exist "
                        "keeps its worker from ever starting; runtime_env config.setup_timeout_seconds bounds "
                        "pip/uv installs)?"
                    )
                )
            logger.warning(
                "%d of %d model actors did not load within %g s; carrying on with the others",
                len(loading),
                total,
                seconds,
            )
            return []
        return loading

    @staticmethod
    def _default_tasks_in_flight(ray, recipe: Recipe, pool: ModelPool | None) -> int:
        """With GPU actors: enough requests to keep every slot busy with a short queue (2x), and no more,
        so shards finish one after another instead of all at the end. Without: 2 tasks per CPU."""
        execution = recipe.execution
        if pool:
            slots = len(pool.actors) * recipe.model_stage.concurrency
            per_task = execution.items_in_flight * execution.row_requests_in_flight  # at most: rows may send fewer
            return math.ceil(2 * slots / per_task) + 1  # +1: covers another task's drain
        cluster_cpus = ray.cluster_resources().get("CPU", os.cpu_count() or 1)
        return max(1, int(2 * cluster_cpus / execution.cpus_per_task))

    def _model_pool(self, ray, recipe: Recipe) -> ModelPool:
        """Actors sized to the cluster's GPUs (of the stage's accelerator type, if it names one); fails at once
        when the cluster has none to give."""
        stage = kind_named(recipe.kind).model_stage
        config = recipe.model_stage
        nodes = ray.nodes()
        fit, gpus = pool_capacity(nodes, config.num_gpus, config.accelerator_type)
        count = config.actors or fit
        if count < 1 or count > fit:
            kind = ""
            if config.accelerator_type:
                present = ", ".join(accelerator_types(nodes)) or "none"
                kind = f" of accelerator type {config.accelerator_type} (types present: {present})"
            raise ValueError(
                f"{stage}.num_gpus={config.num_gpus} with {config.actors or 'auto'} actor(s) needs GPUs, and this Ray "
                f"cluster has {gpus:g}{kind}, room for {fit} actor(s); join a GPU cluster with --ray-address, or run "
                "the embedded backend (--set profile=embedded)"
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
        execution = recipe.execution
        actor_class = ray.remote(ModelActor)
        run = uuid.uuid4().hex[:8]
        names = [f"koe-model-{run}-{index}" for index in range(count)]
        actors = [
            actor_class.options(**options, max_task_retries=execution.model_call_retries, name=name).remote(
                stage, config.backend, config.options
            )
            for name in names
        ]
        warden_class = ray.remote(ModelWarden).options(num_cpus=0, max_restarts=-1, max_task_retries=-1)
        warden = warden_class.remote(names, execution.model_load_timeout_seconds)
        self.pool_gpus = count * config.num_gpus
        return ModelPool(
            actors,
            [actor.info.remote() for actor in actors],
            warden,
            execution.model_call_timeout_seconds,
            execution.model_load_timeout_seconds,
        )


def make_executor(name: str, ray_address: str | None):
    if name == "inline":
        return InlineExecutor()
    if name == "ray":
        return RayExecutor(ray_address)
    raise ValueError(f"unknown executor {name!r}: use 'ray' or 'inline'")
