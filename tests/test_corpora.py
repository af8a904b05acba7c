import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.corpora import ADAPTERS, Adapter, ColumnMapping, count_rows, iter_items
from pipeline.recipe import load_recipe
from pipeline.records import Rejected


def _parse(adapter, row):
    return Adapter(ADAPTERS[adapter]).parse(row)


def _turns(adapter, row):
    return [(t.role, t.text) for t in _parse(adapter, row).turns]


def test_magpie_rows():
    row = {
        "id": "x",
        "conversations": [{"role": "user", "content": "質問"}, {"role": "assistant", "content": "答え"}],
        "extra": 1,
    }
    assert _turns("magpie", row) == [("user", "質問"), ("assistant", "答え")]
    system = {"conversations": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}
    assert _turns("magpie", system) == [("user", "q")]


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"id": "x"}, "missing column 'conversations'"),
        ({"conversations": []}, "not a non-empty list"),
        ({"conversations": "text"}, "not a non-empty list"),
        ({"conversations": [{"role": "user", "content": 3}]}, "turn 1 content is int, expected a string"),
        ({"conversations": [{"role": "user", "content": None}]}, "turn 1 content is NoneType"),
        ({"conversations": ["hi"]}, "turn 1 is str, expected a mapping"),
        ({"conversations": [{"role": "narrator", "content": "x"}]}, "unknown role 'narrator'"),
        ({"conversations": [{"role": "assistant", "content": "x"}]}, "no user turn"),
    ],
)
def test_magpie_odd_rows_are_rejected(row, reason):
    with pytest.raises(Rejected, match=reason):
        _parse("magpie", row)


def test_automultiturn_rows():
    row = {"q1": "一", "a1": "いち", "q2": "二", "a2": "に", "other": "ignored"}
    assert _turns("automultiturn", row) == [("user", "一"), ("assistant", "いち"), ("user", "二"), ("assistant", "に")]
    assert _turns("automultiturn", {"q1": "一", "a1": "いち", "q2": "", "a2": ""}) == [
        ("user", "一"),
        ("assistant", "いち"),
    ]
    with pytest.raises(Rejected, match="missing column 'q1'"):
        _parse("automultiturn", {"q1": None, "q2": "x"})
    with pytest.raises(Rejected, match="column q2 is int"):
        _parse("automultiturn", {"q1": "x", "q2": 5})


def test_hh_rlhf_rows():
    row = {
        "conversations": [
            {"from": "human", "value": "質問"},
            {"from": "gpt", "value": "答え"},
            {"from": "human", "value": "続き"},
        ],
        "chosen": "良い返事",
        "rejected": "悪い返事",
        "fourth_column": 1,
    }
    parsed = _parse("hh_rlhf", row)
    assert [(t.role, t.text) for t in parsed.turns] == [("user", "質問"), ("assistant", "答え"), ("user", "続き")]
    assert (parsed.chosen, parsed.rejected) == ("良い返事", "悪い返事")
    with pytest.raises(Rejected, match="missing column 'rejected'"):
        _parse("hh_rlhf", {**row, "rejected": None})
    with pytest.raises(Rejected, match="column chosen is list"):
        _parse("hh_rlhf", {**row, "chosen": ["a"]})
    with pytest.raises(Rejected, match="no user turn"):
        _parse("hh_rlhf", {**row, "conversations": [{"from": "gpt", "value": "x"}]})


def test_chatbot_arena_rows():
    parsed = _parse("chatbot_arena", {"prompt": "問い", "chosen": "良", "rejected": "悪"})
    assert [(t.role, t.text) for t in parsed.turns] == [("user", "問い")]
    assert (parsed.chosen, parsed.rejected) == ("良", "悪")
    with pytest.raises(Rejected, match="missing column 'prompt'"):
        _parse("chatbot_arena", {"chosen": "良", "rejected": "悪"})
    with pytest.raises(Rejected, match="column rejected is int"):
        _parse("chatbot_arena", {"prompt": "問い", "chosen": "良", "rejected": 3})


DPO_ROWS = {
    "hh_rlhf": {"conversations": [{"from": "human", "value": "質問"}], "chosen": "良い返事", "rejected": "悪い返事"},
    "chatbot_arena": {"prompt": "問い", "chosen": "良い返事", "rejected": "悪い返事"},
}


