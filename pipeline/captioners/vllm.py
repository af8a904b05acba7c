"""Qwen3-Omni-30B-A3B-Captioner in vLLM's async engine, one engine per GPU actor.

The captioner takes audio only (no text prompt, no system message): the prompt is the model's own
chat template applied to one user turn holding one audio item, built once. Every `caption()` call
(many shard tasks meet in the actor, up to its Ray `max_concurrency`) becomes one request of its own
to the engine, with its clip as multimodal data at its sample rate and its own seed. vLLM's
scheduler batches whatever is in flight, up to `max_num_seqs` sequences at a time, and starts the
next request as soon as one finishes (continuous batching): nobody waits for the slowest caption
of a batch, and a clip that vLLM fails raises `CaptionRequestError` for its own caller alone, as
a clip that cannot be made into a request raises for its own. The model loads from a local folder
(shared storage); nothing is downloaded at run time.

Nothing waits forever. A request that has no caption after `request_timeout_seconds` is cancelled
(vLLM then aborts it) and raises `CaptionTimeout` for its caller alone. The engine counts as dead
when vLLM says so (`errored`), when a request times out without any other finishing meanwhile (a
stalled engine), or when the event loop feeding it stops or stops answering. Then every pending
and later call raises `CaptionerDead` (a `BackendSetupError`: it stops a run instead of failing
its rows one by one); inside a Ray actor the process first shuts the engine down
(bounded) and exits, so that Ray, which restarts an actor whose process dies (`max_restarts`),
starts a fresh engine and retries the calls that were in flight on it (`max_task_retries`) rather
than handing rows an error to burn their attempts on.

`batch_invariant` sets `VLLM_BATCH_INVARIANT` before the engine is made. Only with it does vLLM
promise that a request's output does not depend on the batch it ran in (its size, its other
requests): without it, kernels pick their reduction order by batch (on H200, cuBLAS split-K),
so the same clip, seed and model can give another caption in a resumed or regenerated run. It is
on by default because koe promises that a resumed run ends byte-identical to an uninterrupted
one; `batch_invariant: false` gives that up for vLLM's usual kernels (the throughput either way
has not been measured here; vLLM's docs call batch invariance beta). It is recorded in every
sample (`describe()`).

What this calls in vLLM, as read in the vllm 0.33.0 wheel:

- `vllm.AsyncEngineArgs(model=..., limit_mm_per_prompt=..., max_model_len=..., max_num_seqs=...,
  gpu_memory_utilization=..., tensor_parallel_size=...)` (vllm/engine/arg_utils.py) and
  `vllm.AsyncLLMEngine.from_engine_args(args)`; `AsyncLLMEngine` is an alias of
  `vllm.v1.engine.async_llm.AsyncLLM` (vllm/engine/async_llm_engine.py). It is made inside the
  running event loop, so that its output handler starts at once.
- `AsyncLLM.generate(prompt, sampling_params, request_id)`: an async generator of `RequestOutput`
  (`.outputs[0].text`, `.finish_reason`); the prompt is a `TextPrompt` dict with
  `multi_modal_data`, tokenized and processed on the renderer's thread pool. Cancelling the
  generator aborts the request in the engine (`except (asyncio.CancelledError, GeneratorExit)`).
- `AsyncLLM.errored` (the engine core is dead or the output handler stopped) and
  `AsyncLLM.shutdown(timeout)`.
- `SamplingParams(..., output_kind=RequestOutputKind.FINAL_ONLY)`: one output per request, when
  it has finished (vllm/sampling_params.py).
- `VLLM_BATCH_INVARIANT`: `vllm.envs` reads it from `os.environ` when asked (`bool(int(...))`);
  the engine config reads it when it is made and each GPU worker when it starts
  (`init_batch_invariance`, vllm/v1/worker/gpu_worker.py), in processes that inherit this one's
  environment. So it is set here before the engine exists, and checked as vLLM reads it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BackendSetupError
from .base import CAPTION_SAMPLE_RATE, Caption

INSTALL_HINT = (
    "run the captioner's actors in cluster/runtime_envs/vllm.yaml (captioner.runtime_env), "
    "or `pip install 'vllm[audio]'` where it runs"
)
LOOP_GRACE_SECONDS = 30.0  # past a request's own timeout: a loop that has not answered by then is stuck
SHUTDOWN_SECONDS = 30.0  # for the engine to stop (and free its GPU) before the actor's process exits


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str = Field(description="local folder of Qwen3-Omni-30B-A3B-Captioner (absolute, on the GPU nodes)")
    revision: str = Field(default="", description="the Hub commit the folder holds, recorded in every sample")
    max_model_len: int = Field(default=32768, gt=0)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(default=1, gt=0)
    max_num_seqs: int = Field(
        default=256,
        gt=0,
        description="sequences the engine runs at once (vLLM's max_num_seqs); captioner.concurrency should exceed it",
    )
    request_timeout_seconds: float = Field(
        default=600.0, gt=0, description="longest wait for one caption, its time in vLLM's queue included"
    )
    load_timeout_seconds: float = Field(default=3600.0, gt=0, description="longest wait for the engine to load")
    batch_invariant: bool = Field(
        default=True, description="VLLM_BATCH_INVARIANT: a caption does not depend on what else is in flight"
    )
    temperature: float = 0.6  # the model card's sampling defaults
    top_p: float = 0.95
    top_k: int = 20
    max_tokens: int = Field(default=512, gt=0)


class CaptionTimeout(RuntimeError):
    """One request had no caption within `request_timeout_seconds`; it was aborted (the row is retried). Not a
    TimeoutError: that is an OSError, which koe takes for a file or disk at fault."""


class CaptionRequestError(RuntimeError):
    """vLLM failed this one request (its clip could not be processed, ...): the row is retried. It carries the
    error as text, so that it crosses Ray whatever vLLM's exception holds."""


