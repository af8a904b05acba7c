"""Sample keys: stable, deterministic, unique and bounded, safe for WebDataset and plain tar headers.

WebDataset splits a member name at its first dot, so a key holds only `[A-Za-z0-9_-]`. A key is
`<source>-<row id>` when the id is already safe, short, and does not end like a digest; every
other id (unsafe characters, too long, or shaped like `_<16 hex digits>`) becomes a readable prefix
plus `_` and a digest of the source and the full id. So a kept id never equals a digested one, and
two digested ids differ unless their 64-bit digests collide. A rejected duplicate gets a digest of
the id and its row index, so it cannot take any other row's key whatever the ids are.

Keys are at most `MAX_KEY_CHARS` (90): with `.flac` or `.json` a member name fits the 100
characters of a USTAR name field, so shards need no PAX headers.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_SOURCE_CHARS = 32
SOURCE_NAME_PATTERN = rf"^[A-Za-z0-9_]{{1,{MAX_SOURCE_CHARS}}}$"
MAX_KEY_CHARS = 90
DIGEST_CHARS = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DIGESTED = re.compile(rf"_[0-9a-f]{{{DIGEST_CHARS}}}$")


def digest(text: str, chars: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def files_digest(paths: list[Path]) -> str:
    """sha256 of the files' bytes, in order; cached on their sizes and modification times, so an
    unchanged file is read once per process and an edited one is always noticed."""
    return _files_digest(tuple((Path(p), Path(p).stat().st_mtime_ns, Path(p).stat().st_size) for p in paths))


@lru_cache(maxsize=16)
def _files_digest(files: tuple[tuple[Path, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def derived_int(*parts: object, size: int = 4) -> int:
    """A stable integer from its parts (seeds, draws): the same everywhere, unlike Python's `hash`."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:size], "big")


def sample_key(source: str, row_id: str, duplicate_of_row: int | None = None) -> str:
    """The key of row `row_id` of `source`; `duplicate_of_row`: the row index of a repeated id (rejected)."""
    room = MAX_KEY_CHARS - len(source) - 1
    safe = _UNSAFE.sub("_", row_id)
    if duplicate_of_row is None and safe == row_id and 0 < len(row_id) <= room and not _DIGESTED.search(row_id):
        return f"{source}-{row_id}"
    identity = "\x00".join(
        [source, row_id] + ([] if duplicate_of_row is None else ["duplicate", str(duplicate_of_row)])
    )
    tail = digest(identity, DIGEST_CHARS)
    return f"{source}-{safe[: room - DIGEST_CHARS - 1]}_{tail}"


def is_valid_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))


def sample_seed(recipe_seed: int, key: str, generation: int = 0) -> int:
    """A per-sample seed for sampling backends: fixed by the recipe seed, the key and its generation."""
    return derived_int("seed", recipe_seed, key, *([generation] if generation else []))


def attempt_seed(seed: int, attempt: int) -> int:
    """The first try (a render, a caption) uses the sample's seed; each retry a new one derived from it."""
    if attempt == 0:
        return seed
    return derived_int(seed, attempt)
