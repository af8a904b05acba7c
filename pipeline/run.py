"""`koe run`: plan shard jobs from the corpus stream, skip finished ones, execute, reconcile.

Input rows are numbered in corpus order and cut into shards of `output.rows_per_shard` rows, so a
row's shard is known before anything is rendered: that is what makes resume and byte-identical
reruns possible.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from tqdm import tqdm

from .corpora import count_rows, iter_items, pin_revisions
from .executors import Callbacks
from .job import ShardJob, manifest_row
from .manifest import assemble, reason_counts, status_counts, write_part
from .recipe import Recipe
from .records import ManifestRow
from .shards import DoneRecord, Output, atomic_write_bytes, shard_name
from .speakers import check_bank, load_bank
from .tts import load_backend, needs_reference_audio


class OutputConflict(RuntimeError):
    """The output folder holds a run of a different recipe."""


@dataclass
class RunSummary:
    inputs: int = 0
    statuses: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)
    audio_hours: float = 0.0
    shards: int = 0
    shards_skipped: int = 0
    shards_failed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "written": self.statuses.get("written", 0),
            "rejected": self.statuses.get("rejected", 0),
            "failed": self.statuses.get("failed", 0),
            "audio_hours": round(self.audio_hours, 6),
            "shards": self.shards,
            "rejects_by_reason": dict(sorted(self.rejects.items())),
        }


def plan_jobs(recipe: Recipe, limit: int | None) -> Iterator[ShardJob]:
    """Shard jobs in order, built lazily from the streamed corpus."""
    items = iter_items(recipe.sources)
    if limit is not None:
        items = itertools.islice(items, limit)
    for index in itertools.count():
        chunk = tuple(itertools.islice(items, recipe.output.rows_per_shard))
        if not chunk:
            return
        yield ShardJob(index=index, name=shard_name(recipe.name, index), items=chunk)


def is_complete(output: Output, job: ShardJob, fingerprint: str) -> bool:
    """A shard counts as done only if its record matches this plan and its tar is intact."""
    done = output.done_path(job.name)
    if not (done.is_file() and output.tar_path(job.name).is_file() and output.part_path(job.name).is_file()):
        return False
    record = DoneRecord.read(done)
    return (
        record.recipe_fingerprint == fingerprint
        and record.rows == len(job.items)
        and record.first_key == job.items[0].key
        and record.tar_bytes == output.tar_path(job.name).stat().st_size
    )


def _check_recipe(output: Output, recipe: Recipe, force: bool) -> None:
    if not output.run_path.is_file() or force:
        return
    previous = json.loads(output.run_path.read_text()).get("recipe_fingerprint")
    if previous != recipe.fingerprint():
        raise OutputConflict(
            f"{output.root} holds output of a different recipe (fingerprint {previous}, now {recipe.fingerprint()}); "
            "use another --output, or --force to redo every shard with the new recipe"
        )


def _remove_stale_shards(output: Output, planned: set[str]) -> None:
    """Shards of an earlier, larger plan (e.g. a bigger --limit) no longer belong to the output."""
    for tar in output.shards_dir.glob("*.tar"):
        shard = tar.stem
        if shard not in planned:
            for path in (tar, output.part_path(shard), output.done_path(shard)):
                path.unlink(missing_ok=True)


def preflight_checks(recipe: Recipe, in_process: bool) -> None:
    """Everything that can fail early fails here, before a row is read.

    A backend that runs in this process is loaded here once (it is cached per process); GPU actors
    check theirs when they start, before any shard task is sent (see executors).
    """
    bank = load_bank(recipe.speakers.bank)
    problems = check_bank(bank, needs_reference_audio(recipe.tts.backend))
    if problems:
        listing = "\n".join(f"  - {sid}: {'; '.join(p)}" for sid, p in problems.items())
        raise ValueError(
            f"{recipe.speakers.bank}: speaker bank not usable with backend {recipe.tts.backend!r}:\n{listing}\n"
            "see speakers/README.md"
        )
    if in_process or recipe.tts.num_gpus == 0:
        load_backend(recipe.tts.backend, recipe.tts.options)


def run_recipe(
    recipe: Recipe,
    output_dir: Path,
    executor,
    limit: int | None = None,
    force: bool = False,
    show_progress: bool = True,
) -> RunSummary:
    output = Output(Path(output_dir))
    preflight_checks(recipe, in_process=executor.name == "inline")
    recipe = pin_revisions(recipe)
    _check_recipe(output, recipe, force)
    output.prepare()
    fingerprint = recipe.fingerprint()
    total = count_rows(recipe.sources)
    if total is not None and limit is not None:
        total = min(total, limit)
    summary = RunSummary()
    bar = tqdm(total=total, unit="row", disable=not show_progress, dynamic_ncols=True, desc=recipe.name)

    def on_row(row: ManifestRow) -> None:
        bar.update(1)
        summary.audio_hours += (row.duration or 0.0) / 3600
        bar.set_postfix_str(f"{summary.audio_hours:.3f} h audio", refresh=False)

    def on_failed(job: ShardJob, error: str) -> None:
        summary.shards_failed.append(job.name)
        rows = [manifest_row(item, job.name, "failed", error=f"shard task failed: {error}") for item in job.items]
        write_part(rows, output.part_path(job.name))
        bar.update(len(rows))

    planned: list[str] = []

    def pending_jobs() -> Iterator[ShardJob]:
        for job in plan_jobs(recipe, limit):
            planned.append(job.name)
            if not force and is_complete(output, job, fingerprint):
                summary.shards_skipped += 1
                bar.update(len(job.items))
                continue
            output.done_path(job.name).unlink(missing_ok=True)
            yield job

    atomic_write_bytes(
        output.run_path,
        json.dumps({"recipe_fingerprint": fingerprint, "state": "running"}, indent=1).encode(),
    )
    try:
        executor.run(pending_jobs(), recipe, output, Callbacks(on_row, on_failed))
    finally:
        bar.close()
    _remove_stale_shards(output, set(planned))
    table = assemble([output.part_path(name) for name in planned], output.manifest_path)
    summary.inputs = table.num_rows
    summary.statuses = status_counts(table)
    summary.rejects = reason_counts(table)
    summary.audio_hours = sum(d or 0.0 for d in table.column("duration").to_pylist()) / 3600
    summary.shards = len(planned)
    _write_run_record(output, recipe, summary)
    return summary


def _write_run_record(output: Output, recipe: Recipe, summary: RunSummary) -> None:
    record = {
        "recipe_fingerprint": recipe.fingerprint(),
        "state": "complete" if not summary.shards_failed else "incomplete",
        "koe_version": version("koe"),
        "recipe": recipe.model_dump(mode="json"),
        "summary": summary.to_dict(),
        "shards_failed": summary.shards_failed,
    }
    atomic_write_bytes(output.run_path, json.dumps(record, indent=1, ensure_ascii=False).encode())
