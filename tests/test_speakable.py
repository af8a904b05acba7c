import pytest

from pipeline.kinds.speech import speak_turns
from pipeline.readings import kana_reading
from pipeline.records import Dialogue, Rejected, Turn
from pipeline.speakable import (
    make_speakable,
    say_number,
    split_for_tts,
    unspeakable_reason,
)


def test_markdown_code_and_urls_are_not_read_aloud():
    text = (
        "# 見出し\n\n**太字**と`code`です。\n- 項目一\n- 項目二\n\n"
        "```python\nprint(1)\n```\n詳しくは https://example.com を見てください。"
    )
    assert make_speakable(text) == "見出し。太字とコードです。項目一。項目二。コードは省略します。詳しくはイグザンプルドットコムを見てください。"


def test_markdown_links_keep_their_text_and_urls_are_said_as_their_domain():
    assert make_speakable("[公式サイト](https://example.com)を参照") == "公式サイトを参照。"
    assert make_speakable("詳細はhttps://example.com/a?b=1を見て") == "詳細はイグザンプルドットコムを見て。"


def test_tables_become_clauses_and_emoji_and_decorations_leave_a_pause():
    assert make_speakable("|名前|値段|\n|---|---|\n|りんご|100円|") == "名前、値段。りんご、100円。"
    assert make_speakable("ありがとう😊✨ 楽しみ♪") == "ありがとう、楽しみ。"
    assert make_speakable("★おすすめ★ → 次へ※") == "おすすめ、次へ。"
    assert make_speakable("🙏🙏") == ""


@pytest.mark.parametrize(
    ("numeral", "said"),
    [
        ("1,000", "1000"),
        ("1,234,567", "1234567"),
        ("3.14", "3.14"),
        ("-2.5", "マイナス2.5"),
        ("007", "007"),
        ("3.11.2", "3点11点2"),
        ("1" * 17, "一" * 17),
    ],
)
def test_say_number(numeral, said):
    assert say_number(numeral) == said


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("1,000人が参加", "1000人が参加。"),
        ("12345", "12345。"),
        ("円周率は3.14です", "円周率は3.14です。"),
        ("気温は-5度", "気温はマイナス5度。"),
        ("人口は1億2000万人", "人口は1億2000万人。"),
        ("3人で1つずつ", "3人で1つずつ。"),
        ("第Ⅱ章", "第2章。"),
        ("1/2カップ", "2分の1カップ。"),
        ("16:9の画面", "16対9の画面。"),
        ("3~5人", "3から5人。"),
        ("3〜5人", "3から5人。"),
        ("2-3日", "2から3日。"),
        ("1+1=2", "1たす1は2。"),
        ("2*3と6÷2", "2かける3と6わる2。"),
        ("電話は03-1234-5678", "電話は零三の一二三四の五六七八。"),
    ],
)
def test_numbers_stay_digits_that_openjtalk_reads(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("2024年1月5日", "2024年1月5日。"),
        ("2024/1/5", "2024年1月5日。"),
        ("2024-01-05", "2024年1月5日。"),
        ("1/5(金)に会おう", "1月5日金曜日に会おう。"),
        ("14:30に集合", "14時30分に集合。"),
        ("9:05発", "9時5分発。"),
        ("9:00から", "9時から。"),
        ("午後3時", "午後3時。"),
        ("10:00〜12:00", "10時から12時。"),
    ],
)
def test_dates_and_times(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("50%オフ", "50パーセントオフ。"),
        ("3.5%", "3.5パーセント。"),
        ("5km走る", "5キロメートル走る。"),
        ("60km/h", "時速60キロメートル。"),
        ("身長170cm、体重60kg", "身長170センチメートル、体重60キログラム。"),
        ("砂糖200g", "砂糖200グラム。"),
        ("水500mL", "水500ミリリットル。"),
        ("2L", "2リットル。"),
        ("25℃", "25度。"),
        ("100GB", "100ギガバイト。"),
        ("5min", "5分。"),
        ("¥1,000", "1000円。"),
        ("1000円", "1000円。"),
        ("$100", "100ドル。"),
        ("€5", "5ユーロ。"),
        ("$1.5万", "1.5万ドル。"),
    ],
)
def test_percentages_units_and_currencies(text, spoken):
    assert make_speakable(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("AIとGPUのAPI", "エーアイとジーピーユーのエーピーアイ。"),
        ("URLを送るPC", "ユーアールエルを送るピーシー。"),
        ("PCsの設定", "ピーシーズの設定。"),
        ("Pythonでプログラミング", "パイソンでプログラミング。"),
        ("ChatGPTとGitHub", "チャットジーピーティーとギットハブ。"),
        ("C++とC#", "シープラスプラスとシーシャープ。"),
        ("machine learningとは", "マシンラーニングとは。"),
        ("Aさんとxの値", "エーさんとエックスの値。"),
        ("GPT-4", "ジーピーティーフォー。"),
        ("R&D部門", "アールアンドディー部門。"),
        ("Python 3.11の新機能", "パイソン3.11の新機能。"),
        ("Kubernetesを使う", "クバーネテスを使う。"),
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
        ("ＡＢＣ１２３", "エイビーシー123。"),
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


def test_speak_turns_fills_spoken_text_and_reading_of_the_voiced_turns():
    dialogue = _dialogue("AIは何%正しい?", "2つ目")
    speak_turns(dialogue, ("user",), 600, tts_reads_kana=False)
    user = dialogue.spoken_turns(("user",))
    assert [t.spoken_text for t in user] == ["エーアイは何パーセント正しい？", "2つ目。"]
    assert [t.tts_text for t in user] == [t.spoken_text for t in user]
    assert [t.reading for t in user] == [kana_reading(t.spoken_text) for t in user]
    assert all(t.spoken_text is None for t in dialogue.turns if t.role == "assistant")


def test_speak_turns_gives_kana_only_to_backends_that_read_it():
    dialogue = _dialogue("今日は")
    speak_turns(dialogue, ("user",), 600, tts_reads_kana=True)
    assert dialogue.turns[0].tts_text == dialogue.turns[0].reading == "キョーワ。"
    dialogue = _dialogue("今日は")
    speak_turns(dialogue, ("user",), 600, tts_reads_kana=False)
    assert (dialogue.turns[0].tts_text, dialogue.turns[0].reading) == ("今日は。", "キョーワ。")


def test_speak_turns_rejects_with_the_turn_number():
    with pytest.raises(Rejected) as empty:
        speak_turns(_dialogue(""), ("user",), 600, tts_reads_kana=False)
    assert empty.value.reason == "turn 1: empty text after making it speakable"
    with pytest.raises(Rejected) as code:
        speak_turns(_dialogue("質問です", "```\nx = 1\ny = 2\n```"), ("user",), 600, tts_reads_kana=False)
    assert code.value.reason.startswith("turn 3: mostly code (")
