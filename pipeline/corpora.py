"""Ingest: corpus rows through `datasets`, streamed, and per-corpus schema adapters.

JSON Lines are read line by line (the `text` builder) and parsed here, so one malformed line or a
row whose types differ from its neighbours becomes a rejected row instead of an Arrow error that
stops the run. Parquet and Hub datasets go through their own builders. Everything streams: memory
does not grow with the corpus.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .keys import sample_key
from .records import Rejected, SourceItem, Turn

LINE_FORMATS = (".jsonl", ".json", ".ndjson")


class Adapter(Protocol):
    def row_id(self, row: dict[str, Any], row_index: int) -> str: ...

    def turns(self, row: dict[str, Any]) -> list[Turn]: ...


def _text_field(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Rejected(f"{where} is {type(value).__name__}, expected a string")
    return value


def _column(row: dict[str, Any], name: str) -> Any:
    if name not in row or row[name] is None:
        raise Rejected(f"missing column {name!r}")
    return row[name]


class MagpieAdapter:
    """llm-jp/magpie-sft-v1.0: `id`, `conversations` = [{role, content}, ...]."""

    ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}

    def row_id(self, row: dict[str, Any], row_index: int) -> str:
        value = row.get("id")
        return str(value) if value not in (None, "") else f"row{row_index}"

    def turns(self, row: dict[str, Any]) -> list[Turn]:
        conversations = _column(row, "conversations")
        if not isinstance(conversations, list) or not conversations:
            raise Rejected("column 'conversations' is not a non-empty list")
        turns = []
        for number, message in enumerate(conversations, start=1):
            if not isinstance(message, dict):
                raise Rejected(f"turn {number} is {type(message).__name__}, expected a mapping")
            role = message.get("role")
            if role == "system":
                continue
            if role not in self.ROLES:
                raise Rejected(f"turn {number} has unknown role {role!r}")
            turns.append(
                Turn(role=self.ROLES[role], text=_text_field(message.get("content"), f"turn {number} content"))
            )
        if not any(t.role == "user" for t in turns):
            raise Rejected("no user turn")
        return turns


class AutoMultiTurnAdapter:
    """kanhatakeyama/AutoMultiTurnByCalm3-22B: flat `q1`, `a1`, `q2`, `a2`, ... columns."""

    def row_id(self, row: dict[str, Any], row_index: int) -> str:
        value = row.get("id")
        return str(value) if value not in (None, "") else f"row{row_index}"

    def turns(self, row: dict[str, Any]) -> list[Turn]:
        _column(row, "q1")
        turns = []
        number = 1
        while row.get(f"q{number}") not in (None, ""):
            turns.append(Turn(role="user", text=_text_field(row[f"q{number}"], f"column q{number}")))
            answer = row.get(f"a{number}")
            if answer not in (None, ""):
                turns.append(Turn(role="assistant", text=_text_field(answer, f"column a{number}")))
            number += 1
        if not turns:
            raise Rejected("column 'q1' is empty")
        return turns


ADAPTERS: dict[str, Adapter] = {
    "magpie": MagpieAdapter(),
    "automultiturn": AutoMultiTurnAdapter(),
}


def _local_files(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix in LINE_FORMATS + (".parquet",))
    else:
        files = sorted(glob.glob(str(path))) or [str(path)]
    if not files:
        raise FileNotFoundError(f"no .jsonl/.json/.parquet files under {path}")
    return files


def _read_local(path: Path) -> Iterator[dict[str, Any] | Rejected]:
    from datasets import load_dataset

    files = _local_files(path)
    suffixes = {Path(f).suffix for f in files}
    if suffixes <= set(LINE_FORMATS):
        lines = load_dataset("text", data_files=files, split="train", streaming=True)
        for record in lines:
            line = record["text"]
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Rejected(f"line is not valid JSON ({exc.msg})")
                continue
            yield row if isinstance(row, dict) else Rejected(f"line is a JSON {type(row).__name__}, expected an object")
    elif suffixes == {".parquet"}:
        yield from load_dataset("parquet", data_files=files, split="train", streaming=True)
    else:
        raise ValueError(f"{path}: mixed or unsupported file types {sorted(suffixes)}; use .jsonl or .parquet")


def _read_hub(source) -> Iterator[dict[str, Any]]:
    from datasets import load_dataset

    yield from load_dataset(
        source.dataset,
        revision=source.revision,
        split=source.split,
        data_files=source.data_files,
        streaming=True,
    )


def read_rows(source) -> Iterator[dict[str, Any] | Rejected]:
    """The rows of one recipe source in file order; unreadable rows come as `Rejected`."""
    return _read_local(source.local_path) if source.local_path else _read_hub(source)


def iter_items(sources) -> Iterator[SourceItem]:
    """Every input row of every source, in order, with a unique key; duplicates are flagged."""
    first_seen: dict[str, str] = {}
    for source in sources:
        adapter = ADAPTERS[source.adapter]
        for row_index, row in enumerate(read_rows(source)):
            reason = row.reason if isinstance(row, Rejected) else None
            row = {} if reason else row
            row_id = f"row{row_index}" if reason else adapter.row_id(row, row_index)
            key = sample_key(source.name, row_id)
            if key in first_seen:
                reason = f"duplicate id {row_id!r} (first at {first_seen[key]})"
                key = sample_key(source.name, f"{row_id}#duplicate{row_index}")
            first_seen[key] = f"{source.name} row {row_index}"
            yield SourceItem(source.name, row_index, row, key, row_id, reason)


def count_rows(sources) -> int | None:
    """Rows in all sources when cheaply known (for progress ETA), else None."""
    total = 0
    for source in sources:
        if not source.local_path:
            return None
        for file in _local_files(source.local_path):
            if file.endswith(".parquet"):
                import pyarrow.parquet as pq

                total += pq.ParquetFile(file).metadata.num_rows
            else:
                with open(file, "rb") as handle:
                    total += sum(1 for line in handle if line.strip())
    return total
