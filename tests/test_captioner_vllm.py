"""The vllm captioner around vLLM's async engine: a double stands where the engine would be, the rest is real.

Every test that waits on the captioner waits with a timeout, so a hang fails the test instead of stalling it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass, replace

import numpy as np
import pytest

import pipeline.captioners.vllm as vllm_captioner_module
from pipeline.captioners import Caption, captioner_options
from pipeline.captioners.vllm import Captioner as VLLMCaptioner
from pipeline.captioners.vllm import CaptionerDead, CaptionRequestError, CaptionTimeout, Options, engine_arguments
from pipeline.errors import BackendSetupError

PROMPT = "<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\n"
DEFAULT_DEPTH = Options.model_fields["max_num_seqs"].default


@dataclass
class SamplingParamsDouble:
    """Stands in for vllm.SamplingParams (vLLM cannot be installed here): clone() and a seed field."""

    temperature: float = 0.6
    seed: int | None = None

    def clone(self) -> SamplingParamsDouble:
        return replace(self)


@dataclass
class _Completion:
    text: str
    finish_reason: str


@dataclass
class _RequestOutput:
    request_id: str
    outputs: list[_Completion]
    finished: bool = True


class EngineDeadErrorDouble(RuntimeError):
    """Stands in for vllm.v1.engine.exceptions.EngineDeadError."""


class AsyncEngineDouble:
    """Stands in for vllm.AsyncLLMEngine (vllm.v1.engine.async_llm.AsyncLLM in vLLM 0.33.0) as the captioner uses it.

    `generate(prompt, sampling_params, request_id)` is an async generator that yields one output when the request
    has finished (the captioner asks for RequestOutputKind.FINAL_ONLY); a generate that is cancelled aborts its
    request; once the engine core dies `errored` is true and every request raises; `shutdown(timeout)`. Like vLLM's
    scheduler it runs at most `max_num_seqs` requests at once and queues the others, and it records how many were
    in flight and running at most. Clips are told apart by their length in samples: a clip of a length in `slow`
    takes that long, in `failing` fails alone, in `hanging` never finishes, in `dying` kills the engine. With
    `hold_until`, running requests start their work only once that many are in flight (at most 20 s), so that
    a test sees the depth it asks for however slowly its threads start.
    """

    def __init__(
        self,
        max_num_seqs: int = DEFAULT_DEPTH,
        seconds: float = 0.02,
        slow: dict[int, float] | None = None,
        failing: tuple[int, ...] = (),
        hanging: tuple[int, ...] = (),
        dying: tuple[int, ...] = (),
        hold_until: int = 0,
    ):
        self.max_num_seqs = max_num_seqs
        self.hold_until = hold_until
        self.seconds = seconds
        self.slow = slow or {}
        self.failing, self.hanging, self.dying = failing, hanging, dying
        self.errored = False
        self.requests: list[tuple[dict, SamplingParamsDouble, str]] = []
        self.aborted: list[str] = []
        self.finished: list[int] = []  # clip lengths, in the order their captions were done
        self.in_flight = self.max_in_flight = self.running = self.max_running = 0
        self.shutdowns = 0
        self._slots: asyncio.Semaphore | None = None
        self._died: asyncio.Event | None = None
        self._all_in: asyncio.Event | None = None

    async def generate(self, prompt, sampling_params, request_id):
        size = prompt["multi_modal_data"]["audio"][0].size
        self.requests.append((prompt, sampling_params, request_id))
        self._check_alive()
        if self._slots is None:  # made on the engine's loop
            self._slots, self._died, self._all_in = (
                asyncio.Semaphore(self.max_num_seqs),
                asyncio.Event(),
                asyncio.Event(),
            )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.max_in_flight >= self.hold_until:
            self._all_in.set()
        try:
            async with self._slots:
                self.running += 1
                self.max_running = max(self.max_running, self.running)
                try:
                    await self._wait(self._all_in.wait(), 20)
                    await self._wait(
                        self._died.wait(), float("inf") if size in self.hanging else self.slow.get(size, self.seconds)
                    )
                    if size in self.dying:
                        self.errored = True
                        self._died.set()  # every request in flight fails, as vLLM's output handler makes them
                    self._check_alive()
                    if size in self.failing:
                        raise ValueError("the audio processor could not read this clip")
                finally:
                    self.running -= 1
            self.finished.append(size)
            text = f" A sound of {size} samples (seed {sampling_params.seed}). "
            yield _RequestOutput(request_id, [_Completion(text, "stop")])
        except (asyncio.CancelledError, GeneratorExit):
            self.aborted.append(request_id)
            raise
        finally:
            self.in_flight -= 1

    @staticmethod
    async def _wait(event_wait, seconds: float) -> None:
        """Until the event is set or `seconds` have passed, whichever comes first."""
        try:
            await asyncio.wait_for(event_wait, None if seconds == float("inf") else seconds)
        except TimeoutError:
            pass

    def _check_alive(self) -> None:
        if self.errored:
            raise EngineDeadErrorDouble("EngineCore encountered an issue. See stack trace (above) for the root cause.")

    def shutdown(self, timeout: float | None = None) -> None:
        self.shutdowns += 1


def vllm_captioner(tmp_path, engine: AsyncEngineDouble, **options) -> VLLMCaptioner:
    return VLLMCaptioner(engine=(lambda: engine, PROMPT, SamplingParamsDouble()), model_dir=str(tmp_path), **options)


def clip(size: int) -> np.ndarray:
    return np.zeros(size, np.float32)


def ask_all(captioner: VLLMCaptioner, clips: list[tuple[np.ndarray, int]], timeout: float = 20.0) -> list:
    """Each clip from its own thread, as the actor's Ray threads call; a caption or the exception, per clip."""
    answers: list[Future] = [Future() for _ in clips]

    def ask(index: int) -> None:
        try:
            answers[index].set_result(captioner.caption(*clips[index]))
        except BaseException as exc:
            answers[index].set_exception(exc)

    for index in range(len(clips)):
        threading.Thread(target=ask, args=(index,), daemon=True).start()
    _, waiting = wait(answers, timeout=timeout)
    assert not waiting, f"{len(waiting)} caption() call(s) still waiting after {timeout} s"
    return [answer.exception() or answer.result() for answer in answers]


