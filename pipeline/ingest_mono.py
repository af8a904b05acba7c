"""`koe ingest-mono`: real mono dialogue recordings to two-channel stereo, one main speaker a channel.

Moshi and J-Moshi trained on pseudo-stereo made this way: diarize the mono mix, then put each
speaker's activity on a channel of its own. The rules, applied to every recording:

- channel 0 (left) is the speaker who talks most, by exclusive speech time (time when no one else
  talks); channel 1 (right) is the second. Ties go to the smaller label, so the choice is stable.
- where only one main speaker talks, the mix goes to that speaker's channel; the other is silent.
- where the two main speakers overlap (the diarizer's full, overlapping turns), the mix cannot be
  separated: it is copied to BOTH channels and the region is listed under "overlaps".
- where any other speaker (third and more) talks, both channels are silent, even if a main
  speaker talks at the same time; those regions are listed under "other_speakers".
- where nobody talks, both channels are silent.
- every gain change is a 10 ms linear fade centred on the region edge, so cuts do not click.

A multi-channel source is first averaged to mono. For each input `X.wav` / `X.flac`, `DEST/X.flac`
(2 channels, 16-bit, `sample_rate`) and `DEST/X.json` (source, duration, diarizer and its settings, which speaker
went to which channel, every turn, the overlaps and other speakers' regions) are written, the JSON
last, so a JSON marks a finished recording. `DEST/manifest.jsonl` has one row per input in input
order: `{"path"` (the FLAC, relative to DEST, or null), `"source", "duration", "status", "reason"}`,
status "written", "rejected" (empty, or fewer than two speakers) or "failed" (unreadable).
Re-running skips a recording whose JSON records the same source size and mtime, diarizer and
sample rate; everything else is done again. The output depends only on the audio and the diarizer.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.ndimage import uniform_filter1d

from .audio import encode_flac, resample, to_int16
from .diarize import Diarizer, SpeakerTurn
from .listen import Interval, intersect_intervals, merge_intervals, subtract_intervals
from .shards import atomic_write_bytes

AUDIO_SUFFIXES = (".wav", ".flac")
FADE_SECONDS = 0.01
OTHER_SPEAKERS_HANDLING = "silenced on both channels"


@dataclass(frozen=True)
class IngestSummary:
    rows: list[dict[str, Any]]  # the manifest rows, in input order
    kept: int  # recordings left as an earlier run wrote them

    def counts(self) -> dict[str, int]:
        return dict(Counter(row["status"] for row in self.rows))


def ingest_mono(inputs: list[Path] | Path, dest: Path, diarizer: Diarizer, sample_rate: int = 24000) -> IngestSummary:
    """Turn each mono recording into a two-channel FLAC and its JSON; write `dest/manifest.jsonl`.

    `inputs` is a list of files or a folder (its .wav and .flac files, not recursive). Bad
    arguments (no inputs, two inputs with the same stem, outputs that would overwrite an input)
    raise ValueError before any work; a bad recording becomes a manifest row with its reason.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    sources = _sources(inputs)
    dest = Path(dest)
    outputs = {(dest / f"{source.stem}{suffix}").resolve() for source in sources for suffix in (".flac", ".json")}
    if clobbered := sorted(str(source) for source in sources if source.resolve() in outputs):
        raise ValueError(f"the output folder {dest} would overwrite these inputs: {', '.join(clobbered)}")
    dest.mkdir(parents=True, exist_ok=True)
    rows, kept = [], 0
    for source in sources:
        row = _finished_row(source, dest, diarizer.name, sample_rate)
        if row is None:
            row = _ingest_one(source, dest, diarizer, sample_rate)
        else:
            kept += 1
        rows.append(row)
    manifest = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    atomic_write_bytes(dest / "manifest.jsonl", manifest.encode())
    return IngestSummary(rows, kept)


def _sources(inputs: list[Path] | Path) -> list[Path]:
    if isinstance(inputs, (str, Path)):
        folder = Path(inputs)
        if not folder.is_dir():
            raise ValueError(f"input folder {folder} does not exist (pass a folder of .wav/.flac or a list of files)")
        sources = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not sources:
            raise ValueError(f"no .wav or .flac files in {folder}")
    else:
        sources = [Path(p) for p in inputs]
        if not sources:
            raise ValueError("no input recordings given")
    stems = Counter(source.stem for source in sources)
    if duplicates := sorted(stem for stem, count in stems.items() if count > 1):
        raise ValueError(f"inputs share a file stem, so their outputs would collide: {', '.join(duplicates)}")
    return sources


def _fingerprint(source: Path, diarizer_name: str, sample_rate: int) -> dict[str, Any]:
    stat = source.stat()
    return {
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
        "diarizer": diarizer_name,
        "sample_rate": sample_rate,
    }


