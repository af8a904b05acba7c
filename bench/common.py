"""Shared helpers for the benchmarks: a seeded Japanese chat corpus, recipes, timing and the RATIO line.

The corpus is generated, not downloaded: rows in the schema of `llm-jp/magpie-sft-v1.0` (`id`,
`conversations` = `[{role, content}]`) whose user turns read like the questions in that corpus
(100-300 characters, numbers, dates, a few English words) and whose assistant turns carry some
markdown. The same seed gives the same rows, so every run of a benchmark measures the same work.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "speakers" / "bank.yaml"

TOPICS = [
    "日本の伝統的なお正月の過ごし方",
    "京都の歴史的な寺院",
    "健康的な食生活",
    "プログラミングの勉強",
    "ベランダでの家庭菜園",
    "猫の飼い方",
    "英語の勉強法",
    "睡眠の質を上げる方法",
    "投資信託の選び方",
    "初めてのキャンプ",
    "毎日の読書習慣",
    "地震への備え",
    "美味しいコーヒーの淹れ方",
    "フルマラソンの練習",
    "転職活動の進め方",
    "子どもの習い事",
    "北海道の冬の旅行",
    "部屋の片付け",
    "時間管理のコツ",
    "日本酒の楽しみ方",
]
PLACES = ["東京", "大阪", "札幌", "福岡", "名古屋", "仙台", "広島", "那覇", "横浜", "金沢"]
OPENERS = [
    "{topic}について教えてください。",
    "{topic}に興味があるのですが、何から始めればよいでしょうか？",
    "最近、{topic}について調べています。",
    "{topic}で初心者がよくする失敗には、どのようなものがありますか？",
    "{topic}について、専門家の意見を聞きたいと思っています。",
]
DETAILS = [
    "予算は{money}円くらいで考えています。",
    "週に{n}回、一回あたり{hours}時間ほど時間が取れます。",
    "特に{place}に住んでいる場合の注意点が知りたいです。",
    "家族は{n}人で、子どもが{age}歳です。",
    "以前、友人から難しいと聞いたことがあり、少し不安に感じています。",
    "{year}年の最新の傾向も合わせて知りたいです。",
    "できれば{date}までに準備を終えたいと考えています。",
    "インターネットで調べると情報が多すぎて、どれを信じればよいのか分かりません。",
    "AIやアプリを使って効率よく進める方法があれば教えてください。",
    "朝は{time}に起きて、夜は遅くまで仕事をしていることが多いです。",
    "去年は途中で挫折してしまったので、今年こそは続けたいと思っています。",
    "費用を抑えつつ、できるだけ長く続けられる方法が理想です。",
    "周りに相談できる人がいないので、具体的な手順を知りたいです。",
    "約{pct}%の人が一年以内にやめてしまうという話も聞きました。",
]
CLOSERS = [
    "具体的な例を交えて、分かりやすく説明していただけますか？",
    "注意すべき点を{n}つほど挙げてください。",
    "よろしくお願いします。",
    "初心者にも分かるように、順を追って教えてください。",
    "おすすめの方法と、その理由を教えてください。",
]
FOLLOW_UPS = [
    "ありがとうございます。もう少し詳しく聞いてもよいですか？",
    "なるほど、よく分かりました。",
    "では、最初の一週間は何をすればよいでしょうか？",
    "費用の面ではどうでしょうか？",
    "それを続けるための工夫があれば教えてください。",
]
ANSWER_POINTS = [
    "まずは小さな目標を立てることが大切です。",
    "毎日同じ時間に取り組むと、習慣になりやすくなります。",
    "無理をせず、自分のペースで進めましょう。",
    "必要な道具は最初から全部そろえる必要はありません。",
    "分からないことは、専門の窓口や経験者に相談すると安心です。",
    "記録をつけると、続けるほど成長が実感できます。",
]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        topic=rng.choice(TOPICS),
        place=rng.choice(PLACES),
        money=f"{rng.randrange(5, 300) * 1000:,}",
        n=rng.randint(2, 5),
        hours=rng.randint(1, 3),
        age=rng.randint(3, 15),
        year=rng.choice([2023, 2024, 2025]),
        date=f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
        time=f"{rng.randint(5, 8)}:{rng.choice([0, 15, 30, 45]):02d}",
        pct=rng.randint(10, 60),
    )


def user_turn(rng: random.Random, low: int = 100, high: int = 300) -> str:
    """A question of about `low`..`high` characters: an opener, details, a closing request."""
    target = rng.randint(low, high)
    closer = _fill(rng.choice(CLOSERS), rng)
    text = _fill(rng.choice(OPENERS), rng)
    details = rng.sample(DETAILS, len(DETAILS))
    while details and len(text) + len(closer) < target:
        sentence = _fill(details.pop(), rng)
        if len(text) + len(sentence) + len(closer) > high:
            break
        text += sentence
    return text + closer


def assistant_turn(rng: random.Random) -> str:
    """An answer of a few hundred characters with markdown, as magpie's assistant turns have (kept as text)."""
    points = rng.sample(ANSWER_POINTS, rng.randint(3, len(ANSWER_POINTS)))
    bullets = "\n".join(f"- **ポイント{i}**: {p}" for i, p in enumerate(points, start=1))
    closing = "".join(rng.sample(ANSWER_POINTS, rng.randint(1, 4)))
    return f"## {rng.choice(TOPICS)}\n\n{bullets}\n\n{closing}参考になれば幸いです。"


def magpie_row(index: int, rng: random.Random, multi_turn_share: float, follow_up: tuple[int, int]) -> dict:
    """One row; a `multi_turn_share` of rows get a second user turn of `follow_up` characters."""
    conversations = [{"role": "user", "content": user_turn(rng)}, {"role": "assistant", "content": assistant_turn(rng)}]
    if rng.random() < multi_turn_share:
        second = rng.choice(FOLLOW_UPS) + user_turn(rng, *follow_up)
        conversations += [{"role": "user", "content": second}, {"role": "assistant", "content": assistant_turn(rng)}]
    return {"id": f"bench-{index:07d}", "conversations": conversations}


def magpie_rows(
    count: int, seed: int, multi_turn_share: float = 0.2, follow_up: tuple[int, int] = (40, 100)
) -> Iterator[dict]:
    rng = random.Random(seed)
    for index in range(count):
        yield magpie_row(index, rng, multi_turn_share, follow_up)


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_recipe(folder: Path, corpus: Path, name: str = "bench", **sections) -> Path:
    """A recipe YAML over one local magpie-schema corpus with the embedded speaker bank."""
    recipe = {
        "name": name,
        "kind": "sft",
        "seed": 20260101,
        "sources": [{"name": "src", "dataset": str(corpus), "adapter": "magpie", "license": "apache-2.0"}],
        "speakers": {"bank": str(BANK)},
    }
    recipe.update(sections)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    return path


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds` is the block's wall time."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.started


def task_spans(ray, suffix: str) -> list[tuple[float, float]]:
    """(start, end) epoch seconds of this Ray session's tasks whose name ends with `suffix` (from its timeline)."""
    logging.getLogger("ray._private.state").setLevel(logging.ERROR)  # a notice about future timeline sources
    return sorted(
        (e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6)
        for e in ray.timeline()
        if e.get("ph") == "X" and e.get("cat", "").endswith(suffix)
    )


def ratio_line(name: str, value: float, op: str, target: float) -> str:
    """The one line `run_all.py` parses: `RATIO <name> <value> (target <op> <value>)`."""
    return f"RATIO {name} {value:.3f} (target {op} {target:g})"
