"""Shards: deterministic WebDataset tars, written under a temporary name and committed whole.

A shard is the unit of completion (as a datatrove task is): its tar and its manifest part become
visible only when complete, and a `done` record, written last, marks it finished. Tar members
carry fixed metadata so that the same samples always give byte-identical shards.

Shards are read with webdataset but written with the standard library's `tarfile` directly: the
bytes are exactly those of webdataset's `TarWriter` (a test holds them equal), but `TarWriter`
always opens tarfile's stream mode, which moves data in 10 KiB records and cost 40% of the writing
time (bench/shard_writing.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TAR_OWNER = "koe"
TAR_MODE = 0o444
TAR_COPY_BUFFER = 4 << 20  # member bytes move in one piece (tarfile's default is 16 KiB)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Output:
    """Where a run writes: shards for users, `_state/` for resume bookkeeping."""

    root: Path

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def state_dir(self) -> Path:
        return self.root / "_state"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def run_path(self) -> Path:
        return self.root / "run.json"

    def tar_path(self, shard: str) -> Path:
        return self.shards_dir / f"{shard}.tar"

    def part_path(self, shard: str) -> Path:
        return self.state_dir / f"{shard}.manifest.parquet"

    def done_path(self, shard: str) -> Path:
        return self.state_dir / f"{shard}.done.json"

    def shard_tars(self) -> list[Path]:
        """The output's shards, in shard order (none when nothing was written yet)."""
        return sorted(self.shards_dir.glob("*.tar")) if self.shards_dir.is_dir() else []

    def prepare(self) -> None:
        self.shards_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class DoneRecord:
    shard: str
    first_key: str | None
    rows: int
    samples: int
    tar_bytes: int
    tar_sha256: str
    part_sha256: str  # the shard's manifest part: a damaged one is caught like a damaged tar
    recipe_fingerprint: str
    stage_seconds: dict[str, float] = field(default_factory=dict)  # the job's time per stage (pipeline/timing.py)

    @classmethod
    def read(cls, path: Path) -> DoneRecord:
        """The record in `path`; `ValueError` naming the file when it is empty, not JSON or not a record."""
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"{path}: unreadable completion record ({type(exc).__name__}: {exc})") from None

    def write(self, path: Path) -> None:
        atomic_write_bytes(path, json.dumps(asdict(self), indent=1).encode())


RUN_STATES = ("running", "complete", "incomplete")


@dataclass(frozen=True)
class RunRecord:
    """`run.json`: what made an output and how its last run ended ("running" until it ends).

    A finished run also records koe's version, the whole recipe as validated, its summary and the
    shards whose task failed; a running one only the recipe's fingerprint.
    """

    recipe_fingerprint: str
    state: str
    koe_version: str | None = None
    recipe: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    shards_failed: list[str] | None = None

    def __post_init__(self):
        if self.state not in RUN_STATES:
            raise ValueError(f"state {self.state!r} is none of {', '.join(RUN_STATES)}")
        if self.state != "running" and (self.recipe is None or self.koe_version is None):
            raise ValueError(f"a {self.state} run record lacks its recipe or koe version")

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        """The record in `path`; FileNotFoundError when there is none, a ValueError naming the file when it is
        not JSON or not a run record (a missing field, an unknown one, a state koe does not write)."""
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            return cls(**data)
        except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ValueError(f"{path}: unreadable run record ({type(exc).__name__}: {exc})") from None

    def write(self, path: Path) -> None:
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        atomic_write_bytes(path, json.dumps(fields, indent=1, ensure_ascii=False).encode())


def shard_name(recipe_name: str, index: int) -> str:
    return f"{recipe_name}-{index:06d}"


class _HashingFile:
    """The partial tar, hashed as it is written: committing needs no second read of the shard."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self.size

    def close(self, sync: bool) -> None:
        if sync:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._file.close()


class ShardWriter:
    """Writes samples into `<shard>.tar` via a hidden partial file; `commit` makes it visible."""

    def __init__(self, output: Output, shard: str):
        self.final = output.tar_path(shard)
        self.partial = self.final.with_name(f".{self.final.name}.partial")
        self._file = _HashingFile(self.partial)
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT, copybufsize=TAR_COPY_BUFFER)
        self.samples = 0

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Members `<key>.<extension>` in extension order, as webdataset's `TarWriter` names and orders them."""
        for extension in sorted(members):
            data = members[extension]
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mtime, info.mode = len(data), 0, TAR_MODE
            info.uname = info.gname = TAR_OWNER
            self._tar.addfile(info, io.BytesIO(data))
        self.samples += 1

    def commit(self) -> tuple[int, str]:
        """Finish the tar, fsync and rename it into place; returns its size and sha256."""
        self._tar.close()  # writes the end of the archive; a file object it was given stays ours to close
        self._file.close(sync=True)
        os.replace(self.partial, self.final)
        return self._file.size, self._file.sha256.hexdigest()

    def abort(self) -> None:
        try:
            self._tar.close()
        finally:
            self._file.close(sync=False)
            self.partial.unlink(missing_ok=True)


def read_tar_samples(path: Path) -> Any:
    """Samples of one shard as WebDataset groups them: dicts of `__key__` and member bytes."""
    import webdataset as wds  # here, not at the top: it imports torch (1.3 s), which shard workers need not pay

    return wds.WebDataset(str(path), shardshuffle=False, empty_check=False)


@dataclass(frozen=True)
class StoredSample:
    """One sample of an output as read back: its shard, key and parsed JSON, and its FLAC on demand."""

    shard: str
    key: str
    document: dict[str, Any]
    read_flac: Callable[[], bytes]  # b"" in JSON-only mode, and for a sample without audio


def _no_audio() -> bytes:
    return b""


def _tar_samples(tar: Path, with_audio: bool) -> Iterator[tuple[str, bytes, Callable[[], bytes]]]:
    """(key, JSON bytes, FLAC reader) of one shard, in shard order; tarfile seeks over audio not asked for."""
    with tarfile.open(tar, mode="r:") as archive:
        if not with_audio:  # streaming: one pass over the headers, JSON members read as they come
            for member in archive:
                key, _, extension = member.name.partition(".")
                if extension == "json":
                    yield key, archive.extractfile(member).read(), _no_audio
            return
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        for member in archive.getmembers():  # headers only
            key, _, extension = member.name.partition(".")
            samples.setdefault(key, {})[extension] = member
        for key, members in samples.items():
            if "json" in members:
                flac = members.get("flac")
                read = (lambda flac=flac: archive.extractfile(flac).read()) if flac else _no_audio
                yield key, archive.extractfile(members["json"]).read(), read


def output_samples(directory: Path, with_audio: bool = False, errors: str = "raise") -> Iterator[StoredSample]:
    """Every sample of an output, shard by shard in order: the one reader of koe's own tools (stats, the
    report, `koe qc`, the exporters). JSON-only by default; `with_audio` adds `read_flac`, which reads the
    audio when called, while the iteration is under way. `errors`: a JSON that does not parse raises a
    ValueError naming its shard and key ("raise"), or the sample is passed over ("skip")."""
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be raise or skip, got {errors!r}")
    for tar in Output(Path(directory)).shard_tars():
        for key, raw, read_flac in _tar_samples(tar, with_audio):
            try:
                document = json.loads(raw)
            except ValueError as exc:
                if errors == "skip":
                    continue
                raise ValueError(f"{tar.name}: {key}.json does not parse: {exc}") from None
            yield StoredSample(tar.stem, key, document, read_flac)
