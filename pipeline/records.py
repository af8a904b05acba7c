"""Plain typed records that flow between stages.

One dialogue travels forward through them: a `SourceItem` (the corpus row as written) becomes a
`Dialogue` (adapter), its spoken turns get `spoken_text`/`tts_text` (speakable), speakers are
assigned, the audio is rendered, and the result is a tar member plus a `ManifestRow`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1

Status = Literal["written", "rejected", "failed"]


class Rejected(Exception):
    """A row that cannot become a sample; `reason` goes to the manifest as written.

    `row` is what could be read of it (a clip whose license is not allowed still has its id).
    """

    def __init__(self, reason: str, row: dict[str, Any] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.row = row


@dataclass(frozen=True)
class SourceItem:
    """One corpus row exactly as read, with its position in the run's input order."""

    source: str  # the recipe's source name
    row_index: int  # 0-based position within that source
    row: dict[str, Any]
    key: str  # stable sample key, see pipeline.keys
    row_id: str
    reject_reason: str | None = None  # known before any work: unreadable line, duplicate id
    generation: int = 0  # how often this row was regenerated; part of its render seed


@dataclass(frozen=True)
class WordTiming:
    """One spoken word and where it lies in the audio it was rendered or aligned in (seconds)."""

    word: str  # surface form, as written in the turn's spoken text
    start: float
    end: float


@dataclass
class Alignment:
    """Where the words of one rendered text lie in its audio, and how that was found."""

    unit: Literal["word", "char"]  # "word": OpenJTalk's morphemes; "char": one entry per character
    method: str  # "openjtalk-labels" (exact durations from the voice) or "ctc:<model>" (forced alignment)
    words: list[WordTiming]
    pauses: list[tuple[float, float]] = field(default_factory=list)  # silent pauses inside the text (phrase ends)

    def shifted(self, seconds: float) -> Alignment:
        """The same alignment for audio that starts `seconds` later."""
        return Alignment(
            self.unit,
            self.method,
            [WordTiming(w.word, w.start + seconds, w.end + seconds) for w in self.words],
            [(a + seconds, b + seconds) for a, b in self.pauses],
        )


@dataclass
class Turn:
    role: Literal["user", "assistant"]
    text: str  # the original text, untouched
    spoken_text: str | None = None  # what a person would say (speakable stage)
    tts_text: str | None = None  # exactly what the TTS backend is asked to say
    reading: str | None = None  # katakana reading of spoken_text (OpenJTalk's analysis)
    speaker: str | None = None
    seed: int | None = None  # the render seed that produced the accepted audio
    start: float | None = None  # seconds into the sample's FLAC
    end: float | None = None
    alignment: Alignment | None = None  # duplex: its words, timed in the turn's own audio until composed
    qc: dict[str, float | str] | None = None  # the quality gate's scores of the kept render (+ `skipped` checks)
    loudness_lufs: float | None = None  # BS.1770 loudness of the kept render as the backend gave it
    gain_db: float | None = None  # the gain applied to it: to `render.loudness_lufs`, limited by the -1 dBFS peak


@dataclass
class Dialogue:
    """A corpus row reduced to what koe needs: ordered turns plus source facts."""

    key: str
    source: str
    row_index: int
    row_id: str
    turns: list[Turn]
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific text kept in the JSON

    def spoken_turns(self, roles: tuple[str, ...]) -> list[Turn]:
        return [t for t in self.turns if t.role in roles]


@dataclass
class ManifestRow:
    """One row per input item; `inputs == written + rejected + failed` always holds."""

    source: str
    row_index: int
    row_id: str
    key: str
    status: Status
    shard: str
    reason: str | None = None  # rejected: why
    error: str | None = None  # failed: the exception
    duration: float | None = None  # seconds of audio in the sample
    speakers: str | None = None  # comma-separated speaker ids, voiced roles only
    flac_sha256: str | None = None
    json_sha256: str | None = None
    generation: int = 0  # bumped by each regeneration, so a re-render gets a new seed
    render_seconds: float | None = None  # wall time of the render (for measured real-time factors)
    # the quality gate's scores, worst over the sample's voiced turns (for `koe run --where`)
    qc_dnsmos: float | None = None  # lowest DNSMOS P.808
    qc_speaker_similarity: float | None = None  # lowest similarity to the assigned voice
    qc_longest_pause: float | None = None  # seconds
    qc_morae_per_second: float | None = None  # slowest turn
    qc_rms_dbfs: float | None = None  # quietest turn

    @classmethod
    def of(cls, item: SourceItem, shard: str, status: Status, **fields: Any) -> ManifestRow:
        """The row of `item` in `shard`: its position and key from the item, the rest as given."""
        return cls(item.source, item.row_index, item.row_id, item.key, status, shard, **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MANIFEST_COLUMNS = [f.name for f in dataclasses.fields(ManifestRow)]
