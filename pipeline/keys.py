"""Sample keys: stable, deterministic, and safe for WebDataset.

WebDataset splits a member name at its first dot, so a key may hold only `[A-Za-z0-9_-]`. A key is
`<source>-<row id>`; a row id that had to be changed to fit (or is too long) gets a short digest of
the original id so that two different ids never map to the same key.
"""

from __future__ import annotations

import hashlib
import re

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
SOURCE_NAME_PATTERN = r"^[A-Za-z0-9_]+$"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_ID_CHARS = 64


def digest(text: str, chars: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def derived_int(*parts: object, size: int = 4) -> int:
    """A stable integer from its parts (seeds, draws): the same everywhere, unlike Python's `hash`."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:size], "big")


def sample_key(source: str, row_id: str) -> str:
    safe = _UNSAFE.sub("_", row_id)
    if safe != row_id or len(safe) > MAX_ID_CHARS or not safe:
        safe = f"{safe[: MAX_ID_CHARS - 11]}_{digest(row_id)}".lstrip("_")
    return f"{source}-{safe}"


def is_valid_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))
