"""The manifest: one Parquet row per input item, whatever became of it.

Each shard writes its part; the run's `manifest.parquet` is the parts in shard order. The
invariant users rely on: inputs == written + rejected + failed.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .records import ManifestRow
from .shards import atomic_write_bytes

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("row_index", pa.int64()),
        ("row_id", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("shard", pa.string()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("duration", pa.float64()),
        ("speakers", pa.string()),
        ("flac_sha256", pa.string()),
        ("json_sha256", pa.string()),
        ("generation", pa.int64()),
        ("render_seconds", pa.float64()),
        ("qc_dnsmos", pa.float64()),
        ("qc_speaker_similarity", pa.float64()),
        ("qc_longest_pause", pa.float64()),
        ("qc_morae_per_second", pa.float64()),
        ("qc_rms_dbfs", pa.float64()),
    ]
)


def _write_table(table: pa.Table, path: Path) -> str:
    """Writes `table` to `path` whole; returns the file's sha256, which a completion record keeps."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def write_part(rows: list[ManifestRow], path: Path) -> str:
    return _write_table(pa.Table.from_pylist([r.to_dict() for r in rows], schema=SCHEMA), path)


def assemble(parts: list[Path], path: Path) -> pa.Table:
    """Concatenate the shard parts, in the order given, into the run's manifest."""
    tables = [pq.read_table(p, schema=SCHEMA) for p in parts]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    _write_table(table, path)
    return table


def read_manifest(path: Path) -> pa.Table:
    return pq.read_table(path, schema=SCHEMA)


def status_counts(table: pa.Table) -> Counter:
    return Counter(table.column("status").to_pylist())


_ROW_DETAIL = [
    (re.compile(r" \(.*\)$"), ""),
    (re.compile(r"(?<=turn )\d+"), "N"),
    (re.compile(r"^duplicate id .*"), "duplicate id"),
]


def reason_counts(table: pa.Table) -> Counter:
    """Reject reasons grouped without their row-specific detail (turn numbers, ids, sizes)."""
    statuses = table.column("status").to_pylist()
    reasons = table.column("reason").to_pylist()
    counts: Counter = Counter()
    for reason, status in zip(reasons, statuses, strict=True):
        if status == "rejected":
            for pattern, replacement in _ROW_DETAIL:
                reason = pattern.sub(replacement, reason)
            counts[reason] += 1
    return counts


def measured_rtf(rows: list[dict]) -> float | None:
    """Render seconds per audio second over the written rows (None when nothing was written)."""
    written = [r for r in rows if r["status"] == "written" and r["duration"]]
    audio = sum(r["duration"] for r in written)
    return sum(r["render_seconds"] or 0.0 for r in written) / audio if audio else None
