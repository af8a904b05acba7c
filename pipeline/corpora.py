"""Ingest: corpus rows through `datasets`, streamed, and per-corpus schema adapters.

JSON Lines are read line by line (the `text` builder) and parsed here, so one malformed line or a
row whose types differ from its neighbours becomes a rejected row instead of an Arrow error that
stops the run. Parquet and Hub datasets go through their own builders. Everything streams: memory
does not grow with the corpus.
"""

from __future__ import annotations

import glob
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .keys import sample_key
from .records import Rejected, SourceItem, Turn

LINE_FORMATS = (".jsonl", ".json", ".ndjson")


class ColumnMapping(BaseModel):
    """Where a corpus keeps its turns. Every seed corpus is one preset; `generic` takes the user's own.

    Exactly one of `messages` (a list of {role, content} mappings), `prompt` (one user turn, with an
    optional `response`) or `numbered_prompt` (flat `q1`, `a1`, `q2`, ... columns) says where turns are.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str | None = Field(default="id", description="column with the row id; rows without one use their index")
    messages: str | None = None
    role_key: str = "role"
    content_key: str = "content"
    prompt: str | None = None
    response: str | None = None
    numbered_prompt: str | None = Field(default=None, description="e.g. 'q{n}', n = 1, 2, ...")
    numbered_response: str | None = Field(default=None, description="e.g. 'a{n}'")
    chosen: str | None = Field(default=None, description="DPO: the preferred reply")
    rejected: str | None = Field(default=None, description="DPO: the dispreferred reply")

    @model_validator(mode="after")
    def _one_turn_layout(self) -> ColumnMapping:
        layouts = [name for name in ("messages", "prompt", "numbered_prompt") if getattr(self, name)]
        if len(layouts) != 1:
            raise ValueError(f"set exactly one of messages, prompt, numbered_prompt (got {layouts or 'none'})")
        if self.numbered_prompt and "{n}" not in self.numbered_prompt:
            raise ValueError("numbered_prompt needs '{n}' where the turn number goes")
        return self


ADAPTERS: dict[str, ColumnMapping | None] = {
    # llm-jp/magpie-sft-v1.0: id, conversations = [{role, content}]
    "magpie": ColumnMapping(messages="conversations"),
    # kanhatakeyama/AutoMultiTurnByCalm3-22B: q1, a1, q2, a2 (no id column)
    "automultiturn": ColumnMapping(numbered_prompt="q{n}", numbered_response="a{n}"),
    # llm-jp/hh-rlhf-12k-ja: conversations = [{from, value}], chosen and rejected final replies
    "hh_rlhf": ColumnMapping(
        messages="conversations", role_key="from", content_key="value", chosen="chosen", rejected="rejected"
    ),
    # cyberagent/chatbot-arena-ja-calm2-7b-chat-experimental: prompt, chosen, rejected (single turn)
    "chatbot_arena": ColumnMapping(prompt="prompt", chosen="chosen", rejected="rejected"),
    # any local JSONL/Parquet: the recipe's `columns` say where things are
    "generic": None,
}

CLIP_ADAPTERS = ("fsd50k",)  # sources of sound clips (recipe kind `captions`), not dialogues

ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
}


def _text_field(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise Rejected(f"{where} is {type(value).__name__}, expected a string")
    return value


def _column(row: dict[str, Any], name: str) -> Any:
    if name not in row or row[name] is None:
        raise Rejected(f"missing column {name!r}")
    return row[name]


def _collapsed(text: str) -> str:
    """The text as two replies are compared: NFKC, runs of whitespace as one space, no edges."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def _reply_problem(text: str, name: str) -> str | None:
    """Why a DPO reply is no reply: empty, or nothing but punctuation and symbols; None when it has words.

    Whitespace and invisible characters (control, format: a zero-width space) count as nothing.
    """
    kinds = {unicodedata.category(c)[0] for c in _collapsed(text)} - {"Z", "C"}
    if not kinds:
        if not text:
            return f"{name} is empty"
        return f"{name} is empty ({'whitespace' if text.isspace() else 'whitespace or invisible characters'} only)"
    if kinds <= {"P", "S"}:
        only = {"P": "punctuation", "S": "symbols"}
        return f"{name} has no words ({' and '.join(only[k] for k in sorted(kinds))} only)"
    return None


def _dpo_replies(chosen: str, rejected: str) -> tuple[str, str]:
    """The two replies of a preference pair as read, or `Rejected` when the pair teaches nothing."""
    for text, name in ((chosen, "chosen"), (rejected, "rejected")):
        if problem := _reply_problem(text, name):
            raise Rejected(problem)
    if _collapsed(chosen) == _collapsed(rejected):
        raise Rejected("chosen and rejected are identical")
    return chosen, rejected


