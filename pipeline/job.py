"""One shard job: its input rows, forward through every stage, into one committed shard.

This is plain Python that tests call directly; executors (inline, Ray) only decide where it runs.
For each row: adapter → speakable → speakers → render → sample JSON → tar member + manifest row.
Every row ends in the manifest as written, rejected (with the reason) or failed (with the error).
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .audio import encode_flac
from .captioners import Captioner, load_captioner
from .captions import caption_clip, read_clip
from .corpora import Adapter, make_adapter
from .duplex import make_composer
from .keys import derived_int
from .manifest import read_manifest, write_part
from .qc import make_gate, sample_scores
from .readings import estimate_seconds, kana_reading
from .recipe import Recipe
from .records import Dialogue, ManifestRow, Rejected, SourceItem
from .render import render_dialogue
from .sample import MEMBERS, build_caption_json, build_sample_json
from .shards import DoneRecord, Output, ShardWriter, read_tar_samples
from .speakable import prepare_turns
from .speakers import assign_speakers, load_bank
from .tts import BackendSetupError, TTSBackend, load_backend, reads_kana

VOICED_ROLES = {"sft": ("user",), "dpo": ("user",), "duplex": ("user", "assistant")}
LOOKAHEAD = 4  # rows submitted ahead of the oldest unwritten one, per row in flight


@dataclass(frozen=True)
class ShardJob:
    index: int
    name: str
    items: tuple[SourceItem, ...]
    recipe_fingerprint: str  # the driver's, written into the completion record (it covers a local corpus)
    selected: frozenset[str] | None = None  # regeneration: only these keys are made anew, the rest kept


def sample_seed(recipe_seed: int, key: str, generation: int = 0) -> int:
    """A per-sample seed for sampling backends: fixed by the recipe seed, the key and its generation."""
    return derived_int("seed", recipe_seed, key, *([generation] if generation else []))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_row(item: SourceItem, shard: str, status: str, **fields) -> ManifestRow:
    return ManifestRow(item.source, item.row_index, item.row_id, item.key, status, shard, **fields)


def prepare_dialogue(item: SourceItem, recipe: Recipe, adapter: Adapter, tts_reads_kana: bool) -> Dialogue:
    """A corpus row as a dialogue whose voiced turns have spoken text and readings, or `Rejected`."""
    if item.reject_reason:
        raise Rejected(item.reject_reason)
    parsed = adapter.parse(item.row)
    dialogue = Dialogue(item.key, item.source, item.row_index, item.row_id, parsed.turns)
    if recipe.kind == "dpo":
        dialogue.extra = {"chosen": parsed.chosen, "rejected": parsed.rejected}
    roles = VOICED_ROLES[recipe.kind]
    started = time.perf_counter()
    prepare_turns(dialogue, roles, recipe.text.max_turn_chars, kana_reading, tts_reads_kana)
    took = time.perf_counter() - started
    if took > recipe.text.max_stage_seconds:  # the stage is linear in its input; this guards what is not foreseen
        raise Rejected(f"text stage took {took:.1f} s > {recipe.text.max_stage_seconds:g} s")
    estimate = estimated_seconds(dialogue, roles, recipe.render.turn_gap_seconds)
    if estimate > recipe.text.max_sample_seconds:  # caught from the readings, before any render time is spent
        raise Rejected(f"too long to speak (about {estimate:.0f} s > {recipe.text.max_sample_seconds:g} s)")
    return dialogue


def estimated_seconds(dialogue: Dialogue, roles: tuple[str, ...], gap_seconds: float) -> float:
    """The sample's length as its readings predict: voiced turns plus the gaps between them."""
    turns = dialogue.spoken_turns(roles)
    return sum(estimate_seconds(t.reading or "") for t in turns) + gap_seconds * (len(turns) - 1)


class RowMaker:
    """Turns one `SourceItem` into tar members and its manifest row; subclasses say how (`make`)."""

    recipe: Recipe

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        raise NotImplementedError

    def make_with_retries(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes] | None, ManifestRow]:
        """A row that raises is tried again (a flaky GPU, a dropped actor); then it is quarantined as failed."""
        attempts = self.recipe.execution.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return self.make(item, shard)
            except Rejected as rejected:
                return None, manifest_row(item, shard, "rejected", reason=rejected.reason, generation=item.generation)
            except BackendSetupError:
                raise  # nothing will work on this node: stop, do not mark rows failed
            except Exception as exc:  # one bad row never stops the shard
                if attempt == attempts:
                    detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    error = f"{detail} (after {attempts} attempts)"
                    return None, manifest_row(item, shard, "failed", error=error, generation=item.generation)
        raise AssertionError("unreachable")


