"""Property-based fuzzing of what a hostile corpus can reach: random bytes as JSON Lines, random JSON shapes
through the four seed adapters, random Unicode through the text stage. Nothing may escape but `Rejected`,
and every case ends well inside its time budget. Failing inputs found so far are kept as regression cases."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.corpora import ADAPTERS, Adapter, _json_line
from pipeline.readings import kana_reading
from pipeline.records import Rejected
from pipeline.speakable import make_speakable, unspeakable_reason

CASE_SECONDS = 2.0  # far above what any case takes (milliseconds); a blow-up shows as a miss
FUZZ = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# Characters a chat corpus holds, weighted toward the ones the text stage has rules for.
SPECIAL = list("0123456789.,:/-~〜+-×÷*=^²³√π%$¥€@#&_()[]{}<>|`'\"!?！？、。　 \n\t\r★☆○×±→※😊👍✨")
JAPANESE = list("あいうえおかきくけこさしすせそアイウエオカキクケコー日本語辛何月人気市場生物分別空開下手")
LATIN = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
chat_text = st.text(alphabet=st.sampled_from(SPECIAL + JAPANESE + LATIN), max_size=300) | st.text(max_size=200)

REGRESSIONS = [
    "x" * 20000,  # quadratic scan of an English run: 13 s at 20k
    "3-" * 5000 + "3",  # quadratic file-name scan
    "1." * 3000,  # quadratic numeral scan
    "\n " * 3000,  # quadratic bullet scan
    "a" * 5000,  # one 5,000-letter "word" through the converter
    "1" * 10000,  # past OpenJTalk's input limit once made digit by digit
    "x²+√π÷=",
    "★",
    "@.",
    "𠀋" * 30,
]


def _within_budget(function, *args):
    started = time.perf_counter()
    result = function(*args)
    assert time.perf_counter() - started < CASE_SECONDS, f"{function.__name__} took too long"
    return result


def _text_stage(text: str) -> None:
    """As `speak_turns` runs it: the reading is made only for a turn that is not rejected (at most 600 chars)."""
    spoken = _within_budget(make_speakable, text)
    if unspeakable_reason(text, spoken, 600) is None:
        assert isinstance(_within_budget(kana_reading, spoken), str)


@FUZZ
@given(chat_text)
def test_text_stage_never_raises(text):
    _text_stage(text)


def test_text_stage_regressions():
    for text in REGRESSIONS:
        _text_stage(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | chat_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
# Rows shaped like the seed schemas, with every field free to be anything
seed_rows = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "conversations": st.lists(
            st.fixed_dictionaries(
                {}, optional={"role": json_values, "content": json_values, "from": json_values, "value": json_values}
            )
            | json_values,
            max_size=4,
        )
        | json_values,
        "q1": json_values,
        "a1": json_values,
        "q2": json_values,
        "a2": json_values,
        "prompt": json_values,
        "chosen": json_values,
        "rejected": json_values,
    },
)


@FUZZ
@given(seed_rows)
@example({"conversations": [{"role": []}]})  # found: an unhashable role was looked up in ROLES (TypeError)
def test_adapters_parse_or_reject(row):
    for name in ("magpie", "automultiturn", "hh_rlhf", "chatbot_arena"):
        adapter = Adapter(ADAPTERS[name])
        assert isinstance(adapter.own_id(row), str | None)
        try:
            parsed = _within_budget(adapter.parse, row)
        except Rejected as rejected:
            assert rejected.reason
            continue
        assert all(isinstance(turn.text, str) for turn in parsed.turns)


@FUZZ
@given(st.binary(max_size=400))
def test_json_lines_parse_or_reject(line):
    result = _within_budget(_json_line, line)
    assert isinstance(result, dict) or (isinstance(result, Rejected) and result.reason)
