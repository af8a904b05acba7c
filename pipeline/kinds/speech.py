"""The speech chain the text kinds share: parse → speak → assign → render → document.

A corpus row is parsed by its source's adapter into a `Dialogue`, its voiced turns are made
speakable and read into kana, the bank's voices are assigned by the key and the recipe's seed, the
turns are rendered (one after another, or composed on two channels by the duplex kind), and the
sample's FLAC and JSON are made. Kinds differ only in the hooks of `SpeechKind` and, for duplex,
in how the audio is made (`SpeechRowMaker.render`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..audio import encode_flac
from ..corpora import CLIP_ADAPTERS, Adapter, ParsedRow, make_adapter
from ..keys import sample_seed
from ..qc import make_gate, sample_scores
from ..readings import estimate_seconds, kana_reading
from ..recipe import Recipe
from ..records import Dialogue, ManifestRow, Rejected, SourceItem
from ..render import render_dialogue
from ..sample import audio_record, document_head
from ..speakable import make_speakable, unspeakable_reason
from ..speakers import Speaker, SpeakerBank, assign_speakers, check_bank, load_bank
from ..timing import timed
from ..tts import TTSBackend, load_backend, needs_reference_audio, reads_kana
from .base import Kind, RowMaker, written


def prepare_dialogue(item: SourceItem, recipe: Recipe, kind: SpeechKind, adapter: Adapter, tts_reads_kana: bool):
    """A corpus row as a dialogue whose voiced turns have spoken text and readings, or `Rejected`."""
    if item.reject_reason:
        raise Rejected(item.reject_reason)
    parsed = adapter.parse(item.row)
    dialogue = Dialogue(item.key, item.source, item.row_index, item.row_id, parsed.turns, kind.text_fields(parsed))
    roles = kind.voiced_roles
    started = time.perf_counter()
    speak_turns(dialogue, roles, recipe.text.max_turn_chars, tts_reads_kana)
    took = time.perf_counter() - started
    if took > recipe.text.max_stage_seconds:  # the stage is linear in its input; this guards what is not foreseen
        raise Rejected(f"text stage took {took:.1f} s > {recipe.text.max_stage_seconds:g} s")
    estimate = estimated_seconds(dialogue, roles, recipe.render.turn_gap_seconds)
    if estimate > recipe.text.max_sample_seconds:  # caught from the readings, before any render time is spent
        raise Rejected(f"too long to speak (about {estimate:.0f} s > {recipe.text.max_sample_seconds:g} s)")
    return dialogue


def speak_turns(dialogue: Dialogue, roles: tuple[str, ...], max_turn_chars: int, tts_reads_kana: bool) -> None:
    """Fill `spoken_text`, `reading` and `tts_text` of the turns to be voiced, or reject the dialogue.

    Backends that read kana (CosyVoice, whose frontend would read kanji the Chinese way) are sent
    the katakana reading as `tts_text`, the others the spoken text.
    """
    for number, turn in enumerate(dialogue.turns, start=1):
        if turn.role not in roles:
            continue
        spoken = make_speakable(turn.text)
        reason = unspeakable_reason(turn.text, spoken, max_turn_chars)
        if reason:
            raise Rejected(f"turn {number}: {reason}")
        turn.spoken_text = spoken
        turn.reading = kana_reading(spoken)
        turn.tts_text = turn.reading if tts_reads_kana and turn.reading else spoken


def estimated_seconds(dialogue: Dialogue, roles: tuple[str, ...], gap_seconds: float) -> float:
    """The sample's length as its readings predict: voiced turns plus the gaps between them."""
    turns = dialogue.spoken_turns(roles)
    return sum(estimate_seconds(t.reading or "") for t in turns) + gap_seconds * (len(turns) - 1)


