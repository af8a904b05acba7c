"""GPU saturation: wall time of a GPU-actor run against the ideal of every actor slot busy all the time.

Measured: `run_recipe` with `RayExecutor()` on a local Ray instance that advertises logical GPUs
(`ray.init(num_cpus=2, num_gpus=4)`), synthesis in the actor pool (`tts.num_gpus=1`: one actor
per GPU, `tts.concurrency` requests each, `tts.cpus_per_actor=0`), and a test-double model
(`latency_tts_double.py`) that takes a fixed time per call and holds no CPU, as a GPU forward pass
would. Ideal, from the same run: every synthesize call (texts are split into pieces of at most
`max_chars`, so calls are counted in the actors' log, not rows) at the fixed latency, spread over
every slot:

    ideal = calls x latency / (actors x concurrency);  ratio = wall / ideal, target <= 1.05

The recipe follows the production recipes: shard tasks of 0.25 CPU keeping 8 rows in flight each,
as many shard tasks in flight as koe sizes for the pool by default.

Ray start-up (`ray.init`) is excluded and reported; starting the actor pool and the shard-task
workers is part of the run (the ratio without the start-up is printed too). The script then says
where the time beyond the ideal went, as idle slot-seconds / slots: start-up, shard hand-over, too
few requests possible, slots idle between calls, and the tail when fewer shard tasks remain. With
`--probe`, `dispatch_probe.py` also times every request in the shard tasks, so that idle slots can
be put down to requests queued on a busy actor while a slot elsewhere was free (dispatch), or to
results on their way back (Ray call overhead); the probe is a Ray `worker_process_setup_hook`,
which slows start-up.

`--set KEY=VALUE` overrides recipe keys (as `koe run --set` does), e.g. one request per shard task:
`--set execution.items_in_flight=1 --set execution.max_tasks_in_flight=64 --set output.rows_per_shard=5`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import REPO, Stopwatch, magpie_rows, ratio_line, task_spans, write_jsonl, write_recipe
from dispatch_probe import PROBE_DIR

from pipeline.recipe import Recipe, load_recipe

CPUS = 2
GPUS = 4  # logical: one actor each
LATENCY = 0.5  # seconds per synthesize call
ROWS = 240
ROWS_PER_SHARD = 20
SEED = 2
DEFAULTS = [
    "tts.backend=bench.latency_tts_double",
    "qc.enabled=false",  # the double's audio is no speech; the gate's CPU cost is bench/qc_share.py's
    "tts.num_gpus=1",
    "tts.cpus_per_actor=0",
    "tts.concurrency=2",
    "execution.cpus_per_task=0.25",  # as the production recipes: shard tasks mostly wait on the actors
    "execution.items_in_flight=8",  # as the production recipes; shard tasks in flight: koe's default for the pool
]


def make_recipe(work: Path, calls_dir: Path, overrides: list[str]) -> Recipe:
    corpus = write_jsonl(work / "corpus.jsonl", magpie_rows(ROWS, SEED))
    options = {"latency_seconds": LATENCY, "calls_dir": str(calls_dir)}
    path = write_recipe(work, corpus, output={"rows_per_shard": ROWS_PER_SHARD})
    return load_recipe(path, [*DEFAULTS, f"tts.options={json.dumps(options)}", *overrides])


def start_ray(probe_dir: Path | None):
    """Local Ray with logical GPUs, whose workers import `bench.*`; with `probe_dir`, they run the request probe."""
    import ray

    # Workers inherit this environment from the local raylet (a runtime_env would cost start-up time).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    options = {}
    if probe_dir:
        os.environ[PROBE_DIR] = str(probe_dir)
        options["runtime_env"] = {"worker_process_setup_hook": "bench.dispatch_probe.install"}
    ray.init(num_cpus=CPUS, num_gpus=GPUS, include_dashboard=False, logging_level=logging.WARNING, **options)
    return ray


def read_log(folder: Path, pattern: str) -> list[list[str]]:
    return [line.split() for log in sorted(folder.glob(pattern)) for line in log.read_text().splitlines()]


def segments(start: float, end: float, **intervals: list[tuple[float, float]]):
    """Sweep [start, end]: yields (seconds, {name: how many of that name's intervals are open})."""
    changes = sorted(
        (t, name, step) for name, spans in intervals.items() for a, b in spans for t, step in ((a, 1), (b, -1))
    )
    open_now = dict.fromkeys(intervals, 0)
    previous = start
    for t, name, step in changes:
        if t > previous and previous < end:
            yield min(t, end) - previous, dict(open_now)
            previous = min(t, end)
        open_now[name] += step
    if previous < end:
        yield end - previous, dict(open_now)


def steady_window(tasks: list[tuple[float, float]], started: float, ended: float) -> tuple[float, float, int]:
    """From when the most shard tasks first run at once until the last time they still do, and that most."""
    counts = list(segments(started, ended, tasks=tasks))
    peak = max(n["tasks"] for _, n in counts)
    t, times = started, []
    for seconds, n in counts:
        if n["tasks"] == peak:
            times += [t, t + seconds]
        t += seconds
    return min(times), max(times), peak


def idle_slot_seconds(spans: dict, slots: int, in_flight: int, started: float, ended: float) -> dict[str, float]:
    """Slot-seconds left idle during the run, each put down to the first cause that explains it."""
    ramp_end, tail_start, peak = steady_window(spans["tasks"], started, ended)
    lost = dict.fromkeys(CAUSES, 0.0)
    t = started
    for seconds, n in segments(started, ended, **spans):
        free = max(0, slots - n["calls"])
        if t < ramp_end or t >= tail_start:
            lost["start-up" if t < ramp_end else "tail"] += free * seconds
        else:
            dispatch = min(free, n["waiting"])
            transit = min(free - dispatch, n["returning"])
            rest = free - dispatch - transit
            lost["waiting for a busy actor"] += dispatch * seconds
            lost["result on its way back"] += transit * seconds
            if n["tasks"] < peak:
                lost["shard hand-over"] += rest * seconds
            else:
                few = min(rest, max(0, slots - n["tasks"] * in_flight))
                lost["too few requests possible"] += few * seconds
                lost["between calls"] += (rest - few) * seconds
        t += seconds
    return lost


WITH_PROBE = ("waiting for a busy actor", "result on its way back")  # need request times from the tasks
WITHOUT_PROBE = "tasks had fewer requests out than free slots, or requests queued on busy actors (--probe splits)"
CAUSES = {
    "start-up": "run start until the most shard tasks run at once (actor pool, worker processes, imports)",
    "waiting for a busy actor": "a request queued on an actor at its concurrency while this slot was free",
    "result on its way back": "call done, audio not yet back in its shard task (Ray call overhead)",
    "shard hand-over": "fewer shard tasks than at the peak, between one ending and the next starting",
    "too few requests possible": "shard tasks at once x items in flight < slots",
    "between calls": "tasks had fewer requests out than free slots: rows written in order, text stage, FLAC, tar",
    "tail": "from when fewer shard tasks than at the peak remain, to the end of the run",
}


def busy_by_interval(calls: list[tuple[float, float]], slots: int, start: float, end: float, step: float) -> str:
    """Share of slot time busy in each `step`-second interval of the run, e.g. `12% 80% 97% ...`."""
    shares = []
    t = start
    while t < end:
        overlap = sum(max(0.0, min(e, t + step) - max(s, t)) for s, e in calls)
        shares.append(f"{overlap / (slots * min(step, end - t)):.0%}")
        t += step
    return " ".join(shares)


@dataclass
class Measured:
    """One run: its wall clock, the actors' and the tasks' logs of every call, Ray's task spans."""

    started: float
    ended: float
    ray_start: float
    statuses: dict
    calls: list[list[str]]  # actor, call key, start, end
    requests: list[list[str]]  # call key, sent, returned (only with --probe)
    tasks: list[tuple[float, float]]  # shard tasks running
    pool_ready: float | None  # when the first actor answered

    @property
    def wall(self) -> float:
        return self.ended - self.started


def measure(recipe: Recipe, work: Path, calls_dir: Path, probe_dir: Path | None) -> Measured:
    with Stopwatch() as ray_start:
        ray = start_ray(probe_dir)
    try:
        from pipeline.executors import RayExecutor
        from pipeline.run import run_recipe

        started = time.time()
        summary = run_recipe(recipe, work / "out", RayExecutor(), show_progress=False)
        ended = time.time()
        tasks = task_spans(ray, "_run_shard_task")
        pool = task_spans(ray, "ModelActor.info")
    finally:
        ray.shutdown()
    return Measured(
        started,
        ended,
        ray_start.seconds,
        dict(summary.statuses),
        read_log(calls_dir, "*.log"),
        read_log(probe_dir, "*.requests") if probe_dir else [],
        tasks,
        pool[0][1] if pool else None,
    )


def report_waits(run: Measured) -> dict[str, list]:
    """Match requests (task side) to calls (actor side) by key; returns the spans for `idle_slot_seconds`."""
    calls = {key: (float(s), float(e)) for _, key, s, e in run.calls}
    requests = {key: (float(sent), float(back)) for key, sent, back in run.requests}
    matched = [(requests[k][0], *calls[k], requests[k][1]) for k in calls if k in requests]
    if matched:
        waits = sorted(start - sent for sent, start, _, _ in matched)
        queued = sum(w > 0.05 for w in waits)
        print(
            f"requests timed in shard tasks: {len(matched)} of {len(run.calls)} calls; wait before an actor ran one: "
            f"median {waits[len(waits) // 2] * 1000:.0f} ms, mean {sum(waits) / len(waits) * 1000:.0f} ms, "
            f"> 50 ms for {queued / len(waits):.0%}"
        )
    return {
        "calls": [(float(s), float(e)) for _, _, s, e in run.calls],
        "waiting": [(sent, start) for sent, start, _, _ in matched],
        "returning": [(end, back) for _, _, end, back in matched],
        "tasks": run.tasks,
    }


def report(run: Measured, slots: int, in_flight: int) -> None:
    first_call = min(float(start) for _, _, start, _ in run.calls)
    pool = f"actor pool answered at {run.pool_ready - run.started:.1f} s, " if run.pool_ready else ""
    print(
        f"start-up: {pool}first shard task ran at {run.tasks[0][0] - run.started:.1f} s, "
        f"first synthesize call at {first_call - run.started:.1f} s"
    )
    spans = report_waits(run)
    print(f"slots busy per 5 s of the run: {busy_by_interval(spans['calls'], slots, run.started, run.ended, 5.0)}")
    print("wall time beyond the ideal (idle slot-seconds / slots), by cause:")
    lost = idle_slot_seconds(spans, slots, in_flight, run.started, run.ended)
    for cause, seconds in lost.items():
        if run.requests or cause not in WITH_PROBE:
            explanation = CAUSES[cause] if run.requests or cause != "between calls" else WITHOUT_PROBE
            print(f"  {seconds / slots:6.1f} s  {cause}: {explanation}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--probe", action="store_true", help="time requests in the shard tasks (slows start-up)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # the recipe names bench.latency_tts_double: this process imports it too
    work = Path(tempfile.mkdtemp(prefix="koe-bench-gpu-"))
    try:
        calls_dir, probe_dir = work / "calls", work / "requests"
        calls_dir.mkdir()
        probe_dir.mkdir()
        recipe = make_recipe(work, calls_dir, args.overrides)
        run = measure(recipe, work, calls_dir, probe_dir if args.probe else None)
        slots = GPUS * recipe.tts.concurrency
        in_flight = recipe.execution.items_in_flight
        ideal = len(run.calls) * LATENCY / slots
        peak = max(n["tasks"] for _, n in segments(run.started, run.ended, tasks=run.tasks))
        print(
            f"config: {GPUS} actors x concurrency {recipe.tts.concurrency} = {slots} slots, latency {LATENCY} s; "
            f"{ROWS} rows in shards of {recipe.output.rows_per_shard}; up to {peak} shard tasks at once "
            f"(cpus_per_task {recipe.execution.cpus_per_task} on {CPUS} CPUs), {in_flight} rows in flight per task"
        )
        print(f"rows: {run.statuses}; synthesize calls: {len(run.calls)}")
        print(f"ray start-up: {run.ray_start:.1f} s (excluded)")
        print(f"wall: {run.wall:.1f} s; ideal: {len(run.calls)} calls x {LATENCY} s / {slots} slots = {ideal:.1f} s")
        report(run, slots, in_flight)
        startup = min(float(start) for _, _, start, _ in run.calls) - run.started
        print(f"ratio without the start-up before the first call: {(run.wall - startup) / ideal:.3f}")
        print(ratio_line("gpu_saturation", run.wall / ideal, "<=", 1.05))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
