"""One shard job: its input rows, forward through every stage, into one committed shard.

This is plain Python that tests call directly; executors (inline, Ray) only decide where it runs.
For each row: adapter → speakable → speakers → render → sample JSON → tar member + manifest row.
Every row ends in the manifest as written, rejected (with the reason) or failed (with the error).
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .audio import encode_flac
from .corpora import make_adapter
from .keys import derived_int
from .manifest import write_part
from .readings import estimate_seconds, kana_reading
from .recipe import Recipe
from .records import Dialogue, ManifestRow, Rejected, SourceItem
from .render import render_dialogue
from .sample import build_sample_json
from .shards import DoneRecord, Output, ShardWriter
from .speakable import prepare_turns
from .speakers import assign_speakers, load_bank
from .tts import TTSBackend, load_backend, reads_kana

VOICED_ROLES = {"sft": ("user",), "dpo": ("user",)}


@dataclass(frozen=True)
class ShardJob:
    index: int
    name: str
    items: tuple[SourceItem, ...]


def sample_seed(recipe_seed: int, key: str) -> int:
    """A per-sample seed for sampling backends: fixed by the recipe seed and the key."""
    return derived_int("seed", recipe_seed, key)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_row(item: SourceItem, shard: str, status: str, **fields) -> ManifestRow:
    return ManifestRow(item.source, item.row_index, item.row_id, item.key, status, shard, **fields)


class SampleMaker:
    """Turns one `SourceItem` into tar members, holding what is loaded once per job."""

    def __init__(self, recipe: Recipe, backend: TTSBackend | None = None):
        self.recipe = recipe
        self.sources = {s.name: s for s in recipe.sources}
        self.adapters = {s.name: make_adapter(s) for s in recipe.sources}
        self.bank = load_bank(recipe.speakers.bank)
        self.backend = backend or load_backend(recipe.tts.backend, recipe.tts.options)
        self.roles = VOICED_ROLES[recipe.kind]
        self.tts_reads_kana = reads_kana(recipe.tts.backend)

    def _reject_if_too_long(self, dialogue: Dialogue) -> None:
        """Estimated from the readings, so text too long for the recipe costs no render time."""
        turns = dialogue.spoken_turns(self.roles)
        estimate = sum(estimate_seconds(t.reading or "") for t in turns)
        estimate += self.recipe.render.turn_gap_seconds * (len(turns) - 1)
        if estimate > self.recipe.text.max_sample_seconds:
            raise Rejected(f"too long to speak (about {estimate:.0f} s > {self.recipe.text.max_sample_seconds:g} s)")

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        recipe = self.recipe
        if item.reject_reason:
            raise Rejected(item.reject_reason)
        source = self.sources[item.source]
        parsed = self.adapters[item.source].parse(item.row)
        dialogue = Dialogue(item.key, item.source, item.row_index, item.row_id, parsed.turns)
        if recipe.kind == "dpo":
            dialogue.extra = {"chosen": parsed.chosen, "rejected": parsed.rejected}
        prepare_turns(dialogue, self.roles, recipe.text.max_turn_chars, kana_reading, self.tts_reads_kana)
        self._reject_if_too_long(dialogue)
        speakers = assign_speakers(self.bank, item.key, recipe.seed)
        voiced = {role: speakers[role] for role in self.roles}
        seed = sample_seed(recipe.seed, item.key)
        pcm = render_dialogue(dialogue, self.roles, voiced, self.backend, seed, recipe.tts.sample_rate, recipe.render)
        duration = pcm.size / recipe.tts.sample_rate
        if duration > recipe.text.max_sample_seconds:
            raise Rejected(f"too long ({duration:.1f} s > {recipe.text.max_sample_seconds} s)")
        flac = encode_flac(pcm, recipe.tts.sample_rate)
        document = build_sample_json(dialogue, recipe, source, voiced, pcm.size, self.backend.describe(), seed)
        row = manifest_row(
            item,
            shard,
            "written",
            duration=round(duration, 6),
            speakers=",".join(s.id for s in voiced.values()),
            flac_sha256=_sha256(flac),
            json_sha256=_sha256(document),
        )
        return {"flac": flac, "json": document}, row


def process_shard(
    job: ShardJob,
    recipe: Recipe,
    output: Output,
    on_row: Callable[[ManifestRow], None] | None = None,
    backend: TTSBackend | None = None,
) -> DoneRecord:
    """Render every row of `job` and commit its shard; returns the completion record.

    `backend` is where synthesis happens when not in this process (a pool of GPU actors).
    """
    maker = SampleMaker(recipe, backend)
    writer = ShardWriter(output, job.name)
    rows: list[ManifestRow] = []
    try:
        for item in job.items:
            try:
                members, row = maker.make(item, job.name)
                writer.write(item.key, members)
            except Rejected as rejected:
                row = manifest_row(item, job.name, "rejected", reason=rejected.reason)
            except Exception as exc:  # one bad row never stops the shard
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                row = manifest_row(item, job.name, "failed", error=detail)
            rows.append(row)
            if on_row:
                on_row(row)
        tar_bytes, tar_sha = writer.commit()
    except BaseException:
        writer.abort()
        raise
    write_part(rows, output.part_path(job.name))
    record = DoneRecord(
        shard=job.name,
        first_key=job.items[0].key if job.items else None,
        rows=len(rows),
        samples=writer.samples,
        tar_bytes=tar_bytes,
        tar_sha256=tar_sha,
        recipe_fingerprint=recipe.fingerprint(),
    )
    record.write(output.done_path(job.name))
    return record
