"""The four seed recipes on odd rows in their real schemas: every valid row is written, short and loud ones
included, and only code-only turns and pairs without two replies are rejected, with reasons naming them."""

from __future__ import annotations

import pytest

from pipeline.executors import InlineExecutor
from pipeline.manifest import read_manifest
from pipeline.recipe import load_recipe
from pipeline.run import run_recipe
from pipeline.validate import validate_output
from tests.conftest import REPO, write_jsonl

# User turns a seed corpus really holds, each valid: one-word replies, shouting, emoji, lists, English,
# numbers with counters, addresses, and a question with a fenced block inside prose.
VALID_TURNS = [
    "はい",
    "そうですね",
    "おはよう",
    "えーーーっ！！本当ですか！？すごーーーい！！！",
    "ありがとう😊✨ また明日ね🙏",
    "- りんご\n- みかん\n- ぶどう\nこの中でビタミンCが一番多いのはどれ？",
    "次の文を訳して: I like reading books.",
    "10分で作れる朝ごはんを3つ教えて。予算は500円です。",
    "support@example.comに送ったのに返事がありません。どうすればいいですか？",
    "このコードが動きません。\n```python\nprint('hello'\n```\n括弧の閉じ忘れ以外に原因はありますか？教えてください。",
]
CODE_ONLY = "def double(x):\n    return x * 2\n\nprint(double(3))"
REPLY = "承知しました。詳しくご説明します。"


def _rows(schema: str) -> tuple[list[dict], dict[str, str]]:
    """Rows in `schema` for every valid turn, plus the odd rows that must be rejected and why."""
    rows, rejects = [], {}
    for number, turn in enumerate(VALID_TURNS):
        rows.append(_row(schema, f"ok{number}", turn, REPLY, "いいえ。"))
    rows.append(_row(schema, "code", CODE_ONLY, REPLY, "いいえ。"))
    rejects["code"] = "turn 1: mostly code"
    if schema in ("hh_rlhf", "chatbot_arena"):
        rows.append(_row(schema, "nochosen", "おすすめの本は？", "  ", "ありません。"))
        rejects["nochosen"] = "chosen is empty"
        rows.append(_row(schema, "same", "おすすめの本は？", "本です。", "本です。"))
        rejects["same"] = "chosen and rejected are identical"
    return rows, rejects


def _row(schema: str, row_id: str, user: str, chosen: str, rejected: str) -> dict:
    if schema == "magpie":
        return {"id": row_id, "conversations": [{"role": "user", "content": user}, {"role": "assistant", "content": chosen}]}
    if schema == "automultiturn":
        return {"id": row_id, "q1": user, "a1": chosen, "q2": "そうですね", "a2": rejected}
    if schema == "hh_rlhf":
        return {"id": row_id, "conversations": [{"from": "human", "value": user}], "chosen": chosen, "rejected": rejected}
    return {"id": row_id, "prompt": user, "chosen": chosen, "rejected": rejected}


@pytest.mark.parametrize(
    ("recipe_name", "schema"),
    [
        ("sft_magpie", "magpie"),
        ("sft_automultiturn", "automultiturn"),
        ("dpo_hh_rlhf", "hh_rlhf"),
        ("dpo_chatbot_arena", "chatbot_arena"),
    ],
)
def test_seed_recipe_keeps_every_valid_odd_row(recipe_name, schema, tmp_path):
    rows, rejects = _rows(schema)
    corpus = write_jsonl(tmp_path / "rows.jsonl", rows)
    recipe = load_recipe(REPO / "recipes" / f"{recipe_name}.yaml", ["profile=embedded", f"sources.0.dataset={corpus}"])
    summary = run_recipe(recipe, tmp_path / "out", InlineExecutor(), show_progress=False)
    manifest = {r["row_id"]: r for r in read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()}
    assert summary.inputs == len(manifest) == len(rows)
    kept = {row_id: (r["status"], r["reason"] or r["error"]) for row_id, r in manifest.items() if row_id not in rejects}
    assert kept == {row_id: ("written", None) for row_id in kept}
    for row_id, reason in rejects.items():
        assert manifest[row_id]["status"] == "rejected"
        assert manifest[row_id]["reason"].startswith(reason), manifest[row_id]["reason"]
    assert validate_output(tmp_path / "out").ok
