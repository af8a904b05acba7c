"""`koe run`: plan shard jobs from the corpus stream, skip finished ones, execute, reconcile.

Input rows are numbered in corpus order and cut into shards of `output.rows_per_shard` rows, so a
row's shard is known before anything is rendered: that is what makes resume and byte-identical
reruns possible.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from tqdm import tqdm

from .corpora import count_rows, iter_items, pin_revisions
from .executors import Callbacks
from .job import ShardJob
from .kinds import kind_named
from .manifest import assemble, measured_rtf, read_manifest, reason_counts, status_counts, write_part
from .recipe import Recipe
from .records import ManifestRow
from .select import Selection, select_keys
from .shards import DoneRecord, Output, RunRecord, file_sha256, shard_name
from .timing import CLOCK, add_stage_seconds, timed

logger = logging.getLogger(__name__)


class OutputConflict(RuntimeError):
    """The output folder holds a run of a different recipe."""


@dataclass
class RunSummary:
    inputs: int = 0
    statuses: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)
    audio_hours: float = 0.0
    render_hours: float = 0.0  # wall time spent rendering, summed over samples
    gpu_hours: float = 0.0  # GPUs held by the actor pool x wall time
    wall_seconds: float = 0.0
    shards: int = 0
    shards_skipped: int = 0
    regenerated: int = 0
    shards_failed: list[str] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # this run's, per stage (pipeline/timing.py)

    def to_dict(self) -> dict:
        return {
            "inputs": self.inputs,
            "written": self.statuses.get("written", 0),
            "rejected": self.statuses.get("rejected", 0),
            "failed": self.statuses.get("failed", 0),
            "audio_hours": round(self.audio_hours, 6),
            "render_hours": round(self.render_hours, 6),
            "gpu_hours": round(self.gpu_hours, 6),
            "wall_seconds": round(self.wall_seconds, 3),
            "shards": self.shards,
            "shards_skipped": self.shards_skipped,
            "regenerated": self.regenerated,
            "rejects_by_reason": dict(sorted(self.rejects.items())),
            "stage_seconds": self.stage_seconds,
        }


def _timed(items: Iterator, stage: str) -> Iterator:
    """The items, the time spent reading each counted to `stage`."""
    while True:
        with timed(stage):
            item = next(items, None)
        if item is None:
            return
        yield item


def plan_jobs(recipe: Recipe, limit: int | None) -> Iterator[ShardJob]:
    """Shard jobs in order, built lazily from the streamed corpus."""
    items = _timed(iter_items(recipe.sources), "ingest")
    if limit is not None:
        items = itertools.islice(items, limit)
    fingerprint = recipe.fingerprint()
    for index in itertools.count():
        chunk = tuple(itertools.islice(items, recipe.output.rows_per_shard))
        if not chunk:
            return
        yield ShardJob(index=index, name=shard_name(recipe.name, index), items=chunk, recipe_fingerprint=fingerprint)


def is_complete(output: Output, job: ShardJob, fingerprint: str | None) -> bool:
    """A shard counts as done only if its record matches this plan and this recipe (`fingerprint`, which
    covers a local corpus's bytes; None accepts any: `--force` with a selection) and its tar and manifest
    part are the bytes it recorded.

    An unreadable record is no record: the shard is redone, and the file is named in a warning."""
    done, tar = output.done_path(job.name), output.tar_path(job.name)
    if not (done.is_file() and tar.is_file() and output.part_path(job.name).is_file()):
        return False
    try:
        record = DoneRecord.read(done)
    except ValueError as exc:
        logger.warning("%s: the shard is redone", exc)
        return False
    return (
        fingerprint in (None, record.recipe_fingerprint)
        and record.rows == len(job.items)
        and record.first_key == job.items[0].key
        and record.tar_bytes == tar.stat().st_size
        and record.tar_sha256 == file_sha256(tar)
        and record.part_sha256 == file_sha256(output.part_path(job.name))
    )


@dataclass
class Regeneration:
    """Rows chosen for regeneration, with the generation each moves to (a new seed)."""

    generations: dict[str, int]
    inputs: int  # rows in the existing output: the plan stays that size

    @classmethod
    def from_output(cls, output: Output, selection: Selection) -> Regeneration:
        if not output.manifest_path.is_file():
            raise ValueError(f"{output.root}: nothing to regenerate yet (no manifest.parquet): run it first")
        table = read_manifest(output.manifest_path)
        chosen = set(select_keys(table, selection))
        if not chosen:
            raise ValueError(f"{output.root}: the selection matches no row of its manifest ({table.num_rows} rows)")
        current = dict(zip(table.column("key").to_pylist(), table.column("generation").to_pylist(), strict=True))
        return cls({key: (current[key] or 0) + 1 for key in chosen}, table.num_rows)

    def job(self, job: ShardJob) -> ShardJob | None:
        """The job that remakes this shard's selected rows, or None when it holds none."""
        items = tuple(
            dataclasses.replace(i, generation=self.generations[i.key]) if i.key in self.generations else i
            for i in job.items
        )
        selected = frozenset(i.key for i in job.items if i.key in self.generations)
        return dataclasses.replace(job, items=items, selected=selected) if selected else None


def _check_recipe(output: Output, recipe: Recipe, force: bool) -> None:
    if not output.run_path.is_file() or force:
        return
    try:
        previous = RunRecord.read(output.run_path).recipe_fingerprint
    except ValueError as exc:  # empty, garbage or not a run record: as if missing
        logger.warning("%s; taken as missing, each shard is checked", exc)
        return
    if previous != recipe.fingerprint():
        raise OutputConflict(
            f"{output.root} holds output of a different recipe (fingerprint {previous}, now {recipe.fingerprint()}); "
            "use another --output, or --force to accept the new recipe (every shard is redone, or with a "
            "selection only the selected rows)"
        )


def _remove_stale_shards(output: Output, planned: set[str]) -> None:
    """Shards of an earlier, larger plan (e.g. a bigger --limit) no longer belong to the output."""
    for tar in output.shard_tars():
        shard = tar.stem
        if shard not in planned:
            for path in (tar, output.part_path(shard), output.done_path(shard)):
                path.unlink(missing_ok=True)


def preflight_checks(recipe: Recipe, in_process: bool) -> None:
    """Everything that can fail early fails here, before a row is read (each kind says what that is).

    A model that runs in this process is loaded here once (it is cached per process); GPU actors
    check theirs when they start, before any shard task is sent (see executors).
    """
    kind_named(recipe.kind).preflight(recipe, in_process)


def run_recipe(
    recipe: Recipe,
    output_dir: Path,
    executor,
    limit: int | None = None,
    force: bool = False,
    show_progress: bool = True,
    selection: Selection | None = None,
) -> RunSummary:
    """Render what the output lacks; with a selection, also remake the selected rows of finished shards.

    `limit` caps the input rows of a first run, or the selected rows of a regeneration.
    """
    output = Output(Path(output_dir))
    preflight_checks(recipe, in_process=executor.name == "inline")
    recipe = pin_revisions(recipe)
    _check_recipe(output, recipe, force)
    regeneration = _regeneration(output, selection, limit)
    plan_limit = regeneration.inputs if regeneration else limit
    output.prepare()
    total = count_rows(recipe.sources)
    if total is not None and plan_limit is not None:
        total = min(total, plan_limit)
    summary = RunSummary()
    bar = tqdm(total=total, unit="row", disable=not show_progress, dynamic_ncols=True, desc=recipe.name)
    shards_bar = tqdm(unit="shard", disable=not show_progress, dynamic_ncols=True, desc="shards", position=1)

    def on_row(row: ManifestRow) -> None:
        bar.update(1)
        summary.audio_hours += (row.duration or 0.0) / 3600
        bar.set_postfix_str(f"{summary.audio_hours:.3f} h audio", refresh=False)

    def on_failed(job: ShardJob, error: str) -> None:
        summary.shards_failed.append(job.name)
        rows = [ManifestRow.of(item, job.name, "failed", error=f"shard task failed: {error}") for item in job.items]
        write_part(rows, output.part_path(job.name))
        bar.update(len(rows))

    planned: list[str] = []
    made: list[str] = []  # the shards this run makes (or remakes)
    fingerprint = recipe.fingerprint()

    def pending_jobs() -> Iterator[ShardJob]:
        for job in plan_jobs(recipe, plan_limit):
            planned.append(job.name)
            shards_bar.update(1)
            redo_all = force and regeneration is None
            if not redo_all and is_complete(output, job, None if force else fingerprint):
                remake = regeneration.job(job) if regeneration else None
                if remake is None:
                    summary.shards_skipped += 1
                    bar.update(len(job.items))
                    continue
                summary.regenerated += len(remake.selected)
                bar.update(len(job.items) - len(remake.selected))
                job = remake
            output.done_path(job.name).unlink(missing_ok=True)
            made.append(job.name)
            yield job

    RunRecord(fingerprint, "running").write(output.run_path)
    started, clock = time.perf_counter(), CLOCK.snapshot()
    try:
        executor.run(pending_jobs(), recipe, output, Callbacks(on_row, on_failed))
    finally:
        bar.close()
        shards_bar.close()
    summary.wall_seconds = time.perf_counter() - started
    summary.stage_seconds = {"ingest": CLOCK.since(clock).get("ingest", 0.0)}  # the driver's own
    for name in made:
        if output.done_path(name).is_file():
            summary.stage_seconds = add_stage_seconds(
                summary.stage_seconds, DoneRecord.read(output.done_path(name)).stage_seconds
            )
    _remove_stale_shards(output, set(planned))
    table = assemble([output.part_path(name) for name in planned], output.manifest_path)
    summary.inputs = table.num_rows
    summary.statuses = status_counts(table)
    summary.rejects = reason_counts(table)
    summary.audio_hours = sum(d or 0.0 for d in table.column("duration").to_pylist()) / 3600
    summary.render_hours = sum(d or 0.0 for d in table.column("render_seconds").to_pylist()) / 3600
    summary.gpu_hours = summary.wall_seconds / 3600 * _pool_gpus(executor, recipe)
    summary.shards = len(planned)
    _write_run_record(output, recipe, summary)
    return summary


def _regeneration(output: Output, selection: Selection | None, limit: int | None) -> Regeneration | None:
    if selection is None or selection.is_empty():
        return None
    if limit is not None:
        selection = dataclasses.replace(selection, limit=limit)
    return Regeneration.from_output(output, selection)


def _pool_gpus(executor, recipe: Recipe) -> float:
    """GPUs held for the run: what GPU-hours are billed on (0 for CPU backends)."""
    return getattr(executor, "pool_gpus", 0.0) if recipe.model_stage.num_gpus else 0.0


def regeneration_preview(recipe: Recipe, output_dir: Path, selection: Selection, limit: int | None) -> dict:
    """What `--dry-run` prints: shards to rewrite, rows to remake, and the audio and GPU time that costs."""
    output = Output(Path(output_dir))
    regeneration = _regeneration(output, selection, limit)
    if regeneration is None:
        raise ValueError("--dry-run previews a regeneration: name rows with --ids, --where, --shards, ...")
    rows = read_manifest(output.manifest_path).to_pylist()
    chosen = [r for r in rows if r["key"] in regeneration.generations]
    written = [r for r in rows if r["status"] == "written" and r["duration"]]
    mean = sum(r["duration"] for r in written) / len(written) if written else 0.0
    audio_seconds = sum(r["duration"] if r["status"] == "written" else mean for r in chosen)
    rtf = measured_rtf(rows)
    shards: dict[str, int] = Counter(r["shard"] for r in chosen)
    return {
        "rows": len(chosen),
        "by_status": dict(Counter(r["status"] for r in chosen)),
        "shards": dict(sorted(shards.items())),
        "audio_hours": audio_seconds / 3600,
        "measured_rtf": rtf,
        "render_hours": audio_seconds * rtf / 3600 if rtf is not None else None,
        "gpus_per_render": recipe.model_stage.num_gpus / recipe.model_stage.concurrency
        if recipe.model_stage.num_gpus
        else 0.0,
    }


def _write_run_record(output: Output, recipe: Recipe, summary: RunSummary) -> None:
    RunRecord(
        recipe_fingerprint=recipe.fingerprint(),
        state="complete" if not summary.shards_failed else "incomplete",
        koe_version=version("koe"),
        recipe=recipe.model_dump(mode="json"),
        summary=summary.to_dict(),
        shards_failed=summary.shards_failed,
    ).write(output.run_path)
