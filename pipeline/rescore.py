"""`koe qc DIR`: every voiced turn of an existing output measured again by the quality gate.

It shows the spread of each score (for choosing thresholds) with the run's own QC settings; the
gate itself is `pipeline/qc.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .audio import decode_flac
from .kinds import kind_named
from .qc import judged, make_gate
from .recipe import QCConfig
from .shards import Output, RunRecord, output_samples
from .speakers import load_bank
from .tts import load_backend


def rescore_output(directory: Path) -> list[dict[str, Any]]:
    """Every voiced turn of an existing output measured again (as `koe qc` shows them), with the run's QC
    settings: one row per turn with its key, turn number, the problem it has now (if any) and its scores."""
    output = Output(directory)
    if not output.run_path.is_file():
        raise ValueError(f"{directory}: no run.json (is it the output folder of `koe run`?)")
    recipe = RunRecord.read(output.run_path).recipe
    if recipe is None:
        raise ValueError(f"{directory}: its run has not finished (run.json says running)")
    if not kind_named(recipe["kind"]).speaks:
        raise ValueError(f"{directory}: a {recipe['kind']} output has no rendered speech to check")
    config = QCConfig(**{**recipe.get("qc", {}), "enabled": True})
    bank = {speaker.id: speaker for speaker in load_bank(Path(recipe["speakers"]["bank"])).speakers}
    gate = make_gate(config, load_backend(recipe["tts"]["backend"], recipe["tts"]["options"]))
    assert gate is not None
    rows = []
    for sample in output_samples(output.root, with_audio=True):
        document = sample.document
        pcm, rate = decode_flac(sample.read_flac())
        channels = document.get("channels", ["mono"])
        for number, turn in enumerate(document["turns"], start=1):
            if "start" not in turn or turn["speaker"] not in bank:
                continue
            channel = channels.index(turn["role"]) if turn["role"] in channels else 0
            piece = pcm[int(turn["start"] * rate) : int(turn["end"] * rate), channel].astype(np.float32) / 32768
            verdict = gate.judge(piece, rate, turn.get("reading") or "", bank[turn["speaker"]], trim=False)
            rows.append({"key": document["key"], "turn": number, "problem": verdict.problem, **verdict.scores})
    return rows


def distributions(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Quantiles of every score over the rows whose check judged it (the thresholds apply to those), for choosing
    thresholds."""
    names = [name for name in rows[0] if name not in ("key", "turn", "problem", "skipped")] if rows else []
    quantiles = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
    table = {}
    for name in names:
        values = np.array([row[name] for row in rows if judged(row, name)], dtype=np.float64)
        if values.size:
            table[name] = {f"p{round(q * 100)}": round(float(np.quantile(values, q)), 3) for q in quantiles}
    return table