@pytest.mark.parametrize("adapter", sorted(DPO_ROWS))
@pytest.mark.parametrize(
    "replies, reason",
    [
        ({"chosen": ""}, "chosen is empty"),
        ({"rejected": ""}, "rejected is empty"),
        ({"chosen": " \u3000\n\t"}, "chosen is empty (whitespace only)"),
        ({"rejected": "\u200b"}, "rejected is empty (whitespace or invisible characters only)"),
        ({"chosen": "。"}, "chosen has no words (punctuation only)"),
        ({"rejected": "..."}, "rejected has no words (punctuation only)"),
        ({"chosen": "！？"}, "chosen has no words (punctuation only)"),
        ({"rejected": "—"}, "rejected has no words (punctuation only)"),
        ({"chosen": "……"}, "chosen has no words (punctuation only)"),
        ({"rejected": "★ ♪"}, "rejected has no words (symbols only)"),
        ({"chosen": "「」＋"}, "chosen has no words (punctuation and symbols only)"),
        ({"chosen": "", "rejected": "。"}, "chosen is empty"),  # the first problem is named
        ({"chosen": "同じ返事", "rejected": "同じ返事"}, "chosen and rejected are identical"),
        # the same after NFKC and collapsing whitespace
        ({"chosen": "ＡＢＣ　です。", "rejected": " ABC  です。\n"}, "chosen and rejected are identical"),
    ],
)
def test_dpo_pairs_without_two_replies_are_rejected(adapter, replies, reason):
    with pytest.raises(Rejected) as rejected:
        _parse(adapter, {**DPO_ROWS[adapter], **replies})
    assert rejected.value.reason == reason


@pytest.mark.parametrize("adapter", sorted(DPO_ROWS))
@pytest.mark.parametrize("replies", [{"chosen": "はい。"}, {"rejected": "OK!"}, {"chosen": "3"}, {"chosen": " 良い返事"}])
def test_dpo_replies_with_words_are_kept_as_written(adapter, replies):
    row = {**DPO_ROWS[adapter], **replies}
    parsed = _parse(adapter, row)
    assert (parsed.chosen, parsed.rejected) == (row["chosen"], row["rejected"])


def test_generic_mapping():
    mapping = ColumnMapping(id="uid", prompt="question", response="answer")
    parsed = Adapter(mapping).parse({"uid": 5, "question": "問", "answer": "答"})
    assert [(t.role, t.text) for t in parsed.turns] == [("user", "問"), ("assistant", "答")]
    assert Adapter(mapping).own_id({"uid": 5}) == "5"
    assert Adapter(mapping).own_id({}) is None
    with pytest.raises(ValueError, match="exactly one of messages, prompt, numbered_prompt"):
        ColumnMapping(prompt="q", messages="m")
    with pytest.raises(ValueError, match="needs '{n}'"):
        ColumnMapping(numbered_prompt="q")


def test_items_keep_every_line_and_flag_bad_ones(make_recipe):
    rows = [
        {"id": "a", "conversations": [{"role": "user", "content": "x"}]},
        '{"id": "broken", ',
        "[1, 2]",
        {"id": "a", "conversations": [{"role": "user", "content": "again"}]},
        {"id": "a.b", "conversations": [{"role": "user", "content": "y"}]},
    ]
    recipe = load_recipe(make_recipe(rows))
    items = list(iter_items(recipe.sources))
    assert [i.row_index for i in items] == [0, 1, 2, 3, 4]
    assert items[0].reject_reason is None
    assert "not valid JSON" in items[1].reject_reason
    assert "JSON list, expected an object" in items[2].reject_reason
    assert items[3].reject_reason == "duplicate id 'a' (first at src row 0)"
    assert len({i.key for i in items}) == 5
    assert count_rows(recipe.sources) == 5


def test_parquet_source(make_recipe, tmp_path):
    table = pa.Table.from_pylist(
        [{"id": f"p{i}", "conversations": [{"role": "user", "content": f"文{i}"}]} for i in range(4)]
    )
    pq.write_table(table, tmp_path / "corpus.parquet")
    recipe = load_recipe(make_recipe(), [f"sources.0.dataset={tmp_path / 'corpus.parquet'}"])
    items = list(iter_items(recipe.sources))
    assert [i.key for i in items] == ["src-p0", "src-p1", "src-p2", "src-p3"]
    assert count_rows(recipe.sources) == 4


