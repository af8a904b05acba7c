"""Hostile corpus lines, each run end to end: the sft_magpie recipe's embedded profile (real OpenJTalk,
in process) over a tiny corpus of good rows plus one hostile line. Every run must end with every
input line in the manifest and `koe validate` passing; regenerating a subset of an output whose ids
are chosen to look like each other's keys must touch only the selected rows."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.executors import InlineExecutor
from pipeline.keys import MAX_KEY_CHARS, is_valid_key, sample_key
from pipeline.manifest import SCHEMA, read_manifest
from pipeline.recipe import load_recipe
from pipeline.run import run_recipe
from pipeline.select import Selection
from pipeline.validate import validate_output
from tests.conftest import REPO, koe

RECIPE = REPO / "recipes" / "sft_magpie.yaml"
STABLE_COLUMNS = [c for c in SCHEMA.names if c != "render_seconds"]  # a timing, not content
USTAR_NAME_CHARS = 100


def _line(row_id: str, text: str = "こんにちは。") -> bytes:
    """One magpie row as a JSON Lines record."""
    turns = [{"role": "user", "content": text}, {"role": "assistant", "content": "はい。"}]
    row = {"id": row_id, "conversations": turns}
    return json.dumps(row, ensure_ascii=False).encode()


def _run(tmp_path: Path, lines: list[bytes] | None, *overrides: str, selection: Selection | None = None):
    """Run sft_magpie's embedded profile over `lines` (None: the corpus already written) into tmp_path/out;
    returns the summary and the manifest rows."""
    corpus, out = tmp_path / "corpus.jsonl", tmp_path / "out"
    if lines is not None:
        corpus.write_bytes(b"\n".join(lines) + b"\n")
    recipe = load_recipe(RECIPE, ["profile=embedded", f"sources.0.dataset={corpus}", *overrides])
    summary = run_recipe(recipe, out, InlineExecutor(), show_progress=False, selection=selection)
    return summary, read_manifest(out / "manifest.parquet").to_pylist()


def _assert_valid(tmp_path: Path, rows: list[dict]) -> None:
    """Every non-blank input line is one manifest row, keys are distinct, and `koe validate` passes."""
    lines = [line for line in (tmp_path / "corpus.jsonl").read_bytes().split(b"\n") if line.strip()]
    assert len(rows) == len(lines)
    assert len({r["key"] for r in rows}) == len(rows)
    out = tmp_path / "out"
    assert validate_output(out).problems == []
    result = CliRunner().invoke(app, ["validate", str(out)])
    assert result.exit_code == 0 and ": OK, " in result.output, result.output


def _shard_members(out: Path) -> dict[str, bytes]:
    """Every tar member of the output, by member name."""
    members = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(fileobj=io.BytesIO(tar.read_bytes())) as archive:
            members.update({info.name: archive.extractfile(info).read() for info in archive})
    return members


BAD_UTF8 = _line("bad", "壊れた").replace("壊".encode(), b"\xff")
BAD_BYTE_AT = BAD_UTF8.index(b"\xff")
CR_LINE = _line("cr", "一行目").replace("一行目".encode(), "一行目\r二行目".encode())
DEEP = b'{"id": "deep", "conversations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HOSTILE = {
    "invalid-utf8": (BAD_UTF8, "rejected", f"not valid UTF-8 (byte 0xff at {BAD_BYTE_AT})"),
    "lone-surrogate": (
        b'{"id": "half\\ud800", "conversations": [{"role": "user", "content": "x"}]}',
        "rejected",
        "invalid text (a lone surrogate such as \\ud800)",
    ),
    "nested-100000-deep": (DEEP, "rejected", "JSON nested deeper than 64 levels"),
    # thousands of line starts for the line-anchored markdown patterns (headings, bullets, tables)
    "newline-space-x3000": (_line("nl", "こんにちは。" + "\n " * 3000 + "はい。"), "written", None),
    "10000-digit-number": (_line("num", "答えは" + "7" * 10_000 + "です。"), "rejected", "turn 1: too long ("),
    # a lone CR inside a string: JSON Lines ends a line at \n only, so this stays one row
    "lone-cr": (CR_LINE, "written", None),
}


@pytest.mark.parametrize("hostile, status, reason", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_line_runs_to_a_valid_output(tmp_path, hostile, status, reason):
    _, rows = _run(tmp_path, [_line("r1"), hostile, _line("r2")])
    _assert_valid(tmp_path, rows)
    assert [r["status"] for r in rows] == ["written", status, "written"]
    if reason is None:
        assert rows[1]["reason"] is None
    else:
        assert rows[1]["reason"].startswith(reason), rows[1]["reason"]


def test_the_lone_cr_is_kept_in_the_spoken_text(tmp_path):
    _run(tmp_path, [CR_LINE])
    sample = json.loads(_shard_members(tmp_path / "out")["magpie-cr.json"])
    assert sample["turns"][0]["text"] == "一行目\r二行目"


def test_a_40_character_source_name_is_a_one_line_recipe_error(tmp_path):
    name = "sources.0.name=" + "s" * 40
    out = tmp_path / "out"
    args = ["run", str(RECIPE), "--set", "profile=embedded", "--set", name, "-o", str(out), "--no-progress"]
    result = koe(*args, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1 and problems[0].startswith("  - sources.0.name: ") and "1 to 32 letters, digits or underscores" in problems[0]
    assert not out.exists()


def test_a_32_character_source_name_and_a_5000_character_id_have_a_bounded_key(tmp_path):
    source, row_id = "s" * 32, "x" * 5000
    _, rows = _run(tmp_path, [_line("r1"), _line(row_id)], f"sources.0.name={source}")
    _assert_valid(tmp_path, rows)
    assert [r["status"] for r in rows] == ["written", "written"]
    long = rows[1]
    assert long["row_id"] == row_id and is_valid_key(long["key"]) and len(long["key"]) <= MAX_KEY_CHARS
    assert long["key"].startswith(f"{source}-x")
    for tar in (tmp_path / "out" / "shards").glob("*.tar"):
        with tarfile.open(tar) as archive:
            for info in archive:
                assert len(info.name) <= USTAR_NAME_CHARS and not info.pax_headers, info.name
    sample = json.loads(_shard_members(tmp_path / "out")[f"{long['key']}.json"])
    assert sample["key"] == long["key"] and sample["source"]["row_id"] == row_id  # the full id is kept


def test_an_id_shaped_like_a_duplicate_marker_beside_a_duplicate(tmp_path):
    _, rows = _run(tmp_path, [_line("a"), _line("a"), _line("a#duplicate52")])
    _assert_valid(tmp_path, rows)
    assert [r["status"] for r in rows] == ["written", "rejected", "written"]
    assert rows[1]["reason"] == "duplicate id 'a' (first at magpie row 0)"
    assert [r["row_id"] for r in rows] == ["a", "a", "a#duplicate52"]


# ids chosen against the keys: a repeated id, an id shaped like a duplicate marker, and ids equal to
# the keys other rows get (plain, digested, and a rejected duplicate's)
ADVERSARIAL_IDS = [
    "a",
    "a",
    "a#duplicate52",
    "dup",
    "magpie-dup",
    sample_key("magpie", "a#duplicate52"),
    sample_key("magpie", "a", duplicate_of_row=1),
]


@pytest.fixture
def adversarial_output(tmp_path):
    _, rows = _run(tmp_path, [_line(row_id) for row_id in ADVERSARIAL_IDS])
    _assert_valid(tmp_path, rows)
    assert [r["status"] for r in rows] == ["written", "rejected", *["written"] * 5]
    assert {rows[1]["key"], rows[2]["key"]} & {r["key"] for r in rows[5:]} == set()
    return tmp_path


def _regenerate(tmp_path: Path, *ids: str) -> tuple[set[str], list[dict]]:
    """Regenerate `ids`; checks that nothing else changed and returns the keys that did."""
    out = tmp_path / "out"
    before_rows = {r["key"]: r for r in read_manifest(out / "manifest.parquet").select(STABLE_COLUMNS).to_pylist()}
    before_members = _shard_members(out)
    summary, _ = _run(tmp_path, None, selection=Selection(ids=ids))
    rows = read_manifest(out / "manifest.parquet").select(STABLE_COLUMNS).to_pylist()
    _assert_valid(tmp_path, rows)
    after_rows = {r["key"]: r for r in rows}
    assert after_rows.keys() == before_rows.keys()
    assert sum(r["status"] == "written" for r in rows) == sum(r["status"] == "written" for r in before_rows.values())
    bumped = {k for k, r in after_rows.items() if r["generation"] != before_rows[k]["generation"]}
    assert summary.regenerated == len(bumped)
    after_members = _shard_members(out)
    assert after_members.keys() == before_members.keys()  # no sample lost or added
    for key, row in after_rows.items():
        if key in bumped:
            assert row["generation"] == before_rows[key]["generation"] + 1
            continue
        assert row == before_rows[key]  # json_sha256 and flac_sha256 among them
        for extension in ("flac", "json"):
            name = f"{key}.{extension}"
            assert after_members.get(name) == before_members.get(name), name
    return bumped, rows


def test_regenerating_one_id_among_adversarial_ids_touches_only_it(adversarial_output):
    bumped, rows = _regenerate(adversarial_output, "dup")
    assert bumped == {"magpie-dup"}  # not the row whose id is magpie-dup (its key is magpie-magpie-dup)
    (row,) = [r for r in rows if r["key"] == "magpie-dup"]
    assert row["status"] == "written" and row["row_id"] == "dup"


def test_regenerating_a_repeated_id_takes_every_row_with_that_id(adversarial_output):
    bumped, rows = _regenerate(adversarial_output, "a")
    duplicate = sample_key("magpie", "a", duplicate_of_row=1)
    assert bumped == {"magpie-a", duplicate}  # both rows with id a; not a#duplicate52, nor the id equal to a key
    by_key = {r["key"]: r for r in rows}
    assert by_key[duplicate]["status"] == "rejected"  # still the repeat it was: regenerating renders nothing
    assert by_key[duplicate]["reason"] == "duplicate id 'a' (first at magpie row 0)"


def test_an_id_that_is_also_another_rows_key_selects_both(adversarial_output):
    """`--ids` takes row ids and keys alike: `magpie-dup` is the key of row `dup` and the id of another row."""
    bumped, _ = _regenerate(adversarial_output, "magpie-dup")
    assert bumped == {"magpie-dup", "magpie-magpie-dup"}


def test_an_id_equal_to_an_index_name_is_no_duplicate(tmp_path):
    # line 1 cannot be read, so it is named by its index (row1); a real row then has the id row1, and
    # a row without an id (named row4) follows a real row with the id row4
    no_id = json.dumps({"conversations": [{"role": "user", "content": "名前のない行です。"}]}, ensure_ascii=False)
    lines = [_line("r0"), BAD_UTF8, _line("row1"), _line("row4"), no_id.encode()]
    _, rows = _run(tmp_path, lines)
    _assert_valid(tmp_path, rows)
    assert [r["status"] for r in rows] == ["written", "rejected", "written", "written", "written"]
    assert rows[1]["reason"].startswith("not valid UTF-8")
    assert [r["row_id"] for r in rows] == ["r0", "row1", "row1", "row4", "row4"]
