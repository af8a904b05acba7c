"""The FSD50K reader: an exact license gate, the same rows from both layouts, and no CSV row lost."""

from __future__ import annotations

import csv
import json
import runpy
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from pipeline.fsd50k import SUBSETS, USABLE_KINDS, Clip, license_kind, read_clips, read_license

DEMO = Path(__file__).resolve().parents[1] / "recipes" / "data" / "fsd50k"

# (license as written in the clips-info JSON, kind, normalized name)
LICENSES = [
    ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0", "CC0 1.0"),
    ("https://creativecommons.org/publicdomain/zero/1.0", "cc0", "CC0 1.0"),
    ("https://www.creativecommons.org/publicdomain/zero/1.0/deed.en", "cc0", "CC0 1.0"),
    ("creativecommons.org/publicdomain/zero/1.0/legalcode", "cc0", "CC0 1.0"),
    ("http://creativecommons.org/licenses/by/3.0/", "cc-by", "CC BY 3.0"),
    ("http://creativecommons.org/licenses/by/3.0", "cc-by", "CC BY 3.0"),
    ("https://creativecommons.org/licenses/by/3.0/", "cc-by", "CC BY 3.0"),
    ("https://creativecommons.org/licenses/by/4.0/", "cc-by", "CC BY 4.0"),
    ("https://creativecommons.org/licenses/by/4.0", "cc-by", "CC BY 4.0"),
    ("http://creativecommons.org/licenses/by/4.0", "cc-by", "CC BY 4.0"),
    ("HTTPS://WWW.CreativeCommons.org/Licenses/BY/4.0/Deed.JA", "cc-by", "CC BY 4.0"),
    ("  http://creativecommons.org/licenses/by/2.0/\n", "cc-by", "CC BY 2.0"),
    ("https://creativecommons.org/licenses/by/4.0/?ref=chooser-v1", "cc-by", "CC BY 4.0"),
    ("http://creativecommons.org/licenses/by/3.0/es/", "cc-by", "CC BY 3.0 ES"),
    ("http://creativecommons.org/licenses/by/2.5/scotland/deed.en_GB", "cc-by", "CC BY 2.5 SCOTLAND"),
    ("http://creativecommons.org/licenses/by-nc/3.0/", "cc-by-nc", "CC BY-NC 3.0"),
    ("https://creativecommons.org/licenses/by-nc/4.0", "cc-by-nc", "CC BY-NC 4.0"),
    ("http://creativecommons.org/licenses/by-nc-sa/2.0/fr/", "cc-by-nc", "CC BY-NC-SA 2.0 FR"),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/legalcode", "cc-by-nc", "CC BY-NC-ND 4.0"),
    ("http://creativecommons.org/licenses/by-nd-nc/1.0/", "cc-by-nc", "CC BY-ND-NC 1.0"),
    ("http://creativecommons.org/licenses/sampling+/1.0/", "sampling+", "CC Sampling+ 1.0"),
    ("https://creativecommons.org/licenses/sampling+/1.0", "sampling+", "CC Sampling+ 1.0"),
    ("http://creativecommons.org/licenses/nc-sampling+/1.0/", "nc-sampling+", "CC NC-Sampling+ 1.0"),
    ("http://creativecommons.org/licenses/sampling/1.0/", "sampling", "CC Sampling 1.0"),
    ("http://creativecommons.org/licenses/by-sa/4.0/", "cc-by-sa", "CC BY-SA 4.0"),
    ("http://creativecommons.org/licenses/by-nd/3.0/", "cc-by-nd", "CC BY-ND 3.0"),
    ("https://creativecommons.org/publicdomain/mark/1.0/", "pd-mark", "Public Domain Mark 1.0"),
    (None, "unknown", None),
    ("", "unknown", None),
    ("   ", "unknown", None),
    ("foo", "unknown", None),
    ("CC-BY-4.0", "unknown", None),
    ("https://example.com/licenses/by/4.0/", "unknown", None),
    ("http://creativecommons.org.example.com/licenses/by/4.0/", "unknown", None),
    ("ftp://creativecommons.org/licenses/by/4.0/", "unknown", None),
    ("http://[creativecommons.org/licenses/by/4.0/", "unknown", None),
    ("http://creativecommons.org/", "unknown", None),
    ("http://creativecommons.org/licenses/by/", "unknown", None),
    ("http://creativecommons.org/licenses/by/four/", "unknown", None),
    ("http://creativecommons.org/licenses/by/4.0/extra/path/", "unknown", None),
    ("http://creativecommons.org/licenses/publicdomain/", "unknown", None),
    ("http://creativecommons.org/licenses/nc/1.0/", "unknown", None),
    ("http://creativecommons.org/publicdomain/zero/1.0/es/", "unknown", None),
]

