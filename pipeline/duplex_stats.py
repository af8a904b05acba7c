"""`koe duplex-stats DIR`: how the two-channel dialogues of an output take turns, measured from the audio.

The figures are measured as they were on J-Moshi's real stereo dialogues (see `HUMAN`): silero-vad
on each channel, its segments less than `IPU_GAP_SECONDS` apart merged into inter-pausal units
(IPUs). Beside each figure stand the same figure of the designed timeline (the sample JSON's
`timeline`) and the human range, so a recipe's turn-taking settings can be judged by what a listener
hears, not by what was planned.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .audio import decode_flac
from .kinds import KINDS
from .listen import Interval, intersect_intervals, merge_intervals, speech_segments
from .shards import output_samples

IPU_GAP_SECONDS = 0.2  # speech segments closer than this are one inter-pausal unit
BACKCHANNEL_SECONDS = 1.0  # an IPU this short, wholly inside the other's IPU, is a backchannel
# Measured the same way on J-Moshi's real Japanese stereo dialogues (shared/REFERENCE.md, section 6).
HUMAN = {
    "both_talking_share": (0.107, 0.156),
    "overlaps_per_minute": (12.0, 14.0),
    "backchannels_per_minute": (9.6, 12.8),
    "ipu_median_seconds": (0.57, 1.08),
    "overlapped_transfer_share": (0.25, 0.40),  # J-Moshi's samples: 0.27-0.28; the target a quarter to 2/5
}


@dataclass(frozen=True)
class TurnTaking:
    """The turn-taking figures of one or more dialogues (`seconds` of audio in all)."""

    seconds: float
    both_talking_share: float
    overlaps_per_minute: float
    backchannels_per_minute: float
    ipu_median_seconds: float | None
    overlapped_transfer_share: float | None  # of the floor transfers (backchannels aside)
    transfer_offset_median_seconds: float | None  # next speaker's start minus the previous one's end

    def to_dict(self) -> dict:
        return asdict(self)


def ipus(segments: Iterable[Interval], gap: float = IPU_GAP_SECONDS) -> list[Interval]:
    """Speech segments less than `gap` apart joined into inter-pausal units."""
    units: list[Interval] = []
    for start, end in merge_intervals(segments):
        if units and start - units[-1][1] < gap:
            units[-1] = (units[-1][0], end)
        else:
            units.append((start, end))
    return units


def _is_backchannel(unit: Interval, others: list[Interval]) -> bool:
    """A short IPU said while the other holds the floor: they spoke just before it and go on just after it."""
    start, end = unit
    if end - start > BACKCHANNEL_SECONDS:
        return False
    before = any(a < start and b > start - BACKCHANNEL_SECONDS for a, b in others)
    after = any(b > end and a < end + BACKCHANNEL_SECONDS for a, b in others)
    return before and after


@dataclass
class Counts:
    """What one dialogue's two channels of IPUs hold, pooled over dialogues before figures are made."""

    seconds: float = 0.0
    both_seconds: float = 0.0
    overlaps: int = 0
    backchannels: int = 0
    ipu_seconds: list[float] = field(default_factory=list)
    transfer_offsets: list[float] = field(default_factory=list)  # backchannels aside

    def add(self, other: Counts) -> Counts:
        return Counts(
            self.seconds + other.seconds,
            self.both_seconds + other.both_seconds,
            self.overlaps + other.overlaps,
            self.backchannels + other.backchannels,
            self.ipu_seconds + other.ipu_seconds,
            self.transfer_offsets + other.transfer_offsets,
        )

    def figures(self) -> TurnTaking:
        minutes, offsets = self.seconds / 60, self.transfer_offsets
        return TurnTaking(
            seconds=self.seconds,
            both_talking_share=self.both_seconds / self.seconds if self.seconds else 0.0,
            overlaps_per_minute=self.overlaps / minutes if minutes else 0.0,
            backchannels_per_minute=self.backchannels / minutes if minutes else 0.0,
            ipu_median_seconds=statistics.median(self.ipu_seconds) if self.ipu_seconds else None,
            overlapped_transfer_share=sum(o < 0 for o in offsets) / len(offsets) if offsets else None,
            transfer_offset_median_seconds=statistics.median(offsets) if offsets else None,
        )


