"""Make koe's demo FSD50K collection: synthetic clips in the Zenodo layout, licenses that exercise the gate.

Every clip is synthesised here with numpy from a fixed seed, so running this again rewrites the same
bytes: `python recipes/data/fsd50k/make_demo.py [OUT_DIR]` (default: this folder).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
SAMPLE_RATE = 44100
UPLOADER = "koe"
DESCRIPTION = (
    "Synthesised with numpy for koe's demo data (recipes/data/fsd50k/make_demo.py); "
    "not a recording, free of third-party rights."
)

# FSD50K labels with their AudioSet mids, smeared up the ontology as FSD50K's ground truth does
BELL = (("Bell", "/m/0395lw"),)
RAIN = (("Rain", "/m/06mb1"), ("Water", "/m/0838f"))
DOG = (("Bark", "/m/05tny_"), ("Dog", "/m/0bt9lr"), ("Domestic_animals_and_pets", "/m/068hy"), ("Animal", "/m/0jbk"))
FOOTSTEPS = (("Walk_and_footsteps", "/m/07pbtc8"),)
WIND = (("Wind", "/m/03m9d0z"),)
CLAPPING = (("Clapping", "/m/0l15bq"), ("Hands", "/m/0k65p"))
BIRD = (
    ("Chirp_and_tweet", "/m/07pggtn"),
    ("Bird_vocalization_and_bird_call_and_bird_song", "/m/020bb7"),
    ("Bird", "/m/015p6"),
    ("Wild_animals", "/m/01280g"),
    ("Animal", "/m/0jbk"),
)

Synth = Callable[[np.random.Generator], np.ndarray]


def _time(seconds: float) -> np.ndarray:
    return np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE


def _smooth(signal: np.ndarray, samples: int) -> np.ndarray:
    """A moving average: a crude low-pass that needs nothing but numpy."""
    return np.convolve(signal, np.ones(samples) / samples, mode="same")


def _place(events: list[tuple[float, np.ndarray]], seconds: float) -> np.ndarray:
    """Short sounds laid on a silent track at their start times."""
    track = np.zeros(len(_time(seconds)))
    for start, sound in events:
        at = round(start * SAMPLE_RATE)
        track[at : at + len(sound)] += sound[: len(track) - at]
    return track


def bell(f0: float, seconds: float) -> Synth:
    """Inharmonic partials, each decaying at its own rate, as a struck bell rings."""

    def make(rng: np.random.Generator) -> np.ndarray:
        t = _time(seconds)
        partials = [(1.0, 1.0, 2.0), (2.0, 0.6, 3.2), (2.76, 0.45, 4.4), (5.4, 0.25, 7.0), (8.93, 0.12, 10.0)]
        ring = sum(
            amp * np.sin(2 * np.pi * f0 * ratio * t + rng.uniform(0, 2 * np.pi)) * np.exp(-decay * t)
            for ratio, amp, decay in partials
        )
        return ring * np.minimum(t / 0.002, 1.0)

    return make


def rain(seconds: float) -> Synth:
    """Bright hiss (differenced white noise) with scattered droplet pings."""

    def make(rng: np.random.Generator) -> np.ndarray:
        hiss = 0.15 * np.diff(rng.standard_normal(len(_time(seconds)) + 1))
        t = _time(0.008)
        drops = []
        for _ in range(int(seconds * 70)):
            ping = np.sin(2 * np.pi * rng.uniform(2000, 5000) * t) * np.exp(-t / 0.002)
            drops.append((rng.uniform(0, seconds - 0.01), ping))
        return hiss + 0.8 * _place(drops, seconds)

    return make


def dog_bark(seconds: float) -> Synth:
    """Two barks: a harmonic burst gliding down in pitch, with a breathy noise layer."""

    def make(rng: np.random.Generator) -> np.ndarray:
        t = _time(0.18)
        pitch = 520 - (520 - 330) * t / t[-1]
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        voice = sum(np.sin(k * phase) / k for k in range(1, 7))
        envelope = np.minimum(t / 0.01, 1.0) * np.exp(-t / 0.06)
        bark_sound = (voice + 0.4 * _smooth(rng.standard_normal(len(t)), 4)) * envelope
        return _place([(0.08, bark_sound), (0.5, 0.8 * bark_sound)], seconds)

    return make


def footsteps(steps: int, seconds: float) -> Synth:
    """Evenly spaced steps: a low thump (smoothed noise) with a sharper heel click."""

    def make(rng: np.random.Generator) -> np.ndarray:
        t = _time(0.12)
        events = []
        for step in range(steps):
            thump = _smooth(rng.standard_normal(len(t)), 40) * 6 * np.exp(-t / 0.03)
            click = rng.standard_normal(len(t)) * np.exp(-t / 0.004)
            events.append((0.1 + step * (seconds - 0.25) / steps, thump + 0.15 * click))
        return _place(events, seconds)

    return make


def wind(seconds: float) -> Synth:
    """Low rushing noise whose loudness swells and fades slowly."""

    def make(rng: np.random.Generator) -> np.ndarray:
        t = _time(seconds)
        rush = _smooth(_smooth(rng.standard_normal(len(t)), 40), 40)
        gust = 0.55 + 0.45 * np.sin(2 * np.pi * 0.6 * t + rng.uniform(0, 2 * np.pi))
        return rush * gust * np.minimum(t / 0.3, 1.0)

    return make


def clapping(claps: int, seconds: float) -> Synth:
    """Hand claps: short noise bursts, band-limited to the clap's 1-4 kHz, at an even beat."""

    def make(rng: np.random.Generator) -> np.ndarray:
        t = _time(0.06)
        events = []
        for clap in range(claps):
            noise = rng.standard_normal(len(t))
            events.append((0.08 + clap * 0.27, (_smooth(noise, 4) - _smooth(noise, 30)) * np.exp(-t / 0.007)))
        return _place(events, seconds)

    return make


