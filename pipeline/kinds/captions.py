"""Kind `captions`: one sound clip into its original audio, kept losslessly, and English captions of it.

The captioner hears mono 16 kHz audio of at most 30 s; the shard keeps the clip as it was (FLAC
at its own rate and channels). A clip longer than `captioner.window_seconds` is split into equal
windows, each captioned on its own and kept with its times. A caption that is empty, cut off at
max tokens, or not English is asked for again with another seed, up to `captioner.max_attempts`
times; then the clip is rejected with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..audio import encode_flac, resample
from ..captioners import CAPTION_SAMPLE_RATE, Caption, Captioner, load_captioner
from ..corpora import CLIP_ADAPTERS
from ..fsd50k import Clip
from ..keys import attempt_seed, derived_int, sample_seed
from ..recipe import Recipe
from ..records import ManifestRow, Rejected, SourceItem
from ..sample import audio_record, document_head
from ..timing import timed
from .base import Kind, RowMaker, written

CJK_OR_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
MIN_LATIN_SHARE = 0.9  # of a caption's letters


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    text: str
    attempts: int


def read_clip(path: str | Path) -> tuple[np.ndarray, int]:
    """The clip's samples as stored (int16, frames x channels) and its rate; unreadable or empty is rejected."""
    try:
        pcm, rate = sf.read(path, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, OSError) as exc:
        raise Rejected(f"audio unreadable: {exc}") from None
    if pcm.shape[0] == 0:
        raise Rejected("audio is empty")
    return pcm, rate


def model_input(pcm: np.ndarray, rate: int) -> np.ndarray:
    """What the captioner hears: mono float32 at 16 kHz."""
    return resample(pcm.astype(np.float32).mean(axis=1) / 32768, rate, CAPTION_SAMPLE_RATE)


def windows(seconds: float, longest: float) -> list[tuple[float, float]]:
    """Equal windows of at most `longest` seconds covering the clip (one window when it is short enough)."""
    count = max(1, math.ceil(seconds / longest - 1e-9))
    step = seconds / count
    return [(round(i * step, 6), round(seconds if i == count - 1 else (i + 1) * step, 6)) for i in range(count)]


def caption_problem(caption: Caption) -> str | None:
    """Why a caption cannot be kept, or None."""
    text = caption.text.strip()
    if not text:
        return "empty caption"
    if caption.finish_reason == "length":
        return "caption cut off at max tokens"
    letters = [c for c in text if c.isalpha()]
    latin = sum(c.isascii() for c in letters)
    if CJK_OR_KANA.search(text) or not letters or latin < MIN_LATIN_SHARE * len(letters):
        return "caption is not English"
    return None


def caption_window(captioner: Captioner, audio: np.ndarray, seed: int, attempts: int) -> tuple[str, int]:
    """A kept caption and how many tries it took; `Rejected` when no try gave one."""
    problem = ""
    for attempt in range(attempts):
        caption = captioner.caption(audio, attempt_seed(seed, attempt))
        problem = caption_problem(caption)
        if problem is None:
            return caption.text.strip(), attempt + 1
    raise Rejected(f"{problem} after {attempts} attempt(s)")


def caption_clip(
    captioner: Captioner, pcm: np.ndarray, rate: int, seed: int, window_seconds: float, attempts: int
) -> list[Window]:
    heard = model_input(pcm, rate)
    spans = windows(pcm.shape[0] / rate, window_seconds)
    captioned = []
    for index, (start, end) in enumerate(spans):
        piece = heard[int(start * CAPTION_SAMPLE_RATE) : int(end * CAPTION_SAMPLE_RATE)]
        try:
            text, tries = caption_window(captioner, piece, derived_int(seed, "window", index), attempts)
        except Rejected as rejected:
            where = f"window {start:.1f}-{end:.1f} s: " if len(spans) > 1 else ""
            raise Rejected(f"{where}{rejected.reason}") from None
        captioned.append(Window(start, end, text, tries))
    return captioned


