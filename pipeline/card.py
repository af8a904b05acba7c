"""The dataset card: the README.md a published koe dataset opens with on the Hub.

A card covers every config in the repo, not only the one being published, so each published split
leaves its summary (`manifests/<config>/<split>/summary.json`) beside its shards, and the card is
written from all the summaries the repo holds. The summary is plain JSON made from the output
alone; the card is a function of the summaries, the repo id and the branch.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from huggingface_hub import DatasetCardData

from .kinds import kind_named
from .records import SCHEMA_VERSION
from .stats import OutputFacts, format_duration, speaker_descriptions

_CC_NAME = re.compile(r"^CC(0| BY(?:-[A-Z-]+)?) (\d\.\d)")
_HUB_ID = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")


def hub_license(name: str) -> str:
    """A license as the Hub's `license` field names it: `cc0-1.0`, `cc-by-4.0`, or `other`."""
    match = _CC_NAME.match(name)
    if match:
        code, version = match.groups()
        return f"cc0-{version}" if code == "0" else f"cc-{code.strip().lower()}-{version}"
    return name if _HUB_ID.match(name) else "other"


def _hours(seconds: float) -> float:
    return round(seconds / 3600, 4)


def summarize(facts: OutputFacts, config: str, split: str, data_files: str) -> dict[str, Any]:
    """The facts of one published split that its card needs (JSON; stored in the repo beside the shards)."""
    recipe = facts.recipe
    first = facts.first_sample or {}
    source_samples = Counter(s.source for s in facts.samples)
    source_seconds = facts.source_seconds()
    speaker_seconds = facts.speaker_seconds()
    voices = speaker_descriptions(facts, sorted(speaker_seconds))
    clip_licenses = Counter(s.clip.license_name for s in facts.samples if s.clip)
    kind = kind_named(facts.kind)
    made_by = first.get(kind.model_record)
    return {
        "config": config,
        "split": split,
        "kind": facts.kind,
        "data_files": data_files,
        "shards": [record.shard for record in facts.shards],
        "shard_bytes": sum(record.tar_bytes for record in facts.shards),
        "samples": len(facts.samples),
        "audio_hours": _hours(facts.audio_seconds),
        "sample_rate": (first.get("audio") or {}).get("sample_rate"),
        "channels": (first.get("audio") or {}).get("channels"),
        "rows": {status: facts.statuses.get(status, 0) for status in ("written", "rejected", "failed")},
        "rejects_by_reason": dict(facts.reject_reasons.most_common()),
        "sources": [
            {
                "name": source["name"],
                "dataset": source["dataset"] if source.get("revision") else source["dataset"].rsplit("/", 1)[-1],
                "hub": bool(source.get("revision")),
                "revision": source.get("revision") or "",
                "split": source["split"],
                "license": source["license"],
                "samples": source_samples.get(source["name"], 0),
                "hours": _hours(source_seconds.get(source["name"], 0.0)),
            }
            for source in recipe["sources"]
        ],
        "speakers": [
            {"id": speaker, **voices[speaker], "hours": _hours(seconds)}
            for speaker, seconds in sorted(speaker_seconds.items())
        ],
        "clip_licenses": dict(sorted(clip_licenses.items())),
        "made_by": {k: v for k, v in (made_by or {}).items() if k in ("backend", "model", "window_seconds")},
        **kind.card_summary(recipe),
        "seed": recipe["seed"],
        "recipe_fingerprint": facts.run.recipe_fingerprint,
        "koe_version": facts.run.koe_version,
    }


def licenses(summaries: list[dict[str, Any]]) -> list[str]:
    """The Hub license ids of everything published: each text source's, and each caption clip's."""
    return sorted(
        {hub_license(name) for summary in summaries for name in kind_named(summary["kind"]).licenses(summary)}
    )


