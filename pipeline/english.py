"""English in Japanese text, as Japanese speakers say it: words in katakana, acronyms spelled or read.

A Latin-letter word is looked up, in this order:

1. the curated table below: function words and the few words every converter gets wrong
   (`the` ザ, `have` ハブ, `app` アプリ, `Wi-Fi` ワイファイ);
2. OpenJTalk's own dictionary, which knows many brand names and acronyms (`Netflix`, `NATO`
   ナトー, `JAXA` ジャクサ, `NHK`): the word analysed alone must come back as one noun, not as the
   letter-by-letter filler OpenJTalk gives unknown words;
3. capitals: up to three letters, or a run no English speaker could pronounce (`HTML`, `OECD`),
   are spelled with letter names (エスエヌエス); a pronounceable one of four or more is read as a word;
   a plural `s` after capitals is said (`SDGs` エスディージーズ);
4. everything else goes through kanalizer (VOICEVOX's English-to-katakana model), chosen over e2k by
   measurement (bench/readings.py prints the comparison).

Mixed-case words are split where the case changes (`ChatGPT` → Chat + GPT, `PowerPoint`).
"""

from __future__ import annotations

import re
from functools import lru_cache

_LETTER_NAMES = (
    "エー ビー シー ディー イー エフ ジー エイチ アイ ジェー ケー エル エム "
    "エヌ オー ピー キュー アール エス ティー ユー ブイ ダブリュー エックス ワイ ゼット"
)
LETTER_NAMES = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", _LETTER_NAMES.split(), strict=True))

_ONES = "ゼロ ワン ツー スリー フォー ファイブ シックス セブン エイト ナイン".split()
_TEENS = "テン イレブン トゥエルブ サーティーン フォーティーン フィフティーン シックスティーン セブンティーン エイティーン ナインティーン".split()
_TENS = "_ _ トゥエンティー サーティー フォーティー フィフティー シックスティー セブンティー エイティー ナインティー".split()

# Function words and contractions as they sound in an English sentence; not for capitals (WHO, IT, US are acronyms).
FUNCTION_WORDS = {
    "a": "ア",
    "an": "アン",
    "the": "ザ",
    "i": "アイ",
    "i'm": "アイム",
    "i'll": "アイル",
    "i've": "アイブ",
    "it": "イット",
    "it's": "イッツ",
    "is": "イズ",
    "are": "アー",
    "was": "ワズ",
    "were": "ワー",
    "be": "ビー",
    "been": "ビーン",
    "do": "ドゥー",
    "does": "ダズ",
    "did": "ディド",
    "don't": "ドント",
    "doesn't": "ダズント",
    "can't": "キャント",
    "won't": "ウォント",
    "isn't": "イズント",
    "have": "ハブ",
    "has": "ハズ",
    "had": "ハド",
    "to": "トゥー",
    "of": "オブ",
    "in": "イン",
    "on": "オン",
    "at": "アット",
    "by": "バイ",
    "for": "フォー",
    "from": "フロム",
    "with": "ウィズ",
    "and": "アンド",
    "or": "オア",
    "but": "バット",
    "not": "ノット",
    "this": "ディス",
    "that": "ザット",
    "that's": "ザッツ",
    "these": "ジーズ",
    "those": "ゾーズ",
    "there": "ゼア",
    "they": "ゼイ",
    "their": "ゼア",
    "them": "ゼム",
    "we": "ウィー",
    "you": "ユー",
    "your": "ユア",
    "he": "ヒー",
    "she": "シー",
    "me": "ミー",
    "my": "マイ",
    "let's": "レッツ",
    "what": "ワット",
    "how": "ハウ",
    "why": "ホワイ",
    "when": "ウェン",
    "where": "ウェア",
    "who": "フー",
    "which": "ウィッチ",
    "could": "クッド",
    "would": "ウッド",
    "should": "シュッド",
    "will": "ウィル",
    "can": "キャン",
    "may": "メイ",
    "must": "マスト",
    "if": "イフ",
    "so": "ソー",
    "as": "アズ",
    "our": "アワー",
    "us": "アス",
    "his": "ヒズ",
    "her": "ハー",
    "him": "ヒム",
    "its": "イッツ",
    "than": "ザン",
    "then": "ゼン",
    "here": "ヒア",
    "everyone": "エブリワン",
    "everything": "エブリシング",
    "someone": "サムワン",
    "something": "サムシング",
    "anyone": "エニワン",
    "anything": "エニシング",
    "what's": "ワッツ",
    "today": "トゥデイ",
    "tomorrow": "トゥモロー",
    "beautiful": "ビューティフル",
    "very": "ベリー",
}

