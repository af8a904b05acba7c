import re

import pyopenjtalk
import pytest

from pipeline.readings import count_morae, describe_text, estimate_seconds, kana_reading

KANJI = re.compile(r"[\u3400-\u9fff々]")


def test_reading_is_katakana_with_the_pauses_in_place():
    reading = kana_reading("今日は、良い天気ですね。明日は？晴れるといいな！")
    assert reading == "キョーワ、ヨイテンキデスネ。アシタワ？ハレルトイイナ！"


def test_reading_has_no_kanji_and_nothing_but_katakana_and_pauses():
    reading = kana_reading("二千二十四年一月五日の十四時三十分に、東京駅で会いましょう…何時ですか？")
    assert not KANJI.search(reading)
    assert re.fullmatch(r"[ァ-ヺー、。！？]+", reading)
    assert reading.startswith("ニセンニジューヨネンイチガツイツカノジューヨジサンジュップンニ、")
    assert reading.endswith("トーキョーエキデアイマショー、ナンジデスカ？")


def test_letters_openjtalk_leaves_unread_are_spelled():
    assert kana_reading("Aさん、Ai。") == "エーサン、エーアイ。"


def test_empty_and_symbol_only_text_read_as_nothing():
    assert kana_reading("") == ""
    assert kana_reading("。、") == ""


@pytest.mark.parametrize(
    ("reading", "morae"),
    [("キョーワ", 3), ("ガッコー", 4), ("シンブン", 4), ("ファイル", 3), ("キャッシュ", 3), ("、。", 0)],
)
def test_count_morae(reading, morae):
    assert count_morae(reading) == morae


def test_estimate_counts_morae_and_pauses():
    assert estimate_seconds("アイウエオ、アイウエオ。") == pytest.approx(10 / 7.5 + 0.6)
    assert estimate_seconds("") == 0


def test_estimate_is_close_to_openjtalk_audio():
    text = "ピアノを始めたいのですが、大人からでも上達しますか？一日に何分くらい練習すればいいですか？"
    audio, sample_rate = pyopenjtalk.tts(text)
    seconds = len(audio) / sample_rate
    estimate = estimate_seconds(kana_reading(text))
    assert seconds / 1.5 < estimate < seconds * 1.5


def test_describe_text():
    assert describe_text("AIは50%正しい?") == {
        "text": "AIは50%正しい?",
        "spoken_text": "エーアイは50パーセント正しい？",
        "reading": "エーアイワゴジュッパーセントタダシイ？",
        "estimated_seconds": round(17 / 7.5 + 0.3, 2),
        "reject_reason": None,
    }
    rejected = describe_text("```python\nprint(1)\n```")
    assert rejected["spoken_text"] == "コードは省略します。"  # said where a fenced block was; the turn is rejected
    assert rejected["reject_reason"] == "mostly code (100% of characters)"
    assert describe_text("あいうえお", max_turn_chars=3)["reject_reason"] == "too long (6 chars > 3)"