def _turn_record(turn) -> dict[str, Any]:
    record: dict[str, Any] = {"role": turn.role, "text": turn.text}
    if turn.spoken_text is not None:
        record.update(
            spoken_text=turn.spoken_text,
            tts_text=turn.tts_text,
            reading=turn.reading,
            speaker=turn.speaker,
            seed=turn.seed,
            start=turn.start,
            end=turn.end,
        )
        if turn.gain_db is not None:
            record.update(loudness_lufs=turn.loudness_lufs, gain_db=turn.gain_db)
        if turn.qc is not None:
            record["qc"] = turn.qc
    return record


def _portable(value: Any) -> Any:
    """A machine's absolute path (a model folder) says nothing to a user of the data: keep its name."""
    return Path(value).name if isinstance(value, str) and value.startswith("/") else value


def _voice_record(role: str, speaker: Speaker, backend: str) -> dict[str, Any]:
    """How a speaker's voice was made; a list of these keeps the JSON's fields fixed per recipe."""
    record: dict[str, Any] = {"role": role, "speaker": speaker.id, "name": speaker.name}
    if backend == "openjtalk":
        record.update(speaker.openjtalk.model_dump())
    else:
        record["reference_audio"] = speaker.reference_audio.name if speaker.reference_audio else ""
    return record


