"""Readings that say what the text says: every class that was measured failing, the gold set's CER,
and never a reading worse than plain OpenJTalk's where OpenJTalk is right."""

import csv
from pathlib import Path

import pyopenjtalk
import pytest

from pipeline.readings import character_error_rate, comparable_reading, kana_reading, reading_errors
from pipeline.speakable import make_speakable, unspeakable_reason

DATA = Path(__file__).parent / "data"
TARGET_CER = 0.01


def _gold() -> list[tuple[str, str, list[str]]]:
    with (DATA / "readings_gold.tsv").open(encoding="utf-8", newline="") as file:
        rows = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r["class"], r["text"], [a.strip() for a in r["reading"].split("|")]) for r in rows]


def _read(text: str) -> tuple[str, str]:
    spoken = make_speakable(text)
    return spoken, kana_reading(spoken)


# --- the CER function ------------------------------------------------------------------------------


def test_comparable_reading_folds_spellings_of_the_same_sound():
    assert comparable_reading("トウキョウ、") == comparable_reading("トーキョー") == "トーキョー"
    assert comparable_reading("センセイ") == "センセー"
    assert comparable_reading("ヲ") == comparable_reading("オ")
    assert comparable_reading("ヴァイオリン") == comparable_reading("バイオリン")
    assert comparable_reading("カイ") == "カイ"  # ア-row then イ is two sounds


def test_reading_errors_take_the_closest_alternative():
    assert reading_errors("ハチフン", ["ハップン", "ハチフン"]) == (0, 4)
    assert reading_errors("ジューブン", "ジュップン") == (2, 5)
    assert reading_errors("", "アイ") == (2, 2)


def test_character_error_rate_sums_edits_over_expected_characters():
    assert character_error_rate([("アイウ", "アイウ"), ("カキ", "カク")]) == pytest.approx(1 / 5)
    assert character_error_rate([]) == 0


# --- the gold set ------------------------------------------------------------------------------------


def test_gold_set_is_large_and_covers_every_class():
    gold = _gold()
    classes = {name for name, _, _ in gold}
    assert len(gold) >= 300
    assert {"english_words", "english_sentence", "acronyms", "latin_digits", "numbers", "context_kanji"} <= classes
    assert {"math", "email_url_file", "symbols", "general"} <= classes
    assert all(text and readings and all(readings) for _, text, readings in gold)


def test_gold_set_cer_within_target_and_far_below_plain_g2p():
    gold = _gold()
    koe = character_error_rate([(_read(text)[1], readings) for _, text, readings in gold])
    g2p = character_error_rate([(pyopenjtalk.g2p(text, kana=True), readings) for _, text, readings in gold])
    assert koe <= TARGET_CER, f"koe's reading CER {koe:.2%} on the gold set"
    assert koe < g2p / 10


def test_never_worse_than_plain_g2p_where_g2p_is_right():
    """Where OpenJTalk alone reads a gold turn right, koe's rewriting must not break it."""
    right_alone = [(t, r) for _, t, r in _gold() if reading_errors(pyopenjtalk.g2p(t, kana=True), r)[0] == 0]
    assert len(right_alone) > 150
    broken = [(t, _read(t)[1]) for t, r in right_alone if reading_errors(_read(t)[1], r)[0]]
    assert broken == []


@pytest.mark.parametrize(
    "text",
    ["10分で着く", "1日に3回", "5月1日が締め切り", "20日に届く", "8日間の旅", "3本のペン", "6匹の猫", "1人で行く",
     "2人で話す", "4人家族", "9時に起きる", "4月から", "100円ショップ", "1週間後", "3ヶ月ぶり", "20歳になった",
     "1000人が参加", "1億2000万人", "3.5倍", "7日に会おう", "14日の夜", "10個ください", "1杯目"],
)
def test_counters_openjtalk_reads_from_digits_stay_right(text):
    """Digits are left to OpenJTalk, which knows the counters' sound changes (10分 ジュップン, not ジューブン)."""
    assert _read(text)[1].rstrip("。") == pyopenjtalk.g2p(text, kana=True)


