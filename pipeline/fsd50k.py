"""FSD50K's clips, read from the Zenodo download or the Hub mirror, with the license gate applied.

Every clip carries its own Creative Commons license, chosen by its Freesound uploader. koe keeps
only clips whose license allows commercial use without passing terms on to the training data:
CC0 and CC BY (any version or jurisdiction port). Every other clip is still yielded, with the
reason it is left out, so the manifest accounts for every row of the ground-truth CSVs.

The gate, by the license in the clips-info JSON (`read_license`):

- CC0 (`publicdomain/zero/`): kept.
- CC BY (`licenses/by/`): kept when the metadata names the uploader (attribution needs one).
- CC BY-NC, BY-NC-SA, BY-NC-ND, NC-Sampling+: no commercial use.
- CC Sampling+ and Sampling: commercial use only of samples transformed into a new work, never of
  the clip as it is, which is what a training set redistributes.
- CC BY-SA: share-alike would bind the training data to its terms. CC BY-ND: no derivatives.
- Public Domain Mark (`publicdomain/mark/`): a label that a work is free of known copyright, not a
  grant from its author; Freesound does not offer it, so a clip carrying it is not taken on trust.
- a missing or empty license, a URL that is not creativecommons.org, a Creative Commons URL of
  another or unknown license, or one without a version: left out.

The URL may have any scheme (http, https or none), `www.`, letter case, trailing slash or
`deed.xx` / `legalcode` suffix. A clip is also left out when its CSV row has no metadata entry or
its audio file is missing.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ClipRow = dict[str, Any]

SUBSETS = ("dev", "eval")
USABLE_KINDS = frozenset({"cc0", "cc-by"})
# FSD50K as a curated whole (its labels) is CC BY 4.0, on top of each clip's own license
COLLECTION_CREDIT = "FSD50K (Fonseca et al., 2020, https://zenodo.org/record/4060432), CC BY 4.0"

# creativecommons.org/<group>/<code>/<version>/: (kind, name) by group and code
_CC_CODES: dict[str, dict[str, tuple[str, str]]] = {
    "publicdomain": {"zero": ("cc0", "CC0"), "mark": ("pd-mark", "Public Domain Mark")},
    "licenses": {
        "by": ("cc-by", "CC BY"),
        "by-sa": ("cc-by-sa", "CC BY-SA"),
        "by-nd": ("cc-by-nd", "CC BY-ND"),
        "by-nc": ("cc-by-nc", "CC BY-NC"),
        "by-nc-sa": ("cc-by-nc", "CC BY-NC-SA"),
        "by-nc-nd": ("cc-by-nc", "CC BY-NC-ND"),
        "by-nd-nc": ("cc-by-nc", "CC BY-ND-NC"),  # the 1.0 spelling of BY-NC-ND
        "nc-sampling+": ("nc-sampling+", "CC NC-Sampling+"),
        "sampling+": ("sampling+", "CC Sampling+"),
        "sampling": ("sampling", "CC Sampling"),
    },
}
_WHY_NOT = {
    "cc-by-nc": "does not allow commercial use",
    "nc-sampling+": "does not allow commercial use",
    "sampling+": "does not allow commercial use of the clip as it is",
    "sampling": "does not allow commercial use of the clip as it is",
    "cc-by-sa": "is share-alike: its terms would carry over to the training data",
    "cc-by-nd": "does not allow derivative works",
    "pd-mark": "marks a public-domain work but is no license from its author",
}
_CC_HOSTS = frozenset({"creativecommons.org", "www.creativecommons.org"})
_VERSION = re.compile(r"^\d+\.\d+$")
_PORT = re.compile(r"^[a-z]{2,}$")  # a jurisdiction port: by/3.0/es/, by/2.5/scotland/
_PAGE = re.compile(r"^(deed|legalcode)(\.[a-z_-]+)?$")


@dataclass(frozen=True)
class License:
    """A clip's license as the gate reads it: `reject_reason` is None exactly for CC0 and CC BY."""

    kind: str  # "cc0", "cc-by", "cc-by-nc", "cc-by-sa", "cc-by-nd", "sampling+", ..., or "unknown"
    name: str | None  # e.g. "CC BY 3.0", "CC BY-NC-SA 2.0 FR"; None when unknown
    reject_reason: str | None