def caption_document(
    item: SourceItem, recipe: Recipe, shape, rate: int, captioned: list[Window], captioner: Captioner, seed: int
) -> bytes:
    """A captioned clip: its captions per window, the model that made them, and the clip's attribution."""
    row, config = item.row, recipe.captioner
    document = {
        **document_head(item.key, Captions.name, recipe, item.source, item.row_id, item.row_index),
        "clip": Clip.of(row).to_dict(),
        "audio": audio_record(shape, rate),
        "caption": captioned[0].text if len(captioned) == 1 else " ".join(w.text for w in captioned),
        "captions": [{"start": w.start, "end": w.end, "text": w.text, "attempts": w.attempts} for w in captioned],
        "captioner": {
            "backend": config.backend,
            **captioner.describe(),
            "input": {"sample_rate": CAPTION_SAMPLE_RATE, "channels": 1},
            "window_seconds": config.window_seconds,
            "seed": seed,
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class CaptionRowMaker(RowMaker):
    """A sound clip into its original audio (FLAC) + captions and attribution (JSON)."""

    def __init__(self, recipe: Recipe, captioner: Captioner | None = None):
        assert recipe.captioner is not None
        self.recipe, self.config = recipe, recipe.captioner
        self.captioner = captioner or load_captioner(self.config.backend, self.config.options)

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        if item.reject_reason:
            raise Rejected(item.reject_reason)
        pcm, rate = read_clip(item.row["audio"])
        seed = sample_seed(self.recipe.seed, item.key, item.generation)
        started = time.perf_counter()
        with timed("caption"):
            captioned = caption_clip(
                self.captioner, pcm, rate, seed, self.config.window_seconds, self.config.max_attempts
            )
        render_seconds = time.perf_counter() - started
        with timed("write"):
            flac = encode_flac(pcm, rate)
            document = caption_document(item, self.recipe, pcm.shape, rate, captioned, self.captioner, seed)
        return written(item, shard, flac, document, pcm.shape[0] / rate, render_seconds)


def attribution_csv(facts) -> bytes:
    """Every captioned clip's credit (CC BY asks for it), one row per sample."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = ["freesound_id", "title", "uploader", "license", "license_name", "source_url", "credit"]
    writer.writerow(["key", *fields])
    for sample in facts.samples:
        writer.writerow([sample.key, *(getattr(sample.clip, field) for field in fields)])
    return buffer.getvalue().encode("utf-8")


class Captions(Kind):
    name = "captions"
    summary = "sound clips kept as they are (FLAC) with English captions per window and their attribution"
    model_stage = "captioner"
    model_record = "captioner"
    language = "en"
    made_from = "sound collections"
    task_categories = ("audio-text-to-text", "audio-classification")
    listening = ("clip", "license")
    required_fields = ("schema_version", "key", "kind", "recipe", "source", "clip", "audio", "captions", "captioner")
    json_fields = {
        "source": "the FSD50K copy it was read from",
        "clip": "Freesound id, title, uploader, license and the credit line CC BY asks for; FSD50K labels",
        "audio": "sample rate, channels, samples, duration",
        "caption": "the clip's English caption",
        "captions": "caption per window (start, end, text)",
        "captioner": "model, serving backend, input format, window and seed",
    }

    def check_recipe(self, recipe: Recipe) -> None:
        if any(s.adapter not in CLIP_ADAPTERS for s in recipe.sources):
            raise ValueError(f"kind 'captions' reads sound collections (adapter {', '.join(CLIP_ADAPTERS)})")
        if recipe.captioner is None:
            raise ValueError("kind 'captions' needs a 'captioner' section")

    def preflight(self, recipe: Recipe, in_process: bool) -> None:
        config = recipe.captioner
        if in_process or config.num_gpus == 0:  # a server that is down stops the run here
            load_captioner(config.backend, config.options)

    def row_maker(self, recipe: Recipe, model: Any = None) -> RowMaker:
        return CaptionRowMaker(recipe, model)

    def estimate_refusal(self) -> str:
        return (
            "koe estimate forecasts the speech a recipe will render; a captions recipe's audio is its clips "
            "(FSD50K: 51,197 clips, 108 h; 43,379 of the clips, 84.7%, are CC0 or CC-BY)"
        )

    def describe_chain(self, recipe: Recipe) -> list[tuple[str, str]]:
        config = recipe.captioner
        sources = ", ".join(f"{s.name} ({s.adapter}: {s.dataset})" for s in recipe.sources)
        return [
            ("parse", f"clips and their licenses from {sources}; only CC0 and CC BY clips are kept"),
            (
                "caption",
                f"mono {CAPTION_SAMPLE_RATE} Hz windows of at most {config.window_seconds:g} s, each captioned in "
                f"English, up to {config.max_attempts} tries with new seeds",
            ),
            ("document", "the clip's own audio (FLAC) + JSON with captions and attribution"),
        ]

    def card_summary(self, recipe: dict[str, Any]) -> dict[str, Any]:
        return {"qc": None, "duplex": None}

    def licenses(self, summary: dict[str, Any]) -> set[str]:
        return {*summary["clip_licenses"], "cc-by-4.0"}  # and FSD50K's labels, as a curated collection

    def how_made(self, summary: dict[str, Any]) -> list[str]:
        made = summary["made_by"]
        return [
            f"- Captioned by `{made.get('model', '?')}` served through `{made.get('backend', '?')}`, "
            f"in windows of at most {made.get('window_seconds', '?')} s."
        ]

    def card_section(self, summaries: list[dict[str, Any]]) -> list[str]:
        return [
            "",
            "## FSD50K attribution",
            "",
            "The captioned clips come from FSD50K (Fonseca et al., 2020, https://zenodo.org/record/4060432; "
            "the collection and its labels are CC BY 4.0). Only clips whose own license allows commercial use "
            "were kept: CC0 and CC BY. CC BY asks for attribution: each sample's JSON carries its clip's "
            "`clip.credit` line (title, uploader, Freesound link, license), and every clip is listed in "
            "`manifests/<config>/<split>/attribution.csv`.",
            "",
            "| config | clip license | clips |",
            "|---|---|---|",
            *[f"| {s['config']} | {name} | {n} |" for s in summaries for name, n in s["clip_licenses"].items()],
        ]

    def published_files(self, facts) -> dict[str, bytes]:
        return {"attribution.csv": attribution_csv(facts)}
