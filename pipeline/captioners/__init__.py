"""Captioners chosen by name in the recipe (`captioner.backend`).

As with TTS backends, each module exposes `Options` (a pydantic model of `captioner.options`) and
`Captioner`, and is imported only when named: a recipe that calls a server never imports vLLM.
"""

from __future__ import annotations

import json
from functools import lru_cache
from types import ModuleType
from typing import Any

from ..plugins import plugin_module, validated_options
from .base import CAPTION_SAMPLE_RATE, Caption, Captioner

CAPTIONERS = {
    "openai": "pipeline.captioners.openai",  # any OpenAI-compatible server, e.g. `vllm serve`
    "vllm": "pipeline.captioners.vllm",  # vLLM's async engine in this process (a Ray GPU actor)
}


def _module(name: str) -> ModuleType:
    return plugin_module(name, CAPTIONERS, "captioner", "Captioner")


def captioner_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate `captioner.options` against the backend's own schema; returns them with defaults."""
    return validated_options(_module(name), name, options, "captioner")


@lru_cache(maxsize=2)
def _load_cached(name: str, options_json: str) -> Captioner:
    return _module(name).Captioner(**json.loads(options_json))


def load_captioner(name: str, options: dict[str, Any]) -> Captioner:
    """One captioner per process and configuration: an engine or a client loads once per worker."""
    return _load_cached(name, json.dumps(options, sort_keys=True))


__all__ = ["CAPTIONERS", "CAPTION_SAMPLE_RATE", "Caption", "Captioner", "captioner_options", "load_captioner"]