def expected(size: int, seed: int) -> Caption:
    return Caption(f"A sound of {size} samples (seed {seed}).", "stop")


def test_each_clip_is_its_own_request_with_its_own_seed(tmp_path):
    engine = AsyncEngineDouble()
    captioner = vllm_captioner(tmp_path, engine)
    answers = ask_all(captioner, [(clip(1000 + i), 100 + i) for i in range(10)])
    assert answers == [expected(1000 + i, 100 + i) for i in range(10)]
    assert len({request_id for _, _, request_id in engine.requests}) == 10
    for prompt, params, _ in engine.requests:
        audio, rate = prompt["multi_modal_data"]["audio"]
        assert rate == 16000 and audio.dtype == np.float32 and prompt["prompt"] == PROMPT  # audio only, no text
        assert params.seed == 100 + audio.size - 1000
    assert captioner.sampling.seed is None  # the shared parameters are cloned, never changed


def test_requests_in_flight_reach_the_configured_depth(tmp_path):
    callers = DEFAULT_DEPTH + 44  # the recipe keeps captioner.concurrency above the depth
    engine = AsyncEngineDouble(seconds=0.1, hold_until=callers)
    captioner = vllm_captioner(tmp_path, engine)
    answers = ask_all(captioner, [(clip(1000 + i), i) for i in range(callers)], timeout=30)
    assert answers == [expected(1000 + i, i) for i in range(callers)]
    assert engine.max_in_flight == callers  # nothing held back on our side: the engine's scheduler queues
    assert engine.max_running == DEFAULT_DEPTH == engine_arguments(captioner.options, tmp_path)["max_num_seqs"]
    custom = Options(model_dir=str(tmp_path), max_num_seqs=64)
    assert engine_arguments(custom, tmp_path)["max_num_seqs"] == 64
    assert engine_arguments(custom, tmp_path)["limit_mm_per_prompt"] == {"audio": 1}