# (license as written, the reject reason, None when the clip is kept)
DECISIONS = [
    ("http://creativecommons.org/publicdomain/zero/1.0/", None),
    ("https://creativecommons.org/licenses/by/4.0", None),
    ("http://creativecommons.org/licenses/by/3.0/es/", None),
    ("http://creativecommons.org/licenses/by-nc/3.0/", "license CC BY-NC 3.0 does not allow commercial use"),
    ("http://creativecommons.org/licenses/by-nc-nd/4.0/", "license CC BY-NC-ND 4.0 does not allow commercial use"),
    (
        "http://creativecommons.org/licenses/nc-sampling+/1.0/",
        "license CC NC-Sampling+ 1.0 does not allow commercial use",
    ),
    (
        "http://creativecommons.org/licenses/sampling+/1.0/",
        "license CC Sampling+ 1.0 does not allow commercial use of the clip as it is",
    ),
    (
        "http://creativecommons.org/licenses/sampling/1.0/",
        "license CC Sampling 1.0 does not allow commercial use of the clip as it is",
    ),
    (
        "http://creativecommons.org/licenses/by-sa/3.0/",
        "license CC BY-SA 3.0 is share-alike: its terms would carry over to the training data",
    ),
    ("http://creativecommons.org/licenses/by-nd/4.0/", "license CC BY-ND 4.0 does not allow derivative works"),
    (
        "https://creativecommons.org/publicdomain/mark/1.0/",
        "license Public Domain Mark 1.0 marks a public-domain work but is no license from its author",
    ),
    (None, "no license in the metadata"),
    ("", "no license in the metadata"),
    ("foo", "license 'foo' is not a Creative Commons URL"),
    (
        "https://example.com/licenses/by/4.0/",
        "license 'https://example.com/licenses/by/4.0/' is not a Creative Commons URL",
    ),
    (
        "http://creativecommons.org/licenses/by/",
        "license 'http://creativecommons.org/licenses/by/' is not a Creative Commons license that koe knows",
    ),
]

# the demo collection: fname -> reject reason, None when kept (exactly the CC0 and CC BY clips)
DEMO_DECISIONS = {
    "990000101": None,
    "990000102": None,
    "990000103": None,
    "990000104": "license CC BY-NC 3.0 does not allow commercial use",
    "990000105": "license CC Sampling+ 1.0 does not allow commercial use of the clip as it is",
    "990000106": "no license in the metadata",
    "990000107": "no metadata entry for clip 990000107 in dev_clips_info_FSD50K.json",
    "990000201": None,
    "990000202": None,
    "990000203": "no license in the metadata",
    "990000204": "license 'https://example.com/licenses/free-for-all' is not a Creative Commons URL",
    "990000205": "audio file 990000205.wav of the eval set is missing",
}

ROW_FIELDS = {
    "fname",
    "freesound_id",
    "subset",
    "split",
    "labels",
    "mids",
    "title",
    "uploader",
    "license",
    "license_name",
    "audio",
}


@pytest.mark.parametrize(("url", "kind", "name"), LICENSES)
def test_license_kind_and_name(url, kind, name):
    read = read_license(url)
    assert (license_kind(url), read.kind, read.name) == (kind, kind, name)
    assert (read.reject_reason is None) == (kind in USABLE_KINDS)
    if name and read.reject_reason:
        assert name in read.reject_reason


@pytest.mark.parametrize(("url", "reason"), DECISIONS)
def test_license_decision(url, reason):
    assert read_license(url).reject_reason == reason