def read_license(url: object) -> License:
    """The license named by a clips-info `license` value (a Creative Commons URL as written)."""
    if url is None or (isinstance(url, str) and not url.strip()):
        return License("unknown", None, "no license in the metadata")
    text = url.strip() if isinstance(url, str) else repr(url)
    path = _cc_path(text.lower())
    if path is None:
        return License("unknown", None, f"license {text!r} is not a Creative Commons URL")
    known = _identify(path)
    if known is None:
        return License("unknown", None, f"license {text!r} is not a Creative Commons license that koe knows")
    kind, name = known
    return License(kind, name, None if kind in USABLE_KINDS else f"license {name} {_WHY_NOT[kind]}")


def license_kind(url: str | None) -> str:
    """Only the kind: what decides keep or reject, and what statistics group by."""
    return read_license(url).kind


def _cc_path(url: str) -> list[str] | None:
    """The path segments of a creativecommons.org URL, or None for anything else."""
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
    except ValueError:  # e.g. an unclosed IPv6 bracket: no URL at all
        return None
    if parts.scheme not in ("", "http", "https") or parts.hostname not in _CC_HOSTS:
        return None
    return [segment for segment in parts.path.split("/") if segment]


def _identify(path: list[str]) -> tuple[str, str] | None:
    """(kind, name) for `<group>/<code>/<version>[/<port>][/deed.xx]`, or None if it is not that."""
    rest = path[3:]
    if rest and _PAGE.match(rest[-1]):
        rest = rest[:-1]
    if len(path) < 3 or not _VERSION.match(path[2]) or len(rest) > 1:
        return None
    group, code, version = path[:3]
    known = _CC_CODES.get(group, {}).get(code)
    if known is None or (rest and (group != "licenses" or not _PORT.match(rest[0]))):
        return None
    kind, name = known
    return kind, " ".join([name, version, *(port.upper() for port in rest)])


def attribution(row: ClipRow) -> dict[str, Any]:
    """What every sample made from a kept clip carries: CC BY asks for creator, title, source and license.

    `credit` follows the line Freesound offers on each sound's page (title by uploader -- link -- license),
    with the license URL added so the line alone satisfies CC BY's "provide a link to the license".
    """
    source_url = f"https://freesound.org/s/{row['freesound_id']}/"
    title = row["title"] or f"Freesound sound {row['freesound_id']}"
    uploader = row["uploader"] or "an unnamed Freesound user"  # only CC0 clips get here without one
    return {
        "freesound_id": row["freesound_id"],
        "title": row["title"],
        "uploader": row["uploader"],
        "license": row["license"],
        "license_name": row["license_name"],
        "source_url": source_url,
        "credit": f"{title} by {uploader} -- {source_url} -- License: {row['license_name']} ({row['license']})",
        "collection": COLLECTION_CREDIT,
    }


@dataclass(frozen=True)
class _Layout:
    """Where one copy of FSD50K keeps its ground-truth CSVs, clips-info JSONs and audio."""

    root: Path
    labels: Path
    metadata: Path
    audio: dict[str, Path]  # subset -> folder of <fname>.wav


def _find_layout(root: Path) -> _Layout:
    if (root / "FSD50K.ground_truth").is_dir():  # the Zenodo download, unzipped
        audio = {subset: root / f"FSD50K.{subset}_audio" for subset in SUBSETS}
        return _Layout(root, root / "FSD50K.ground_truth", root / "FSD50K.metadata", audio)
    clips = root / "clips"
    if (root / "labels").is_dir() and clips.is_dir():  # the Hub mirror Fhrozen/FSD50k
        return _Layout(root, root / "labels", root / "metadata", {subset: clips / subset for subset in SUBSETS})
    raise ValueError(
        f"{root} is not an FSD50K folder: expected FSD50K.ground_truth/, FSD50K.metadata/ and FSD50K.<subset>_audio/ "
        "(the Zenodo download) or labels/, metadata/ and clips/<subset>/ (the Hub mirror Fhrozen/FSD50k)"
    )


