"""`koe estimate`: audio hours and GPU-hours of a recipe before a GPU-hour is spent.

Audio: the first rows of the corpus go through the real adapter and text stages; their readings'
estimated durations and the share of rejected rows are extrapolated to the corpus size. Time: a
real-time factor measured here (rendering a few sampled rows when the backend runs on this
machine), measured on an earlier output of the recipe, or given.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .corpora import count_rows, iter_items, make_adapter
from .keys import sample_seed
from .kinds import kind_named
from .kinds.speech import estimated_seconds, prepare_dialogue
from .manifest import measured_rtf, read_manifest
from .recipe import Recipe
from .records import Dialogue, Rejected
from .render import render_dialogue
from .shards import Output, RunRecord
from .speakers import load_bank
from .tts import load_backend, reads_kana


@dataclass
class Estimate:
    rows: int | None  # rows in the corpus (None: unknown, give --rows)
    sampled: int
    accepted_share: float
    seconds_per_sample: float  # mean estimated audio of an accepted row
    audio_hours: float | None
    rtf: float | None  # render seconds per audio second, per GPU actor (or CPU task)
    rtf_source: str
    render_hours: float | None  # rtf x audio
    gpu_hours: float | None  # render hours x GPUs per actor (0 for CPU backends)

    def to_dict(self) -> dict:
        return asdict(self)


def _sample_dialogues(recipe: Recipe, sample: int) -> tuple[list[Dialogue], int]:
    """The accepted dialogues among the first `sample` rows, text stage applied; and how many rows that was."""
    adapters = {s.name: make_adapter(s) for s in recipe.sources}
    kana = reads_kana(recipe.tts.backend)
    kind = kind_named(recipe.kind)
    accepted, seen = [], 0
    for item in itertools.islice(iter_items(recipe.sources), sample):
        seen += 1
        try:
            accepted.append(prepare_dialogue(item, recipe, kind, adapters[item.source], kana))
        except Rejected:
            continue
    return accepted, seen


def _measure_rtf_here(recipe: Recipe, dialogues: list[Dialogue], count: int) -> float | None:
    """Render a few sampled dialogues with the recipe's backend in this process: seconds per audio second."""
    bank = load_bank(recipe.speakers.bank)
    backend = load_backend(recipe.tts.backend, recipe.tts.options)
    kind = kind_named(recipe.kind)
    roles = kind.voiced_roles
    rendered = spent = 0.0
    for dialogue in dialogues[:count]:
        speakers = kind.voices(bank, dialogue.key, recipe)
        voiced = {role: speakers[role] for role in roles}
        started = time.perf_counter()
        pcm = render_dialogue(
            dialogue,
            roles,
            voiced,
            backend,
            sample_seed(recipe.seed, dialogue.key),
            recipe.tts.sample_rate,
            recipe.render,
        )
        spent += time.perf_counter() - started
        rendered += pcm.size / recipe.tts.sample_rate
    return spent / rendered if rendered else None


def _rtf_of_output(directory: Path) -> float | None:
    """Render seconds per audio second of an earlier run of the recipe (its manifest's timings)."""
    output = Output(directory)
    rtf = measured_rtf(read_manifest(output.manifest_path).to_pylist())
    if rtf is None:
        return None
    recipe = RunRecord.read(output.run_path).recipe if output.run_path.is_file() else None
    concurrency = (recipe or {}).get("tts", {}).get("concurrency", 1)
    return rtf / concurrency  # requests overlapped on one actor share its time


def estimate(
    recipe: Recipe,
    sample: int = 500,
    rows: int | None = None,
    rtf: float | None = None,
    from_output: Path | None = None,
    measure: int = 5,
) -> Estimate:
    kind = kind_named(recipe.kind)
    if kind.estimate_refusal():
        raise ValueError(kind.estimate_refusal())
    dialogues, seen = _sample_dialogues(recipe, sample)
    total = rows if rows is not None else count_rows(recipe.sources)
    accepted_share = len(dialogues) / seen if seen else 0.0
    roles = kind.voiced_roles
    seconds = (
        sum(estimated_seconds(d, roles, recipe.render.turn_gap_seconds) for d in dialogues) / len(dialogues)
        if dialogues
        else 0.0
    )
    audio_hours = total * accepted_share * seconds / 3600 if total is not None else None
    if rtf is not None:
        source = "given (--rtf)"
    elif from_output is not None:
        rtf, source = _rtf_of_output(from_output), f"measured on {from_output}"
    elif recipe.tts.num_gpus == 0 and dialogues:
        rtf, source = (
            _measure_rtf_here(recipe, dialogues, measure),
            f"measured here on {min(measure, len(dialogues))} rows",
        )
    else:
        source = "unknown: the backend needs a GPU; pass --rtf or --from-output DIR of a run of this recipe"
    render_hours = audio_hours * rtf if audio_hours is not None and rtf is not None else None
    gpu_hours = render_hours * recipe.tts.num_gpus if render_hours is not None else None
    return Estimate(total, seen, accepted_share, seconds, audio_hours, rtf, source, render_hours, gpu_hours)
