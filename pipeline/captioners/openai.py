"""Captions from any OpenAI-compatible chat server, e.g. vLLM serving Qwen3-Omni-30B-A3B-Captioner.

    vllm serve /models/Qwen3-Omni-30B-A3B-Captioner --limit-mm-per-prompt '{"audio":1}'

Each clip goes out as one user message holding one audio part and nothing else: the captioner takes
no prompt and no system message. The official `openai` client retries 408, 409, 429, 5xx, dropped
connections and timeouts itself, up to `max_retries` times: it waits the server's Retry-After when
that is above 0 and at most 120 s (a longer one is not retried at all), else 0.5 s doubling up to 8 s,
less up to 25 % jitter (openai 3.54). What is left, and any other 4xx, is raised as
`CaptionRequestError` for the caller to retry or fail the row. The key is read from the environment
variable named by `api_key_env`, never from the recipe, and never logged.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import BackendSetupError
from .base import CAPTION_SAMPLE_RATE, Caption

NO_KEY = "EMPTY"  # what vLLM accepts when it was started without --api-key
CONNECT_TIMEOUT_SECONDS = 10.0  # a host that never answers costs this per attempt, not the read timeout


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(description="the server's OpenAI API root, e.g. http://gpu-node:8000/v1")
    model: str = Field(min_length=1, description="the served model name (vllm serve --served-model-name)")
    api_key_env: str = Field(default="OPENAI_API_KEY", min_length=1, description="env var holding the key")
    timeout_seconds: float = Field(default=120.0, gt=0, description="per attempt")
    max_retries: int = Field(default=5, ge=0, description="retries of the openai client after the first attempt")
    max_concurrency: int = Field(default=8, gt=0, description="requests in flight from one backend instance")
    audio_format: Literal["wav"] = "wav"
    content_part: Literal["input_audio", "audio_url"] = "input_audio"
    temperature: float = Field(default=0.6, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=20, ge=-1, description="-1 considers every token (vLLM's convention)")
    max_tokens: int = Field(default=512, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url_without_credentials(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.username or parts.password:
            raise ValueError("must not hold credentials; put the key in the environment variable named by api_key_env")
        return value.rstrip("/")


class CaptionRequestError(RuntimeError):
    """A chat request failed for good (retries spent, a 4xx, or an answer without a caption): the row is retried."""


class Captioner:
    """One OpenAI-compatible chat server behind the `Captioner` interface; safe to share between threads."""

    name = "openai"

    def __init__(self, **options: Any):
        import openai

        self._openai = openai
        self.options = Options.model_validate(options)
        parts = urlsplit(self.options.base_url)
        self.endpoint = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        self._slots = threading.Semaphore(self.options.max_concurrency)
        timeout = self.options.timeout_seconds
        self._client = openai.OpenAI(
            base_url=self.options.base_url,
            api_key=os.environ.get(self.options.api_key_env) or NO_KEY,
            timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            max_retries=self.options.max_retries,
        )
        served = self._served_entry()
        self._revision = str(getattr(served, "revision", None) or "")
        self._root = str(getattr(served, "root", None) or "")

    def _served_entry(self) -> Any:
        """The server's /models entry for our model; fails before any clip is sent when it is down or serves others."""
        base_url, model = self.options.base_url, self.options.model
        try:
            served = self._client.models.list().data
        except self._openai.AuthenticationError as exc:
            raise BackendSetupError(
                f"{base_url} refused the key (HTTP {exc.status_code}): set ${self.options.api_key_env} "
                "to the key the server was started with (vllm serve --api-key)"
            ) from None
        except self._openai.APIError as exc:
            raise BackendSetupError(
                f"no OpenAI-compatible server answers GET {base_url}/models ({type(exc).__name__}: {exc}); "
                f"start one (vllm serve ... --served-model-name {model}) or fix captioner options.base_url"
            ) from None
        entry = next((m for m in served if m.id == model), None)
        if entry is None:
            names = ", ".join(sorted(m.id for m in served)) or "none"
            raise BackendSetupError(
                f"{base_url} does not serve model {model!r}; it serves: {names}. Set captioner options.model to one "
                "of them, or start the server with --served-model-name"
            )
        return entry

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {
            "model": o.model,
            "revision": self._revision,
            "root": self._root,  # what the server says it loaded (vLLM: the model path or Hub id, and no revision)
            "endpoint": self.endpoint,
            "sampling": {
                "temperature": o.temperature,
                "top_p": o.top_p,
                "top_k": o.top_k,
                "max_tokens": o.max_tokens,
            },
        }

    def caption(self, audio: np.ndarray, seed: int) -> Caption:
        o = self.options
        request: dict[str, Any] = {
            "model": o.model,
            "messages": [{"role": "user", "content": [self._audio_part(audio)]}],
            "temperature": o.temperature,
            "top_p": o.top_p,
            "max_tokens": o.max_tokens,
            "seed": seed,  # the caller's: a retry after a bad caption passes another
            "extra_body": {"top_k": o.top_k},  # not an OpenAI field; vLLM reads it from the body
        }
        try:
            with self._slots:
                response = self._client.chat.completions.create(**request)
        except self._openai.APIError as exc:
            raise CaptionRequestError(
                f"chat completion from {self.endpoint} (model {o.model!r}) failed: {type(exc).__name__}: {exc}"
            ) from exc
        if not response.choices:
            raise CaptionRequestError(f"{self.endpoint} (model {o.model!r}) answered without choices")
        choice = response.choices[0]
        return Caption(text=choice.message.content or "", finish_reason=choice.finish_reason)

    def _audio_part(self, audio: np.ndarray) -> dict[str, Any]:
        """The clip as base64 16-bit WAV, in the content part the options name (vLLM accepts both)."""
        if audio.ndim != 1:
            raise ValueError(f"captioner takes mono audio, got shape {audio.shape}")
        buffer = io.BytesIO()
        # samples outside [-1, 1] saturate here instead of depending on libsndfile's float-to-PCM conversion
        sf.write(buffer, np.clip(audio, -1.0, 1.0), CAPTION_SAMPLE_RATE, format="WAV", subtype="PCM_16")
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        if self.options.content_part == "audio_url":
            return {"type": "audio_url", "audio_url": {"url": f"data:audio/{self.options.audio_format};base64,{data}"}}
        return {"type": "input_audio", "input_audio": {"data": data, "format": self.options.audio_format}}
