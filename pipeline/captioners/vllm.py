"""Qwen3-Omni-30B-A3B-Captioner in vLLM's offline engine, one engine per GPU actor.

The captioner takes audio only (no text prompt, no system message): the prompt is the model's own
chat template applied to one user turn holding one audio item, built once. Each clip goes to
`LLM.generate` as multimodal data with its sample rate. Requests from many shard tasks meet in
the actor (its Ray `max_concurrency`); a batcher thread gathers up to `batch_size` of them, or
what has arrived within `batch_wait_ms`, into one `generate` call, so the engine sees batches
instead of one clip at a time. The model loads from a local folder (shared storage); nothing is
downloaded at run time.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..tts.base import BackendSetupError
from .base import CAPTION_SAMPLE_RATE, Caption

INSTALL_HINT = (
    "run the captioner's actors in cluster/runtime_envs/vllm.yaml (captioner.runtime_env), "
    "or `pip install 'vllm[audio]'` where it runs"
)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str = Field(description="local folder of Qwen3-Omni-30B-A3B-Captioner (absolute, on the GPU nodes)")
    revision: str = Field(default="", description="the Hub commit the folder holds, recorded in every sample")
    max_model_len: int = Field(default=32768, gt=0)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(default=1, gt=0)
    batch_size: int = Field(default=32, gt=0, description="clips per generate call (and vLLM's max_num_seqs)")
    batch_wait_ms: float = Field(default=50, ge=0, description="how long a batch waits for more clips")
    temperature: float = 0.6  # the model card's sampling defaults
    top_p: float = 0.95
    top_k: int = 20
    max_tokens: int = Field(default=512, gt=0)


def _model_folder(model_dir: str) -> Path:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise BackendSetupError(f"captioner model folder not found on this node: {folder}; stage it first")
    if not (folder / "config.json").is_file():
        raise BackendSetupError(f"{folder} is not a model folder (no config.json)")
    return folder


def load_engine(options: Options) -> tuple[Any, str, Any]:
    """The vLLM engine, the audio-only prompt from the model's chat template, and the sampling parameters."""
    folder = _model_folder(options.model_dir)
    try:
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams
    except ImportError as exc:
        raise BackendSetupError(f"the vllm captioner needs vLLM ({exc}): {INSTALL_HINT}") from None
    processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    messages = [{"role": "user", "content": [{"type": "audio", "audio": "clip"}]}]
    prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    engine = LLM(
        model=str(folder),
        limit_mm_per_prompt={"audio": 1},
        max_model_len=options.max_model_len,
        max_num_seqs=options.batch_size,
        gpu_memory_utilization=options.gpu_memory_utilization,
        tensor_parallel_size=options.tensor_parallel_size,
    )
    sampling = SamplingParams(
        temperature=options.temperature,
        top_p=options.top_p,
        top_k=options.top_k,
        max_tokens=options.max_tokens,
    )
    return engine, prompt, sampling


class Captioner:
    name = "vllm"

    def __init__(self, engine: tuple[Any, str, Any] | None = None, **options: Any):
        """`engine` (engine, prompt, sampling parameters) is for tests, which put a double where vLLM would be."""
        self.options = Options(**options)
        self.engine, self.prompt, self.sampling = engine or load_engine(self.options)
        self._requests: queue.Queue[tuple[np.ndarray, int, Future]] = queue.Queue()
        threading.Thread(target=self._serve, name="caption-batcher", daemon=True).start()

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "model": Path(o.model_dir).name,
            "revision": o.revision,
            "sampling": {"temperature": o.temperature, "top_p": o.top_p, "top_k": o.top_k, "max_tokens": o.max_tokens},
        }

    def caption(self, audio: np.ndarray, seed: int) -> Caption:
        done: Future = Future()
        self._requests.put((audio, seed, done))
        return done.result()

    def _serve(self) -> None:
        wait = self.options.batch_wait_ms / 1000
        while True:
            batch = [self._requests.get()]
            try:
                while len(batch) < self.options.batch_size:
                    batch.append(self._requests.get(timeout=wait))
            except queue.Empty:
                pass
            self._generate(batch)

    def _generate(self, batch: list[tuple[np.ndarray, int, Future]]) -> None:
        """One `generate` call; each clip keeps its own seed, so a batch's make-up does not change a caption."""
        prompts = [
            {"prompt": self.prompt, "multi_modal_data": {"audio": (audio, CAPTION_SAMPLE_RATE)}}
            for audio, _, _ in batch
        ]
        sampling = [self.sampling.clone() for _ in batch]
        for params, (_, seed, _) in zip(sampling, batch, strict=True):
            params.seed = seed
        try:
            outputs = self.engine.generate(prompts, sampling, use_tqdm=False)
        except Exception as exc:  # every clip of a failed batch fails, and is retried by its shard task
            for _, _, done in batch:
                done.set_exception(exc)
            return
        for (_, _, done), output in zip(batch, outputs, strict=True):
            completion = output.outputs[0]
            done.set_result(Caption(completion.text.strip(), completion.finish_reason))
