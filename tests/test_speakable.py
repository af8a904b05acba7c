import pytest

from pipeline.records import Dialogue, Rejected, Turn
from pipeline.speakable import (
    int_to_kanji,
    make_speakable,
    number_to_kanji,
    prepare_turns,
    split_for_tts,
    unspeakable_reason,
)


def test_markdown_code_and_urls_are_not_read_aloud():
    text = (
        "# 見出し\n\n**太字**と`code`です。\n- 項目一\n- 項目二\n\n"
        "```python\nprint(1)\n```\n詳しくは https://example.com を見てください。"
    )
    assert make_speakable(text) == "見出し。太字とコードです。項目一。項目二。詳しくはを見てください。"


def test_markdown_links_keep_their_text_and_urls_stop_at_japanese():
    assert make_speakable("[公式サイト](https://example.com)を参照") == "公式サイトを参照。"
    assert make_speakable("詳細はhttps://example.com/a?b=1を見て") == "詳細はを見て。"


def test_tables_become_clauses_and_emoji_and_decorations_go():
    assert make_speakable("|名前|値段|\n|---|---|\n|りんご|100円|") == "名前、値段。りんご、百円。"
    assert make_speakable("ありがとう😊✨ 楽しみ♪") == "ありがとう楽しみ。"
    assert make_speakable("★おすすめ★ → 次へ※") == "おすすめ次へ。"
    assert make_speakable("🙏🙏") == ""


@pytest.mark.parametrize(
    ("number", "kanji"),
    [
        (0, "零"),
        (7, "七"),
        (10, "十"),
        (11, "十一"),
        (105, "百五"),
        (1000, "千"),
        (1005, "千五"),
        (2024, "二千二十四"),
        (10000, "一万"),
        (12345, "一万二千三百四十五"),
        (10000000, "千万"),
        (100000000, "一億"),
        (120000000, "一億二千万"),
        (3000000000005, "三兆五"),
        (-3, "マイナス三"),
    ],
)
def test_int_to_kanji(number, kanji):
    assert int_to_kanji(number) == kanji


def test_int_to_kanji_stops_beyond_kei():
    with pytest.raises(ValueError):
        int_to_kanji(10**20)


@pytest.mark.parametrize(
    ("numeral", "kanji"),
    [
        ("1,000", "千"),
        ("1,234,567", "百二十三万四千五百六十七"),
        ("3.14", "三点一四"),
        ("0.05", "零点零五"),
        ("-2.5", "マイナス二点五"),
        ("007", "零零七"),
        ("3.11.2", "三点十一点二"),
        ("1" * 21, "一" * 21),
    ],
)
def test_number_to_kanji(numeral, kanji):
    assert number_to_kanji(numeral) == kanji


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("1,000人が参加", "千人が参加。"),
        ("12345", "一万二千三百四十五。"),
        ("円周率は3.14です", "円周率は三点一四です。"),
        ("気温は-5度", "気温はマイナス五度。"),
        ("人口は1億2000万人", "人口は一億二千万人。"),
        ("3人で1つずつ", "三人で一つずつ。"),
        ("第Ⅱ章", "第二章。"),
        ("1/2カップ", "二分の一カップ。"),
        ("16:9の画面", "十六対九の画面。"),
        ("3~5人", "三から五人。"),
        ("3〜5人", "三から五人。"),
        ("2-3日", "二から三日。"),
        ("1+1=2", "一プラス一イコール二。"),
        ("2*3と6÷2", "二かける三と六わる二。"),
        ("電話は03-1234-5678", "電話は零三の一二三四の五六七八。"),
    ],
)
def test_numbers_are_kanji_numerals(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("2024年1月5日", "二千二十四年一月五日。"),
        ("2024/1/5", "二千二十四年一月五日。"),
        ("2024-01-05", "二千二十四年一月五日。"),
        ("1/5(金)に会おう", "一月五日金曜日に会おう。"),
        ("14:30に集合", "十四時三十分に集合。"),
        ("9:05発", "九時五分発。"),
        ("9:00から", "九時から。"),
        ("午後3時", "午後三時。"),
        ("10:00〜12:00", "十時から十二時。"),
    ],
)
def test_dates_and_times(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("50%オフ", "五十パーセントオフ。"),
        ("3.5%", "三点五パーセント。"),
        ("5km走る", "五キロメートル走る。"),
        ("60km/h", "時速六十キロメートル。"),
        ("身長170cm、体重60kg", "身長百七十センチメートル、体重六十キログラム。"),
        ("砂糖200g", "砂糖二百グラム。"),
        ("水500mL", "水五百ミリリットル。"),
        ("2L", "二リットル。"),
        ("25℃", "二十五度。"),
        ("100GB", "百ギガバイト。"),
        ("5min", "五min。"),
        ("¥1,000", "千円。"),
        ("1000円", "千円。"),
        ("$100", "百ドル。"),
        ("€5", "五ユーロ。"),
        ("$1.5万", "一点五万ドル。"),
    ],
)
def test_percentages_units_and_currencies(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("AIとGPUのAPI", "エーアイとジーピーユーのエーピーアイ。"),
        ("URLを送るPC", "ユーアールエルを送るピーシー。"),
        ("PCsの設定", "ピーシーの設定。"),
        ("Pythonでプログラミング", "パイソンでプログラミング。"),
        ("ChatGPTとGitHub", "チャットジーピーティーとギットハブ。"),
        ("C++とC#", "シープラスプラスとシーシャープ。"),
        ("machine learningとは", "マシンラーニングとは。"),
        ("Aさんとxの値", "エーさんとエックスの値。"),
        ("GPT-4", "ジーピーティー四。"),
        ("R&D部門", "アールアンドディー部門。"),
        ("Python 3.11の新機能", "パイソン三点一一の新機能。"),
        ("Kubernetesを使う", "Kubernetesを使う。"),
        ("面白いですwww", "面白いです。"),
    ],
)
def test_english_words_and_acronyms(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("本当?!", "本当？"),
        ("えーと...そうですね", "えーと…そうですね。"),
        ("すご〜い", "すごーい。"),
        ("月曜〜金曜", "月曜から金曜。"),
        ("はい/いいえ", "はい、いいえ。"),
        ("ＡＢＣ１２３", "エービーシー百二十三。"),
        ("「行きます。」\n「はい」", "「行きます。」「はい」。"),
    ],
)
def test_punctuation_becomes_japanese(text, spoken):
    assert make_speakable(text) == spoken


