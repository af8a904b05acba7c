"""`koe export`: duplex shards into the layouts the full-duplex fine-tuning codebases read.

- `moshi` (kyutai-labs/moshi-finetune): `audio/<key>.wav` (stereo, 24 kHz, 16-bit; left = the
  assistant, right = the user), beside it `audio/<key>.json` = `{"alignments": [[phrase, [start, end],
  speaker], ...]}` sorted by start, with speaker `SPEAKER_MAIN` (the assistant) or `SPEAKER_OTHER`
  (the user); and `manifest.jsonl` of `{"path", "duration"}` with absolute paths, because
  moshi-finetune opens each JSON next to the path it is given, relative to its working folder.
- `jmoshi` (J-Moshi's fine-tuning code): `audio/<key>.wav` (stereo, 24 kHz; left = speaker A, the
  system, right = speaker B, the user) and `text/<key>.json` = `[{"speaker", "word", "start",
  "end"}, ...]` for both speakers in time order; and `manifest.jsonl` as above.

Samples stream from the shards one at a time, so memory stays flat whatever the output's size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import decode_flac, resample, to_int16
from .kinds import KINDS
from .kinds.duplex import PHRASE_PARTICLES, QUESTION_ENDINGS
from .shards import Output, output_samples

MOSHI_RATE = 24000  # Mimi's rate: both codebases load audio at 24 kHz
MOSHI_SPEAKERS = {"assistant": "SPEAKER_MAIN", "user": "SPEAKER_OTHER"}
JMOSHI_SPEAKERS = {"assistant": "A", "user": "B"}
LAYOUTS = ("moshi", "jmoshi")
PACK_GAP_SECONDS = 1.0  # silence between two dialogues packed into one file
PHRASE_GAP_SECONDS = 0.15  # a longer silence between two words of one speaker ends a phrase
PHRASE_ENDINGS = PHRASE_PARTICLES | QUESTION_ENDINGS


@dataclass
class ExportSummary:
    samples: int = 0
    seconds: float = 0.0


def duplex_samples(directory: Path) -> Iterator[tuple[str, np.ndarray, dict]]:
    """(key, int16 stereo at 24 kHz, sample JSON) for every sample of a duplex output, shard by shard."""
    if not Output(directory).shard_tars():
        raise ValueError(f"{directory}: no shards to export (is it the output folder of `koe run`?)")
    for sample in output_samples(directory, with_audio=True):
        document = sample.document
        kind = KINDS.get(document.get("kind"))
        if kind is None or not kind.exports_dialogues:
            exportable = ", ".join(name for name, k in sorted(KINDS.items()) if k.exports_dialogues)
            raise ValueError(
                f"{directory}: made by a kind {document.get('kind')!r} recipe; only {exportable} outputs "
                "(two channels with word alignments) can be exported"
            )
        audio, rate = decode_flac(sample.read_flac())
        if rate != MOSHI_RATE:
            audio = to_int16(resample(audio.astype(np.float32) / 32768, rate, MOSHI_RATE))
        yield sample.key, audio, document


def phrases(words: list[dict]) -> list[dict]:
    """Each speaker's words joined into phrases (up to a phrase-final particle, a pause or a question), in
    time order: the units moshi-finetune's interleaver keeps whole.

    Its interleaver gives an entry one text token per audio frame (12.5 Hz) from the entry's start, and the
    next entry's start replaces what is left of it. One entry per OpenJTalk word is mostly one or two
    morae, and each tokenizes with a leading space piece: the particle after it starts before its own
    tokens are out, and is lost (7.3 % of the assistant's tokens). A phrase lasts long enough for its
    tokens."""
    joined: list[dict] = []
    for role in dict.fromkeys(w["role"] for w in words):
        current: dict | None = None
        for word in (w for w in words if w["role"] == role):
            if current is not None and word["start"] - current["end"] <= PHRASE_GAP_SECONDS:
                current = {**current, "word": current["word"] + word["word"], "end": word["end"]}
            else:
                if current is not None:
                    joined.append(current)
                current = dict(word)
            if word["word"] in PHRASE_ENDINGS:
                joined.append(current)
                current = None
        if current is not None:
            joined.append(current)
    return sorted(joined, key=lambda p: (p["start"], p["role"]))


def packed(
    samples: Iterator[tuple[str, np.ndarray, dict]], min_seconds: float | None
) -> Iterator[tuple[str, np.ndarray, list[dict]]]:
    """(name, audio, words) per file to write: each dialogue, or with `min_seconds` consecutive dialogues
    joined (`PACK_GAP_SECONDS` of silence between) until they last that long, so a loader's length filter
    drops none and its fixed-length windows hold no padding. A short rest joins the last pack; a pack is
    named after its first dialogue and how many it holds."""
    if min_seconds is None:
        for key, audio, document in samples:
            yield key, audio, document["alignments"]["words"]
        return
    gap = np.zeros((int(PACK_GAP_SECONDS * MOSHI_RATE), 2), dtype=np.int16)
    held: list[tuple[str, np.ndarray, list[dict]]] = []
    ready: list[tuple[str, np.ndarray, list[dict]]] = []  # a full pack, written once the next one is full too

    def join(parts: list[tuple[str, np.ndarray, list[dict]]]) -> tuple[str, np.ndarray, list[dict]]:
        audio, words, offset = [], [], 0.0
        for index, (_, pcm, timed) in enumerate(parts):
            if index:
                audio.append(gap)
                offset += gap.shape[0] / MOSHI_RATE
            audio.append(pcm)
            words += [{**w, "start": round(w["start"] + offset, 6), "end": round(w["end"] + offset, 6)} for w in timed]
            offset += pcm.shape[0] / MOSHI_RATE
        name = parts[0][0] if len(parts) == 1 else f"{parts[0][0]}__{len(parts)}"
        return name, np.concatenate(audio), words

    for key, audio, document in samples:
        held.append((key, audio, document["alignments"]["words"]))
        seconds = sum(pcm.shape[0] for _, pcm, _ in held) / MOSHI_RATE + PACK_GAP_SECONDS * (len(held) - 1)
        if seconds >= min_seconds:
            if ready:
                yield join(ready)
            ready, held = held, []
    if ready or held:  # a rest too short alone joins the last pack
        yield join(ready + held)


def export(layout: str, directory: Path, dest: Path, min_seconds: float | None = None) -> ExportSummary:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown export layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    audio_dir = dest / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    if layout == "jmoshi":
        (dest / "text").mkdir(exist_ok=True)
    summary = ExportSummary()
    partial = dest / ".manifest.jsonl.partial"
    with open(partial, "w", encoding="utf-8") as manifest:
        for key, audio, words in packed(duplex_samples(directory), min_seconds):
            wav = (audio_dir / f"{key}.wav").resolve()
            sf.write(wav, audio, MOSHI_RATE, subtype="PCM_16")
            if layout == "moshi":
                alignments = [[p["word"], [p["start"], p["end"]], MOSHI_SPEAKERS[p["role"]]] for p in phrases(words)]
                _write_json(wav.with_suffix(".json"), {"alignments": alignments})
            else:
                transcript = [
                    {"speaker": JMOSHI_SPEAKERS[w["role"]], "word": w["word"], "start": w["start"], "end": w["end"]}
                    for w in words
                ]
                _write_json(dest / "text" / f"{key}.json", transcript)
            duration = audio.shape[0] / MOSHI_RATE
            manifest.write(json.dumps({"path": str(wav), "duration": round(duration, 6)}) + "\n")
            summary.samples += 1
            summary.seconds += duration
    partial.replace(dest / "manifest.jsonl")
    return summary


def _write_json(path: Path, content) -> None:
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
