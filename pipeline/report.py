"""`koe report`: one self-contained HTML page of plots about an output, for a person to look at.

What it shows: how long the samples are, who spoke for how long, which sources they came from,
why rows were rejected, how the quality scores spread against the recipe's thresholds, and for
duplex the turn-taking (gaps, overlaps, aizuchi). Plots are inline SVG (matplotlib, no network,
no scripts), so the file can be mailed or opened from a shard server as it is.

It also lets a person listen: one turn per voice (captions: one clip per license), cut to
`LISTEN_SECONDS`, 16 kHz mono MP3 in a `data:` URI beside the turn's text, spoken text and reading.
MP3 because it is the one compressed format libsndfile writes here whose bytes do not change from
run to run (its Ogg writer, Vorbis or Opus, draws a random stream serial number) and that every
browser plays; at libsndfile's default settings 6 s of speech is about 32 KB.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .duplex_stats import HUMAN, DuplexStats, duplex_stats
from .fsd50k import Clip as SoundClip
from .kinds import kind_named
from .shards import atomic_write_bytes, output_samples
from .stats import QC_SCORES, OutputFacts, collect, format_duration, speaker_descriptions

COLOR = "#3b6ea8"
ACCENT = "#c8553d"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .sub { color: #666; margin-top: 0; }
.numbers { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1.5rem 0; }
.numbers div { background: #f3f5f8; border-radius: 6px; padding: 0.6rem 1rem; min-width: 8rem; }
.numbers b { display: block; font-size: 1.5rem; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 1.5rem; }
figure { margin: 0; } figcaption { color: #555; font-size: 0.9rem; } svg { width: 100%; height: auto; }
table.listen { border-collapse: collapse; width: 100%; margin-top: 1rem; }
table.turns { border-collapse: collapse; margin-top: 0.5rem; } .turns .outside { color: #b3261e; }
.turns th, .turns td { border-top: 1px solid #dde2e8; padding: 0.3rem 0.8rem; text-align: left; }
.listen th, .listen td { border-top: 1px solid #dde2e8; padding: 0.6rem; text-align: left; vertical-align: top; }
.listen .what { color: #555; font-size: 0.85rem; } .listen audio { width: 100%; min-width: 14rem; }
.listen dl { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 0.8rem; }
.listen dt { color: #666; } .listen dd { margin: 0; white-space: pre-wrap; }
"""


def _figure(draw: Callable[[Any], None], width: float = 6.0, height: float = 3.4) -> str:
    """One plot as inline SVG; the same data always gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.hashsalt": "koe", "svg.fonttype": "none", "font.size": 9}):
        figure, axes = plt.subplots(figsize=(width, height))
        try:
            draw(axes)
            axes.spines[["top", "right"]].set_visible(False)
            figure.tight_layout()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None})
        finally:
            plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _histogram(values: list[float], xlabel: str, bounds: tuple[float | None, float | None] = (None, None)):
    def draw(axes) -> None:
        axes.hist(values, bins=min(40, max(5, len(values) // 3)), color=COLOR)
        for bound in bounds:
            if bound is not None:
                axes.axvline(bound, color=ACCENT, linestyle="--", linewidth=1.2)
        axes.set_xlabel(xlabel)
        axes.set_ylabel("count")

    return draw


def _bars(labels: list[str], values: list[float], xlabel: str):
    def draw(axes) -> None:
        positions = np.arange(len(labels))
        axes.barh(positions, values, color=COLOR)
        axes.set_yticks(positions, labels)
        axes.invert_yaxis()
        axes.set_xlabel(xlabel)

    return draw


def _in_hours_or_minutes(seconds: list[float]) -> tuple[list[float], str]:
    """Bars of a small output in minutes, of a large one in hours."""
    if max(seconds, default=0.0) >= 3600:
        return [v / 3600 for v in seconds], "hours"
    return [v / 60 for v in seconds], "minutes"


def _bar_height(count: int) -> float:
    return max(2.0, 0.25 * count + 1.0)


def _qc_bounds(qc: dict[str, Any], keys: tuple[str | None, str | None]) -> tuple[float | None, float | None]:
    """The recipe's lower and upper threshold for one score; a range setting gives both."""
    low_key, high_key = keys
    low = qc.get(low_key) if low_key else None
    high = qc.get(high_key) if high_key else None
    if isinstance(low, list):
        low = low[0]
    if isinstance(high, list):
        high = high[1]
    return low, high