def _csv_fnames(labels_dir: Path) -> list[tuple[str, str]]:
    rows = []
    for subset in SUBSETS:
        with (labels_dir / f"{subset}.csv").open(newline="") as file:
            rows += [(subset, record["fname"]) for record in csv.DictReader(file)]
    return rows


def _hub_mirror(root: Path) -> Path:
    """The demo data rearranged as the Hub mirror Fhrozen/FSD50k keeps FSD50K."""
    shutil.copytree(DEMO / "FSD50K.ground_truth", root / "labels")
    shutil.copytree(DEMO / "FSD50K.metadata", root / "metadata")
    for subset in SUBSETS:
        shutil.copytree(DEMO / f"FSD50K.{subset}_audio", root / "clips" / subset)
    return root


def _portable(rows: list) -> list:
    """Rows with the audio path cut to its file name, to compare copies of FSD50K in different places."""
    return [({**row, "audio": Path(row["audio"]).name}, reason) for row, reason in rows]


def test_demo_data_decisions_and_nothing_lost():
    rows = list(read_clips(DEMO))
    assert [(row["subset"], row["fname"]) for row, _ in rows] == _csv_fnames(DEMO / "FSD50K.ground_truth")
    assert {row["fname"]: reason for row, reason in rows} == DEMO_DECISIONS
    for row, reason in rows:
        assert set(row) == ROW_FIELDS
        assert row["freesound_id"] == int(row["fname"])
        assert row["split"] in ({"train", "val"} if row["subset"] == "dev" else {"eval"})
        assert len(row["labels"]) == len(row["mids"]) >= 1
        assert Path(row["audio"]).is_absolute()
        assert (reason is None) == (license_kind(row["license"]) in USABLE_KINDS and Path(row["audio"]).is_file())
    kept = {row["fname"]: row for row, reason in rows if reason is None}
    assert {row["license_name"] for row in kept.values()} == {"CC0 1.0", "CC BY 3.0", "CC BY 4.0"}
    assert kept["990000103"]["labels"] == ["Bark", "Dog", "Domestic_animals_and_pets", "Animal"]
    assert kept["990000103"]["mids"] == ["/m/05tny_", "/m/0bt9lr", "/m/068hy", "/m/0jbk"]
    assert kept["990000103"]["split"] == "val"


def test_hub_mirror_layout_reads_the_same(tmp_path):
    mirror = _hub_mirror(tmp_path / "FSD50k")
    original, rearranged = list(read_clips(DEMO)), list(read_clips(mirror))
    assert _portable(rearranged) == _portable(original)
    assert all(Path(row["audio"]).parent.parent == mirror / "clips" for row, _ in rearranged)


def test_subsets_are_read_in_the_order_asked(tmp_path):
    assert [row["subset"] for row, _ in read_clips(DEMO, splits=("eval",))] == ["eval"] * 5
    with pytest.raises(ValueError, match="unknown FSD50K subset"):
        read_clips(DEMO, splits=("test",))


def test_a_folder_of_neither_layout_is_refused(tmp_path):
    (tmp_path / "dev.csv").write_text("fname,labels,mids,split\n")
    with pytest.raises(ValueError, match=r"not an FSD50K folder: expected FSD50K\.ground_truth/.*labels/"):
        read_clips(tmp_path)


def test_missing_metadata_file_is_refused_before_any_row(tmp_path):
    mirror = _hub_mirror(tmp_path / "FSD50k")
    (mirror / "metadata" / "eval_clips_info_FSD50K.json").unlink()
    with pytest.raises(ValueError, match="no metadata/eval_clips_info_FSD50K.json"):
        read_clips(mirror)


def test_cc_by_without_an_uploader_cannot_be_attributed(tmp_path):
    mirror = _hub_mirror(tmp_path / "FSD50k")
    info_path = mirror / "metadata" / "dev_clips_info_FSD50K.json"
    info = json.loads(info_path.read_text())
    del info["990000101"]["uploader"]  # CC0: no attribution needed, still kept
    info["990000102"]["uploader"] = ""  # CC BY 3.0
    info_path.write_text(json.dumps(info))
    reasons = {row["fname"]: reason for row, reason in read_clips(mirror, splits=("dev",))}
    assert reasons["990000101"] is None
    assert reasons["990000102"] == "license CC BY 3.0 needs attribution, but the metadata names no uploader"