class SampleMaker(RowMaker):
    """Speech: a corpus row into FLAC + JSON, holding what is loaded once per job."""

    def __init__(self, recipe: Recipe, backend: TTSBackend | None = None):
        self.recipe = recipe
        self.sources = {s.name: s for s in recipe.sources}
        self.adapters = {s.name: make_adapter(s) for s in recipe.sources}
        self.bank = load_bank(recipe.speakers.bank)
        self.backend = backend or load_backend(recipe.tts.backend, recipe.tts.options)
        self.roles = VOICED_ROLES[recipe.kind]
        self.tts_reads_kana = reads_kana(recipe.tts.backend)
        self.gate = make_gate(recipe.qc, self.backend)
        duplex = recipe.kind == "duplex"
        self.duplex = make_composer(recipe, self.backend, self.tts_reads_kana, self.gate) if duplex else None

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        recipe = self.recipe
        source = self.sources[item.source]
        dialogue = prepare_dialogue(item, recipe, self.adapters[item.source], self.tts_reads_kana)
        speakers = assign_speakers(self.bank, item.key, recipe.seed)
        voiced = {role: speakers[role] for role in self.roles}
        seed = sample_seed(recipe.seed, item.key, item.generation)
        started = time.perf_counter()
        if self.duplex:
            composed = self.duplex.compose(dialogue, voiced, seed)
            pcm = composed.pcm
            dialogue.extra = composed.json_fields()
        else:
            pcm = render_dialogue(
                dialogue,
                self.roles,
                voiced,
                self.backend,
                seed,
                recipe.tts.sample_rate,
                recipe.render,
                self.gate,
                recipe.execution.row_requests_in_flight,
            )
        render_seconds = time.perf_counter() - started
        duration = pcm.shape[0] / recipe.tts.sample_rate
        if duration > recipe.text.max_sample_seconds:
            raise Rejected(f"too long ({duration:.1f} s > {recipe.text.max_sample_seconds} s)")
        flac = encode_flac(pcm, recipe.tts.sample_rate)
        document = build_sample_json(dialogue, recipe, source, voiced, pcm.shape, self.backend.describe(), seed)
        row = manifest_row(
            item,
            shard,
            "written",
            duration=round(duration, 6),
            speakers=",".join(s.id for s in voiced.values()),
            flac_sha256=_sha256(flac),
            json_sha256=_sha256(document),
            generation=item.generation,
            render_seconds=round(render_seconds, 3),
            **sample_scores([t.qc for t in dialogue.spoken_turns(self.roles) if t.qc]),
        )
        return {"flac": flac, "json": document}, row


class CaptionMaker(RowMaker):
    """Captions: a sound clip into its original audio (FLAC) + captions and attribution (JSON)."""

    def __init__(self, recipe: Recipe, captioner: Captioner | None = None):
        assert recipe.captioner is not None
        self.recipe = recipe
        self.config = recipe.captioner
        self.sources = {s.name: s for s in recipe.sources}
        self.captioner = captioner or load_captioner(self.config.backend, self.config.options)

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        if item.reject_reason:
            raise Rejected(item.reject_reason)
        pcm, rate = read_clip(item.row["audio"])
        seed = sample_seed(self.recipe.seed, item.key, item.generation)
        started = time.perf_counter()
        captioned = caption_clip(self.captioner, pcm, rate, seed, self.config.window_seconds, self.config.max_attempts)
        render_seconds = time.perf_counter() - started
        flac = encode_flac(pcm, rate)
        source = self.sources[item.source]
        document = build_caption_json(item, self.recipe, source, pcm.shape, rate, captioned, self.captioner, seed)
        row = manifest_row(
            item,
            shard,
            "written",
            duration=round(pcm.shape[0] / rate, 6),
            flac_sha256=_sha256(flac),
            json_sha256=_sha256(document),
            generation=item.generation,
            render_seconds=round(render_seconds, 3),
        )
        return {"flac": flac, "json": document}, row


def make_row_maker(recipe: Recipe, model=None) -> RowMaker:
    """The maker for the recipe's kind; `model` is its model when it runs elsewhere (GPU actors)."""
    return CaptionMaker(recipe, model) if recipe.kind == "captions" else SampleMaker(recipe, model)


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
    maker = make_row_maker(recipe, model)
    kept = _KeptSamples(job, output) if job.selected is not None else None
    writer = ShardWriter(output, job.name)
    rows: list[ManifestRow] = []

    def write(made: tuple[dict[str, bytes] | None, ManifestRow]) -> None:
        members, row = made
        if members:
            writer.write(row.key, members)
        rows.append(row)
        if on_row:
            on_row(row)

    in_flight = recipe.execution.items_in_flight
    try:
        # Rows are made `items_in_flight` at a time (several synthesis requests to the GPU actors from
        # one task) and written strictly in input order, so the shard's bytes do not depend on timing.
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix=job.name) as pool:
            pending: deque[Future] = deque()
            for item in job.items:
                if kept is not None and item.key not in job.selected:
                    pending.append(_done(kept.take(item.key)))  # the old tar is read in order, here
                else:
                    pending.append(pool.submit(maker.make_with_retries, item, job.name))
                while len(pending) > LOOKAHEAD * in_flight:  # a slow row does not stall new requests
                    write(pending.popleft().result())
            while pending:
                write(pending.popleft().result())
        tar_bytes, tar_sha = writer.commit()
    except BaseException:
        writer.abort()
        raise
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
    )
    record.write(output.done_path(job.name))
    return record
