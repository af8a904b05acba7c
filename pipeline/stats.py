"""What a finished output holds, gathered once for the dataset card and the report.

The manifest says what became of every input row; the sample JSONs say who spoke for how long and,
for duplex, how the turns were timed. Only the JSON members of the shards are read: tarfile seeks
over the FLAC members, so a 100 GB output is summarized without reading its audio.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fsd50k import Clip
from .manifest import read_manifest, reason_counts, status_counts
from .shards import DoneRecord, Output, RunRecord, output_samples
from .speakers import load_bank

# per-turn QC scores in the sample JSON, and the recipe's thresholds for each (None: no bound there)
QC_SCORES = {
    "dnsmos_p808": ("DNSMOS P.808 MOS", ("min_dnsmos", None)),
    "speaker_similarity": ("similarity to the speaker's reference", ("min_speaker_similarity", None)),
    "pace_morae_per_second": ("morae per second", ("morae_per_second", "morae_per_second")),
    "level_rms_dbfs": ("RMS level (dBFS)", ("rms_dbfs", "rms_dbfs")),
    "silence_longest_pause": ("longest pause inside a turn (s)", (None, "max_pause_seconds")),
}


@dataclass
class SampleFacts:
    """What the card and the report need of one written sample."""

    key: str
    source: str
    duration: float
    speaker_seconds: dict[str, float]
    turn_qc: list[dict[str, float]]
    gaps: list[float]  # duplex: each turn's start minus the previous turn's end (negative: overlap)
    aizuchi: int
    clip: Clip | None  # captions: the clip and its attribution

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SampleFacts:
        turns = document.get("turns", [])
        speaker_seconds: dict[str, float] = defaultdict(float)
        for turn in turns:
            if "speaker" in turn:
                speaker_seconds[turn["speaker"]] += turn["end"] - turn["start"]
        timeline = document.get("timeline", [])
        speakers = document.get("speakers", {})
        for event in timeline:
            if event["kind"] == "aizuchi":
                speaker_seconds[speakers[event["role"]]] += event["end"] - event["start"]
        return cls(
            key=document["key"],
            source=document["source"]["name"],
            duration=document["audio"]["duration"],
            speaker_seconds=dict(speaker_seconds),
            turn_qc=[turn["qc"] for turn in turns if "qc" in turn],
            gaps=[e["gap"] for e in timeline if e["kind"] == "turn" and e["gap"] is not None],
            aizuchi=sum(1 for e in timeline if e["kind"] == "aizuchi"),
            clip=Clip.from_dict(document["clip"]) if "clip" in document else None,
        )


@dataclass
class OutputFacts:
    """One finished output: its run record, its manifest's counts and the facts of every written sample."""

    run: RunRecord
    statuses: Counter  # manifest rows per status
    reject_reasons: Counter  # rejected rows per reason, without row-specific detail
    samples: list[SampleFacts] = field(default_factory=list)
    shards: list[DoneRecord] = field(default_factory=list)
    first_sample: dict[str, Any] | None = None  # the first sample's whole JSON: what the output was made with

    @property
    def recipe(self) -> dict[str, Any]:
        return self.run.recipe

    @property
    def kind(self) -> str:
        return self.recipe["kind"]

    @property
    def audio_seconds(self) -> float:
        return sum(s.duration for s in self.samples)

    def speaker_seconds(self) -> Counter:
        total: Counter = Counter()
        for sample in self.samples:
            total.update(sample.speaker_seconds)
        return total

    def source_seconds(self) -> Counter:
        total: Counter = Counter()
        for sample in self.samples:
            total[sample.source] += sample.duration
        return total


def collect(directory: Path) -> OutputFacts:
    """Read an output folder written by `koe run` (check it with `koe validate` first)."""
    output = Output(Path(directory))
    if not output.run_path.is_file() or not output.manifest_path.is_file():
        raise ValueError(f"{directory}: not a finished koe output (no run.json or manifest.parquet)")
    run = RunRecord.read(output.run_path)
    if run.recipe is None:
        raise ValueError(f"{directory}: its run has not finished (run.json says running)")
    table = read_manifest(output.manifest_path)
    facts = OutputFacts(
        run=run,
        statuses=status_counts(table),
        reject_reasons=reason_counts(table),
    )
    facts.shards = [DoneRecord.read(output.done_path(tar.stem)) for tar in output.shard_tars()]
    for sample in output_samples(output.root):
        facts.first_sample = facts.first_sample or sample.document
        facts.samples.append(SampleFacts.from_json(sample.document))
    return facts


def format_duration(seconds: float) -> str:
    """Audio time as a person reads it: hours once there is an hour of it, minutes before."""
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def speaker_descriptions(facts: OutputFacts, spoken: list[str]) -> dict[str, dict[str, str]]:
    """Name, license and origin of each bank voice that spoke, when the run's speaker bank is still at hand."""
    bank_path = (facts.recipe.get("speakers") or {}).get("bank")
    if not bank_path or not Path(bank_path).is_file():
        return {speaker: {"name": speaker, "license": "", "source": ""} for speaker in sorted(spoken)}
    bank = load_bank(Path(bank_path))
    return {
        speaker: {
            "name": bank.by_id(speaker).name,
            "license": bank.by_id(speaker).license,
            "source": bank.by_id(speaker).source,
        }
        for speaker in sorted(spoken)
    }