def test_kept_clips_carry_their_attribution():
    kept = [row for row, reason in read_clips(DEMO) if reason is None]
    assert kept
    for row in kept:
        clip = Clip.of(row)
        assert clip.freesound_id == row["freesound_id"] and Clip.from_dict(clip.to_dict()) == clip
        assert clip.title and clip.uploader and clip.license and clip.license_name and clip.labels
        assert clip.source_url == f"https://freesound.org/s/{row['freesound_id']}/"
        for part in (row["title"], row["uploader"], clip.source_url, row["license_name"], row["license"]):
            assert part in clip.credit
        assert "FSD50K" in clip.collection
    rain = next(row for row in kept if row["fname"] == "990000102")
    assert Clip.of(rain).credit == (
        "Synthetic rain, hiss and droplets by koe -- https://freesound.org/s/990000102/ -- "
        "License: CC BY 3.0 (http://creativecommons.org/licenses/by/3.0/)"
    )


def test_demo_data_is_what_its_generator_makes(tmp_path):
    runpy.run_path(str(DEMO / "make_demo.py"))["write_demo"](tmp_path)
    made = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    committed = sorted(
        path.relative_to(DEMO) for path in DEMO.rglob("*") if path.is_file() and path.suffix not in (".py", ".md")
    )
    assert made == committed
    assert all((tmp_path / path).read_bytes() == (DEMO / path).read_bytes() for path in made)
    assert sum(path.stat().st_size for path in DEMO.rglob("*") if path.is_file()) < 1.5e6
    for wav in DEMO.rglob("*.wav"):
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
        assert 0.5 <= info.duration <= 3.0


def _metadata(mirror: Path, subset: str = "dev") -> Path:
    return mirror / "metadata" / f"{subset}_clips_info_FSD50K.json"


BROKEN_METADATA = {
    "broken JSON": (b'{"990000101": {"title": ', r"dev_clips_info_FSD50K.json is not valid JSON: "),
    "100,000 levels deep": (b"[" * 100_000 + b"]" * 100_000, r"dev_clips_info_FSD50K.json .* nests too deeply"),
    "a list, not an object": (b"[1, 2]", r"dev_clips_info_FSD50K.json is not a JSON object keyed by Freesound id"),
}


@pytest.mark.parametrize(("content", "error"), BROKEN_METADATA.values(), ids=BROKEN_METADATA.keys())
def test_broken_metadata_is_refused_before_any_row_naming_the_file(tmp_path, content, error):
    mirror = _hub_mirror(tmp_path / "FSD50k")
    _metadata(mirror).write_bytes(content)
    with pytest.raises(ValueError, match=error):
        read_clips(mirror)  # not lazily, at the first row: before any work


def _hostile_mirror(root: Path) -> Path:
    """The demo data with hostile metadata entries and CSV lines; the clips they touch are named in HOSTILE_CLIPS."""
    mirror = _hub_mirror(root)
    info = json.loads(_metadata(mirror).read_text())
    info["990000101"]["title"] = "TITLE_BYTES"  # replaced below by bytes that are not UTF-8
    info["990000102"]["title"] = ["Rain", "Water"]
    info["990000103"]["uploader"] = {"name": "koe"}
    info["990000104"]["license"] = 4.0
    info["990000106"]["title"] = "x" * 100_000
    eval_info = json.loads(_metadata(mirror, "eval").read_text())
    eval_info["990000201"]["description"] = "長い説明" * 250_000  # a million characters; no sample uses it: kept
    eval_info["990000202"]["title"] = "half\ud800"
    _metadata(mirror).write_bytes(json.dumps(info).encode().replace(b"TITLE_BYTES", b"Bell \xff\xfe"))
    _metadata(mirror, "eval").write_text(json.dumps(eval_info))  # the surrogate as JSON spells it: \\ud800
    dev_csv = mirror / "labels" / "dev.csv"
    lines = dev_csv.read_bytes().splitlines()
    lines += [
        b"990000108,Bell\xff,/m/0395lw,train",  # a label that is not UTF-8
        b"990000109,Bell",  # a short line
        b'990000110,"' + b"A" * 200_000 + b'",/m/0395lw,train',  # a field past csv's 128 KiB limit
        b"\xef\xbc\x95,Bell,/m/0395lw,train",  # fname a full-width 5: a digit, but no Freesound id
    ]
    dev_csv.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")  # and a UTF-8 BOM
    return mirror