def count(channels: list[list[Interval]], seconds: float) -> Counts:
    """One dialogue's counts from the IPUs of its two channels."""
    first, second = channels
    both = intersect_intervals(first, second)
    short = [_is_backchannel(u, second) for u in first], [_is_backchannel(u, first) for u in second]
    floor = sorted(
        [(u, 0) for u, bc in zip(first, short[0], strict=True) if not bc]
        + [(u, 1) for u, bc in zip(second, short[1], strict=True) if not bc]
    )
    offsets = [b[0] - a[1] for (a, who), (b, next_who) in zip(floor, floor[1:], strict=False) if who != next_who]
    return Counts(
        seconds=seconds,
        both_seconds=sum(b - a for a, b in both),
        overlaps=len(both),
        backchannels=sum(short[0]) + sum(short[1]),
        ipu_seconds=[b - a for a, b in first + second],
        transfer_offsets=offsets,
    )


def heard_channels(stereo: np.ndarray, rate: int) -> list[list[Interval]]:
    """The IPUs silero-vad hears on each channel of int16 stereo."""
    return [ipus(speech_segments(stereo[:, c].astype(np.float32) / 32768, rate)) for c in range(stereo.shape[1])]


def designed_channels(document: dict) -> list[list[Interval]]:
    """The IPUs the timeline planned: each turn and aizuchi on its channel, joined as the audio's are."""
    channels: list[list[Interval]] = [[], []]
    for event in document["timeline"]:
        channels[event["channel"]].append((event["start"], event["end"]))
    return [ipus(units) for units in channels]


@dataclass(frozen=True)
class DuplexStats:
    dialogues: int
    heard: TurnTaking
    designed: TurnTaking

    def to_dict(self) -> dict:
        return {
            "dialogues": self.dialogues,
            "heard": self.heard.to_dict(),
            "designed": self.designed.to_dict(),
            "human": {name: list(bounds) for name, bounds in HUMAN.items()},
        }


def duplex_stats(directory: Path, limit: int | None = None) -> DuplexStats:
    """The figures of an output's two-channel dialogues (the first `limit` of them), heard and designed."""
    heard, designed, dialogues = Counts(), Counts(), 0
    for sample in output_samples(Path(directory), with_audio=True):
        kind = KINDS.get(sample.document.get("kind"))
        if kind is None or kind.channels != 2:
            raise ValueError(
                f"{directory}: {sample.key} is not a two-channel dialogue; duplex-stats reads duplex outputs"
            )
        stereo, rate = decode_flac(sample.read_flac())
        seconds = stereo.shape[0] / rate
        heard = heard.add(count(heard_channels(stereo, rate), seconds))
        designed = designed.add(count(designed_channels(sample.document), seconds))
        dialogues += 1
        if limit is not None and dialogues >= limit:
            break
    if not dialogues:
        raise ValueError(f"{directory}: no samples to measure (is it the output folder of a duplex `koe run`?)")
    return DuplexStats(dialogues, heard.figures(), designed.figures())


def format_stats(stats: DuplexStats) -> str:
    rows = [("figure", "heard", "designed", "human")]
    for name in HUMAN:
        low, high = HUMAN[name]
        heard, designed = getattr(stats.heard, name), getattr(stats.designed, name)
        rows.append((name, _shown(heard), _shown(designed), f"{low:g}-{high:g}"))
    offset = stats.heard.transfer_offset_median_seconds
    rows.append(
        (
            "transfer_offset_median_seconds",
            _shown(offset),
            _shown(stats.designed.transfer_offset_median_seconds),
            "~0.007 (mean)",
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{stats.dialogues} dialogue(s), {stats.heard.seconds / 60:.1f} min of audio"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