@dataclass
class ParsedRow:
    turns: list[Turn]
    chosen: str | None = None
    rejected: str | None = None


class Adapter:
    """Reads turns (and DPO replies) out of a row as its `ColumnMapping` says; odd rows are rejected."""

    def __init__(self, mapping: ColumnMapping):
        self.mapping = mapping

    def own_id(self, row: dict[str, Any]) -> str | None:
        """The row's id as the corpus gives it; None when it has none (the row is then named by its index)."""
        value = row.get(self.mapping.id) if self.mapping.id else None
        return str(value) if value not in (None, "") else None

    def parse(self, row: dict[str, Any]) -> ParsedRow:
        m = self.mapping
        if m.messages:
            turns = self._message_turns(row)
        elif m.prompt:
            turns = [Turn("user", _text_field(_column(row, m.prompt), f"column {m.prompt}"))]
            if m.response and row.get(m.response) not in (None, ""):
                turns.append(Turn("assistant", _text_field(row[m.response], f"column {m.response}")))
        else:
            turns = self._numbered_turns(row)
        if not any(t.role == "user" for t in turns):
            raise Rejected("no user turn")
        parsed = ParsedRow(turns)
        if m.chosen and m.rejected:
            parsed.chosen, parsed.rejected = _dpo_replies(
                _text_field(_column(row, m.chosen), f"column {m.chosen}"),
                _text_field(_column(row, m.rejected), f"column {m.rejected}"),
            )
        return parsed

    def _message_turns(self, row: dict[str, Any]) -> list[Turn]:
        m = self.mapping
        messages = _column(row, m.messages)
        if not isinstance(messages, list) or not messages:
            raise Rejected(f"column {m.messages!r} is not a non-empty list")
        turns = []
        for number, message in enumerate(messages, start=1):
            if not isinstance(message, dict):
                raise Rejected(f"turn {number} is {type(message).__name__}, expected a mapping")
            role = message.get(m.role_key)
            if role == "system":
                continue
            if not isinstance(role, str) or role not in ROLES:
                raise Rejected(f"turn {number} has unknown role {role!r}")
            turns.append(Turn(ROLES[role], _text_field(message.get(m.content_key), f"turn {number} content")))
        return turns

    def _numbered_turns(self, row: dict[str, Any]) -> list[Turn]:
        m = self.mapping
        first = m.numbered_prompt.format(n=1)
        _column(row, first)
        turns = []
        number = 1
        while row.get(prompt := m.numbered_prompt.format(n=number)) not in (None, ""):
            turns.append(Turn("user", _text_field(row[prompt], f"column {prompt}")))
            response = m.numbered_response.format(n=number) if m.numbered_response else None
            if response and row.get(response) not in (None, ""):
                turns.append(Turn("assistant", _text_field(row[response], f"column {response}")))
            number += 1
        if not turns:
            raise Rejected(f"column {first!r} is empty")
        return turns


class ClipAdapter:
    """Sound collections (FSD50K): a row is one clip, its id the clip's file name; nothing to parse."""

    def own_id(self, row: dict[str, Any]) -> str | None:
        return str(row["fname"]) if row.get("fname") else None


def make_adapter(source) -> Adapter | ClipAdapter:
    return ClipAdapter() if source.adapter in CLIP_ADAPTERS else Adapter(source.mapping)


def local_files(path: Path) -> list[str]:
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix in LINE_FORMATS + (".parquet",))
    else:
        files = sorted(glob.glob(str(path))) or [str(path)]
    if not files:
        raise FileNotFoundError(f"no .jsonl/.json/.parquet files under {path}")
    return files


def _read_local(path: Path) -> Iterator[dict[str, Any] | Rejected]:
    from datasets import load_dataset

    files = local_files(path)
    suffixes = {Path(f).suffix for f in files}
    if suffixes <= set(LINE_FORMATS):
        for file in files:
            with open(file, "rb") as handle:
                for number, line in enumerate(handle):  # binary lines end at b"\n" only, as JSON Lines says
                    if number == 0:
                        line = line.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark is no part of the row
                    if line.strip():
                        yield _json_line(line)
    elif suffixes == {".parquet"}:
        yield from load_dataset("parquet", data_files=files, split="train", streaming=True)
    else:
        raise ValueError(f"{path}: mixed or unsupported file types {sorted(suffixes)}; use .jsonl or .parquet")