class CaptionerDead(BackendSetupError):
    """The engine, or the event loop feeding it, died: this captioner answers no more calls. A setup error, so
    that a run in this process stops instead of failing every row (in a Ray actor the process exits first)."""


EngineFactory = Callable[[], Any]  # called once, inside the running event loop


def _model_folder(model_dir: str) -> Path:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise BackendSetupError(f"captioner model folder not found on this node: {folder}; stage it first")
    if not (folder / "config.json").is_file():
        raise BackendSetupError(f"{folder} is not a model folder (no config.json)")
    return folder


def engine_arguments(options: Options, folder: Path) -> dict[str, Any]:
    """The keyword arguments of `vllm.AsyncEngineArgs`."""
    return {
        "model": str(folder),
        "limit_mm_per_prompt": {"audio": 1},
        "max_model_len": options.max_model_len,
        "max_num_seqs": options.max_num_seqs,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "tensor_parallel_size": options.tensor_parallel_size,
    }


def set_batch_invariance(enabled: bool) -> None:
    """`VLLM_BATCH_INVARIANT` as the recipe says, whatever the environment held: before vLLM reads it."""
    os.environ["VLLM_BATCH_INVARIANT"] = "1" if enabled else "0"


def load_engine(options: Options) -> tuple[EngineFactory, str, Any]:
    """What makes the async engine, the audio-only prompt (the model's chat template), the sampling parameters."""
    folder = _model_folder(options.model_dir)
    set_batch_invariance(options.batch_invariant)
    try:
        import vllm.envs as vllm_envs
        from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams
        from vllm.sampling_params import RequestOutputKind
    except ImportError as exc:
        raise BackendSetupError(f"the vllm captioner needs vLLM ({exc}): {INSTALL_HINT}") from None
    from transformers import AutoProcessor  # vLLM requires it (vllm 0.33.0: transformers>=5.16.1,<5.21.0)

    if vllm_envs.VLLM_BATCH_INVARIANT != options.batch_invariant:
        raise BackendSetupError(
            f"vLLM reads VLLM_BATCH_INVARIANT as {vllm_envs.VLLM_BATCH_INVARIANT}, and the recipe says "
            f"batch_invariant: {options.batch_invariant}; its environment was read before the captioner set it"
        )
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    messages = [{"role": "user", "content": [{"type": "audio", "audio": "clip"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    arguments = AsyncEngineArgs(**engine_arguments(options, folder))
    sampling = SamplingParams(
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        max_tokens=options.max_tokens,
        output_kind=RequestOutputKind.FINAL_ONLY,
    )
    return (lambda: AsyncLLMEngine.from_engine_args(arguments)), prompt, sampling


def in_ray_actor() -> bool:
    """Whether this process is a Ray actor's (Ray is imported there already; it is not imported here)."""
    ray = sys.modules.get("ray")
    return bool(ray and ray.is_initialized() and ray.get_runtime_context().get_actor_id())


def shutdown_engine(engine: Any, timeout: float = SHUTDOWN_SECONDS) -> None:
    """`engine.shutdown`, given at most `timeout` (plus a little) and never raising."""

    def shutdown() -> None:
        try:
            engine.shutdown(timeout=timeout)
        except Exception as exc:  # the engine is dying anyway; say so and go on
            sys.stderr.write(f"koe: the vLLM engine did not shut down cleanly: {type(exc).__name__}: {exc}\n")

    worker = threading.Thread(target=shutdown, name="caption-engine-shutdown", daemon=True)
    worker.start()
    worker.join(timeout + 5)


def exit_process(engine: Any, reason: str) -> None:
    """The actor's process dies, so that Ray restarts the actor. `os._exit`, not `ray.actor.exit_actor()`:
    Ray restarts an actor that crashes (max_restarts), not one that exits on purpose."""
    shutdown_engine(engine)
    sys.stderr.flush()
    os._exit(1)


class Captioner:
    name = "vllm"

    def __init__(self, engine: tuple[EngineFactory, str, Any] | None = None, **options: Any):
        """`engine` (what makes the engine, the prompt, the sampling parameters) is for tests, which put a
        double where vLLM's async engine would be."""
        self.options = Options(**options)
        make_engine, self.prompt, self.sampling = engine or load_engine(self.options)
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[str, Future] = {}
        self._dead: str | None = None  # why, once the engine or its loop has died
        self._released = threading.Event()  # set once pending calls have been failed after a death
        self._last_finished = time.monotonic()  # when the engine last finished a request (or started)
        self._loop = asyncio.new_event_loop()
        self.engine: Any = None  # made on the loop's thread
        started: Future = Future()
        loop_thread = threading.Thread(target=self._run, args=(make_engine, started), name="caption-loop", daemon=True)
        loop_thread.start()
        try:
            started.result(timeout=self.options.load_timeout_seconds)
        except FutureTimeout:
            if started.done():
                raise
            raise BackendSetupError(
                f"the vLLM engine did not load within {self.options.load_timeout_seconds:g} s (load_timeout_seconds)"
            ) from None

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "model": Path(o.model_dir).name,
            "revision": o.revision,
            "batch_invariant": o.batch_invariant,  # false: a caption may depend on what was in flight with it
            "sampling": {"temperature": o.temperature, "top_p": o.top_p, "top_k": o.top_k, "max_tokens": o.max_tokens},
        }

    def caption(self, audio: np.ndarray, seed: int) -> Caption:
        self._raise_if_dead()
        prompt, params = self._request(audio, seed)  # what goes wrong here is this caller's alone
        done: Future = Future()
        with self._lock:  # registered before a death, or refused after one: a death settles every registered call
            dead = self._dead is not None
            request_id = f"caption-{next(self._ids)}"
            if not dead:
                self._pending[request_id] = done
        if dead:
            self._raise_if_dead()
        try:
            try:
                task = asyncio.run_coroutine_threadsafe(self._generate(request_id, prompt, params, done), self._loop)
            except RuntimeError as exc:  # the loop is closed
                self._die(f"the caption event loop is closed ({exc})")
            else:
                task.add_done_callback(lambda ended: self._settle_unfinished(ended, done))
            limit = self.options.request_timeout_seconds + LOOP_GRACE_SECONDS
            try:
                return done.result(timeout=limit)
            except FutureTimeout:  # (the builtin TimeoutError, which the request's own error may be)
                if done.done():
                    raise
                self._die(f"the caption event loop did not answer a request within {limit:g} s")
                self._raise_if_dead()
                raise
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def _request(self, audio: np.ndarray, seed: int) -> tuple[dict[str, Any], Any]:
        """The engine request for one clip: the prompt with the clip as multimodal data, and its own seed."""
        audio = np.asarray(audio)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"captioner takes non-empty mono audio, got shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise ValueError("captioner audio holds NaN or infinite samples")
        params = self.sampling.clone()
        params.seed = seed
        clip = np.ascontiguousarray(audio, dtype=np.float32)
        return {"prompt": self.prompt, "multi_modal_data": {"audio": (clip, CAPTION_SAMPLE_RATE)}}, params

    # --- on the event loop's thread -------------------------------------------------------------

    def _run(self, make_engine: EngineFactory, started: Future) -> None:
        asyncio.set_event_loop(self._loop)

        async def open_engine() -> Any:
            return make_engine()

        try:
            self.engine = self._loop.run_until_complete(open_engine())
        except BaseException as exc:
            started.set_exception(exc)
            self._loop.close()
            return
        started.set_result(self.engine)
        reason = "it returned"
        try:
            self._loop.run_forever()
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}"
        finally:
            self._die(f"the caption event loop stopped ({reason})")

    async def _generate(self, request_id: str, prompt: dict[str, Any], params: Any, done: Future) -> None:
        submitted = time.monotonic()
        timeout = self.options.request_timeout_seconds
        try:
            final = await asyncio.wait_for(self._final_output(prompt, params, request_id), timeout)
            completion = final.outputs[0]
            outcome: Caption | BaseException = Caption(completion.text.strip(), completion.finish_reason)
            self._last_finished = time.monotonic()
        except TimeoutError:  # wait_for cancelled the request, and vLLM aborted it
            outcome = CaptionTimeout(f"no caption within {timeout:g} s (request_timeout_seconds); request aborted")
            if self._last_finished < submitted:
                self._die(f"the vLLM engine finished no request in {timeout:g} s")
        except asyncio.CancelledError:
            outcome = CaptionerDead(f"request {request_id} was cancelled: {self._dead or 'the event loop is stopping'}")
        except Exception as exc:
            outcome = CaptionRequestError(f"vLLM failed request {request_id}: {type(exc).__name__}: {exc}")
            if getattr(self.engine, "errored", False):
                self._die(f"the vLLM engine died ({type(exc).__name__}: {exc})")
            else:
                self._last_finished = time.monotonic()  # the engine answered, with this request's own error
        if self._dead is not None:
            if in_ray_actor():
                return  # a dying actor keeps its callers until its process exits (see _reap)
            outcome = self._dead_error()
        _settle(done, outcome)

    async def _final_output(self, prompt: dict[str, Any], params: Any, request_id: str) -> Any:
        final = None
        async for output in self.engine.generate(prompt, params, request_id):
            final = output
        if final is None or not final.outputs:
            raise RuntimeError(f"vLLM finished request {request_id} without an output")
        return final

    # --- death ----------------------------------------------------------------------------------

    def _settle_unfinished(self, ended: Future, done: Future) -> None:
        """The request's coroutine ended without settling its caller: cancelled before it ran, or it raised."""
        if done.done() or not (ended.cancelled() or ended.exception() is not None):
            return
        if self._dead is not None and in_ray_actor():
            return  # see _generate
        error = "cancelled" if ended.cancelled() else f"{type(ended.exception()).__name__}: {ended.exception()}"
        _settle(done, CaptionerDead(f"the caption request ended without an answer ({error})"))

    def _die(self, reason: str) -> None:
        """Once: every pending and later call fails (in a Ray actor, the process exits first)."""
        with self._lock:
            if self._dead is not None:
                return
            self._dead = reason
        sys.stderr.write(f"koe: the vllm captioner stops: {reason}\n")
        threading.Thread(target=self._reap, name="caption-engine-reaper", daemon=True).start()

    def _reap(self) -> None:
        try:
            if in_ray_actor():
                exit_process(self.engine, self._dead or "")  # does not return: Ray restarts the actor
        finally:
            with self._lock:
                pending = list(self._pending.values())
            for done in pending:
                _settle(done, self._dead_error())
            self._released.set()
            shutdown_engine(self.engine)

    def _dead_error(self) -> CaptionerDead:
        return CaptionerDead(f"the vllm captioner is dead: {self._dead}")

    def _raise_if_dead(self) -> None:
        if self._dead is None:
            return
        # In a Ray actor the process is exiting: answering with an error would only burn the row's attempts.
        self._released.wait(SHUTDOWN_SECONDS + LOOP_GRACE_SECONDS)
        raise self._dead_error()


def _settle(done: Future, outcome: Any) -> None:
    try:
        if isinstance(outcome, BaseException):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)
    except InvalidStateError:  # settled already (a death got there first)
        pass
