"""Batching saturation: wall time of a run through the Triton backend against a batching server kept full all the time.

Measured: `run_recipe` with `RayExecutor()` on a local Ray instance that advertises logical GPUs
(`ray.init(num_cpus=2, num_gpus=2)`), synthesis in the GPU actor pool (`tts.num_gpus=1`: one actor per GPU,
`tts.concurrency` requests in flight each), each actor running the `cosyvoice2-triton` backend in start mode: it
launches and supervises its own server, `tests/tritonserver_double.py` standing in for `tritonserver`. That double is
a batching server: it serves `CAPACITY` requests at once, each for `BASE_LATENCY + LATENCY_PER_CHAR x characters`
seconds, and queues the rest, so its throughput grows with the requests in flight up to `CAPACITY` (as upstream's
server does up to what its BLS instances and TensorRT-LLM batch). Ideal, from the same run: all the service time the
servers logged, spread over every server's capacity:

    ideal = sum of service seconds / (servers x CAPACITY)
    ratio = (end of the run - first server launched) / ideal, target <= 1.05

The clock starts when the first actor launches its server: what comes before is Ray starting the actors' worker
processes, which for a real model is loading it (minutes for CosyVoice's TensorRT engines), and no scheduling can
fill a server that is not there. The shard tasks start in that time too, so their requests wait at the server when
it comes up. The whole wall from `run_recipe` on is printed as well (on these 2 CPUs, about 5-10 s of it is the
worker processes of tasks and actors starting at once); Ray's own start-up (`ray.init`) is excluded. It also prints
how busy the servers' slots were per 5 s and how many requests waited in their queues (requests queued at a server
mean it never starved).

The recipe keeps a deep queue possible: `tts.concurrency` 64 per actor (4x what its server serves at once), shard
tasks of 0.25 CPU keeping 8 rows in flight each, each row sending up to 4 requests at once
(`execution.row_requests_in_flight`: its turns and the pieces of its long turns), as many shard tasks as koe sizes
for the pool by default (only 8 run at once on 2 CPUs). `--set KEY=VALUE` overrides recipe keys, `--rows N` the
corpus.
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
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from common import REPO, Stopwatch, magpie_rows, ratio_line, task_spans, write_jsonl, write_recipe

from pipeline.recipe import Recipe, load_recipe

CPUS = 2
SERVERS = 2  # logical GPUs: one actor, one server each
CAPACITY = 8  # requests each server serves at once
BASE_LATENCY = 0.3  # seconds per request ...
LATENCY_PER_CHAR = 0.005  # ... plus this per character of its text (80 characters: 0.7 s)
# Two waves of shard tasks: 16 shards of 60 rows, 8 tasks of 0.25 CPU at once on 2 CPUs, the second wave starting as
# the first ends (so a task's start and its drain, its last rows finishing with fewer in flight, are measured while
# the servers should stay full). About 3 minutes of ideal time: the servers' first seconds, while 8 task processes
# start on 2 CPUs, are a fixed cost that a run of hours does not see, and this keeps it to a few percent.
ROWS = 960
ROWS_PER_SHARD = 60
SEED = 2
FAKE_TRITONSERVER = [sys.executable, str(REPO / "tests" / "tritonserver_double.py")]
DEFAULTS = [
    "tts.backend=cosyvoice2-triton",
    "qc.enabled=false",  # the double's audio is a tone; the gate's CPU cost is bench/qc_share.py's
    "tts.num_gpus=1",
    "tts.cpus_per_actor=0",
    "tts.concurrency=64",
    "execution.cpus_per_task=0.25",
    "execution.items_in_flight=8",
    "execution.row_requests_in_flight=4",  # 8 tasks x 8 rows x 4: up to 256 requests for 16 slots
]


def reference_bank(folder: Path) -> Path:
    """Two voices with 5 s recordings (tones) and transcripts, as a voice-cloning backend needs."""
    speakers = []
    for i in range(2):
        t = np.arange(5 * 24000) / 24000
        sf.write(folder / f"s{i}.wav", (0.1 * np.sin(2 * np.pi * (180 + 60 * i) * t)).astype(np.float32), 24000)
        entry = {"id": f"s{i}", "name": f"s{i}", "gender": "f", "age_band": "30s", "license": "CC0", "source": "bench"}
        speakers.append(
            {**entry, "reference_audio": f"s{i}.wav", "transcript": "コンニチワ、キョウワ イイ テンキ デスネ。"}
        )
    path = folder / "bank.yaml"
    path.write_text(yaml.safe_dump({"speakers": speakers}, allow_unicode=True))
    return path


def model_repository(folder: Path) -> Path:
    repository = folder / "model_repo"
    repository.mkdir()
    server = {"capacity": CAPACITY, "base_latency": BASE_LATENCY, "latency_per_char": LATENCY_PER_CHAR}
    (repository / "kserve_double.json").write_text(json.dumps({"server": server}))
    return repository


def make_recipe(work: Path, repository: Path, overrides: list[str], rows: int = ROWS) -> Recipe:
    corpus = write_jsonl(work / "corpus.jsonl", magpie_rows(rows, SEED))
    start = {"model_repository": str(repository), "command": FAKE_TRITONSERVER, "log_dir": str(work)}
    path = write_recipe(work, corpus, output={"rows_per_shard": ROWS_PER_SHARD})
    settings = [f"speakers.bank={reference_bank(work)}", f"tts.options={json.dumps({'start': start})}"]
    return load_recipe(path, [*DEFAULTS, *settings, *overrides])


def served(repository: Path) -> list[dict]:
    return [json.loads(line) for log in repository.glob("infers-*.jsonl") for line in log.read_text().splitlines()]


def busy_by_interval(requests: list[dict], slots: int, start: float, end: float, step: float) -> str:
    shares, t = [], start
    while t < end:
        overlap = sum(max(0.0, min(r["ended"], t + step) - max(r["started"], t)) for r in requests)
        shares.append(f"{overlap / (slots * min(step, end - t)):.0%}")
        t += step
    return " ".join(shares)


def mean_present(requests: list[dict], key: str, start: float, end: float) -> float:
    """Mean number of requests between `key` (queued or started) and their end, over [start, end]."""
    return sum(max(0.0, min(r["ended"], end) - max(r[key], start)) for r in requests) / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--rows", type=int, default=ROWS, help=f"corpus rows (default {ROWS})")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="koe-bench-batching-"))
    try:
        repository = model_repository(work)
        recipe = make_recipe(work, repository, args.overrides, args.rows)
        import ray

        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        with Stopwatch() as ray_start:
            ray.init(num_cpus=CPUS, num_gpus=SERVERS, include_dashboard=False, logging_level=logging.WARNING)
        try:
            from pipeline.executors import RayExecutor
            from pipeline.run import run_recipe

            started = time.time()
            summary = run_recipe(recipe, work / "out", RayExecutor(), show_progress=False)
            ended = time.time()
            tasks = task_spans(ray, "_run_shard_task")
        finally:
            ray.shutdown()
        requests = served(repository)
        slots = SERVERS * CAPACITY
        service = sum(r["ended"] - r["started"] for r in requests)
        ideal = service / slots
        wall = ended - started
        first = min(r["started"] for r in requests)
        launches = [json.loads(line) for line in (repository / "starts.jsonl").read_text().splitlines()]
        launched = min(launch["time"] for launch in launches)
        print(
            f"config: {SERVERS} servers x capacity {CAPACITY} = {slots} slots, {BASE_LATENCY} s + "
            f"{LATENCY_PER_CHAR} s/char per request; {args.rows} rows in shards of {recipe.output.rows_per_shard}; "
            f"tts.concurrency {recipe.tts.concurrency} per actor, {recipe.execution.items_in_flight} rows in flight "
            f"per task, {recipe.execution.row_requests_in_flight} requests per row (cpus_per_task "
            f"{recipe.execution.cpus_per_task} on {CPUS} CPUs)"
        )
        print(f"rows: {dict(summary.statuses)}; requests served: {len(requests)}; server launches: {len(launches)}")
        print(f"ray start-up: {ray_start.seconds:.1f} s (excluded)")
        print(f"wall: {wall:.1f} s; ideal: {service:.1f} service-s / {slots} slots = {ideal:.1f} s")
        print(
            f"start-up: first server launched at {launched - started:.1f} s, first request served at {first - started:.1f} s"
        )
        print(f"slots busy per 5 s: {busy_by_interval(requests, slots, started, ended, 5.0)}")
        waits = sorted(r["started"] - r["queued"] for r in requests)
        print(
            f"at the servers, from the first request to the last: {mean_present(requests, 'queued', first, ended):.0f} "
            f"requests present on average ({mean_present(requests, 'started', first, ended):.1f} being served); "
            f"queue wait median {waits[len(waits) // 2]:.2f} s"
        )
        print("shard tasks (start-end, s): " + " ".join(f"{a - started:.0f}-{b - started:.0f}" for a, b in tasks))
        print(f"whole wall / ideal, with the worker processes starting: {wall / ideal:.3f}")
        print(ratio_line("batching_saturation", (ended - launched) / ideal, "<=", 1.05))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