MAX_JSON_DEPTH = 64  # nesting deeper than any corpus row: a hostile line, rejected before it is parsed


def _json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text, counted in one pass outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed row holds a lone surrogate (`"\\ud800"`): not text, cannot be written."""
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(map(_lone_surrogate, value))
    return False


def _json_line(line: bytes) -> dict[str, Any] | Rejected:
    """One JSON Lines record as a row, or `Rejected` with what is wrong with it."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejected(f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at {exc.start})")
    if _json_depth(text) > MAX_JSON_DEPTH:
        return Rejected(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        row = json.loads(text, strict=False)  # a raw tab or CR inside a string is read as the character it is
    except json.JSONDecodeError as exc:
        return Rejected(f"line is not valid JSON ({exc.msg})")
    if not isinstance(row, dict):
        return Rejected(f"line is a JSON {type(row).__name__}, expected an object")
    if _lone_surrogate(row):
        return Rejected("invalid text (a lone surrogate such as \\ud800)")
    return row


def _read_hub(source) -> Iterator[dict[str, Any]]:
    from datasets import load_dataset

    yield from load_dataset(
        source.dataset,
        revision=source.revision,
        split=source.split,
        data_files=source.data_files,
        streaming=True,
    )


COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def pin_revisions(recipe):
    """The recipe with every Hub source's branch or tag resolved to the commit it points at now.

    Samples then record the exact commit, and a branch that moved between a run and its resume
    changes the recipe's fingerprint instead of silently mixing two versions of a corpus.
    """
    sources = []
    for source in recipe.sources:
        if source.local_path or COMMIT_SHA.match(source.revision or ""):
            sources.append(source)
            continue
        from huggingface_hub import HfApi

        try:
            sha = HfApi().dataset_info(source.dataset, revision=source.revision).sha
        except Exception as exc:
            raise ValueError(
                f"cannot resolve revision {source.revision!r} of {source.dataset} ({type(exc).__name__}: {exc}); "
                "pin a commit sha in the recipe to run from a local cache"
            ) from None
        sources.append(source.model_copy(update={"revision": sha}))
    return recipe.model_copy(update={"sources": sources})


def _read_clips(source) -> Iterator[dict[str, Any] | Rejected]:
    """FSD50K's clips with the license gate applied: a clip that may not be used comes as `Rejected`."""
    from .fsd50k import read_clips

    root = source.local_path
    if root is None:
        from huggingface_hub import snapshot_download

        root = Path(snapshot_download(source.dataset, repo_type="dataset", revision=source.revision))
    for row, reason in read_clips(root):
        yield Rejected(reason, row) if reason else row


def read_rows(source) -> Iterator[dict[str, Any] | Rejected]:
    """The rows of one recipe source in file order; unreadable rows come as `Rejected`."""
    if source.adapter in CLIP_ADAPTERS:
        return _read_clips(source)
    return _read_local(source.local_path) if source.local_path else _read_hub(source)


def iter_items(sources) -> Iterator[SourceItem]:
    """Every input row of every source, in order, with a unique key; duplicates are flagged."""
    first_seen: dict[str, tuple[str, bool]] = {}  # key -> (where, whether that row had its own id)
    for source in sources:
        adapter = make_adapter(source)
        for row_index, row in enumerate(read_rows(source)):
            reason = row.reason if isinstance(row, Rejected) else None
            row = (row.row or {}) if isinstance(row, Rejected) else row
            own_id = adapter.own_id(row)
            row_id = own_id if own_id is not None else f"row{row_index}"
            key = sample_key(source.name, row_id)
            if key in first_seen:
                where, first_had_id = first_seen[key]
                if own_id is not None and first_had_id:  # a real duplicate, not an id equal to an index name
                    reason = reason or f"duplicate id {row_id!r} (first at {where})"
                key = sample_key(source.name, row_id, duplicate_of_row=row_index)
            first_seen[key] = (f"{source.name} row {row_index}", own_id is not None)
            yield SourceItem(source.name, row_index, row, key, row_id, reason)


def count_rows(sources) -> int | None:
    """Rows in all sources when cheaply known (for progress ETA), else None."""
    total = 0
    for source in sources:
        if not source.local_path or source.adapter in CLIP_ADAPTERS:
            return None
        for file in local_files(source.local_path):
            if file.endswith(".parquet"):
                import pyarrow.parquet as pq

                total += pq.ParquetFile(file).metadata.num_rows
            else:
                with open(file, "rb") as handle:
                    total += sum(1 for line in handle if line.strip())
    return total