def test_split_prefers_sentence_then_clause_boundaries():
    text = "一つ目の文です。二つ目の文です。三つ目、とても長い文になります。"
    pieces = split_for_tts(text, 12)
    assert pieces == ["一つ目の文です。", "二つ目の文です。", "三つ目、", "とても長い文になります。"]
    assert all(len(p) <= 12 for p in pieces)
    assert "".join(pieces) == text
    assert split_for_tts("あ" * 25, 10) == ["あ" * 10, "あ" * 10, "あ" * 5]


def _reason(text: str, max_turn_chars: int = 600) -> str | None:
    return unspeakable_reason(text, make_speakable(text), max_turn_chars)


def test_reject_reasons():
    assert _reason("```python\nprint('hello')\n```") == "mostly code (100% of characters)"
    assert _reason("これを直して\n```js\nconst x = items.map((i) => i * 2);\n```").startswith("mostly code (")
    assert _reason("`df.groupby('a').sum()`の意味は？").startswith("mostly code (")
    assert _reason("") == "empty text after making it speakable"
    assert _reason("★♪😊") == "empty text after making it speakable"
    assert _reason("Please tell me how to cook rice.") == "mostly non-Japanese (0% of letters are kana or kanji)"
    assert _reason("我们今天去哪里吃饭比较好呢请告诉我吧朋友") == "mostly non-Japanese (no kana in 20 letters)"
    assert _reason("あ" * 11, max_turn_chars=10) == "too long (12 chars > 10)"


def test_japanese_with_names_acronyms_and_units_is_kept():
    assert _reason("`pandas`の`groupby`と`pivot_table`の違いは？") is None
    assert _reason("GPUとCPUとRAMとSSD") is None
    assert _reason("OK?") is None
    assert _reason("-5〜-3℃") is None


def _dialogue(*texts: str) -> Dialogue:
    turns = [Turn(role=role, text=t) for t in texts for role in ("user", "assistant")]
    return Dialogue(key="k", source="s", row_index=0, row_id="r", turns=turns)


def test_prepare_turns_fills_spoken_and_tts_text():
    dialogue = _dialogue("AIは何%正しい?", "2つ目")
    prepare_turns(dialogue, ("user",), 600)
    user = dialogue.spoken_turns(("user",))
    assert [t.spoken_text for t in user] == ["エーアイは何パーセント正しい？", "二つ目。"]
    assert [t.tts_text for t in user] == [t.spoken_text for t in user]
    assert all(t.reading is None for t in user)
    assert all(t.spoken_text is None for t in dialogue.turns if t.role == "assistant")


def test_prepare_turns_gives_kana_only_to_backends_that_read_it():
    dialogue = _dialogue("今日は")
    prepare_turns(dialogue, ("user",), 600, reading=lambda text: f"<{text}>", tts_reads_kana=True)
    assert dialogue.turns[0].tts_text == dialogue.turns[0].reading == "<今日は。>"
    dialogue = _dialogue("今日は")
    prepare_turns(dialogue, ("user",), 600, reading=lambda text: f"<{text}>")
    assert (dialogue.turns[0].tts_text, dialogue.turns[0].reading) == ("今日は。", "<今日は。>")


def test_prepare_turns_rejects_with_the_turn_number():
    with pytest.raises(Rejected) as empty:
        prepare_turns(_dialogue(""), ("user",), 600)
    assert empty.value.reason == "turn 1: empty text after making it speakable"
    with pytest.raises(Rejected) as code:
        prepare_turns(_dialogue("質問です", "```\nx = 1\ny = 2\n```"), ("user",), 600)
    assert code.value.reason.startswith("turn 3: mostly code (")