HOSTILE_CLIPS = {
    "990000101": "the title of clip 990000101 in dev_clips_info_FSD50K.json is not valid UTF-8 text",
    "990000102": "the title of clip 990000102 in dev_clips_info_FSD50K.json is list, not text",
    "990000103": "the uploader of clip 990000103 in dev_clips_info_FSD50K.json is dict, not text",
    "990000104": "the license of clip 990000104 in dev_clips_info_FSD50K.json is float, not text",
    "990000106": "the title of clip 990000106 in dev_clips_info_FSD50K.json is 100,000 characters long (at most 1,000)",
    "990000201": None,
    "990000202": "the title of clip 990000202 in eval_clips_info_FSD50K.json is not valid UTF-8 text",
}
HOSTILE_LINES = [
    ("990000108", "dev.csv line 9 has a labels that is not valid UTF-8"),
    ("990000109", "dev.csv line 10 has no mids (a short line)"),
    (None, "dev.csv line 11: field larger than field limit (131072)"),
    (None, "dev.csv line 12 has fname '５', not a Freesound id"),
]


def test_hostile_metadata_rejects_only_the_clips_it_touches(tmp_path):
    rows = list(read_clips(_hostile_mirror(tmp_path / "FSD50k")))
    reasons = {row.get("fname"): reason for row, reason in rows if row.get("fname") in DEMO_DECISIONS}
    assert reasons == {**DEMO_DECISIONS, **HOSTILE_CLIPS}
    assert [(row.get("fname"), reason) for row, reason in rows[len(DEMO_DECISIONS) - 5 : -5]] == HOSTILE_LINES
    for row, reason in rows:
        if reason is None:
            credit = Clip.of(row).credit
            assert len(credit) < 500 and credit.encode("utf-8")  # short, and text
        else:
            assert reason.encode("utf-8") and len(reason) < 200
            assert all(not isinstance(row.get(field), (list, dict)) for field in ("title", "uploader", "license"))


def test_a_captions_run_over_hostile_metadata_accounts_for_every_line(tmp_path):
    from pipeline.manifest import read_manifest
    from tests.chat_server import ChatServerDouble
    from tests.conftest import koe, run_captions

    mirror = _hostile_mirror(tmp_path / "FSD50k")
    out = tmp_path / "out"
    with ChatServerDouble() as server:
        run_captions(server.url, out, "--set", f"sources.0.dataset={mirror}")
    koe("validate", str(out))
    rows = read_manifest(out / "manifest.parquet").to_pylist()
    assert len(rows) == len(DEMO_DECISIONS) + len(HOSTILE_LINES)
    written = {row["row_id"] for row in rows if row["status"] == "written"}
    kept_before = {fname for fname, reason in DEMO_DECISIONS.items() if reason is None}
    assert written == {fname for fname in kept_before if HOSTILE_CLIPS.get(fname) is None} == {"990000201"}


def test_a_captions_run_over_broken_metadata_is_one_line_before_any_work(tmp_path):
    from tests.chat_server import ChatServerDouble
    from tests.conftest import run_captions

    mirror = _hub_mirror(tmp_path / "FSD50k")
    _metadata(mirror, "eval").write_bytes(b"{")
    out = tmp_path / "out"
    with ChatServerDouble() as server:
        result = run_captions(server.url, out, "--set", f"sources.0.dataset={mirror}", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "eval_clips_info_FSD50K.json is not valid JSON" in result.stderr
    assert not (out / "shards").exists() or not list((out / "shards").iterdir())
