"""Pipeline efficiency: audio seconds per wall second of `koe run` against the bare TTS loop.

Measured: `run_recipe` with `RayExecutor()` on a local Ray instance using every core, embedded
backend (`openjtalk`), on a generated magpie-schema corpus, with shards small enough that each
core gets several. Baseline, in the same run: the bare backend loop in this one process,
`load_backend("openjtalk", ...).synthesize(...)` over exactly the pieces the pipeline sends (the
spoken text of every user turn, split to `max_chars`, each with the speaker the pipeline assigns,
whose speed changes the length), scaled by the number of cores.

    ratio = pipeline audio-seconds/s / (bare audio-seconds/s x cores), target >= 0.85

The gap of silence that the pipeline inserts between the turns of a multi-turn sample is not
counted as produced audio (it costs nothing to make). Ray start-up (`ray.init`) is timed separately
and excluded from the pipeline time; the ratio including it is printed too. Everything else that
`koe run` does is inside the pipeline time: planning, worker start-up, text stage, rendering,
resampling, FLAC, tar, manifest. The quality gate is off here (`qc.enabled=false`): it is work the
bare loop does not do, and its cost against a render is what `qc_share.py` measures.

A control, also in the same run: the bare loop in `cores` processes at once (calls balanced by
length). On a shared VM two busy processes do not always get twice the work of one (1.3x-1.95x was
seen on the 2-core machine this was written on), so the pipeline rate against the control separates
koe's own overhead from the machine's scaling. The pipeline's cores x wall is also split, from Ray's
timeline, into synthesis, koe's other work inside shard tasks, start-up, the end, and idle cores.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import Stopwatch, magpie_rows, ratio_line, task_spans, write_jsonl, write_recipe

from pipeline.corpora import iter_items, make_adapter
from pipeline.kinds.speech import speak_turns
from pipeline.recipe import Recipe, load_recipe
from pipeline.records import Dialogue
from pipeline.speakable import split_for_tts
from pipeline.speakers import assign_speakers, load_bank
from pipeline.tts import load_backend

ROWS = 32
ROWS_PER_SHARD = 2
SEED = 1
ROLES = ("user",)


def spoken_calls(recipe: Recipe, max_chars: int) -> tuple[list[tuple], int]:
    """Every (text piece, speaker, seed) the pipeline will send to the backend, and the turn gaps it adds.

    The seed is 0: the embedded backend is deterministic and ignores it.
    """
    bank = load_bank(recipe.speakers.bank)
    adapters = {s.name: make_adapter(s) for s in recipe.sources}
    calls, gaps = [], 0
    for item in iter_items(recipe.sources):
        turns = adapters[item.source].parse(item.row).turns
        dialogue = Dialogue(item.key, item.source, item.row_index, item.row_id, turns)
        speak_turns(dialogue, ROLES, recipe.text.max_turn_chars, tts_reads_kana=False)
        speaker = assign_speakers(bank, item.key, recipe.seed)["user"]
        spoken = dialogue.spoken_turns(ROLES)
        gaps += len(spoken) - 1
        for turn in spoken:
            calls.extend((piece, speaker, 0) for piece in split_for_tts(turn.tts_text, max_chars))
    return calls, gaps


def bare_loop(recipe: Recipe, calls: list[tuple]) -> tuple[float, float]:
    """Audio seconds and wall seconds of the backend alone over `calls`, in this process."""
    backend = load_backend(recipe.tts.backend, recipe.tts.options)
    backend.synthesize("準備です。", calls[0][1], 0)  # load the voice outside the timing
    audio = 0.0
    with Stopwatch() as watch:
        for text, speaker, seed in calls:
            audio += backend.synthesize(text, speaker, seed).size / backend.sample_rate
    return audio, watch.seconds


def _bare_worker(recipe: Recipe, calls: list[tuple], results) -> None:
    results.put(bare_loop(recipe, calls))


def parallel_bare_loop(recipe: Recipe, calls: list[tuple], processes: int) -> tuple[float, float]:
    """The bare loop in `processes` processes at once, calls balanced by length: what the machine can do.

    Returns audio seconds and the wall seconds until the last process finished.
    """
    shares: list[list[tuple]] = [[] for _ in range(processes)]
    for call in sorted(calls, key=lambda c: len(c[0]), reverse=True):
        min(shares, key=lambda share: sum(len(c[0]) for c in share)).append(call)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    workers = [context.Process(target=_bare_worker, args=(recipe, share, results)) for share in shares]
    for worker in workers:
        worker.start()
    outcomes = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(audio for audio, _ in outcomes), max(wall for _, wall in outcomes)


def start_ray():
    """A local Ray instance on every core, started as `RayExecutor` would start it."""
    import ray

    ray.init(include_dashboard=False, logging_level=logging.WARNING, configure_logging=True, log_to_driver=True)
    return ray


@dataclass
class PipelineRun:
    audio: float  # seconds of audio written (turn gaps included)
    wall: float  # run_recipe, from call to return
    ray_start: float  # ray.init, before it
    before_first_task: float  # from the call until the first shard task ran
    after_last_task: float  # from the end of the last shard task until the call returned
    task_seconds: float  # shard tasks' running time, summed


def measure_pipeline(recipe: Recipe, output: Path) -> PipelineRun:
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    with Stopwatch() as ray_start:
        ray = start_ray()
    try:
        started = time.time()
        summary = run_recipe(recipe, output, RayExecutor(), show_progress=False)
        ended = time.time()
        tasks = task_spans(ray, "_run_shard_task")
    finally:
        ray.shutdown()
    written = summary.statuses.get("written", 0)
    if written != summary.inputs:
        sys.exit(f"pipeline wrote {written} of {summary.inputs} rows ({dict(summary.statuses)}): not the same work")
    if not tasks:
        sys.exit("no shard task in Ray's timeline: cannot split the pipeline's time")
    return PipelineRun(
        audio=summary.audio_hours * 3600,
        wall=ended - started,
        ray_start=ray_start.seconds,
        before_first_task=tasks[0][0] - started,
        after_last_task=ended - max(end for _, end in tasks),
        task_seconds=sum(end - start for start, end in tasks),
    )


def where_core_time_went(run: PipelineRun, speech: float, control_rate: float, cores: int) -> None:
    """The pipeline's cores x wall, split: synthesis itself, koe's other work in the tasks, and idle cores."""
    total = run.wall * cores
    synthesis = speech / (control_rate / cores)  # the bare loop's core-seconds at the control's per-process speed
    other = run.task_seconds - synthesis
    startup, ending = run.before_first_task * cores, run.after_last_task * cores
    parts = {
        "synthesis (the bare loop's work at the control's per-process speed)": synthesis,
        "koe's other work inside shard tasks (text stage, resampling, FLAC, tar, manifest)": other,
        f"before the first shard task ran ({run.before_first_task:.1f} s: workers start, import koe)": startup,
        f"after the last shard task ended ({run.after_last_task:.1f} s: manifest, run record)": ending,
        "cores idle in between (uneven last shards, task hand-over)": total - run.task_seconds - startup - ending,
    }
    print(f"pipeline core time: {run.wall:.1f} s x {cores} cores = {total:.1f} core-s")
    for part, seconds in parts.items():
        print(f"  {seconds:6.1f} core-s ({seconds / total:4.0%})  {part}")


def main() -> None:
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="koe-bench-efficiency-"))
    try:
        corpus = write_jsonl(work / "corpus.jsonl", magpie_rows(ROWS, SEED))
        # the quality gate is real work but not orchestration: its share is measured by bench/qc_share.py
        recipe = load_recipe(
            write_recipe(work, corpus, output={"rows_per_shard": ROWS_PER_SHARD}), ["qc.enabled=false"]
        )
        max_chars = load_backend(recipe.tts.backend, recipe.tts.options).max_chars
        calls, gaps = spoken_calls(recipe, max_chars)
        print(f"corpus: {ROWS} rows in {-(-ROWS // ROWS_PER_SHARD)} shards of {ROWS_PER_SHARD}; {cores} cores")
        print(f"work: {len(calls)} synthesis calls, {sum(len(c[0]) for c in calls)} characters")

        bare_audio, bare_wall = bare_loop(recipe, calls)
        bare_rate = bare_audio / bare_wall
        print(f"bare loop, 1 process: {bare_audio:.1f} s audio in {bare_wall:.1f} s = {bare_rate:.2f} audio-s/s")
        par_audio, par_wall = parallel_bare_loop(recipe, calls, cores)
        par_rate = par_audio / par_wall
        print(
            f"bare loop, {cores} processes at once (control): {par_wall:.1f} s = {par_rate:.2f} audio-s/s, "
            f"{par_rate / bare_rate:.2f}x one process"
        )

        run = measure_pipeline(recipe, work / "out")
        gap_seconds = gaps * recipe.render.turn_gap_seconds
        speech = run.audio - gap_seconds
        rate = speech / run.wall
        ideal = bare_rate * cores
        print(f"ray start-up: {run.ray_start:.1f} s (excluded from the pipeline time below)")
        print(
            f"pipeline: {speech:.1f} s speech (+{gap_seconds:.1f} s of turn gaps, not counted) in {run.wall:.1f} s "
            f"= {rate:.2f} audio-s/s"
        )
        where_core_time_went(run, speech, par_rate, cores)
        print(f"ideal: bare rate x {cores} cores = {ideal:.2f} audio-s/s")
        print(f"ratio including ray start-up: {speech / (run.wall + run.ray_start) / ideal:.3f}")
        print(f"ratio against the {cores}-process control (the machine's own scaling): {rate / par_rate:.3f}")
        print(ratio_line("pipeline_efficiency", rate / ideal, ">=", 0.85))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
