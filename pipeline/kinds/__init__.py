"""Recipe kinds chosen by name in the recipe (`kind`): each owns its chain, see `base.Kind`.

To add a kind, write its module here (a `Kind` subclass, usually a `SpeechKind` with other voiced
roles or hooks), list it in `KINDS`, and give it a recipe and tests; nothing else in koe changes.
"""

from __future__ import annotations

from .base import Kind, RowMaker
from .captions import Captions
from .dpo import DPO
from .duplex import Duplex
from .sft import SFT

KINDS: dict[str, Kind] = {kind.name: kind for kind in (SFT(), DPO(), Duplex(), Captions())}


def kind_named(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown kind {name!r}; known: {', '.join(sorted(KINDS))}") from None


__all__ = ["KINDS", "Kind", "RowMaker", "kind_named"]