def test_a_slow_clip_holds_up_no_other(tmp_path):
    engine = AsyncEngineDouble(slow={999: 1.5})
    captioner = vllm_captioner(tmp_path, engine)
    answers = ask_all(captioner, [(clip(999), 1)] + [(clip(1000 + i), i) for i in range(20)])
    assert answers[0] == expected(999, 1) and answers[1:] == [expected(1000 + i, i) for i in range(20)]
    assert engine.finished[-1] == 999  # the others finished while it ran


def test_a_clip_that_vllm_fails_fails_alone(tmp_path):
    engine = AsyncEngineDouble(failing=(1003,))
    captioner = vllm_captioner(tmp_path, engine)
    answers = ask_all(captioner, [(clip(1000 + i), i) for i in range(8)])
    assert isinstance(answers[3], CaptionRequestError) and "could not read this clip" in str(answers[3])
    assert answers[:3] + answers[4:] == [expected(1000 + i, i) for i in range(8) if i != 3]
    assert ask_all(captioner, [(clip(2000), 5)]) == [expected(2000, 5)]  # and the captioner goes on


def test_bad_audio_or_a_failure_building_a_request_fails_only_that_call(tmp_path, monkeypatch):
    engine = AsyncEngineDouble()
    captioner = vllm_captioner(tmp_path, engine)
    build = captioner._request

    def request(audio, seed):
        if audio.size == 1005:
            raise RuntimeError("prompt building broke")
        return build(audio, seed)

    monkeypatch.setattr(captioner, "_request", request)
    nan = clip(1001)
    nan[5] = np.nan
    clips = [(clip(1000), 0), (nan, 1), (np.zeros((2, 500), np.float32), 2), (clip(1005), 3), (clip(1006), 4)]
    answers = ask_all(captioner, clips)
    assert answers[0] == expected(1000, 0) and answers[4] == expected(1006, 4)
    assert isinstance(answers[1], ValueError) and "NaN" in str(answers[1])
    assert isinstance(answers[2], ValueError) and "mono" in str(answers[2])
    assert isinstance(answers[3], RuntimeError) and "prompt building broke" in str(answers[3])
    assert ask_all(captioner, [(clip(1000 + i), i) for i in range(10, 20)]) == [
        expected(1000 + i, i) for i in range(10, 20)
    ]  # no later call hangs


def test_a_request_without_a_caption_in_time_times_out_alone_and_is_aborted(tmp_path):
    engine = AsyncEngineDouble(hanging=(1002,))
    captioner = vllm_captioner(tmp_path, engine, request_timeout_seconds=1.0)
    answers = ask_all(captioner, [(clip(1000 + i), i) for i in range(6)])
    assert isinstance(answers[2], CaptionTimeout) and "request_timeout_seconds" in str(answers[2])
    assert answers[:2] + answers[3:] == [expected(1000 + i, i) for i in range(6) if i != 2]
    hung = next(request_id for prompt, _, request_id in engine.requests if _size(prompt) == 1002)
    assert engine.aborted == [hung]
    assert ask_all(captioner, [(clip(3000), 7)]) == [expected(3000, 7)]


