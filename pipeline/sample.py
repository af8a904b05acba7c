"""The sample contract: every sample is exactly `<key>.flac` + `<key>.json`.

Every kind's JSON opens with the same records of where the sample came from and what its audio
is (built here); the rest is the kind's own (`pipeline/kinds/`), and `koe validate` checks each
kind's required fields. Bump `SCHEMA_VERSION` on any change users would notice.
"""

from __future__ import annotations

from typing import Any

from .recipe import Recipe, SourceConfig
from .records import SCHEMA_VERSION

MEMBERS = ("flac", "json")


def document_head(key: str, kind: str, recipe: Recipe, source_name: str, row_id: str, row_index: int) -> dict:
    """The fields every sample's JSON opens with, in this order: what made it and the row it was made from."""
    source = next(s for s in recipe.sources if s.name == source_name)
    return {
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "kind": kind,
        "recipe": recipe.name,
        "source": source_record(source, row_id, row_index),
    }


def source_record(source: SourceConfig, row_id: str, row_index: int) -> dict[str, Any]:
    return {
        "name": source.name,
        "dataset": source.dataset,
        "revision": "" if source.local_path else source.revision,  # a commit sha for Hub sources
        "split": source.split,
        "row_id": row_id,
        "row_index": row_index,
        "license": source.license,
    }


def audio_record(shape: tuple[int, ...], rate: int) -> dict[str, Any]:
    return {
        "sample_rate": rate,
        "channels": shape[1] if len(shape) > 1 else 1,
        "num_samples": shape[0],
        "duration": round(shape[0] / rate, 6),
    }
