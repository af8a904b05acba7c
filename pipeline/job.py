"""One shard job: its input rows, each through its kind's chain, into one committed shard.

This is plain Python that tests call directly; executors (inline, Ray) only decide where it runs.
The recipe's kind (`pipeline/kinds/`) makes each row's tar members and manifest row; this module
runs them in order, retries what fails, keeps what a regeneration does not remake, and commits.
Every row ends in the manifest as written, rejected (with the reason) or failed (with the error).
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .errors import BackendSetupError
from .kinds import RowMaker, kind_named
from .manifest import read_manifest, write_part
from .recipe import Recipe
from .records import ManifestRow, Rejected, SourceItem
from .sample import MEMBERS
from .shards import DoneRecord, Output, ShardWriter, read_tar_samples
from .timing import CLOCK, timed

LOOKAHEAD = 4  # rows submitted ahead of the oldest unwritten one, per row in flight


@dataclass(frozen=True)
class ShardJob:
    index: int
    name: str
    items: tuple[SourceItem, ...]
    recipe_fingerprint: str  # the driver's, written into the completion record (it covers a local corpus)
    selected: frozenset[str] | None = None  # regeneration: only these keys are made anew, the rest kept


def make_with_retries(
    maker: RowMaker, item: SourceItem, shard: str, attempts: int
) -> tuple[dict[str, bytes] | None, ManifestRow]:
    """A row that raises is tried again (a flaky GPU, a dropped actor); then it is quarantined as failed."""
    for attempt in range(1, attempts + 1):
        try:
            return maker.make(item, shard)
        except Rejected as rejected:
            return None, ManifestRow.of(item, shard, "rejected", reason=rejected.reason, generation=item.generation)
        except BackendSetupError:
            raise  # nothing will work on this node: stop, do not mark rows failed
        except Exception as exc:  # one bad row never stops the shard
            if attempt == attempts:
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                error = f"{detail} (after {attempts} attempts)"
                return None, ManifestRow.of(item, shard, "failed", error=error, generation=item.generation)
    raise AssertionError("unreachable")


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class _KeptSamples:
    """The unselected rows of a shard being regenerated, exactly as they were.

    The old tar is read as a stream next to the plan: both are in input order, so memory stays
    flat however large the shard, and every kept sample is copied byte for byte.
    """

    def __init__(self, job: ShardJob, output: Output):
        self.rows = {row["key"]: row for row in read_manifest(output.part_path(job.name)).to_pylist()}
        self.samples = iter(read_tar_samples(output.tar_path(job.name)))

    def take(self, key: str) -> tuple[dict[str, bytes] | None, ManifestRow]:
        row = ManifestRow(**self.rows[key])
        if row.status != "written":
            return None, row
        for sample in self.samples:  # skip the selected ones, which are being made anew
            if sample["__key__"] == key:
                return {name: sample[name] for name in MEMBERS}, row
        raise RuntimeError(f"{key} is in the manifest as written but not in its shard: run `koe validate`")


def process_shard(
    job: ShardJob,
    recipe: Recipe,
    output: Output,
    on_row: Callable[[ManifestRow], None] | None = None,
    model=None,
) -> DoneRecord:
    """Make every row of `job` and commit its shard; returns the completion record.

    `model` is the recipe's model (TTS backend or captioner) when it runs elsewhere (GPU actors).
    """
    maker = kind_named(recipe.kind).row_maker(recipe, model)
    kept = _KeptSamples(job, output) if job.selected is not None else None
    writer = ShardWriter(output, job.name)
    rows: list[ManifestRow] = []
    started = CLOCK.snapshot()

    def write(made: tuple[dict[str, bytes] | None, ManifestRow]) -> None:
        members, row = made
        if members:
            with timed("write"):
                writer.write(row.key, members)
        rows.append(row)
        if on_row:
            on_row(row)

    in_flight, attempts = recipe.execution.items_in_flight, recipe.execution.row_attempts
    try:
        # Rows are made `items_in_flight` at a time (several synthesis requests to the GPU actors from
        # one task) and written strictly in input order, so the shard's bytes do not depend on timing.
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=job.name) as pool:
            pending: deque[Future] = deque()
            for item in job.items:
                if kept is not None and item.key not in job.selected:
                    pending.append(_done(kept.take(item.key)))  # the old tar is read in order, here
                else:
                    pending.append(pool.submit(make_with_retries, maker, item, job.name, attempts))
                while len(pending) > LOOKAHEAD * in_flight:  # a slow row does not stall new requests
                    write(pending.popleft().result())
            while pending:
                write(pending.popleft().result())
        with timed("write"):
            tar_bytes, tar_sha = writer.commit()
    except BaseException:
        writer.abort()
        raise
    with timed("write"):
        part_sha = write_part(rows, output.part_path(job.name))
    record = DoneRecord(
        shard=job.name,
        first_key=job.items[0].key if job.items else None,
        rows=len(rows),
        samples=writer.samples,
        tar_bytes=tar_bytes,
        tar_sha256=tar_sha,
        part_sha256=part_sha,
        recipe_fingerprint=job.recipe_fingerprint,
        stage_seconds=CLOCK.since(started),
    )
    record.write(output.done_path(job.name))
    return record