def test_a_stalled_engine_fails_every_pending_and_later_call(tmp_path):
    engine = AsyncEngineDouble(hanging=tuple(range(1000, 1005)))
    captioner = vllm_captioner(tmp_path, engine, request_timeout_seconds=0.3)
    answers = ask_all(captioner, [(clip(1000 + i), i) for i in range(5)])
    assert all(isinstance(a, CaptionerDead) and "finished no request" in str(a) for a in answers)
    started, sent = time.monotonic(), len(engine.requests)
    with pytest.raises(CaptionerDead, match="finished no request"):
        captioner.caption(clip(1000), 9)
    assert time.monotonic() - started < 1 and len(engine.requests) == sent  # refused at once, never sent
    _eventually(lambda: engine.shutdowns == 1)


def test_a_dead_engine_fails_every_pending_and_later_call(tmp_path):
    engine = AsyncEngineDouble(slow={1000 + i: 5.0 for i in range(1, 6)}, dying=(1000,))
    captioner = vllm_captioner(tmp_path, engine)
    started = time.monotonic()
    answers = ask_all(captioner, [(clip(1000 + i), i) for i in range(6)])
    assert time.monotonic() - started < 4  # the slow ones did not run to their end
    assert all(isinstance(a, CaptionerDead) and "EngineDeadErrorDouble" in str(a) for a in answers)
    sent = len(engine.requests)
    with pytest.raises(CaptionerDead, match="the vLLM engine died"):
        captioner.caption(clip(2000), 9)
    assert len(engine.requests) == sent
    _eventually(lambda: engine.shutdowns == 1)


def test_a_dead_event_loop_fails_every_pending_and_later_call(tmp_path):
    engine = AsyncEngineDouble(hanging=(1000, 1001, 1002))
    captioner = vllm_captioner(tmp_path, engine)
    answers: list = []
    asking = threading.Thread(
        target=lambda: answers.extend(ask_all(captioner, [(clip(1000 + i), i) for i in range(3)])), daemon=True
    )
    asking.start()
    _eventually(lambda: engine.running == 3)

    def crash() -> None:
        raise SystemExit("the loop's thread was told to exit")

    captioner._loop.call_soon_threadsafe(crash)
    asking.join(timeout=10)
    assert not asking.is_alive()
    assert len(answers) == 3 and all(isinstance(a, CaptionerDead) and "event loop stopped" in str(a) for a in answers)
    with pytest.raises(CaptionerDead, match="event loop stopped"):
        captioner.caption(clip(2000), 9)


def test_an_event_loop_that_stops_answering_fails_calls_instead_of_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr(vllm_captioner_module, "LOOP_GRACE_SECONDS", 0.3)
    engine = AsyncEngineDouble()
    captioner = vllm_captioner(tmp_path, engine, request_timeout_seconds=0.2)
    captioner._loop.call_soon_threadsafe(time.sleep, 3)  # something blocks the loop's thread
    started = time.monotonic()
    (answer,) = ask_all(captioner, [(clip(1000), 1)], timeout=5)
    assert isinstance(answer, CaptionerDead) and "did not answer a request within 0.5 s" in str(answer)
    assert time.monotonic() - started < 2


def test_in_a_ray_actor_a_dead_engine_exits_the_process_before_a_caller_hears(tmp_path, monkeypatch):
    exiting, exit_may_return = threading.Event(), threading.Event()
    reasons: list[str] = []

    def exit_process(engine, reason):  # stands in for os._exit: it returns only when the test lets it
        reasons.append(reason)
        exiting.set()
        exit_may_return.wait(10)

    monkeypatch.setattr(vllm_captioner_module, "in_ray_actor", lambda: True)
    monkeypatch.setattr(vllm_captioner_module, "exit_process", exit_process)
    engine = AsyncEngineDouble(slow={1001: 5.0, 1002: 5.0}, dying=(1000,))
    captioner = vllm_captioner(tmp_path, engine)
    answers: list = []
    asking = threading.Thread(
        target=lambda: answers.extend(ask_all(captioner, [(clip(1000 + i), i) for i in range(3)])), daemon=True
    )
    asking.start()
    assert exiting.wait(5) and "the vLLM engine died" in reasons[0]
    late: list = []
    calling_late = threading.Thread(target=lambda: late.extend(ask_all(captioner, [(clip(2000), 9)])), daemon=True)
    calling_late.start()
    time.sleep(0.3)
    assert not answers and not late  # no caller is answered while the process is exiting: Ray retries their calls
    exit_may_return.set()  # (os._exit never returns; if it did, every call would fail loudly)
    asking.join(timeout=10)
    calling_late.join(timeout=10)
    assert len(answers) == 3 and all(isinstance(a, CaptionerDead) for a in answers)
    assert len(late) == 1 and isinstance(late[0], CaptionerDead)