def plots(facts: OutputFacts) -> list[tuple[str, str]]:
    """(caption, SVG) of every plot that has data, in the order a reader asks the questions."""
    found: list[tuple[str, str]] = []
    durations = [s.duration for s in facts.samples]
    found.append((f"Duration of the {len(durations)} samples", _figure(_histogram(durations, "seconds"))))
    speakers = sorted(facts.speaker_seconds().items())
    if speakers:
        values, unit = _in_hours_or_minutes([v for _, v in speakers])
        found.append(
            (
                f"Speech per voice ({len(speakers)} voices)",
                _figure(_bars([s for s, _ in speakers], values, unit), height=_bar_height(len(speakers))),
            )
        )
    sources = sorted(facts.source_seconds().items())
    values, unit = _in_hours_or_minutes([v for _, v in sources])
    found.append(
        ("Audio per source", _figure(_bars([s for s, _ in sources], values, unit), height=_bar_height(len(sources))))
    )
    statuses = [(status, facts.statuses.get(status, 0)) for status in ("written", "rejected", "failed")]
    found.append(
        (
            "What became of the input rows",
            _figure(_bars([s for s, _ in statuses], [n for _, n in statuses], "rows"), height=2.0),
        )
    )
    reasons = facts.reject_reasons.most_common(15)
    if reasons:
        found.append(
            (
                f"Reject reasons ({sum(facts.reject_reasons.values())} rows)",
                _figure(
                    _bars([r[:60] for r, _ in reasons], [n for _, n in reasons], "rows"),
                    width=7.5,
                    height=_bar_height(len(reasons)),
                ),
            )
        )
    qc = facts.recipe.get("qc") or {}
    turn_scores = [score for sample in facts.samples for score in sample.turn_qc]
    for name, (label, keys) in QC_SCORES.items():
        values = [score[name] for score in turn_scores if score.get(name) is not None]
        if values:
            found.append(
                (
                    f"QC: {label}, per spoken turn (dashed: the recipe's thresholds)",
                    _figure(_histogram(values, label, _qc_bounds(qc, keys))),
                )
            )
    gaps = [gap for sample in facts.samples for gap in sample.gaps]
    if gaps:
        overlaps = sum(1 for g in gaps if g < 0)
        found.append(
            (
                f"Turn-taking: gap before each turn ({overlaps} of {len(gaps)} turns overlap, left of the line)",
                _figure(_histogram(gaps, "seconds from the previous turn's end", (0.0, None))),
            )
        )
        rates = [60 * s.aizuchi / s.duration for s in facts.samples if s.duration > 0]
        found.append(("Aizuchi per minute of dialogue, per sample", _figure(_histogram(rates, "aizuchi per minute"))))
    clips = sorted(Counter(s.clip.license_name for s in facts.samples if s.clip).items())
    if clips:
        found.append(
            (
                "Captioned clips per license",
                _figure(
                    _bars([name for name, _ in clips], [n for _, n in clips], "clips"), height=_bar_height(len(clips))
                ),
            )
        )
    return found


LISTEN_SECONDS = 6.0  # longest clip a person hears per voice
LISTEN_RATE = 16000
LISTEN_MIN_SECONDS = 2.0  # a voice's first turn at least this long is its clip; else its longest turn


@dataclass(frozen=True)
class Clip:
    """A piece of one sample for a person to hear, with what it says."""

    label: str  # the voice (speaker id), or for captions the clip's license
    document: dict[str, Any]  # the sample's JSON
    turn: int | None  # index into the sample's `turns`; None for a sound clip
    start: float  # seconds into the sample's FLAC
    end: float
    cut: float  # seconds the clip holds (at most LISTEN_SECONDS)
    mp3: bytes


Candidate = tuple[str, int | None, float, float, int | None]  # label, turn, start, end, channel


def _license(clip: SoundClip) -> str:
    return clip.license_name or "unknown license"


def _candidates(document: dict[str, Any]) -> Iterator[Candidate]:
    """What in one sample could be heard: each voiced turn, or the sound clip.

    A duplex turn is heard on its speaker's channel alone; channel None mixes all channels.
    """
    if document.get("clip"):
        yield _license(SoundClip.from_dict(document["clip"])), None, 0.0, document["audio"]["duration"], None
        return
    channels = document.get("channels") or []
    for index, turn in enumerate(document.get("turns", [])):
        if "speaker" in turn:
            start = turn.get("start") or 0.0
            end = turn.get("end") if turn.get("end") is not None else document["audio"]["duration"]
            channel = channels.index(turn["role"]) if turn.get("role") in channels else None
            yield turn["speaker"], index, start, end, channel


