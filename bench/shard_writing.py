"""Shard writing: MB/s of koe's `ShardWriter` against GNU tar writing the same member files.

Pre-encoded members (FLAC of speech-like audio at 24 kHz and a sample JSON, as koe writes them) are
first written to a temporary folder as `<key>.flac` / `<key>.json`, about 300 MB in all, split into
a few shards. Then, alternating, five times each:

- koe: for every sample, read its two files and `ShardWriter.write` them (the tar's sha256, which
  koe records for resume, is computed as it is written), then `commit()` (close, fsync, rename);
- GNU tar: `tar -cf <shard>.tar -T <list>` over the same files in the same order (run via
  subprocess), then an fsync of the tar, so both pay for getting the bytes to disk.

Both read the members from the page cache (written just before). tar computes no checksum; koe's
sha256 pass over the tar is part of its time. MB/s = member bytes / seconds, median of the runs.

    ratio = koe MB/s / tar MB/s, target >= 0.8
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Stopwatch, ratio_line

from pipeline.audio import encode_flac, to_int16
from pipeline.shards import Output, ShardWriter, file_sha256

SAMPLE_RATE = 24000
SAMPLES = 1200
SHARDS = 4
DISTINCT_CLIPS = 40  # FLAC payloads to draw from (encoding 1200 would dominate set-up time)
REPEATS = 5
SEED = 3


def speech_like(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Noise shaped into syllable-length bursts over a voiced tone: FLAC compresses it about as speech."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t), 0, None) ** 2
    voiced = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 220) * t) + 0.1 * rng.standard_normal(t.size)
    return to_int16(envelope * voiced)


def sample_json(key: str, duration: float) -> bytes:
    turn = {"role": "user", "text": "今日の天気について教えてください。" * 6, "speaker": "spk07", "start": 0.0}
    document = {
        "schema_version": 1,
        "key": key,
        "kind": "sft",
        "audio": {"sample_rate": SAMPLE_RATE, "channels": 1, "duration": duration},
        "turns": [turn, {"role": "assistant", "text": "はい、晴れの予報です。" * 20}],
    }
    return json.dumps(document, ensure_ascii=False).encode()


def write_members(folder: Path) -> list[str]:
    """Member files for every sample; returns the keys in order."""
    rng = np.random.default_rng(SEED)
    durations = rng.uniform(3, 20, DISTINCT_CLIPS)
    clips = [encode_flac(speech_like(rng, d), SAMPLE_RATE) for d in durations]
    keys = []
    for index in range(SAMPLES):
        key = f"bench-{index:06d}"
        (folder / f"{key}.flac").write_bytes(clips[index % DISTINCT_CLIPS])
        (folder / f"{key}.json").write_bytes(sample_json(key, float(durations[index % DISTINCT_CLIPS])))
        keys.append(key)
    return keys


def koe_write(members: Path, out: Path, shards: list[list[str]]) -> tuple[float, float]:
    """Seconds for all shards, and of those the seconds spent in `commit()`."""
    output = Output(out)
    output.prepare()
    committing = 0.0
    with Stopwatch() as total:
        for number, keys in enumerate(shards):
            writer = ShardWriter(output, f"bench-{number:06d}")
            for key in keys:
                writer.write(key, {ext: (members / f"{key}.{ext}").read_bytes() for ext in ("flac", "json")})
            started = time.perf_counter()
            writer.commit()
            committing += time.perf_counter() - started
    return total.seconds, committing


def tar_write(members: Path, out: Path, shards: list[list[str]]) -> float:
    out.mkdir(parents=True)
    with Stopwatch() as total:
        for number, keys in enumerate(shards):
            listing = out / f"{number}.list"
            listing.write_text("".join(f"{key}.flac\n{key}.json\n" for key in keys))
            tar = out / f"bench-{number:06d}.tar"
            subprocess.run(["tar", "-cf", str(tar), "-C", str(members), "-T", str(listing)], check=True)
            with open(tar, "rb+") as handle:
                os.fsync(handle.fileno())
    return total.seconds


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="koe-bench-shards-"))
    try:
        members = work / "members"
        members.mkdir()
        keys = write_members(members)
        payload = sum(f.stat().st_size for f in members.iterdir())
        shards = [keys[i * SAMPLES // SHARDS : (i + 1) * SAMPLES // SHARDS] for i in range(SHARDS)]
        print(f"{SAMPLES} samples ({payload / 1e6:.0f} MB of FLAC + JSON) in {SHARDS} shards; {REPEATS} runs each")
        koe_rates, tar_rates = [], []
        for run in range(REPEATS):
            seconds, committing = koe_write(members, work / f"koe{run}", shards)
            koe_rates.append(payload / 1e6 / seconds)
            with Stopwatch() as hashing:  # an untimed sha256 pass over the tars, to show the share of hashing
                for tar in (work / f"koe{run}" / "shards").glob("*.tar"):
                    file_sha256(tar)
            print(
                f"koe run {run + 1}: {seconds:.2f} s = {koe_rates[-1]:.0f} MB/s "
                f"(writing members {seconds - committing:.2f} s, of which sha256 about {hashing.seconds:.2f} s; "
                f"commit {committing:.2f} s)"
            )
            shutil.rmtree(work / f"koe{run}")
            seconds = tar_write(members, work / f"tar{run}", shards)
            tar_rates.append(payload / 1e6 / seconds)
            print(f"tar run {run + 1}: {seconds:.2f} s = {tar_rates[-1]:.0f} MB/s")
            shutil.rmtree(work / f"tar{run}")
        koe_rate, tar_rate = statistics.median(koe_rates), statistics.median(tar_rates)
        print(f"median: koe {koe_rate:.0f} MB/s, tar {tar_rate:.0f} MB/s")
        print(ratio_line("shard_writing", koe_rate / tar_rate, ">=", 0.8))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
