"""Models chosen by name in a recipe (TTS backends, captioners): a known name or a module path.

A plugin module exposes `Options` (a pydantic model of its recipe options) and its model class,
and is imported only when a recipe names it, so a recipe that uses one model never imports another
model's stack.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import ValidationError


def plugin_module(name: str, known: dict[str, str], what: str, model_class: str) -> ModuleType:
    """The module for `name`: one of `known`, or any importable module path with `Options` and `model_class`."""
    if name in known:
        return importlib.import_module(known[name])
    if "." in name:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"{what} module {name!r} cannot be imported: {exc}") from None
        if hasattr(module, "Options") and hasattr(module, model_class):
            return module
        raise ValueError(f"{what} module {name!r} lacks Options and {model_class}")
    raise ValueError(f"unknown {what} {name!r}; known: {', '.join(sorted(known))}, or a module path")


def validated_options(module: ModuleType, name: str, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Options checked against the plugin's own schema, with its defaults filled in."""
    try:
        return module.Options.model_validate(options).model_dump()
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise ValueError(f"{name} {what}: {problems}") from None
