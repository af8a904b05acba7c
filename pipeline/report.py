"""`koe report`: one self-contained HTML page of plots about an output, for a person to look at.

What it shows: how long the samples are, who spoke for how long, which sources they came from,
why rows were rejected, how the quality scores spread against the recipe's thresholds, and for
duplex the turn-taking (gaps, overlaps, aizuchi). Plots are inline SVG (matplotlib, no network,
no scripts), so the file can be mailed or opened from a shard server as it is.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .shards import atomic_write_bytes
from .stats import QC_SCORES, OutputFacts, collect, format_duration

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
    clips = sorted(Counter(s.clip["license_name"] for s in facts.samples if s.clip).items())
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


def render_report(facts: OutputFacts) -> str:
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
        f"kind {recipe['kind']}, seed {recipe['seed']}, recipe fingerprint {facts.run['recipe_fingerprint']}, "
        f"koe {facts.run['koe_version']}"
    )
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<style>{STYLE}</style></head>\n<body><h1>{title}</h1><p class="sub">{subtitle}</p>'
        f'<div class="numbers">{tiles}</div>\n<div class="plots">\n{figures}\n</div></body></html>\n'
    )


def write_report(directory: Path, path: Path) -> Path:
    facts = collect(directory)
    if not facts.samples:
        raise ValueError(f"{directory}: no written samples to report on")
    atomic_write_bytes(Path(path), render_report(facts).encode("utf-8"))
    return Path(path)