def _magpie_line(row_id: str, text: str) -> bytes:
    import json

    return json.dumps({"id": row_id, "conversations": [{"role": "user", "content": text}]}, ensure_ascii=False).encode()


HOSTILE_LINES = [
    (b"\xef\xbb\xbf" + _magpie_line("bom", "最初の行です。"), None),  # a byte order mark is stripped
    (_magpie_line("bad", "壊れた") .replace("壊".encode(), b"\xff"), "not valid UTF-8 (byte 0xff at "),
    (b'{"id": "half\\ud800", "conversations": [{"role": "user", "content": "x"}]}', "invalid text (a lone surrogate"),
    (b'{"id": "deep", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}", "JSON nested deeper than 64 levels"),
    (_magpie_line("cr", "一行目").replace("一行目".encode(), "一行目\r二行目".encode()), None),  # one row, not two
    (_magpie_line("last", "最後の行です。"), None),
]


def test_hostile_lines_each_end_as_one_row(make_recipe, tmp_path):
    """Bytes that are not UTF-8, lone surrogates, nesting bombs, a lone CR and a BOM: one row each, never a crash."""
    recipe = load_recipe(make_recipe())
    (tmp_path / "corpus.jsonl").write_bytes(b"\n".join(line for line, _ in HOSTILE_LINES) + b"\r\n")
    items = list(iter_items(recipe.sources))
    assert len(items) == count_rows(recipe.sources) == len(HOSTILE_LINES)
    for item, (_, reason) in zip(items, HOSTILE_LINES, strict=True):
        if reason is None:
            assert item.reject_reason is None and item.row["id"] in {"bom", "cr", "last"}
        else:
            assert item.reject_reason.startswith(reason), item.reject_reason
    assert items[4].row["conversations"][0]["content"] == "一行目\r二行目"


def test_hostile_lines_run_to_a_valid_output(make_recipe, tmp_path):
    from pipeline.executors import InlineExecutor
    from pipeline.manifest import read_manifest
    from pipeline.run import run_recipe
    from pipeline.validate import validate_output

    recipe = load_recipe(make_recipe(), ["qc.enabled=false"])
    (tmp_path / "corpus.jsonl").write_bytes(b"\n".join(line for line, _ in HOSTILE_LINES))
    summary = run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    rows = read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()
    assert summary.inputs == len(rows) == len(HOSTILE_LINES)
    assert [r["status"] for r in rows] == ["written", "rejected", "rejected", "rejected", "written", "written"]
    assert validate_output(tmp_path / "out").ok


def test_an_id_shaped_like_a_duplicate_marker_keeps_its_own_key(make_recipe, tmp_path):
    from pipeline.executors import InlineExecutor
    from pipeline.run import run_recipe
    from pipeline.validate import validate_output

    turn = [{"role": "user", "content": "こんにちは。"}]
    rows = [{"id": "a", "conversations": turn}] * 2 + [{"id": "a#duplicate1", "conversations": turn}]
    rows += [{"id": "x" * 300, "conversations": turn}]
    recipe = load_recipe(make_recipe(rows), ["qc.enabled=false", "sources.0.name=" + "s" * 32])
    items = list(iter_items(recipe.sources))
    assert len({i.key for i in items}) == 4 and all(len(i.key) <= 90 for i in items)
    summary = run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    assert summary.statuses["written"] == 3 and summary.statuses["rejected"] == 1
    assert validate_output(tmp_path / "out").ok


def test_a_long_source_name_is_a_recipe_error(make_recipe):
    from pipeline.recipe import RecipeError

    with pytest.raises(RecipeError, match="sources"):
        load_recipe(make_recipe(), ["sources.0.name=" + "s" * 40])


def test_a_row_over_the_text_stage_budget_is_rejected_with_its_time(make_recipe, tmp_path):
    from pipeline.executors import InlineExecutor
    from pipeline.manifest import read_manifest
    from pipeline.run import run_recipe

    rows = [{"id": "slow", "conversations": [{"role": "user", "content": "今日は10分だけ歩きました。"}]}]
    recipe = load_recipe(make_recipe(rows), ["text.max_stage_seconds=1e-9"])
    run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    (row,) = read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()
    assert row["status"] == "rejected" and row["reason"].startswith("text stage took ")
    assert row["reason"].endswith(" s > 1e-09 s")