def chirps(count: int, seconds: float) -> Synth:
    """A bird's call: quick upward frequency sweeps under a smooth envelope."""

    def make(rng: np.random.Generator) -> np.ndarray:
        t = _time(0.07)
        events = []
        for chirp in range(count):
            low = rng.uniform(2800, 3400)
            pitch = low + 1600 * (t / t[-1]) ** 2
            sweep = np.sin(2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE) * np.hanning(len(t))
            events.append((0.06 + chirp * (seconds - 0.15) / count, sweep))
        return _place(events, seconds)

    return make


@dataclass(frozen=True)
class DemoClip:
    fname: str  # a made-up Freesound id, far above any real one
    subset: str
    split: str  # dev: train or val
    labels: tuple[tuple[str, str], ...]
    title: str
    tags: tuple[str, ...]
    license: str | None  # None: the metadata entry has no license key
    synth: Synth | None  # None: the CSV lists the clip but its audio file is missing
    in_metadata: bool = True


# the license URLs as FSD50K writes them, in the variants the gate must read alike
CC0_HTTP = "http://creativecommons.org/publicdomain/zero/1.0/"
CC0_HTTPS = "https://creativecommons.org/publicdomain/zero/1.0"
BY3_HTTP = "http://creativecommons.org/licenses/by/3.0/"
BY4_HTTPS = "https://creativecommons.org/licenses/by/4.0"
BY4_HTTPS_SLASH = "https://creativecommons.org/licenses/by/4.0/"
BY_NC3 = "http://creativecommons.org/licenses/by-nc/3.0/"
SAMPLING_PLUS = "http://creativecommons.org/licenses/sampling+/1.0/"
NOT_CC = "https://example.com/licenses/free-for-all"

