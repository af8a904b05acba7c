"""The GPU day's one script: each TTS route and the captioner on this node's GPUs, measured.

For every route whose model folder is staged (`--models`, default /models), it runs a koe recipe on a
local Ray instance over generated input and prints, per route:

- GPU-h per audio hour: GPUs held by the actor pool x wall time, over the audio produced (for the
  captioner: the audio captioned). Model loading is inside the wall time, so short runs read high;
- the real-time factor of one request: render time summed over samples / audio;
- GPU utilisation: the mean of `nvidia-smi` samples every 0.5 s over the run, on the GPUs used;
- rows per second (written rows / wall), and the CPU share of the shard tasks: CPU seconds of the
  Ray worker processes other than the model actors, over cores x wall.

Inputs are made here so that nothing but the staged models is needed: magpie-schema rows from
bench/common.py, a four-voice reference bank rendered with the embedded OpenJTalk backend (CosyVoice
clones any clean voice), and an FSD50K-layout collection of CC0 clips copied from the demo data. The
node needs what `cluster/README.md` gives a GPU node: koe, Ray and the routes' environments (the
recipes' `runtime_env`s). Budget: about 10 minutes on one H200 with the defaults. `--routes cosyvoice2-x2`
measures the in-process backend with two actors sharing each GPU (`tts.num_gpus=0.5`) against `cosyvoice2`.

    python bench/gpu/run.py [--models /models] [--routes cosyvoice2,cosyvoice2-triton,captioner] [--rows 400]

Without a GPU it says so and exits 2. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

from common import magpie_rows, ratio_line, write_jsonl  # noqa: E402

from pipeline.executors import RayExecutor  # noqa: E402
from pipeline.recipe import load_recipe  # noqa: E402
from pipeline.run import run_recipe  # noqa: E402

TARGET_GPU_H_PER_AUDIO_H = 0.03  # issue 15's goal for synthesis
VOICES = [
    "こんにちは。今日は天気がいいので、少し散歩に出かけようと思います。",
    "お問い合わせありがとうございます。担当の者から折り返しご連絡いたします。",
]
DEMO_CLIPS = REPO / "recipes" / "data" / "fsd50k"


@dataclass(frozen=True)
class Route:
    """One way of running a GPU stage: a recipe, the overrides that select the route, its model folder."""

    name: str
    recipe: str
    model_folder: str  # under --models: the route is skipped when it is missing or empty
    overrides: tuple[str, ...]
    input_kind: str = "rows"  # "rows" (magpie corpus) or "clips" (FSD50K layout)
    by_default: bool = True  # run without --routes (the default set fits the 10 minutes)


ROUTES = [
    Route(
        "cosyvoice2",  # the in-process backend in one actor per GPU (vLLM LLM + TensorRT flow)
        "recipes/sft_magpie.yaml",
        "CosyVoice2-0.5B",
        ("tts.options.model_dir={models}/CosyVoice2-0.5B",),
    ),
    Route(
        "cosyvoice2-x2",  # the same, two actors sharing each GPU (tts.num_gpus 0.5): does a second model fill it?
        "recipes/sft_magpie.yaml",
        "CosyVoice2-0.5B",
        ("tts.options.model_dir={models}/CosyVoice2-0.5B", "tts.num_gpus=0.5"),
        by_default=False,
    ),
    Route(
        "cosyvoice2-triton",  # upstream's Triton / TensorRT-LLM runtime, one tritonserver per GPU started by koe
        "recipes/sft_magpie.yaml",
        "cosyvoice2_triton/model_repo",
        ("profile=triton", "tts.options.start.model_repository={models}/cosyvoice2_triton/model_repo"),
    ),
    Route(
        "captioner",  # Qwen3-Omni-Captioner in vLLM, one engine per GPU
        "recipes/captions_fsd50k.yaml",
        "Qwen3-Omni-30B-A3B-Captioner",
        ("captioner.options.model_dir={models}/Qwen3-Omni-30B-A3B-Captioner",),
        input_kind="clips",
    ),
]


def gpus_here() -> int:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines()) if listed.returncode == 0 else 0


class Utilisation:
    """`nvidia-smi` sampled every 0.5 s while the block runs: the mean utilisation (%) over all GPUs."""

    def __enter__(self) -> Utilisation:
        command = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "500"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.samples: list[float] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            if line.strip().isdigit():
                self.samples.append(float(line))

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self.reader.join(timeout=5)

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


class ShardTaskCpu:
    """CPU seconds of Ray's worker processes other than the model actors, read from /proc once a second."""

    def __enter__(self) -> ShardTaskCpu:
        self.ticks: dict[int, int] = {}
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(1.0):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    title = (proc / "cmdline").read_bytes().split(b"\0")[0]
                    stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # the process ended
                if title.startswith(b"ray::") and b"ModelActor" not in title:
                    self.ticks[int(proc.name)] = max(self.ticks.get(int(proc.name), 0), int(stat[11]) + int(stat[12]))

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.sampler.join(timeout=10)

    @property
    def seconds(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def reference_bank(folder: Path) -> Path:
    """Four voices rendered with OpenJTalk (pitch and speed variants), as a reference bank for cloning."""
    from pipeline.speakers import Speaker
    from pipeline.tts import backend_options, load_backend

    backend = load_backend("openjtalk", backend_options("openjtalk", {}))
    speakers = []
    for index, (half_tone, speed) in enumerate([(-3, 0.95), (0, 1.0), (3, 1.0), (5, 1.05)]):
        text = VOICES[index % len(VOICES)]
        entry = {
            "id": f"v{index}",
            "name": f"voice {index}",
            "gender": "f",
            "age_band": "30s",
            "license": "CC BY 3.0 (the HTS voice mei)",
            "source": "rendered by bench/gpu/run.py with OpenJTalk",
        }
        voice = Speaker(**entry, openjtalk={"half_tone": half_tone, "speed": speed})
        sf.write(folder / f"v{index}.wav", backend.synthesize(text, voice, seed=index), backend.sample_rate)
        speakers.append({**entry, "reference_audio": f"v{index}.wav", "transcript": text})
    bank = folder / "bank.yaml"
    bank.write_text(yaml.safe_dump({"speakers": speakers}, allow_unicode=True), encoding="utf-8")
    return bank


def clip_collection(folder: Path, clips: int) -> Path:
    """An FSD50K-layout folder of `clips` CC0 clips, each a copy of one of the demo's kept sounds."""
    root = folder / "fsd50k"
    for part in ("FSD50K.ground_truth", "FSD50K.metadata", "FSD50K.dev_audio", "FSD50K.eval_audio"):
        (root / part).mkdir(parents=True)
    sounds = sorted((DEMO_CLIPS / "FSD50K.dev_audio").glob("*.wav"))
    info, lines = {}, ["fname,labels,mids,split"]
    for index in range(clips):
        fname = str(980000000 + index)
        shutil.copy(sounds[index % len(sounds)], root / "FSD50K.dev_audio" / f"{fname}.wav")
        lines.append(f"{fname},Bell,/m/0395lw,train")
        cc0 = "http://creativecommons.org/publicdomain/zero/1.0/"
        info[fname] = {"title": f"bench clip {index}", "uploader": "koe", "license": cc0}
    (root / "FSD50K.ground_truth" / "dev.csv").write_text("\n".join(lines) + "\n")
    (root / "FSD50K.ground_truth" / "eval.csv").write_text("fname,labels,mids\n")
    (root / "FSD50K.metadata" / "dev_clips_info_FSD50K.json").write_text(json.dumps(info))
    (root / "FSD50K.metadata" / "eval_clips_info_FSD50K.json").write_text("{}")
    return root


@dataclass
class Measured:
    route: str
    rows: int = 0
    wall_seconds: float = 0.0
    audio_hours: float = 0.0
    gpu_hours: float = 0.0
    render_hours: float = 0.0
    utilisation: float = float("nan")
    shard_cpu_share: float = float("nan")
    problems: list[str] = field(default_factory=list)

    @property
    def gpu_h_per_audio_h(self) -> float:
        return self.gpu_hours / self.audio_hours if self.audio_hours else float("nan")


def measure(route: Route, models: Path, work: Path, rows: int, gpus: int) -> Measured:
    import ray

    overrides = [override.format(models=models) for override in route.overrides]
    if route.input_kind == "rows":
        corpus = write_jsonl(work / "corpus.jsonl", magpie_rows(rows, seed=15))
        overrides += [f"sources.0.dataset={corpus}", "sources.0.revision=null", f"speakers.bank={reference_bank(work)}"]
    else:
        overrides += [f"sources.0.dataset={clip_collection(work, rows)}", "sources.0.revision=null"]
    recipe = load_recipe(REPO / route.recipe, overrides)
    ray.init(num_gpus=gpus, include_dashboard=False, logging_level="error")
    try:
        with Utilisation() as utilisation, ShardTaskCpu() as cpu:
            summary = run_recipe(recipe, work / "out", RayExecutor(), show_progress=False)
    finally:
        ray.shutdown()
    result = Measured(
        route.name,
        rows=summary.statuses.get("written", 0),
        wall_seconds=summary.wall_seconds,
        audio_hours=summary.audio_hours,
        gpu_hours=summary.gpu_hours,
        render_hours=summary.render_hours,
        utilisation=utilisation.mean,
        shard_cpu_share=cpu.seconds / ((os.cpu_count() or 1) * summary.wall_seconds),
    )
    if summary.shards_failed or summary.statuses.get("failed"):
        result.problems.append(f"{summary.statuses.get('failed', 0)} failed rows, shards {summary.shards_failed}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("/models"), help="folder of the staged model folders")
    parser.add_argument("--routes", default=",".join(route.name for route in ROUTES if route.by_default))
    parser.add_argument("--rows", type=int, default=400, help="input rows (clips for the captioner) per route")
    args = parser.parse_args()
    gpus = gpus_here()
    if gpus == 0:
        print("bench/gpu/run.py needs a GPU node (nvidia-smi lists none here); CI does not run it", file=sys.stderr)
        return 2
    chosen = {name.strip() for name in args.routes.split(",") if name.strip()}
    unknown = chosen - {route.name for route in ROUTES}
    if unknown:
        print(f"unknown route(s) {sorted(unknown)}; choose from {[route.name for route in ROUTES]}", file=sys.stderr)
        return 2
    results = []
    for route in (route for route in ROUTES if route.name in chosen):
        folder = args.models / route.model_folder
        if not folder.is_dir() or not any(folder.iterdir()):
            print(f"{route.name}: skipped, no model staged at {folder} (cluster/prepare_models.py stages it)")
            continue
        print(f"{route.name}: {args.rows} rows on {gpus} GPU(s) ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"koe-gpu-{route.name}-") as work:
            started = time.perf_counter()
            try:
                results.append(measure(route, args.models, Path(work), args.rows, gpus))
            except Exception as exc:  # one route that cannot run does not hide the others' numbers
                print(f"{route.name}: could not run ({type(exc).__name__}: {exc})".splitlines()[0])
                continue
            print(f"{route.name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    header = f"{'route':<20}{'GPU-h/audio-h':>14}{'RTF':>8}{'GPU util':>10}{'rows/s':>9}{'shard CPU':>11}"
    print("\n" + header)
    for r in results:
        rtf = r.render_hours / r.audio_hours if r.audio_hours else float("nan")
        rate = r.rows / r.wall_seconds if r.wall_seconds else float("nan")
        print(
            f"{r.route:<20}{r.gpu_h_per_audio_h:>14.4f}{rtf:>8.3f}{r.utilisation:>9.0f}%{rate:>9.2f}"
            f"{r.shard_cpu_share:>10.0%}" + (f"  ({'; '.join(r.problems)})" if r.problems else "")
        )
    for r in results:
        if r.route != "captioner":
            print(ratio_line(f"gpu_h_per_audio_h_{r.route}", r.gpu_h_per_audio_h, "<=", TARGET_GPU_H_PER_AUDIO_H))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
