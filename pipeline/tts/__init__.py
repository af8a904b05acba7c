"""TTS backends chosen by name in the recipe (`tts.backend`).

Backends are imported lazily: a recipe that names the embedded backend never imports a GPU stack.
Each backend module exposes `Options` (a pydantic model of its `tts.options`) and `Backend`, and
may set `NEEDS_REFERENCE_AUDIO` and offer `preflight(**options)`. Besides the names below,
`tts.backend` may be any importable module path with that shape (a user's own TTS).
"""

from __future__ import annotations

import json
from functools import lru_cache
from types import ModuleType
from typing import Any

from ..plugins import plugin_module, validated_options
from .base import AligningBackend, EmptyAudio, TTSBackend

BACKENDS = {
    "openjtalk": "pipeline.tts.openjtalk",
    "cosyvoice2": "pipeline.tts.cosyvoice",  # the model folder's yaml decides v2 or v3; the name must agree
    "cosyvoice3": "pipeline.tts.cosyvoice",
    # upstream's Triton / TensorRT-LLM runtime (runtime/triton_trtllm), reached over KServe v2 HTTP
    "cosyvoice2-triton": "pipeline.tts.triton",
    "cosyvoice3-triton": "pipeline.tts.triton",
}


def _module(name: str) -> ModuleType:
    return plugin_module(name, BACKENDS, "TTS backend", "Backend")


def backend_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate `tts.options` against the backend's own schema; returns them with defaults."""
    return validated_options(_module(name), name, options, "backend")


def needs_reference_audio(name: str) -> bool:
    """Voice-cloning backends need each speaker's recording and transcript; the embedded one does not."""
    return bool(getattr(_module(name), "NEEDS_REFERENCE_AUDIO", False))


def reads_kana(name: str) -> bool:
    """Backends whose own text frontend misreads Japanese kanji take katakana (`TEXT_INPUT = "kana"`)."""
    return getattr(_module(name), "TEXT_INPUT", "text") == "kana"


def times_words(name: str) -> bool:
    """Backends that know where each word lies in their audio (`synthesize_aligned`), as OpenJTalk does."""
    return hasattr(_module(name).Backend, "synthesize_aligned")


@lru_cache(maxsize=4)
def _load_cached(name: str, options_json: str) -> TTSBackend:
    backend = _module(name).Backend(**json.loads(options_json))
    if name in BACKENDS and backend.name != name:
        raise ValueError(f"tts.backend is {name!r} but the model loaded is {backend.name!r}")
    return backend


def load_backend(name: str, options: dict[str, Any]) -> TTSBackend:
    """One backend instance per process and configuration: models load once per worker."""
    return _load_cached(name, json.dumps(options, sort_keys=True))


__all__ = [
    "AligningBackend",
    "BACKENDS",
    "EmptyAudio",
    "TTSBackend",
    "backend_options",
    "load_backend",
    "needs_reference_audio",
    "reads_kana",
    "times_words",
]
