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
its audio file is missing, and when its CSV line or its metadata's title, uploader or license cannot
be read as text (not UTF-8, not a string, or past `MAX_TEXT_CHARS`). A clips-info file that is not a
JSON object stops the run before its first row.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
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


@dataclass(frozen=True)
class Clip:
    """A kept clip as every sample made from it records it: the attribution CC BY asks for (creator, title,
    source and license), then its FSD50K labels and where in FSD50K it is.

    `credit` follows the line Freesound offers on each sound's page (title by uploader -- link -- license),
    with the license URL added so the line alone satisfies CC BY's "provide a link to the license".
    """

    freesound_id: int
    title: str
    uploader: str
    license: str
    license_name: str
    source_url: str
    credit: str
    collection: str
    labels: list[str]
    mids: list[str]
    subset: str
    split: str

    @classmethod
    def of(cls, row: ClipRow) -> Clip:
        source_url = f"https://freesound.org/s/{row['freesound_id']}/"
        title = row["title"] or f"Freesound sound {row['freesound_id']}"
        uploader = row["uploader"] or "an unnamed Freesound user"  # only CC0 clips get here without one
        return cls(
            freesound_id=row["freesound_id"],
            title=row["title"],
            uploader=row["uploader"],
            license=row["license"],
            license_name=row["license_name"],
            source_url=source_url,
            credit=f"{title} by {uploader} -- {source_url} -- License: {row['license_name']} ({row['license']})",
            collection=COLLECTION_CREDIT,
            labels=row["labels"],
            mids=row["mids"],
            subset=row["subset"],
            split=row["split"],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clip:
        return cls(**data)


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


MAX_FNAME_CHARS = 20  # Freesound ids have 7 digits today
MAX_TEXT_CHARS = 1000  # a title or uploader name longer than this is no title: it would fill every credit line
_TEXT_FIELDS = ("title", "uploader", "license")


def read_clips(root: Path, splits: tuple[str, ...] = SUBSETS) -> Iterator[tuple[ClipRow, str | None]]:
    """Every clip of the chosen subsets as (row, reject reason or None): dev.csv's order, then eval.csv's.

    The folders, CSV headers and clips-info JSONs are all checked before the first row, so a wrong
    path or a broken metadata file fails at once, naming the file; rows then stream from the CSVs. A
    CSV line or metadata entry that cannot be read is that clip's rejected row.
    """
    unknown = [split for split in splits if split not in SUBSETS]
    if unknown:
        raise ValueError(f"unknown FSD50K subset(s) {unknown}; choose from {list(SUBSETS)}")
    layout = _find_layout(Path(root).resolve())
    for subset in splits:
        for needed in (layout.labels / f"{subset}.csv", _clips_info_path(layout, subset), layout.audio[subset]):
            if not needed.exists():
                raise ValueError(f"FSD50K at {layout.root} has no {needed.relative_to(layout.root)}")
    clips_info = {subset: _load_clips_info(_clips_info_path(layout, subset)) for subset in splits}
    for subset in splits:
        _check_header(layout.labels / f"{subset}.csv", subset)
    return _iter_clips(layout, splits, clips_info)


def _clips_info_path(layout: _Layout, subset: str) -> Path:
    return layout.metadata / f"{subset}_clips_info_FSD50K.json"


def _load_clips_info(path: Path) -> dict[str, Any]:
    """A clips-info JSON, whole. Bytes that are not UTF-8 stay in the strings as lone surrogates, so only
    the clips they belong to are rejected (`_text_problem`), not the collection."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        clips_info = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{path} is not valid clips-info JSON: it nests too deeply") from None
    if not isinstance(clips_info, dict):
        raise ValueError(f"{path} is not a JSON object keyed by Freesound id")
    return clips_info


def _open_csv(path: Path):
    return path.open(newline="", encoding="utf-8-sig", errors="surrogateescape")


def _csv_columns(subset: str) -> tuple[str, ...]:
    return ("fname", "labels", "mids") + (("split",) if subset == "dev" else ())


def _check_header(path: Path, subset: str) -> None:
    with _open_csv(path) as file:
        fieldnames = csv.DictReader(file).fieldnames or ()
    missing = set(_csv_columns(subset)) - set(fieldnames)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}")


def _iter_clips(
    layout: _Layout, splits: tuple[str, ...], clips_info: dict[str, dict[str, Any]]
) -> Iterator[tuple[ClipRow, str | None]]:
    for subset in splits:
        info_name = _clips_info_path(layout, subset).name
        csv_path = layout.labels / f"{subset}.csv"
        with _open_csv(csv_path) as file:
            records = csv.DictReader(file)
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except csv.Error as exc:  # e.g. a field past csv's limit (128 KiB): this line only
                    yield {"subset": subset}, f"{csv_path.name} line {records.reader.line_num}: {exc}"
                    continue
                line = f"{csv_path.name} line {records.reader.line_num}"
                yield _clip(layout, subset, record, clips_info[subset], info_name, line)


def _not_utf8(text: str) -> bool:
    """Bytes that were not UTF-8 are read as lone surrogates (and JSON can spell one, \\ud800): no text."""
    return any("\ud800" <= char <= "\udfff" for char in text)


def _text_problem(value: object) -> str | None:
    """Why a metadata text field cannot go into a sample's credit, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"is {type(value).__name__}, not text"
    if _not_utf8(value):
        return "is not valid UTF-8 text"
    if len(value) > MAX_TEXT_CHARS:
        return f"is {len(value):,} characters long (at most {MAX_TEXT_CHARS:,})"
    return None


def _csv_problem(record: dict[str, str | None], subset: str) -> str | None:
    """Why a ground-truth CSV line names no clip that can be looked up, or None."""
    for column in _csv_columns(subset):
        value = record.get(column)
        if value is None:
            return f"has no {column} (a short line)"
        if _not_utf8(value):
            return f"has a {column} that is not valid UTF-8"
    fname = record["fname"].strip()
    if not _is_freesound_id(fname):
        shown = fname[:MAX_FNAME_CHARS] + ("..." if len(fname) > MAX_FNAME_CHARS else "")
        return f"has fname {shown!r}, not a Freesound id"
    return None


def _is_freesound_id(fname: str) -> bool:
    return fname.isascii() and fname.isdigit() and len(fname) <= MAX_FNAME_CHARS


def _clip(
    layout: _Layout, subset: str, record: dict[str, str | None], clips_info: dict[str, Any], info_name: str, line: str
) -> tuple[ClipRow, str | None]:
    problem = _csv_problem(record, subset)
    if problem:
        fname = (record.get("fname") or "").strip()
        return {"subset": subset, **({"fname": fname} if _is_freesound_id(fname) else {})}, f"{line} {problem}"
    fname = record["fname"].strip()
    info = clips_info.get(fname)
    has_info = isinstance(info, dict)
    info = info if has_info else {}
    problems = [(field, _text_problem(info.get(field))) for field in _TEXT_FIELDS]
    clip_license = read_license(info.get("license") if isinstance(info.get("license"), str) else None)
    audio = layout.audio[subset] / f"{fname}.wav"
    row: ClipRow = {
        "fname": fname,
        "freesound_id": int(fname),
        "subset": subset,
        "split": record["split"] if subset == "dev" else "eval",
        "labels": _list(record["labels"]),
        "mids": _list(record["mids"]),
        **{field: None if problem else info.get(field) for field, problem in problems},
        "license_name": clip_license.name,
        "audio": str(audio),
    }
    if not has_info:
        return row, f"no metadata entry for clip {fname} in {info_name}"
    for field, problem in problems:
        if problem:
            return row, f"the {field} of clip {fname} in {info_name} {problem}"
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
