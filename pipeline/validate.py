"""`koe validate`: re-read every shard as users will and reconcile it with the manifest.

Shards are read with the `webdataset` library itself, every FLAC is decoded, and each sample is
checked against its manifest row (key, shard, duration, checksums) and its own JSON. The manifest
must account for every input: inputs == written + rejected + failed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audio import decode_flac
from .keys import is_valid_key
from .kinds import KINDS
from .manifest import read_manifest
from .records import SCHEMA_VERSION
from .sample import MEMBERS
from .shards import DoneRecord, Output, RunRecord, file_sha256, read_tar_samples

STATUSES = {"written", "rejected", "failed"}


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    audio_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_manifest(table, report: Report) -> dict[str, dict]:
    rows = table.to_pylist()
    written: dict[str, dict] = {}
    keys_seen: set[str] = set()
    for row in rows:
        where = f"manifest row {row['source']}#{row['row_index']}"
        if row["status"] not in STATUSES:
            report.problems.append(f"{where}: unknown status {row['status']!r}")
        if row["key"] in keys_seen:
            report.problems.append(f"{where}: duplicate key {row['key']}")
        keys_seen.add(row["key"])
        if not is_valid_key(row["key"] or ""):
            report.problems.append(f"{where}: key {row['key']!r} has characters outside [A-Za-z0-9_-]")
        if row["status"] == "rejected" and not row["reason"]:
            report.problems.append(f"{where}: rejected without a reason")
        if row["status"] == "failed" and not row["error"]:
            report.problems.append(f"{where}: failed without an error")
        if row["status"] == "written":
            written[row["key"]] = row
    return written


def _check_shard(tar: Path, written: dict[str, dict], found: set[str], report: Report) -> None:
    shard = tar.stem
    try:
        for sample in read_tar_samples(tar):
            key = sample["__key__"]
            where = f"{tar.name}: {key}"
            members = tuple(sorted(k for k in sample if not k.startswith("__")))
            if members != tuple(sorted(MEMBERS)):
                report.problems.append(f"{where}: members {members}, expected {MEMBERS}")
                continue
            if key in found:
                report.problems.append(f"{where}: sample appears more than once")
            found.add(key)
            row = written.get(key)
            if row is None:
                report.problems.append(f"{where}: not in the manifest as written")
                continue
            if row["shard"] != shard:
                report.problems.append(f"{where}: manifest places it in shard {row['shard']}")
            if hashlib.sha256(sample["flac"]).hexdigest() != row["flac_sha256"]:
                report.problems.append(f"{where}: FLAC checksum differs from the manifest")
            if hashlib.sha256(sample["json"]).hexdigest() != row["json_sha256"]:
                report.problems.append(f"{where}: JSON checksum differs from the manifest")
            try:
                audio, rate = decode_flac(sample["flac"])
            except Exception as exc:
                report.problems.append(f"{where}: FLAC does not decode ({exc})")
                continue
            frames, channels = audio.shape
            if abs(frames / rate - (row["duration"] or 0.0)) > 1.0 / rate:
                report.problems.append(f"{where}: {frames / rate:.3f} s of audio, manifest says {row['duration']}")
            try:
                document = json.loads(sample["json"])
            except ValueError as exc:
                report.problems.append(f"{where}: JSON does not parse ({exc})")
                continue
            report.problems.extend(f"{where}: {p}" for p in check_sample_json(document, key, channels, rate, frames))
            report.samples += 1
            report.audio_seconds += frames / rate
    except Exception as exc:  # a truncated or garbled tar
        report.problems.append(f"{tar.name}: unreadable tar ({type(exc).__name__}: {exc})")


def _check_run_record(output: Output, report: Report) -> None:
    """An output is whole only when its run finished: `run.json` says `complete`, else which shards failed."""
    try:
        record = RunRecord.read(output.run_path)
    except FileNotFoundError:
        report.problems.append(f"{output.run_path}: missing (no finished run wrote this output)")
        return
    except ValueError as exc:
        report.problems.append(str(exc))
        return
    if record.state == "running":
        report.problems.append(f"{output.run_path}: the run did not finish (interrupted or still running)")
    elif record.state != "complete":
        failed = ", ".join(record.shards_failed or []) or "unknown"
        report.problems.append(f"{output.run_path}: the run is {record.state}; shards whose task failed: {failed}")


def validate_output(directory: Path) -> Report:
    output = Output(Path(directory))
    report = Report()
    if not output.manifest_path.is_file():
        report.problems.append(f"{output.manifest_path}: missing (was the run finished?)")
        return report
    _check_run_record(output, report)
    table = read_manifest(output.manifest_path)
    written = _check_manifest(table, report)
    shard_names = sorted({row["shard"] for row in written.values()})
    tars = output.shard_tars()
    on_disk = {t.stem for t in tars}
    for extra in sorted(on_disk - set(table.column("shard").to_pylist())):
        report.problems.append(f"{extra}.tar: shard not referenced by the manifest")
    for missing in sorted(set(shard_names) - on_disk):
        report.problems.append(f"{missing}.tar: in the manifest but missing from {output.shards_dir}")
    found: set[str] = set()
    for tar in tars:
        report.shards += 1
        done = output.done_path(tar.stem)
        if done.is_file():
            try:
                record = DoneRecord.read(done)
            except ValueError as exc:
                report.problems.append(str(exc))
            else:
                if file_sha256(tar) != record.tar_sha256:
                    report.problems.append(f"{tar.name}: checksum differs from its completion record")
                part = output.part_path(tar.stem)
                if not part.is_file() or file_sha256(part) != record.part_sha256:
                    report.problems.append(f"{part}: missing or not the manifest part its shard recorded (run again)")
        else:
            report.problems.append(f"{tar.name}: no completion record")
        _check_shard(tar, written, found, report)
    for key in sorted(set(written) - found):
        report.problems.append(f"{key}: written in the manifest but missing from shard {written[key]['shard']}")
    return report


def check_sample_json(document: dict[str, Any], key: str, channels: int, rate: int, frames: int) -> list[str]:
    """Problems in one sample's JSON against its decoded FLAC; empty when it is sound."""
    kind = KINDS.get(document.get("kind"))
    if kind is None:
        return ["json lacks kind" if "kind" not in document else f"json kind {document['kind']!r} is unknown"]
    missing = [f for f in kind.required_fields if f not in document]
    if missing:
        return [f"json lacks {', '.join(missing)}"]
    problems = []
    if document["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version {document['schema_version']} != {SCHEMA_VERSION}")
    if document["key"] != key:
        problems.append(f"json key {document['key']!r} != member key")
    audio = document["audio"]
    if (audio.get("channels"), audio.get("sample_rate"), audio.get("num_samples")) != (channels, rate, frames):
        problems.append(
            f"audio header says {audio.get('channels')}ch/{audio.get('sample_rate')}Hz/"
            f"{audio.get('num_samples')} frames, "
            f"FLAC has {channels}ch/{rate}Hz/{frames} frames"
        )
    duration = frames / rate
    for window in document.get("captions", []):
        if not (0 <= window["start"] < window["end"] <= duration + 1e-6) or not window["text"]:
            problems.append(f"caption window {window['start']}..{window['end']} empty or outside 0..{duration:.3f}s")
    for number, turn in enumerate(document.get("turns", []), start=1):
        if "start" in turn and not (0 <= turn["start"] < turn["end"] <= duration + 1e-6):
            problems.append(f"turn {number} offsets {turn['start']}..{turn['end']} outside 0..{duration:.3f}s")
    if "alignments" in document:
        problems += _alignment_problems(document["alignments"]["words"], duration)
    return problems


def _alignment_problems(words: list[dict], duration: float) -> list[str]:
    """Duplex word timings: each inside the audio, the list in time order (moshi-finetune searches it)."""
    problems = []
    previous = 0.0
    for timed in words:
        word, start, end, role = timed["word"], timed["start"], timed["end"], timed["role"]
        if not (0 <= start <= end <= duration + 1e-6):
            problems.append(f"word {word!r} ({role}) at {start}..{end} outside 0..{duration:.3f}s")
        if start < previous:
            problems.append(f"word {word!r} ({role}) at {start} is out of time order")
        previous = start
    return problems