def _encode_clip(flac: bytes, start: float, end: float, channel: int | None) -> tuple[bytes, float]:
    """`start`..`end` of a FLAC (at most LISTEN_SECONDS), one channel or the mix, as 16 kHz mono MP3; and its length."""
    import soundfile as sf

    from .audio import resample

    audio, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=True)
    mono = audio[:, channel] if channel is not None and channel < audio.shape[1] else audio.mean(axis=1)
    first, last = round(start * rate), min(round(end * rate), len(mono))
    piece = mono[first : min(last, first + round(LISTEN_SECONDS * rate))]
    piece = resample(np.ascontiguousarray(piece, dtype=np.float32), rate, LISTEN_RATE)
    if first + round(LISTEN_SECONDS * rate) < last:  # cut inside the turn: fade out instead of a click
        fade = min(len(piece), LISTEN_RATE // 50)
        piece[len(piece) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, piece, LISTEN_RATE, format="MP3", subtype="MPEG_LAYER_III")
    return buffer.getvalue(), len(piece) / LISTEN_RATE


def listening_clips(directory: Path, facts: OutputFacts) -> list[Clip]:
    """One clip per voice (captions: per license), by label: the first turn of at least LISTEN_MIN_SECONDS.

    A voice without one gets its longest turn. Shards are read in order until every voice has its
    clip; only the chosen samples' audio is read.
    """
    import soundfile as sf

    if "MP3" not in sf.available_formats():  # a libsndfile older than 1.1 (MP3 came with it): no players
        return []
    if kind_named(facts.kind).speaks:
        wanted = set(facts.speaker_seconds())
    else:
        wanted = {_license(s.clip) for s in facts.samples if s.clip}
    picks: dict[str, tuple[Candidate, dict[str, Any], bytes]] = {}  # label: the turn, its sample, its FLAC
    settled: set[str] = set()
    for sample in output_samples(Path(directory), with_audio=True):
        for candidate in _candidates(sample.document):
            label, _, start, end, _ = candidate
            if label in settled or end <= start:
                continue
            held = picks.get(label)
            if held is None or end - start > held[0][3] - held[0][2]:
                picks[label] = (candidate, sample.document, sample.read_flac())
            if end - start >= LISTEN_MIN_SECONDS:
                settled.add(label)
        if wanted <= settled:
            break
    clips = []
    for label, ((_, turn, start, end, channel), document, flac) in sorted(picks.items()):
        mp3, cut = _encode_clip(flac, start, end, channel)
        clips.append(Clip(label, document, turn, start, end, cut, mp3))
    return clips


def _clip_row(clip: Clip, voices: dict[str, dict[str, str]]) -> str:
    """One player: who or what (head), the audio and where it is from, then what it says."""
    document = clip.document
    span = f"{clip.start:.2f}\u2013{clip.start + clip.cut:.2f} s"
    if clip.end - clip.start > clip.cut + 0.005:
        span += f" (the first {clip.cut:.1f} s of {clip.end - clip.start:.1f} s)"
    head = html.escape(clip.label)
    if clip.turn is None:  # a sound clip
        where = f"{document['key']}, {span}"
        fields = [("caption", document.get("caption", "")), ("credit", document["clip"].get("credit", ""))]
        turn_attribute = ""
    else:
        turn = document["turns"][clip.turn]
        name = voices.get(clip.label, {}).get("name", "")
        if name and name != clip.label:
            head += f"<br><small>{html.escape(name)}</small>"
        role = f"{turn['role']}: " if document.get("channels") else ""
        where = f"{document['key']}, turn {clip.turn + 1}, {role}{span}"
        fields = [(field.replace("_", " "), turn.get(field) or "") for field in ("text", "spoken_text", "reading")]
        turn_attribute = f' data-turn="{clip.turn}"'
    details = "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in fields)
    uri = "data:audio/mpeg;base64," + base64.b64encode(clip.mp3).decode("ascii")
    return (
        f'<tr><th>{head}</th><td><audio controls preload="metadata" data-key="{html.escape(document["key"])}"'
        f'{turn_attribute} src="{uri}"></audio><div class="what">{html.escape(where)}</div></td>'
        f"<td><dl>{details}</dl></td></tr>"
    )


def listening_section(facts: OutputFacts, clips: list[Clip]) -> str:
    """The players, one table row per clip; empty without clips."""
    if not clips:
        return ""
    kind = kind_named(facts.kind)
    unit, per = kind.listening
    title = f"Listen: one {unit} per {per} ({len(clips)} {per}s)"
    note = f"Each {per}'s first {unit} of at least {LISTEN_MIN_SECONDS:g} s (or its longest)"
    note += f", at most {LISTEN_SECONDS:g} s"
    if kind.speaks:
        note += ", from its own channel." if kind.channels > 1 else "."
        voices = speaker_descriptions(facts, [clip.label for clip in clips])
    else:
        note += ", mixed to mono."
        voices = {}
    note += f" 16 kHz mono MP3, {sum(len(clip.mp3) for clip in clips) / 1024:.0f} KB in all."
    rows = "\n".join(_clip_row(clip, voices) for clip in clips)
    heading = f'<h2>{html.escape(title)}</h2><p class="sub">{html.escape(note)}</p>'
    return f'{heading}\n<table class="listen">\n{rows}\n</table>\n'


TURN_TAKING_DIALOGUES = 200  # the report measures the turn-taking of at most this many dialogues


def turn_taking_section(stats: DuplexStats | None) -> str:
    """The turn-taking heard in the audio, beside the designed timeline and the human ranges (a table)."""
    if stats is None:
        return ""
    rows = []
    for name, (low, high) in HUMAN.items():
        heard, designed = getattr(stats.heard, name), getattr(stats.designed, name)
        inside = heard is not None and low <= heard <= high
        mark = "" if inside else ' class="outside"'
        cells = [f"{v:.3f}" if v is not None else "-" for v in (heard, designed)]
        rows.append(
            f"<tr><th>{html.escape(name.replace('_', ' '))}</th><td{mark}>{cells[0]}</td><td>{cells[1]}</td>"
            f"<td>{low:g}\u2013{high:g}</td></tr>"
        )
    note = (
        f"{stats.dialogues} dialogue(s), {stats.heard.seconds / 60:.1f} min: silero-vad on each channel, segments "
        "under 0.2 s apart joined into inter-pausal units, as measured on J-Moshi's real Japanese dialogues "
        "(koe duplex-stats)."
    )
    head = "<tr><th>figure</th><th>heard</th><th>designed</th><th>human</th></tr>"
    return (
        f'<h2>Turn-taking, measured from the audio</h2><p class="sub">{html.escape(note)}</p>\n'
        f'<table class="turns">{head}{"".join(rows)}</table>\n'
    )


def render_report(facts: OutputFacts, clips: list[Clip] | None = None, turn_taking: DuplexStats | None = None) -> str:
    recipe = facts.recipe
    numbers = [
        ("samples", f"{len(facts.samples):,}"),
        ("audio", format_duration(facts.audio_seconds)),
        ("input rows", f"{sum(facts.statuses.values()):,}"),
        ("rejected", f"{facts.statuses.get('rejected', 0):,}"),
        ("failed", f"{facts.statuses.get('failed', 0):,}"),
        ("voices", f"{len(facts.speaker_seconds())}"),
        ("shards", f"{len(facts.shards)}"),
    ]
    figures = "\n".join(
        f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, svg in plots(facts)
    )
    tiles = "".join(f"<div><b>{html.escape(value)}</b>{html.escape(name)}</div>" for name, value in numbers)
    title = html.escape(f"koe report: {recipe['name']}")
    subtitle = html.escape(
        f"kind {recipe['kind']}, seed {recipe['seed']}, recipe fingerprint {facts.run.recipe_fingerprint}, "
        f"koe {facts.run.koe_version}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<style>{STYLE}</style></head>\n<body><h1>{title}</h1><p class="sub">{subtitle}</p>'
        f'<div class="numbers">{tiles}</div>\n<div class="plots">\n{figures}\n</div>\n'
        f"{turn_taking_section(turn_taking)}{listening_section(facts, clips or [])}</body></html>\n"
    )


def write_report(directory: Path, path: Path) -> Path:
    facts = collect(directory)
    if not facts.samples:
        raise ValueError(f"{directory}: no written samples to report on")
    clips = listening_clips(directory, facts)
    two_channel = kind_named(facts.kind).channels == 2
    turn_taking = duplex_stats(directory, TURN_TAKING_DIALOGUES) if two_channel else None
    atomic_write_bytes(Path(path), render_report(facts, clips, turn_taking).encode("utf-8"))
    return Path(path)