def _finished_row(source: Path, dest: Path, diarizer_name: str, sample_rate: int) -> dict[str, Any] | None:
    """The manifest row of a recording an earlier run finished from the same source and settings, else None."""
    record_path, flac_path = dest / f"{source.stem}.json", dest / f"{source.stem}.flac"
    if not (record_path.is_file() and flac_path.is_file() and source.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    fingerprint = _fingerprint(source, diarizer_name, sample_rate)
    if any(record.get(key) != value for key, value in fingerprint.items()):
        return None
    return _row(source, "written", "unchanged since the last run", record["duration"], flac_path.name)


def _row(source: Path, status: str, reason: str, duration: float | None, path: str | None = None) -> dict[str, Any]:
    return {"path": path, "source": str(source), "duration": duration, "status": status, "reason": reason}


def _ingest_one(source: Path, dest: Path, diarizer: Diarizer, sample_rate: int) -> dict[str, Any]:
    for stale in (dest / f"{source.stem}.json", dest / f"{source.stem}.flac"):
        stale.unlink(missing_ok=True)  # JSON first: a FLAC without its JSON is never taken as finished
    if not source.is_file():
        return _row(source, "failed", "file not found", None)
    try:
        audio, source_rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.SoundFileError, OSError) as exc:
        return _row(source, "failed", f"cannot read audio: {exc}", None)
    if audio.size == 0:
        return _row(source, "rejected", "empty recording (no samples)", 0.0)
    mono = resample(audio.mean(axis=1), source_rate, sample_rate)
    duration = round(len(mono) / sample_rate, 3)
    exclusive, full = diarizer.diarize(mono, sample_rate)
    ranked = _rank_speakers(exclusive, full)
    if len(ranked) < 2:
        return _row(source, "rejected", f"fewer than two speakers (found {len(ranked)})", duration)
    main, others = ranked[:2], ranked[2:]
    turns = exclusive + full
    other_regions = merge_intervals(region for speaker in others for region in _regions(turns, speaker))
    channels = [subtract_intervals(_regions(turns, speaker), other_regions) for speaker in main]
    overlaps = intersect_intervals(channels[0], channels[1])
    stereo = np.stack([mono * _gain(regions, len(mono), sample_rate) for regions in channels], axis=1)
    atomic_write_bytes(dest / f"{source.stem}.flac", encode_flac(to_int16(stereo), sample_rate))
    exclusive_seconds = _seconds_by_speaker(exclusive)
    record = {
        "source": str(source),
        **_fingerprint(source, diarizer.name, sample_rate),
        "diarizer_settings": diarizer.describe(),  # the model, its settings and the device it ran on
        "duration": duration,
        "source_channels": audio.shape[1],
        "source_sample_rate": source_rate,
        "channels": [
            {"channel": channel, "speaker": speaker, "exclusive_seconds": round(exclusive_seconds.get(speaker, 0.0), 3)}
            for channel, speaker in enumerate(main)
        ],
        "overlaps": [_span(start, end) for start, end in overlaps],
        "other_speakers": [_other_speaker(speaker, _regions(turns, speaker)) for speaker in others],
        "exclusive_turns": [_turn(t) for t in exclusive],
        "turns": [_turn(t) for t in full],
    }
    atomic_write_bytes(dest / f"{source.stem}.json", json.dumps(record, ensure_ascii=False, indent=1).encode())
    reason = f"{len(others)} other speaker(s) silenced" if others else ""
    return _row(source, "written", reason, duration, f"{source.stem}.flac")


def _regions(turns: list[SpeakerTurn], speaker: str) -> list[Interval]:
    return merge_intervals((t.start, t.end) for t in turns if t.speaker == speaker)


def _seconds(regions: list[Interval]) -> float:
    return sum(end - start for start, end in regions)


def _seconds_by_speaker(turns: list[SpeakerTurn]) -> dict[str, float]:
    return {speaker: _seconds(_regions(turns, speaker)) for speaker in {t.speaker for t in turns}}


def _other_speaker(speaker: str, regions: list[Interval]) -> dict[str, Any]:
    return {
        "speaker": speaker,
        "seconds": round(_seconds(regions), 3),
        "regions": [_span(start, end) for start, end in regions],
        "handling": OTHER_SPEAKERS_HANDLING,
    }


def _rank_speakers(exclusive: list[SpeakerTurn], full: list[SpeakerTurn]) -> list[str]:
    """Every speaker either list names, most exclusive speech first, ties by label."""
    seconds = _seconds_by_speaker(exclusive)
    speakers = {t.speaker for t in exclusive + full}
    return sorted(speakers, key=lambda speaker: (-seconds.get(speaker, 0.0), speaker))


def _gain(regions: list[Interval], length: int, sample_rate: int) -> np.ndarray:
    """1 inside `regions`, 0 outside, with a linear fade of FADE_SECONDS centred on each edge."""
    mask = np.zeros(length)
    for start, end in regions:
        mask[max(0, round(start * sample_rate)) : min(length, round(end * sample_rate))] = 1.0
    return uniform_filter1d(mask, size=max(1, round(FADE_SECONDS * sample_rate)), mode="constant")


def _span(start: float, end: float) -> dict[str, float]:
    return {"start": round(start, 3), "end": round(end, 3)}


def _turn(turn: SpeakerTurn) -> dict[str, Any]:
    return {"speaker": turn.speaker, **_span(turn.start, turn.end)}
