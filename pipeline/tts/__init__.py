"""TTS backends chosen by name in the recipe (`tts.backend`).

Backends are imported lazily: a recipe that names the embedded backend never imports a GPU stack.
Each backend module exposes `Options` (a pydantic model of its `tts.options`) and `Backend`.
"""

from __future__ import annotations

import importlib
import json
from functools import lru_cache
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from .base import TTSBackend

BACKENDS = {
    "openjtalk": "pipeline.tts.openjtalk",
}


def _module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ValueError(f"unknown TTS backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    return importlib.import_module(BACKENDS[name])


def backend_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate `tts.options` against the backend's own schema; returns them with defaults."""
    try:
        return _module(name).Options.model_validate(options).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise ValueError(f"{name} backend: {problems}") from None


@lru_cache(maxsize=4)
def _load_cached(name: str, options_json: str) -> TTSBackend:
    return _module(name).Backend(**json.loads(options_json))


def load_backend(name: str, options: dict[str, Any]) -> TTSBackend:
    """One backend instance per process and configuration: models load once per worker."""
    return _load_cached(name, json.dumps(options, sort_keys=True))


__all__ = ["BACKENDS", "TTSBackend", "backend_options", "load_backend"]