# --- each class, exactly ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spoken", "reading"),
    [
        # English words and brand names: OpenJTalk's dictionary, then kanalizer; never letter by letter
        ("Photoshopで写真を編集", "フォトショップで写真を編集。", "フォトショップデシャシンヲヘンシュー。"),
        ("Spotifyで音楽を聴く", "スポティファイで音楽を聴く。", "スポティファイデオンガクヲキク。"),
        ("PowerPointの資料", "パワーポイントの資料。", "パワーポイントノシリョー。"),
        # an English sentence inside Japanese: English words in katakana
        (
            "訳して: I like reading books.",
            "訳して、アイライクリーディングブックス。",
            "ヤクシテ、アイライクリーディングブックス。",
        ),
        ("「Thank you」と言う", "「サンキュー」と言う。", "サンキュートイウ。"),
        # acronyms: read as words when pronounceable, spelled otherwise, a plural s said
        ("UNESCOとJAXA", "ユネスコとジャクサ。", "ユネスコトジャクサ。"),
        ("SNSとHTML", "エスエヌエスとエイチティーエムエル。", "エスエヌエストエイチティーエムエル。"),
        ("SDGsの目標", "エスディージーズの目標。", "エスディージーズノモクヒョー。"),
        ("WHOとIT企業", "ダブリューエイチオーとアイティー企業。", "ダブリューエイチオートアイティーキギョー。"),
        # digits inside Latin names, the customary way
        ("5GとF1とG7", "ファイブジーとエフワンとジーセブン。", "ファイブジートエフワントジーセブン。"),
        ("3DとNo.1", "スリーディーとナンバーワン。", "スリーディートナンバーワン。"),
        ("A4用紙と4K", "エー4用紙と4ケー。", "エーヨンヨーシトヨンケー。"),
        ("iPhone 15とPS5", "アイフォーンフィフティーンとピーエスファイブ。", "アイフォーンフィフティーントピーエスファイブ。"),
        # kanji read by context
        ("辛いカレーを食べた", "からいカレーを食べた。", "カライカレーヲタベタ。"),
        ("毎日が辛い", "毎日がつらい。", "マイニチガツライ。"),
        ("何曜日が空いてる？", "なん曜日が空いてる？", "ナンヨービガアイテル？"),
        ("来月の1日に", "来月のついたちに。", "ライゲツノツイタチニ。"),
        ("人気のない道", "ひとけのない道。", "ヒトケノナイミチ。"),
        ("ゴミの分別", "ゴミのぶんべつ。", "ゴミノブンベツ。"),
        # calculations, and ranges that stay ranges
        ("100-35は？", "100ひく35は？", "ヒャクヒクサンジューゴワ？"),
        ("12×3=36", "12かける3は36。", "ジューニカケルサンワサンジューロク。"),
        ("81÷9", "81わる9。", "ハチジューイチワルキュー。"),
        ("x²+3x=0", "エックス2乗プラス3エックスイコール0。", "エックスニジョープラスサンエックスイコールゼロ。"),
        ("2³と√16とπ", "2の3乗とルート16とパイ。", "ニノサンジョートルートジューロクトパイ。"),
        ("4〜6人で", "4から6人で。", "ヨンカラロクニンデ。"),
        ("2-3日かかる", "2から3日かかる。", "ニカラミッカカカル。"),
        # emails, domains, files, URLs: said, and the sentence around them stays whole
        (
            "support@example.comへ",
            "サポートアットマークイグザンプルドットコムへ。",
            "サポートアットマークイグザンプルドットコムエ。",
        ),
        ("report.pdfを送って", "レポートドットピーディーエフを送って。", "レポートドットピーディーエフヲオクッテ。"),
        ("詳しくはhttps://example.com/helpを見て", "詳しくはイグザンプルドットコムスラッシュヘルプを見て。", None),
        ("詳しくはhttps://example.org/a/b?c=1を", "詳しくはイグザンプルドットオルグを。", None),
        # symbols that mean something are said
        ("★5つのホテル", "星5つのホテル。", "ホシイツツノホテル。"),
        ("★★★★☆の店", "星4つの店。", "ホシヨッツノミセ。"),
        ("○か×で", "まるかばつで。", "マルカバツデ。"),
        ("前年比+15%", "前年比プラス15パーセント。", "ゼンネンヒプラスジューゴパーセント。"),
    ],
)
def test_reading_classes(text, spoken, reading):
    said, read = _read(text)
    assert said == spoken
    if reading is not None:
        assert read == reading


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("楽しかった😊また行こう", "楽しかった、また行こう。"),  # an emoji between phrases is a pause
        ("東京→大阪→京都", "東京、大阪、京都。"),  # so is an arrow
        ("りんご みかん ぶどう", "りんご、みかん、ぶどう。"),  # and a space between Japanese phrases
        ("一行目\n二行目", "一行目。二行目。"),  # a line break ends a sentence
        ("Pythonで書く", "パイソンで書く。"),  # a space or none beside a Latin word is no pause
    ],
)
def test_pauses_stay_where_phrases_were_separated(text, spoken):
    said, read = _read(text)
    assert said == spoken
    assert read.count("、") == spoken.count("、")


def test_a_dropped_url_never_leaves_a_broken_sentence():
    for text in ("詳しくは https://example.com を見てください", "詳細はhttps://www.example.co.jp/a/b/c.htmlをご覧ください"):
        said = make_speakable(text)
        assert "はを" not in said and "はをご" not in said
        assert "ドット" in said


# --- code ------------------------------------------------------------------------------------------


def test_a_turn_of_unfenced_code_is_rejected_as_mostly_code():
    code = "def double(x):\n    return x * 2\n\nprint(double(3))"
    assert unspeakable_reason(code, make_speakable(code), 600).startswith("mostly code (")
    js = "const xs = [1, 2, 3];\nconsole.log(xs.map((v) => v + 1));"
    assert unspeakable_reason(js, make_speakable(js), 600).startswith("mostly code (")


def test_a_fenced_block_in_prose_is_said_to_be_omitted_and_the_prose_kept():
    prose = "足し算をする関数を書いたのですが、結果がいつも引き算になってしまいます。どこが間違っているのでしょうか？"
    text = f"このバグを直してください。\n```python\ndef add(a, b):\n    return a - b\n```\n{prose}"
    said = make_speakable(text)
    assert said == "このバグを直してください。コードは省略します。" + prose
    assert unspeakable_reason(text, said, 600) is None


def test_inline_identifiers_are_said_as_names():
    assert make_speakable("`df.groupby()`の使い方") == "ディーエフドットグループビーの使い方。"
    assert make_speakable("read_csvで読む") == "リードシーエスブイで読む。"
    mostly = "`pd.read_csv('data.csv', sep=';')`で"
    assert unspeakable_reason(mostly, make_speakable(mostly), 600).startswith("mostly code (")