def read_clips(root: Path, splits: tuple[str, ...] = SUBSETS) -> Iterator[tuple[ClipRow, str | None]]:
    """Every clip of the chosen subsets as (row, reject reason or None): dev.csv's order, then eval.csv's.

    The folders are checked before the first row, so a wrong path fails at once; rows then stream from
    the CSVs (each subset's clips-info JSON is loaded whole when its turn comes).
    """
    unknown = [split for split in splits if split not in SUBSETS]
    if unknown:
        raise ValueError(f"unknown FSD50K subset(s) {unknown}; choose from {list(SUBSETS)}")
    layout = _find_layout(Path(root).resolve())
    for subset in splits:
        for needed in (layout.labels / f"{subset}.csv", _clips_info_path(layout, subset), layout.audio[subset]):
            if not needed.exists():
                raise ValueError(f"FSD50K at {layout.root} has no {needed.relative_to(layout.root)}")
    return _iter_clips(layout, splits)


def _clips_info_path(layout: _Layout, subset: str) -> Path:
    return layout.metadata / f"{subset}_clips_info_FSD50K.json"


def _iter_clips(layout: _Layout, splits: tuple[str, ...]) -> Iterator[tuple[ClipRow, str | None]]:
    for subset in splits:
        info_path = _clips_info_path(layout, subset)
        clips_info = json.loads(info_path.read_text(encoding="utf-8"))
        if not isinstance(clips_info, dict):
            raise ValueError(f"{info_path} is not a JSON object keyed by Freesound id")
        csv_path = layout.labels / f"{subset}.csv"
        with csv_path.open(newline="", encoding="utf-8") as file:
            records = csv.DictReader(file)
            columns = {"fname", "labels", "mids"} | ({"split"} if subset == "dev" else set())
            missing = columns - set(records.fieldnames or ())
            if missing:
                raise ValueError(f"{csv_path} lacks column(s) {sorted(missing)}")
            for record in records:
                yield _clip(layout, subset, record, clips_info, info_path.name)


def _clip(
    layout: _Layout, subset: str, record: dict[str, str], clips_info: dict[str, Any], info_name: str
) -> tuple[ClipRow, str | None]:
    fname = record["fname"].strip()
    info = clips_info.get(fname)
    has_info = isinstance(info, dict)
    info = info if has_info else {}
    clip_license = read_license(info.get("license"))
    audio = layout.audio[subset] / f"{fname}.wav"
    row: ClipRow = {
        "fname": fname,
        "freesound_id": int(fname) if fname.isdigit() else None,
        "subset": subset,
        "split": record["split"] if subset == "dev" else "eval",
        "labels": _list(record["labels"]),
        "mids": _list(record["mids"]),
        "title": info.get("title"),
        "uploader": info.get("uploader"),
        "license": info.get("license"),
        "license_name": clip_license.name,
        "description": info.get("description"),
        "tags": list(info.get("tags") or []),
        "audio": str(audio),
    }
    if row["freesound_id"] is None:
        return row, f"fname {fname!r} is not a Freesound id"
    if not has_info:
        return row, f"no metadata entry for clip {fname} in {info_name}"
    if clip_license.reject_reason:
        return row, clip_license.reject_reason
    if clip_license.kind == "cc-by" and not row["uploader"]:
        return row, f"license {clip_license.name} needs attribution, but the metadata names no uploader"
    if not audio.is_file():
        return row, f"audio file {audio.name} of the {subset} set is missing"
    return row, None


def _list(field: str | None) -> list[str]:
    """A comma-separated CSV field (labels, mids) as a list."""
    return [item.strip() for item in (field or "").split(",") if item.strip()]
