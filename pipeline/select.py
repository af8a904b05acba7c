"""Subset selection on an output's manifest: which rows to regenerate.

Filters combine with AND; each takes the rows it names. `--where` is a pandas query over the
manifest's columns (e.g. `status != 'written'`, `duration > 60 and source == 'magpie'`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa


@dataclass(frozen=True)
class Selection:
    ids: tuple[str, ...] = ()  # row ids or sample keys
    ids_file: Path | None = None  # one id or key per line
    sources: tuple[str, ...] = ()
    speakers: tuple[str, ...] = ()  # rows voiced by any of them
    shards: tuple[str, ...] = ()
    where: str | None = None
    limit: int | None = None  # at most this many of the selected rows, in input order

    def is_empty(self) -> bool:
        return not (self.ids or self.ids_file or self.sources or self.speakers or self.shards or self.where)

    def all_ids(self) -> set[str]:
        ids = set(self.ids)
        if self.ids_file:
            try:
                lines = self.ids_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"--ids-file {self.ids_file}: cannot be read ({type(exc).__name__}: {exc})") from None
            ids |= {line.strip() for line in lines if line.strip()}
        return ids


def select_keys(table: pa.Table, selection: Selection) -> list[str]:
    """Keys of the manifest rows the selection takes, in input order."""
    frame = table.to_pandas()
    mask = frame["key"].notna()
    ids = selection.all_ids()
    if ids:
        mask &= frame["key"].isin(ids) | frame["row_id"].isin(ids)
    if selection.sources:
        mask &= frame["source"].isin(selection.sources)
    if selection.speakers:
        wanted = set(selection.speakers)
        mask &= frame["speakers"].fillna("").map(lambda voices: bool(wanted & set(voices.split(","))))
    if selection.shards:
        mask &= frame["shard"].isin(selection.shards)
    if selection.where:
        try:
            matched = frame.query(selection.where, engine="python")
        except Exception as exc:
            raise ValueError(f"--where {selection.where!r}: {exc} (columns: {', '.join(frame.columns)})") from None
        mask &= frame.index.isin(matched.index)
    keys = frame.loc[mask, "key"].tolist()
    return keys[: selection.limit] if selection.limit is not None else keys