def sample_document(
    dialogue: Dialogue,
    recipe: Recipe,
    kind: SpeechKind,
    voiced: dict[str, Speaker],
    shape: tuple[int, ...],
    backend_info: dict[str, Any],
    seed: int,
) -> bytes:
    """The sample's JSON; `shape` is the PCM's: (frames,) for mono, (frames, channels) for two channels."""
    document = {
        **document_head(dialogue.key, kind.name, recipe, dialogue.source, dialogue.row_id, dialogue.row_index),
        "speakers": {role: speaker.id for role, speaker in voiced.items()},
        "audio": audio_record(shape, recipe.tts.sample_rate),
        "turns": [_turn_record(t) for t in dialogue.turns],
        **dialogue.extra,
        "render": {
            "backend": recipe.tts.backend,
            **backend_info,
            "options": {k: _portable(v) for k, v in recipe.tts.options.items()},
            "seed": seed,
            **kind.timing_settings(recipe),
            "voices": [_voice_record(role, speaker, recipe.tts.backend) for role, speaker in voiced.items()],
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class SpeechRowMaker(RowMaker):
    """A corpus row into FLAC + JSON: what is loaded once per job (adapters, bank, backend, gate) is held here."""

    def __init__(self, recipe: Recipe, kind: SpeechKind, backend: TTSBackend | None = None):
        self.recipe, self.kind = recipe, kind
        self.adapters = {s.name: make_adapter(s) for s in recipe.sources}
        self.bank = load_bank(recipe.speakers.bank)
        self.backend = backend or load_backend(recipe.tts.backend, recipe.tts.options)
        self.tts_reads_kana = reads_kana(recipe.tts.backend)
        self.gate = make_gate(recipe.qc, self.backend)

    def render(self, dialogue: Dialogue, voiced: dict[str, Speaker], seed: int) -> np.ndarray:
        """The sample's PCM: the voiced turns one after another, `render.turn_gap_seconds` apart."""
        recipe = self.recipe
        return render_dialogue(
            dialogue,
            self.kind.voiced_roles,
            voiced,
            self.backend,
            seed,
            recipe.tts.sample_rate,
            recipe.render,
            self.gate,
            recipe.execution.row_requests_in_flight,
        )

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        recipe, roles = self.recipe, self.kind.voiced_roles
        with timed("text"):
            dialogue = prepare_dialogue(item, recipe, self.kind, self.adapters[item.source], self.tts_reads_kana)
        speakers = self.kind.voices(self.bank, item.key, recipe)
        voiced = {role: speakers[role] for role in roles}
        seed = sample_seed(recipe.seed, item.key, item.generation)
        started = time.perf_counter()
        pcm = self.render(dialogue, voiced, seed)
        render_seconds = time.perf_counter() - started
        duration = pcm.shape[0] / recipe.tts.sample_rate
        if duration > recipe.text.max_sample_seconds:
            raise Rejected(f"too long ({duration:.1f} s > {recipe.text.max_sample_seconds} s)")
        with timed("write"):
            flac = encode_flac(pcm, recipe.tts.sample_rate)
            document = sample_document(dialogue, recipe, self.kind, voiced, pcm.shape, self.backend.describe(), seed)
        voices = ",".join(s.id for s in voiced.values())
        scores = sample_scores([t.qc for t in dialogue.spoken_turns(roles) if t.qc])
        return written(item, shard, flac, document, duration, render_seconds, speakers=voices, **scores)


class SpeechKind(Kind):
    """A kind that speaks text corpora with the TTS stage; subclasses choose the voiced roles and hooks."""

    model_stage: ClassVar[str] = "tts"
    model_record: ClassVar[str] = "render"
    required_fields: ClassVar[tuple[str, ...]] = (
        "schema_version",
        "key",
        "kind",
        "recipe",
        "source",
        "speakers",
        "audio",
        "turns",
        "render",
    )
    json_fields: ClassVar[dict[str, str]] = {
        "source": "corpus, revision, row id and license of the row it was made from",
        "speakers": "the bank voice of each spoken role",
        "audio": "sample rate, channels, samples, duration",
        "turns": "every turn's text; spoken turns also their speakable text, reading, speaker, start/end and QC scores",
        "render": "TTS backend, model, options, seed and voices",
    }

    def text_fields(self, parsed: ParsedRow) -> dict[str, Any]:
        """Text of the row the sample JSON keeps beyond its turns (DPO: the replies)."""
        return {}

    def voices(self, bank: SpeakerBank, key: str, recipe: Recipe) -> dict[str, Speaker]:
        """The bank voices of a sample's roles, drawn by its key and the recipe's seed."""
        return assign_speakers(bank, key, recipe.seed)

    def timing_settings(self, recipe: Recipe) -> dict[str, Any]:
        """How the turns were placed in time, for the JSON's `render` record."""
        return {"turn_gap_seconds": recipe.render.turn_gap_seconds}

    def check_recipe(self, recipe: Recipe) -> None:
        clips = [s.name for s in recipe.sources if s.adapter in CLIP_ADAPTERS]
        if clips:
            raise ValueError(f"sources {clips} are sound collections: use kind 'captions'")
        if recipe.speakers is None:
            raise ValueError(f"kind {self.name!r} speaks text: it needs 'speakers' (a bank, see speakers/README.md)")

    def preflight(self, recipe: Recipe, in_process: bool) -> None:
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

    def row_maker(self, recipe: Recipe, model: Any = None) -> RowMaker:
        return SpeechRowMaker(recipe, self, model)

    def describe_chain(self, recipe: Recipe) -> list[tuple[str, str]]:
        sources = ", ".join(f"{s.name} ({s.adapter}: {s.dataset})" for s in recipe.sources)
        text = recipe.text
        return [
            ("parse", f"corpus rows into turns by their adapter: {sources}"),
            (
                "speak",
                f"the {'/'.join(self.voiced_roles)} turns made speakable and read into kana (at most "
                f"{text.max_turn_chars} characters a turn, {text.max_sample_seconds:g} s a sample)",
            ),
            ("assign", f"voices of the bank {recipe.speakers.bank} drawn by key and seed {recipe.seed}"),
            ("render", self.render_description(recipe)),
            ("document", f"FLAC ({recipe.tts.sample_rate} Hz, {self.channels} channel(s)) + JSON per sample"),
        ]

    def render_description(self, recipe: Recipe) -> str:
        render = recipe.render
        return (
            f"each voiced turn by the TTS, up to {render.max_attempts} renders with new seeds, "
            f"{render.turn_gap_seconds:g} s apart"
        )

    def how_made(self, summary: dict[str, Any]) -> list[str]:
        made = summary["made_by"]
        return [
            f"- Spoken by the `{made.get('backend', '?')}` TTS backend (`{made.get('model', '?')}`).",
            "- Text made speakable first (markdown, code, URLs, numbers and readings), each sample's voices "
            f"drawn from the speaker bank by its key and the recipe's seed ({summary['seed']}).",
        ]