CLIPS = (
    DemoClip("990000101", "dev", "train", BELL, "Synthetic bell, decaying tone", ("bell",), CC0_HTTP, bell(660.0, 1.4)),
    DemoClip("990000102", "dev", "train", RAIN, "Synthetic rain, hiss and droplets", ("rain",), BY3_HTTP, rain(1.5)),
    DemoClip("990000103", "dev", "val", DOG, "Synthetic dog barking twice", ("dog", "bark"), BY4_HTTPS, dog_bark(0.9)),
    DemoClip("990000104", "dev", "train", FOOTSTEPS, "Synthetic footsteps", ("steps",), BY_NC3, footsteps(4, 1.5)),
    DemoClip("990000105", "dev", "train", WIND, "Synthetic wind gusts", ("wind",), SAMPLING_PLUS, wind(1.8)),
    DemoClip("990000106", "dev", "val", CLAPPING, "Synthetic hand claps, three", ("clap",), "", clapping(3, 0.9)),
    DemoClip(
        "990000107", "dev", "train", BIRD, "Synthetic chirps", ("bird",), CC0_HTTP, chirps(4, 0.9), in_metadata=False
    ),
    DemoClip("990000201", "eval", "", BIRD, "Synthetic bird call", ("bird",), BY4_HTTPS_SLASH, chirps(5, 1.0)),
    DemoClip("990000202", "eval", "", BELL, "Synthetic small bell", ("bell",), CC0_HTTPS, bell(1320.0, 0.8)),
    DemoClip("990000203", "eval", "", CLAPPING, "Synthetic hand claps, two", ("clap",), None, clapping(2, 0.7)),
    DemoClip(
        "990000204", "eval", "", FOOTSTEPS, "Synthetic footsteps on gravel", ("steps",), NOT_CC, footsteps(3, 1.2)
    ),
    DemoClip("990000205", "eval", "", WIND, "Synthetic wind, long gust", ("wind",), CC0_HTTP, None),
)


def _pcm16(signal: np.ndarray) -> np.ndarray:
    """Peak at half scale, 5 ms fades at both ends, rounded to 16-bit integers (exact, unlike a float write)."""
    fade = np.minimum(1.0, np.minimum(np.arange(len(signal)), np.arange(len(signal))[::-1]) / (0.005 * SAMPLE_RATE))
    signal = signal * fade
    return np.round(signal / np.max(np.abs(signal)) * 0.5 * 32767).astype(np.int16)


def write_demo(out_dir: Path) -> None:
    """The ground-truth CSVs, clips-info JSONs and WAVs (44.1 kHz, 16-bit, mono) of `CLIPS` under `out_dir`."""
    for subset in ("dev", "eval"):
        clips = [clip for clip in CLIPS if clip.subset == subset]
        columns = ["fname", "labels", "mids"] + (["split"] if subset == "dev" else [])
        csv_path = out_dir / "FSD50K.ground_truth" / f"{subset}.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, lineterminator="\n")
            writer.writerow(columns)
            for clip in clips:
                labels = ",".join(label for label, _ in clip.labels)
                mids = ",".join(mid for _, mid in clip.labels)
                writer.writerow([clip.fname, labels, mids] + ([clip.split] if subset == "dev" else []))
        info = {}
        for clip in clips:
            if not clip.in_metadata:
                continue
            entry = {"title": clip.title, "description": DESCRIPTION, "tags": [*clip.tags, "synthetic", "koe"]}
            if clip.license is not None:
                entry["license"] = clip.license
            info[clip.fname] = {**entry, "uploader": UPLOADER}
        info_path = out_dir / "FSD50K.metadata" / f"{subset}_clips_info_FSD50K.json"
        info_path.parent.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(info, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")
        audio_dir = out_dir / f"FSD50K.{subset}_audio"
        audio_dir.mkdir(parents=True, exist_ok=True)
        for clip in clips:
            if clip.synth is not None:
                rng = np.random.default_rng(int(clip.fname))
                sf.write(audio_dir / f"{clip.fname}.wav", _pcm16(clip.synth(rng)), SAMPLE_RATE, subtype="PCM_16")


if __name__ == "__main__":
    write_demo(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