def _size_category(samples: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if samples < bound:
            return label
    return "1M<n<10M"


def card_data(summaries: list[dict[str, Any]]) -> DatasetCardData:
    configs: dict[str, list[dict[str, str]]] = {}
    for summary in summaries:
        configs.setdefault(summary["config"], []).append({"split": summary["split"], "path": summary["data_files"]})
    found = licenses(summaries)
    return DatasetCardData(
        language=sorted({kind_named(s["kind"]).language for s in summaries}),
        license=found[0] if len(found) == 1 else found,
        task_categories=sorted({task for s in summaries for task in kind_named(s["kind"]).task_categories}),
        tags=["audio", "webdataset", "synthetic", "koe"],
        size_categories=[_size_category(sum(s["samples"] for s in summaries))],
        configs=[{"config_name": name, "data_files": files} for name, files in sorted(configs.items())],
    )


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _duration(hours: float) -> str:
    return format_duration(hours * 3600)


def _bytes(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def _dataset_link(source: dict[str, Any]) -> str:
    if source["hub"]:
        return f"[{source['dataset']}](https://huggingface.co/datasets/{source['dataset']})"
    return f"local file `{source['dataset']}`"


def _resolve_url(repo_id: str, revision: str, path: str) -> str:
    return f"https://huggingface.co/datasets/{repo_id}/resolve/{revision}/{path}"


def _loading(repo_id: str, revision: str, summary: dict[str, Any]) -> list[str]:
    arguments = f'"{repo_id}", "{summary["config"]}", split="{summary["split"]}"'
    arguments += "" if revision == "main" else f', revision="{revision}"'
    shards = summary["shards"]
    folder = summary["data_files"].rsplit("/", 1)[0]
    if folder.endswith("/*"):  # shards spread over numbered folders: list them from the repo
        url = f"{_resolve_url(repo_id, revision, folder[:-2])}/<folder>/<shard>.tar"
    else:
        names = shards[0] if len(shards) == 1 else f"{{{shards[0]}..{shards[-1]}}}"
        url = _resolve_url(repo_id, revision, f"{folder}/{names}.tar")
    return [
        "```python",
        "from datasets import load_dataset",
        f"ds = load_dataset({arguments}, streaming=True)",
        'sample = next(iter(ds))  # sample["flac"]: the audio; sample["json"]: the record described above',
        "",
        "import io, json, soundfile, webdataset as wds  # the tars as they are",
        f"url = \"pipe:curl -s -L -H 'Authorization: Bearer $HF_TOKEN' {url}\"",
        'for flac, record in wds.WebDataset(url).to_tuple("flac", "json"):',
        "    audio, rate = soundfile.read(io.BytesIO(flac)); record = json.loads(record)",
        "```",
    ]


def _how_made(summary: dict[str, Any]) -> list[str]:
    lines = kind_named(summary["kind"]).how_made(summary)
    qc = summary["qc"]
    if qc and qc.get("enabled"):
        bounds = [
            f"DNSMOS P.808 ≥ {qc['min_dnsmos']}" if qc.get("dnsmos") else "",
            f"speaker similarity ≥ {qc['min_speaker_similarity']}" if qc.get("speaker_similarity") else "",
            f"{qc['morae_per_second'][0]}–{qc['morae_per_second'][1]} morae/s",
            f"RMS {qc['rms_dbfs'][0]}..{qc['rms_dbfs'][1]} dBFS",
            f"pauses ≤ {qc['max_pause_seconds']} s",
        ]
        lines.append("- Quality gate on every spoken turn: " + ", ".join(b for b in bounds if b) + ".")
    elif qc is not None:
        lines.append("- No quality gate was applied.")
    if summary["duplex"]:
        duplex = summary["duplex"]
        lines.append(
            f"- Turn-taking: gaps drawn from a {duplex['gap']['distribution']} distribution, "
            f"{duplex['overlap']['share']:.0%} of turns overlapping the previous one, "
            f"aizuchi at {duplex['aizuchi']['rate_per_minute']} per minute of the other's speech."
        )
    rows = summary["rows"]
    lines.append(
        f"- Of {sum(rows.values())} input rows, {rows['written']} were written, {rows['rejected']} rejected "
        f"and {rows['failed']} failed; every row's fate is in `manifests/{summary['config']}/{summary['split']}/"
        "manifest.parquet`."
    )
    if summary["rejects_by_reason"]:
        top = list(summary["rejects_by_reason"].items())[:5]
        lines.append("- Most common reject reasons: " + "; ".join(f"{reason} ({n})" for reason, n in top) + ".")
    lines.append(f"- koe {summary['koe_version']}, recipe fingerprint `{summary['recipe_fingerprint']}`.")
    return lines


def render_card(repo_id: str, revision: str, summaries: list[dict[str, Any]]) -> str:
    """README.md for the repo: YAML the Hub and `datasets` read, then what a user needs to know."""
    summaries = sorted(summaries, key=lambda s: (s["config"], s["split"]))
    hours = sum(s["audio_hours"] for s in summaries)
    body = [
        f"# {repo_id.split('/', 1)[1]}",
        "",
        "Speech-model training data made with koe from "
        + " and ".join(sorted({kind_named(s["kind"]).made_from for s in summaries}))
        + f": {sum(s['samples'] for s in summaries)} samples, {_duration(hours)} of audio, "
        "as WebDataset shards (`<key>.flac` + `<key>.json` per sample).",
        "",
        "## Contents",
        "",
        *_table(
            ["config", "split", "kind", "samples", "audio", "voices", "shards", "size"],
            [
                [
                    s["config"],
                    s["split"],
                    s["kind"],
                    s["samples"],
                    _duration(s["audio_hours"]),
                    len(s["speakers"]),
                    len(s["shards"]),
                    _bytes(s["shard_bytes"]),
                ]
                for s in summaries
            ],
        ),
        "",
        "## Sources and licenses",
        "",
        *_table(
            ["config", "source", "dataset", "revision", "split", "license", "samples", "audio"],
            [
                [
                    s["config"],
                    src["name"],
                    _dataset_link(src),
                    f"`{src['revision']}`" if src["revision"] else "",
                    src["split"],
                    src["license"],
                    src["samples"],
                    _duration(src["hours"]),
                ]
                for s in summaries
                for src in s["sources"]
            ],
        ),
        "",
        "Each sample's JSON names the source row it was made from and that row's license.",
    ]
    voices = {(v["id"], v["name"], v["license"]) for s in summaries for v in s["speakers"]}
    if voices:
        voice_licenses = Counter(license for _, _, license in voices if license)
        body += [
            "",
            "## Voices",
            "",
            f"{len(voices)} voices of the speaker bank spoke: "
            + "; ".join(f"{n} under {license}" for license, n in sorted(voice_licenses.items()))
            + ". Audio per voice:",
            "",
            *_table(
                ["config", "voice", "name", "audio"],
                [[s["config"], v["id"], v["name"], _duration(v["hours"])] for s in summaries for v in s["speakers"]],
            ),
        ]
    for name in sorted({s["kind"] for s in summaries}):
        body += kind_named(name).card_section([s for s in summaries if s["kind"] == name])
    body += ["", "## Sample format", ""]
    for name in sorted({s["kind"] for s in summaries}):
        example = next(s for s in summaries if s["kind"] == name)
        channels = "stereo" if example["channels"] == 2 else "mono"
        body += [
            f"**{name}**: `<key>.flac` ({example['sample_rate']} Hz, {channels}, 16-bit FLAC) and `<key>.json` "
            f"(schema version {SCHEMA_VERSION}) with `key`, `kind`, `recipe` and:",
            "",
            *[f"- `{field}`: {meaning}" for field, meaning in kind_named(name).json_fields.items()],
            "",
        ]
    body += ["## Loading", ""]
    for summary in summaries:
        body += [f"**{summary['config']}** ({summary['split']}):", "", *_loading(repo_id, revision, summary), ""]
    body += ["## How it was made", ""]
    for summary in summaries:
        body += [f"**{summary['config']}** ({summary['split']}):", "", *_how_made(summary), ""]
    return f"---\n{card_data(summaries).to_yaml()}\n---\n\n" + "\n".join(body).rstrip() + "\n"


def summary_bytes(summary: dict[str, Any]) -> bytes:
    return json.dumps(summary, indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8")