def test_an_engine_that_cannot_load_fails_the_captioner(tmp_path):
    def broken():
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        VLLMCaptioner(engine=(broken, PROMPT, SamplingParamsDouble()), model_dir=str(tmp_path))

    def slow():
        time.sleep(2)
        return AsyncEngineDouble()

    with pytest.raises(BackendSetupError, match="did not load within 0.2 s"):
        VLLMCaptioner(engine=(slow, PROMPT, SamplingParamsDouble()), model_dir=str(tmp_path), load_timeout_seconds=0.2)


def test_describe_records_model_revision_batch_invariance_and_sampling(tmp_path, monkeypatch):
    described = vllm_captioner(tmp_path, AsyncEngineDouble(), revision="abc123").describe()
    assert described["model"] == tmp_path.name and described["revision"] == "abc123"
    assert described["batch_invariant"] is True  # the default: a caption does not depend on its batch
    assert described["sampling"] == {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "max_tokens": 512}
    assert vllm_captioner(tmp_path, AsyncEngineDouble(), batch_invariant=False).describe()["batch_invariant"] is False
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "1")  # whatever the environment says, the recipe wins
    vllm_captioner_module.set_batch_invariance(False)
    assert os.environ["VLLM_BATCH_INVARIANT"] == "0"
    vllm_captioner_module.set_batch_invariance(True)
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"


def test_vllm_fails_early_without_its_model_folder_or_vllm(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_BATCH_INVARIANT", "0")  # restored after the test
    with pytest.raises(BackendSetupError, match="captioner model folder not found on this node"):
        VLLMCaptioner(model_dir=str(tmp_path / "missing"))
    with pytest.raises(BackendSetupError, match="no config.json"):
        VLLMCaptioner(model_dir=str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BackendSetupError, match="cluster/runtime_envs/vllm.yaml"):
        VLLMCaptioner(model_dir=str(tmp_path))  # vLLM is not installed here
    assert os.environ["VLLM_BATCH_INVARIANT"] == "1"  # set before vLLM would have been imported


def test_captioner_options_are_checked_when_the_recipe_loads():
    with pytest.raises(ValueError, match="options.max_num_seq: unknown key"):
        captioner_options("vllm", {"model_dir": "/m", "max_num_seq": 3})
    with pytest.raises(ValueError, match="options.batch_size: unknown key"):
        captioner_options("vllm", {"model_dir": "/m", "batch_size": 32})  # batches are vLLM's scheduler's now
    assert captioner_options("vllm", {"model_dir": "/m"})["batch_invariant"] is True


def test_the_recipe_keeps_enough_calls_in_flight_to_fill_the_engine():
    from pipeline.recipe import load_recipe
    from tests.conftest import REPO

    recipe = load_recipe(REPO / "recipes" / "captions_fsd50k.yaml")
    options = captioner_options(recipe.captioner.backend, recipe.captioner.options)
    assert recipe.captioner.backend == "vllm" and options["batch_invariant"] is True
    assert recipe.captioner.concurrency > options["max_num_seqs"]  # Ray's max_concurrency: calls per actor
    assert recipe.captioner.options["request_timeout_seconds"] > 0


def _size(prompt: dict) -> int:
    return prompt["multi_modal_data"]["audio"][0].size


def _eventually(condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.01)