# Words the converters get wrong, or that Japanese say in a form of their own; matched case-insensitively.
ENGLISH_WORDS = {
    "ok": "オーケー",
    "okay": "オーケー",
    "e-mail": "イーメール",
    "email": "イーメール",
    "gmail": "ジーメール",
    "wi-fi": "ワイファイ",
    "wifi": "ワイファイ",
    "iphone": "アイフォーン",
    "ipad": "アイパッド",
    "ios": "アイオーエス",
    "macos": "マックオーエス",
    "iot": "アイオーティー",
    "chatgpt": "チャットジーピーティー",
    "openai": "オープンエーアイ",
    "github": "ギットハブ",
    "youtube": "ユーチューブ",
    "linkedin": "リンクトイン",
    "pokemon": "ポケモン",
    "uber": "ウーバー",
    "airbnb": "エアビーアンドビー",
    "nginx": "エンジンエックス",
    "postgresql": "ポストグレスキューエル",
    "mysql": "マイエスキューエル",
    "sql": "エスキューエル",
    "numpy": "ナムパイ",
    "pytorch": "パイトーチ",
    "tensorflow": "テンソルフロー",
    "adobe": "アドビ",
    "coffee": "コーヒー",
    "example": "イグザンプル",
    "teams": "チームズ",
    "ai": "エーアイ",
    "login": "ログイン",
    "token": "トークン",
    "pandas": "パンダス",
    "copilot": "コパイロット",
    "xbox": "エックスボックス",
    "image": "イメージ",
    "readme": "リードミー",
    "noreply": "ノーリプライ",
    "canva": "キャンバ",
    "tiktok": "ティックトック",
    "ielts": "アイエルツ",
    "b2b": "ビートゥービー",
    "b2c": "ビートゥーシー",
    "7-eleven": "セブンイレブン",
    "mcdonald's": "マクドナルド",
    "mcdonalds": "マクドナルド",
    "thank you": "サンキュー",
    "minutes": "ミニッツ",
    "see": "シー",
    "week": "ウィーク",
    "you're": "ユア",
    "christmas": "クリスマス",
    "restaurant": "レストラン",
    "ticket": "チケット",
    "covid": "コビッド",
    "json": "ジェイソン",
    "jpeg": "ジェイペグ",
    "ascii": "アスキー",
    "linux": "リナックス",
    "c#": "シーシャープ",
    "c++": "シープラスプラス",
    "www": "ダブリューダブリューダブリュー",
}

_VOWELS = set("AEIOUY")
MAX_WORD_LETTERS = 30  # longer than any English word: a string of letters, spelled
_FINAL_CLUSTERS = {"CK", "CT", "FT", "LD", "LT", "MP", "ND", "NG", "NK", "NT", "PT", "RD", "RK", "RT", "SK", "ST", "TH", "SH", "CH"}
_CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z']+")


def spell_letters(letters: str) -> str:
    """Latin letters by their Japanese names: GPU → ジーピーユー; other characters are kept."""
    return "".join(LETTER_NAMES.get(c.upper(), c) for c in letters)


def english_number(number: int) -> str:
    """0–99 the English way, as in product names: 15 → フィフティーン, 21 → トゥエンティーワン."""
    if number < 10:
        return _ONES[number]
    if number < 20:
        return _TEENS[number - 10]
    tens, ones = divmod(number, 10)
    return _TENS[tens] + (_ONES[ones] if ones else "")


def _pronounceable(capitals: str) -> bool:
    """Could this run of capitals be said as a word (NATO, GAFA) rather than spelled (HTML, OECD)?"""
    if len(capitals) < 4 or not any(c in _VOWELS for c in capitals):
        return False
    consonants = re.split(r"[AEIOUY]+", capitals)
    vowel_runs = re.findall(r"[AEIOUY]+", capitals)
    if any(len(run) > 2 for run in consonants) or any(len(run) > 2 for run in vowel_runs):
        return False
    return len(consonants[-1]) < 2 or consonants[-1] in _FINAL_CLUSTERS


@lru_cache(maxsize=8192)
def _dictionary_reading(word: str) -> str | None:
    """OpenJTalk's reading of a word its dictionary knows as one noun; None for unknown words."""
    import pyopenjtalk

    nodes = pyopenjtalk.run_frontend(word)
    if len(nodes) == 1 and nodes[0]["pos"] == "名詞":
        return nodes[0]["pron"].replace("’", "") or None
    return None


@lru_cache(maxsize=8192)
def _converted(word: str) -> str:
    import kanalizer

    try:
        return kanalizer.convert(word.lower(), on_invalid_input="error", on_incomplete="ignore")
    except Exception:  # a letter the model does not take: spell the word
        return spell_letters(word)


@lru_cache(maxsize=16384)
def word_to_katakana(word: str) -> str:
    """One Latin-letter word (letters and apostrophes, maybe a trailing plural `s` after capitals)."""
    if re.fullmatch(r"[A-Z]{2,}s", word):  # SDGs, PCs: the plural is said
        return word_to_katakana(word[:-1]) + "ズ"
    lower = word.lower()
    curated = ENGLISH_WORDS.get(lower) or (None if word.isupper() else FUNCTION_WORDS.get(lower))
    if curated and len(word) > 1:
        return curated
    if len(word) == 1 or len(word) > MAX_WORD_LETTERS or not re.search(r"[aeiouyAEIOUY]", word):  # x, csv: by name
        return spell_letters(word)
    if word.isupper():
        known = _dictionary_reading(word)
        if known:
            return known
        return _converted(word) if _pronounceable(word) else spell_letters(word)
    parts = _CAMEL_PART.findall(word)
    if len(parts) > 1 and "".join(parts) == word:
        whole = _dictionary_reading(word)
        return whole or "".join(map(word_to_katakana, parts))
    return _dictionary_reading(word) or _dictionary_reading(word.capitalize()) or _converted(word.replace("'", ""))


def english_phrase(phrase: str) -> str:
    """Words of an English phrase one after another in katakana, a comma a pause; `a` and `I` are words here
    (ア, アイ), not letters, and a set phrase (`thank you`) is said as one."""
    words = re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)?|,", phrase)
    said = []
    for index, word in enumerate(words):
        pair = f"{words[index - 1]} {word}".lower() if index else ""
        if pair in ENGLISH_WORDS:
            said[-1] = ENGLISH_WORDS[pair]
        elif word == ",":
            said.append("、")
        else:
            said.append(FUNCTION_WORDS.get(word.lower()) if word in ("a", "I") else word_to_katakana(word))
    return "".join(said)
