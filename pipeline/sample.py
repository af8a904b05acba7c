"""The sample contract: every sample is exactly `<key>.flac` + `<key>.json`.

This module builds the JSON and states what `koe validate` checks in it, so the format has one
home. Bump `SCHEMA_VERSION` on any change users would notice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .captioners.base import CAPTION_SAMPLE_RATE
from .recipe import Recipe, SourceConfig
from .records import SCHEMA_VERSION, Dialogue
from .speakers import Speaker

MEMBERS = ("flac", "json")
REQUIRED_FIELDS = ("schema_version", "key", "kind", "recipe", "source", "speakers", "audio", "turns", "render")
CAPTION_FIELDS = ("schema_version", "key", "kind", "recipe", "source", "clip", "audio", "captions", "captioner")


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


def _source_record(source: SourceConfig, row_id: str, row_index: int) -> dict[str, Any]:
    return {
        "name": source.name,
        "dataset": source.dataset,
        "revision": "" if source.local_path else source.revision,  # a commit sha for Hub sources
        "split": source.split,
        "row_id": row_id,
        "row_index": row_index,
        "license": source.license,
    }


def _audio_record(shape: tuple[int, ...], rate: int) -> dict[str, Any]:
    return {
        "sample_rate": rate,
        "channels": shape[1] if len(shape) > 1 else 1,
        "num_samples": shape[0],
        "duration": round(shape[0] / rate, 6),
    }


def build_caption_json(item, recipe: Recipe, source: SourceConfig, shape, rate: int, windows, captioner, seed) -> bytes:
    """A captioned clip: its captions per window, the model that made them, and the clip's attribution."""
    from .fsd50k import attribution

    row = item.row
    document = {
        "schema_version": SCHEMA_VERSION,
        "key": item.key,
        "kind": recipe.kind,
        "recipe": recipe.name,
        "source": _source_record(source, item.row_id, item.row_index),
        "clip": {
            **attribution(row),
            "labels": row["labels"],
            "mids": row["mids"],
            "subset": row["subset"],
            "split": row["split"],
        },
        "audio": _audio_record(shape, rate),
        "caption": windows[0].text if len(windows) == 1 else " ".join(w.text for w in windows),
        "captions": [{"start": w.start, "end": w.end, "text": w.text, "attempts": w.attempts} for w in windows],
        "captioner": {
            "backend": recipe.captioner.backend,
            **captioner.describe(),
            "input": {"sample_rate": CAPTION_SAMPLE_RATE, "channels": 1},
            "window_seconds": recipe.captioner.window_seconds,
            "seed": seed,
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_sample_json(
    dialogue: Dialogue,
    recipe: Recipe,
    source: SourceConfig,
    voiced: dict[str, Speaker],
    shape: tuple[int, ...],
    backend_info: dict[str, Any],
    sample_seed: int,
) -> bytes:
    """The sample's JSON; `shape` is the PCM's: (frames,) for mono, (frames, channels) for duplex."""
    rate = recipe.tts.sample_rate
    document = {
        "schema_version": SCHEMA_VERSION,
        "key": dialogue.key,
        "kind": recipe.kind,
        "recipe": recipe.name,
        "source": _source_record(source, dialogue.row_id, dialogue.row_index),
        "speakers": {role: speaker.id for role, speaker in voiced.items()},
        "audio": _audio_record(shape, rate),
        "turns": [_turn_record(t) for t in dialogue.turns],
        **dialogue.extra,
        "render": {
            "backend": recipe.tts.backend,
            **backend_info,
            "options": {k: _portable(v) for k, v in recipe.tts.options.items()},
            "seed": sample_seed,
            **(
                {"turn_taking": recipe.duplex.model_dump(mode="json", exclude={"augment", "ctc_model_dir"})}
                if recipe.kind == "duplex"
                else {"turn_gap_seconds": recipe.render.turn_gap_seconds}
            ),
            "voices": [_voice_record(role, speaker, recipe.tts.backend) for role, speaker in voiced.items()],
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def check_sample_json(document: dict[str, Any], key: str, channels: int, rate: int, frames: int) -> list[str]:
    """Problems in one sample's JSON against its decoded FLAC; empty when it is sound."""
    required = CAPTION_FIELDS if document.get("kind") == "captions" else REQUIRED_FIELDS
    missing = [f for f in required if f not in document]
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
