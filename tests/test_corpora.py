import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.corpora import ADAPTERS, count_rows, iter_items
from pipeline.recipe import load_recipe
from pipeline.records import Rejected


def _turns(adapter, row):
    return [(t.role, t.text) for t in ADAPTERS[adapter].turns(row)]


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
        ADAPTERS["magpie"].turns(row)


def test_automultiturn_rows():
    row = {"q1": "一", "a1": "いち", "q2": "二", "a2": "に", "other": "ignored"}
    assert _turns("automultiturn", row) == [("user", "一"), ("assistant", "いち"), ("user", "二"), ("assistant", "に")]
    assert _turns("automultiturn", {"q1": "一", "a1": "いち", "q2": "", "a2": ""}) == [
        ("user", "一"),
        ("assistant", "いち"),
    ]
    with pytest.raises(Rejected, match="missing column 'q1'"):
        ADAPTERS["automultiturn"].turns({"q1": None, "q2": "x"})
    with pytest.raises(Rejected, match="column q2 is int"):
        ADAPTERS["automultiturn"].turns({"q1": "x", "q2": 5})


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
