"""Speakable text: what a person would say when reading a chat turn aloud.

The original text stays in the sample; this stage adds `spoken_text` and `tts_text` (what the
backend is asked to say), and rejects turns that cannot be spoken. Long text is split at sentence
boundaries to fit the backend.

`spoken_text` is plain Japanese that every backend reads the same way:

- Markup goes: markdown headings, bullets, emphasis, tables and link targets, code blocks, URLs.
  Inline code keeps its text. Every line ends as a sentence.
- Numbers are written in kanji numerals with 万/億/兆/京 (`12,345` → 一万二千三百四十五, `3.14` →
  三点一四, `-5` → マイナス五); counters stay as written, OpenJTalk reads 三人, 一つ, 二十歳 right.
  A numeral with a leading zero (`090`) or over 20 digits is read digit by digit.
- Dates (`2024/1/5`, `2024-01-05`, `1/5(金)`), times (`14:30`; a single-digit part after a colon
  is a ratio, `16:9` → 十六対九), fractions (`1/2` → 二分の一), ranges (`3~5`, `3〜5`, `3-5` →
  から), phone and postal codes (`03-1234-5678`, `123-4567`: digit by digit joined by の),
  percentages, currencies (`¥`, `$`, `€`, `£`) and units after a number (`5km`, `60km/h` →
  時速六十キロメートル, `25℃` → 二十五度) are verbalized.
- English: words of a small dictionary of common tech and everyday loanwords become katakana
  (`Python` → パイソン, case-insensitive); remaining runs of capitals are acronyms spelled with
  letter names (`GPU` → ジーピーユー, `PCs` → ピーシー), as is any single letter (`Aさん`, `xの値`).
  Other English words are left for the TTS: OpenJTalk reads the loanwords in its dictionary and
  spells unknown words letter by letter.
- Symbols people say are verbalized (`&` アンド, `@` アット, `=` イコール, `+` and `×` between
  operands プラス/かける); emoji and decorative symbols (★, ♪, →, ※) are removed. `〜` between
  kana lengthens the vowel (すご〜い → すごーい). Punctuation becomes Japanese (、。！？).

A turn is rejected when it is mostly code (more than half of its non-space characters sit in code
blocks or inline code; inline code that is a single name such as `groupby` does not count), when
nothing speakable is left, when it is mostly non-Japanese (under 30% of the letters of its spoken
text are kana or kanji, so English prose counts but acronyms and known words do not; or 20 or
more letters without a single kana, which is Chinese), and when it is longer than the recipe
allows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from .records import Dialogue, Rejected

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://[!-~]+|www\.[!-~]+")  # ASCII only: Japanese often follows a URL unspaced
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_BULLET = re.compile(r"^\s*(?:[-*+・]|\d+[.)])\s+", re.M)
_STAR_BETWEEN_DIGITS = re.compile(r"(?<=\d)\s*\*\s*(?=\d)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}.*$", re.M)
_SENTENCE_END = "。！？!?"
_CLAUSE_END = "、，,；;：:"
_PAUSES = "、。！？"
_CLOSING_QUOTES = "」』)）】"

MOSTLY_CODE_SHARE = 0.5  # more code than this share of non-space characters: not a spoken turn
MIN_JAPANESE_SHARE = 0.3  # fewer kana/kanji than this share of letters: not Japanese
KANA_FREE_LETTERS = 20  # this many letters without a single kana: Chinese, not Japanese

# --- numbers ---------------------------------------------------------------------------------

_DIGIT_KANJI = "零一二三四五六七八九"
_SMALL_UNITS = ((1000, "千"), (100, "百"), (10, "十"))
_LARGE_UNITS = ("", "万", "億", "兆", "京")
_MAX_INTEGER_DIGITS = 20  # up to 京; longer numerals are read digit by digit

_NUMERAL = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)*"
_SIGN = r"(?:(?<![0-9A-Za-z.])[-−])?"
_SIGNED_NUMERAL = _SIGN + _NUMERAL


def int_to_kanji(number: int) -> str:
    """An integer in kanji numerals, the way it is said: 10000 → 一万, 1005 → 千五, -3 → マイナス三."""
    if number < 0:
        return "マイナス" + int_to_kanji(-number)
    if number >= 10**_MAX_INTEGER_DIGITS:
        raise ValueError(f"{number} is beyond 京")
    if number == 0:
        return "零"
    groups = []
    for unit in _LARGE_UNITS:
        number, group = divmod(number, 10000)
        if group:
            groups.append(_four_digits_to_kanji(group) + unit)
    return "".join(reversed(groups))


def _four_digits_to_kanji(number: int) -> str:
    """1..9999: a 1 before 千/百/十 is silent (千, 百, 十), other digits are said."""
    text = ""
    for value, unit in _SMALL_UNITS:
        digit, number = divmod(number, value)
        if digit:
            text += ("" if digit == 1 else _DIGIT_KANJI[digit]) + unit
    return text + (_DIGIT_KANJI[number] if number else "")


def digits_to_kanji(digits: str) -> str:
    """Digit by digit, as codes and decimal places are said: 090 → 零九零."""
    return "".join(_DIGIT_KANJI[int(d)] for d in digits)


def number_to_kanji(numeral: str) -> str:
    """A numeral as written (`-1,234.5`, `007`, `3.11.2`) in kanji numerals."""
    sign = "マイナス" if numeral[0] in "-−" else ""
    whole, *fractions = numeral.lstrip("-−").replace(",", "").split(".")
    if len(fractions) > 1:  # a version number: each part is a whole number
        return sign + "点".join(_whole_number(part) for part in (whole, *fractions))
    return sign + _whole_number(whole) + "".join("点" + digits_to_kanji(f) for f in fractions)


def _whole_number(digits: str) -> str:
    if (len(digits) > 1 and digits[0] == "0") or len(digits) > _MAX_INTEGER_DIGITS:
        return digits_to_kanji(digits)
    return int_to_kanji(int(digits))


# --- dates, times and other number patterns ---------------------------------------------------

_DATE = re.compile(r"(?<![\d.])(\d{4})([/.-])(\d{1,2})\2(\d{1,2})(?![\d.])")
_WEEKDAY_DATE = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})\s*[(（]([月火水木金土日])(?:曜日?)?[)）]")
_CODE_NUMBER = re.compile(r"(?<![\d-])(?:\d+(?:-\d+){2,}|\d{3}-\d{4})(?![\d-])")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])")
_RATIO = re.compile(r"(?<![\d:])(\d+):(\d+)(?![\d:])")
_FRACTION = re.compile(r"(?<![\d/])(\d+)/(\d+)(?![\d/])")
_TILDE = re.compile(r"\s*[~〜]+\s*")
_HYPHEN_RANGE = re.compile(r"(?<=\d)[-‐](?=\d)")
_PLUS = re.compile(r"(?<=[\dA-Za-z)])\s*\+\s*(?=[\dA-Za-z(])")
_TIMES = re.compile(r"(?<=[\d)])\s*×\s*(?=[\d(])")
_DIVIDED = re.compile(r"(?<=[\d)])\s*÷\s*(?=[\d(])")

_CURRENCIES = {"¥": "円", "$": "ドル", "€": "ユーロ", "£": "ポンド", "₩": "ウォン"}
_CURRENCY = re.compile(r"([¥$€£₩])\s*(" + _NUMERAL + r")([万億兆]*)")
_PERCENT = re.compile(r"(" + _SIGNED_NUMERAL + r")\s*%")

# "{}" is where the number goes: speed and Fahrenheit are said before it (時速六十キロメートル).
_UNITS = {
    "km/h": "時速{}キロメートル",
    "m/s": "秒速{}メートル",
    "km2": "{}平方キロメートル",
    "m2": "{}平方メートル",
    "cm2": "{}平方センチメートル",
    "m3": "{}立方メートル",
    "cm3": "{}立方センチメートル",
    "km": "{}キロメートル",
    "m": "{}メートル",
    "cm": "{}センチメートル",
    "mm": "{}ミリメートル",
    "μm": "{}マイクロメートル",
    "nm": "{}ナノメートル",
    "kg": "{}キログラム",
    "g": "{}グラム",
    "mg": "{}ミリグラム",
    "μg": "{}マイクログラム",
    "L": "{}リットル",
    "l": "{}リットル",
    "mL": "{}ミリリットル",
    "ml": "{}ミリリットル",
    "dL": "{}デシリットル",
    "cc": "{}シーシー",
    "°C": "{}度",
    "°F": "華氏{}度",
    "°": "{}度",
    "TB": "{}テラバイト",
    "GB": "{}ギガバイト",
    "MB": "{}メガバイト",
    "KB": "{}キロバイト",
    "kB": "{}キロバイト",
    "Gbps": "{}ギガビーピーエス",
    "Mbps": "{}メガビーピーエス",
    "GHz": "{}ギガヘルツ",
    "MHz": "{}メガヘルツ",
    "kHz": "{}キロヘルツ",
    "Hz": "{}ヘルツ",
    "kWh": "{}キロワットアワー",
    "kW": "{}キロワット",
    "W": "{}ワット",
    "V": "{}ボルト",
    "mAh": "{}ミリアンペアアワー",
    "kcal": "{}キロカロリー",
    "ms": "{}ミリ秒",
    "dB": "{}デシベル",
    "ha": "{}ヘクタール",
    "px": "{}ピクセル",
}
_UNIT = re.compile(
    r"("
    + _SIGNED_NUMERAL
    + r")\s*("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])"
)
_NUMBER = re.compile(_SIGNED_NUMERAL)
_NUMERO = re.compile(r"(?<![A-Za-z])No\.\s*(?=\d)")
_ROMAN_NUMERALS = {chr(0x2160 + i): str(i + 1) for i in range(12)} | {chr(0x2170 + i): str(i + 1) for i in range(12)}


def _date(match: re.Match) -> str:
    year, _, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group()
    return f"{int_to_kanji(int(year))}年{int_to_kanji(int(month))}月{int_to_kanji(int(day))}日"


def _weekday_date(match: re.Match) -> str:
    month, day, weekday = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group()
    return f"{int_to_kanji(int(month))}月{int_to_kanji(int(day))}日{weekday}曜日"


def _code_number(match: re.Match) -> str:
    return "の".join(digits_to_kanji(group) for group in match.group().split("-"))


def _time(match: re.Match) -> str:
    hours, minutes, seconds = match.groups()
    if int(hours) > 30 or int(minutes) > 59 or (seconds and int(seconds) > 59):
        return match.group()
    text = f"{int_to_kanji(int(hours))}時"
    if int(minutes) or seconds:
        text += f"{int_to_kanji(int(minutes))}分"
    if seconds:
        text += f"{int_to_kanji(int(seconds))}秒"
    return text


def _tilde(match: re.Match) -> str:
    """から between numbers or kanji words (3〜5, 月曜〜金曜), a long vowel between kana, else nothing."""
    before = match.string[match.start() - 1] if match.start() else " "
    after = match.string[match.end()] if match.end() < len(match.string) else " "
    number_follows = after.isdigit() or after in "-−" + "".join(_CURRENCIES)
    if (number_follows and not before.isspace()) or (_is_kanji(before) and _is_kanji(after)):
        return "から"
    if _is_kana(before) and _is_kana(after):
        return "ー"
    return ""


_NUMBER_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (_DATE, _date),
    (_WEEKDAY_DATE, _weekday_date),
    (_CODE_NUMBER, _code_number),
    (_TIME, _time),
    (_RATIO, lambda m: f"{number_to_kanji(m[1])}対{number_to_kanji(m[2])}"),
    (_FRACTION, lambda m: f"{number_to_kanji(m[2])}分の{number_to_kanji(m[1])}"),
    (_TILDE, _tilde),
    (_HYPHEN_RANGE, "から"),
    (_PLUS, "プラス"),
    (_TIMES, "かける"),
    (_DIVIDED, "わる"),
    (_CURRENCY, lambda m: number_to_kanji(m[2]) + m[3] + _CURRENCIES[m[1]]),
    (_PERCENT, lambda m: number_to_kanji(m[1]) + "パーセント"),
    (_UNIT, lambda m: _UNITS[m[2]].format(number_to_kanji(m[1]))),
    (_NUMERO, "ナンバー"),
    (_NUMBER, lambda m: number_to_kanji(m.group())),
]


# --- English -------------------------------------------------------------------------------

_LETTER_NAMES = (
    "エー ビー シー ディー イー エフ ジー エイチ アイ ジェー ケー エル エム "
    "エヌ オー ピー キュー アール エス ティー ユー ブイ ダブリュー エックス ワイ ゼット"
)
LETTER_NAMES = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", _LETTER_NAMES.split(), strict=True))

# Common words in Japanese chat, as Japanese say them; matched case-insensitively.
ENGLISH_WORDS = {
    "ai": "エーアイ",
    "amazon": "アマゾン",
    "android": "アンドロイド",
    "app": "アプリ",
    "apple": "アップル",
    "ascii": "アスキー",
    "blog": "ブログ",
    "bluetooth": "ブルートゥース",
    "bug": "バグ",
    "c#": "シーシャープ",
    "c++": "シープラスプラス",
    "chatgpt": "チャットジーピーティー",
    "chrome": "クローム",
    "click": "クリック",
    "cloud": "クラウド",
    "code": "コード",
    "computer": "コンピューター",
    "covid": "コビッド",
    "data": "データ",
    "deep learning": "ディープラーニング",
    "docker": "ドッカー",
    "download": "ダウンロード",
    "e-mail": "イーメール",
    "email": "イーメール",
    "error": "エラー",
    "excel": "エクセル",
    "facebook": "フェイスブック",
    "file": "ファイル",
    "game": "ゲーム",
    "git": "ギット",
    "github": "ギットハブ",
    "google": "グーグル",
    "hello": "ハロー",
    "instagram": "インスタグラム",
    "ios": "アイオーエス",
    "iot": "アイオーティー",
    "iphone": "アイフォーン",
    "java": "ジャバ",
    "javascript": "ジャバスクリプト",
    "jpeg": "ジェイペグ",
    "json": "ジェイソン",
    "line": "ライン",
    "link": "リンク",
    "linux": "リナックス",
    "login": "ログイン",
    "mac": "マック",
    "machine learning": "マシンラーニング",
    "macos": "マックオーエス",
    "mail": "メール",
    "microsoft": "マイクロソフト",
    "model": "モデル",
    "nasa": "ナサ",
    "numpy": "ナムパイ",
    "ok": "オーケー",
    "okay": "オーケー",
    "online": "オンライン",
    "openai": "オープンエーアイ",
    "pandas": "パンダス",
    "password": "パスワード",
    "program": "プログラム",
    "programming": "プログラミング",
    "prompt": "プロンプト",
    "python": "パイソン",
    "ruby": "ルビー",
    "rust": "ラスト",
    "server": "サーバー",
    "slack": "スラック",
    "smartphone": "スマートフォン",
    "software": "ソフトウェア",
    "test": "テスト",
    "thank you": "サンキュー",
    "token": "トークン",
    "twitter": "ツイッター",
    "typescript": "タイプスクリプト",
    "unix": "ユニックス",
    "update": "アップデート",
    "upload": "アップロード",
    "user": "ユーザー",
    "version": "バージョン",
    "web": "ウェブ",
    "wi-fi": "ワイファイ",
    "wifi": "ワイファイ",
    "windows": "ウィンドウズ",
    "word": "ワード",
    "youtube": "ユーチューブ",
    "zoom": "ズーム",
}
_ENGLISH_WORD = re.compile(
    r"(?<![A-Za-z])(?:"
    + "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(ENGLISH_WORDS, key=len, reverse=True))
    + r")(?![A-Za-z+#])",
    re.I | re.A,  # ASCII-only case folding: İ or ſ are not English letters here
)
_ACRONYM = re.compile(r"(?<![A-Za-z'])([A-Z]{2,})s?(?![A-Za-z'])")
_SINGLE_LETTER = re.compile(r"(?<![A-Za-z'])[A-Za-z](?![A-Za-z'])")
_LAUGHTER = re.compile(r"(?<![A-Za-z])(?:(?<=[^\x00-\x7f])w+|w{2,})(?![A-Za-z])")  # ですwww: not said


def spell_letters(letters: str) -> str:
    """Latin letters by their Japanese names: GPU → ジーピーユー; other characters are kept."""
    return "".join(LETTER_NAMES.get(c.upper(), c) for c in letters)


def _english_word(match: re.Match) -> str:
    return ENGLISH_WORDS[re.sub(r"\s+", " ", match.group().lower())]


_ENGLISH_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    (_LAUGHTER, ""),
    (_ENGLISH_WORD, _english_word),
    (_ACRONYM, lambda m: spell_letters(m[1])),
    (_SINGLE_LETTER, lambda m: spell_letters(m.group())),
]


# --- symbols and punctuation ---------------------------------------------------------------

_SYMBOL_REPLACEMENTS = {"&": "アンド", "@": "アット", "=": "イコール", "%": "パーセント", "/": "、", "_": " "}
_UNSAID_CATEGORIES = {"So", "Sk", "Sm", "Sc", "Co", "Cs", "Cf"}
_UNSAID_CHARACTERS = set("#*\\|<>^`※•†‡§¶") | {chr(c) for c in range(0xFE00, 0xFE10)} | {"\u20e3"}
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|「\s*」|『\s*』|【\s*】")
_PAUSE_PUNCTUATION = {"!": "！", "?": "？", ",": "、", ":": "、", ";": "、"}
_FULL_STOP = re.compile(r"\.(?![0-9A-Za-z])|(?<![0-9A-Za-z])\.")
_ELLIPSIS = re.compile(r"\.{2,}|・{2,}")
_PAUSE_RUN = re.compile(rf"[{_PAUSES}](?:\s*[{_PAUSES}])+")
_SPACE = re.compile(r"[ \t\u3000]+")
_SPACE_AROUND_PAUSE = re.compile(rf"\s*([{_PAUSES}…])\s*")
_SPACE_IN_JAPANESE = re.compile(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])")


def _say_symbol(char: str) -> str:
    """What a symbol becomes in speech: a word, a pause, a word break, or nothing."""
    if char in _SYMBOL_REPLACEMENTS:
        return _SYMBOL_REPLACEMENTS[char]
    if char in _UNSAID_CHARACTERS or unicodedata.category(char) in _UNSAID_CATEGORIES:
        return ""
    if unicodedata.category(char) == "Pd" and char != "〜":
        return " "
    return char


def collapse_pauses(text: str) -> str:
    """A run of pause marks (`。、`, `！？`) is one pause, the strongest of them; none at the start."""
    text = _PAUSE_RUN.sub(lambda m: next(p for p in "？！。、" if p in m.group()), text)
    return text.lstrip(_PAUSES + " ")


def _tidy_punctuation(text: str) -> str:
    text = _ELLIPSIS.sub("…", text)
    text = "".join(_PAUSE_PUNCTUATION.get(c, c) for c in text)
    text = _FULL_STOP.sub("。", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE.sub(" ", text)
    text = _SPACE_AROUND_PAUSE.sub(r"\1", text)
    text = _SPACE_IN_JAPANESE.sub("", text)
    return collapse_pauses(text).strip()


# --- speakable text ------------------------------------------------------------------------


def _is_kana(char: str) -> bool:
    return "\u3041" <= char <= "\u30ff" and char not in "゠・"


_KANJI_RANGES = (("\u3400", "\u4dbf"), ("\u4e00", "\u9fff"), ("\U00020000", "\U0003134f"))


def _is_kanji(char: str) -> bool:
    return char in ("々", "〆") or any(low <= char <= high for low, high in _KANJI_RANGES)


def _strip_markdown(text: str) -> str:
    text = _CODE_BLOCK.sub("\n", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _TABLE_RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _BULLET.sub("", text)
    text = _STAR_BETWEEN_DIGITS.sub("×", text)
    return _EMPHASIS.sub("", text)


def _ends_sentence(line: str) -> bool:
    """Ends in a sentence or clause mark, also inside closing quotes: 「…しました。」"""
    return line.rstrip(_CLOSING_QUOTES)[-1:] in tuple(_SENTENCE_END + _CLAUSE_END)


def _lines_to_sentences(text: str) -> str:
    """Line breaks are pauses: end each line as a sentence unless it already ends in one."""
    lines = [line.strip(" |\t") for line in _SPACE.sub(" ", text).splitlines()]
    lines = [re.sub(r"\s*\|\s*", "、", line) for line in lines if line]
    return "".join(line if _ends_sentence(line) else line + "。" for line in lines)


def _verbalize(text: str) -> str:
    for pattern, replacement in _NUMBER_RULES + _ENGLISH_RULES:
        text = pattern.sub(replacement, text)
    return "".join(_say_symbol(c) for c in text)


def make_speakable(text: str) -> str:
    """The words a person would say reading `text` aloud (see the module docstring)."""
    text = unicodedata.normalize("NFKC", "".join(_ROMAN_NUMERALS.get(c, c) for c in text))
    text = _lines_to_sentences(_strip_markdown(text))
    return _tidy_punctuation(_verbalize(text))


def split_for_tts(text: str, max_chars: int) -> list[str]:
    """Pieces of at most `max_chars`, cut after sentence ends, else after clauses, else hard."""
    pieces: list[str] = []
    rest = text
    while len(rest) > max_chars:
        window = rest[:max_chars]
        cut = max((window.rfind(c) for c in _SENTENCE_END), default=-1)
        if cut < 0:
            cut = max((window.rfind(c) for c in _CLAUSE_END), default=-1)
        cut = cut + 1 if cut >= 0 else max_chars
        pieces.append(rest[:cut].strip())
        rest = rest[cut:]
    if rest.strip():
        pieces.append(rest.strip())
    return [p for p in pieces if p]


# --- rejection -----------------------------------------------------------------------------


def _non_space_length(text: str) -> int:
    return sum(not c.isspace() for c in text)


_NAME = re.compile(r"[\w.-]+")  # `groupby`: a name said in a sentence, not code


def _code_share(text: str) -> float:
    """Share of the non-space characters in code blocks or inline code (fences included).

    Inline code that is a single name is not counted: people say `groupby` or `main.py`.
    """
    total = _non_space_length(text)
    blocks = [m.group() for m in _CODE_BLOCK.finditer(text)]
    inline = [m.group() for m in _INLINE_CODE.finditer(_CODE_BLOCK.sub(" ", text)) if not _NAME.fullmatch(m[1])]
    return sum(map(_non_space_length, blocks + inline)) / total if total else 0.0


def _non_japanese_reason(spoken_text: str) -> str | None:
    """Judged on the spoken text: acronyms, units and known words are katakana by then, English prose is not."""
    letters = [c for c in spoken_text if c.isalpha()]
    kana = sum(map(_is_kana, letters))
    japanese = kana + sum(map(_is_kanji, letters))
    if letters and japanese / len(letters) < MIN_JAPANESE_SHARE:
        return f"mostly non-Japanese ({japanese / len(letters):.0%} of letters are kana or kanji)"
    if len(letters) >= KANA_FREE_LETTERS and not kana:
        return f"mostly non-Japanese (no kana in {len(letters)} letters)"
    return None


def unspeakable_reason(text: str, spoken_text: str, max_turn_chars: int) -> str | None:
    """Why the original `text`, made into `spoken_text`, should not be spoken; None when it is fine.

    Reasons are short and stable; row-specific detail goes in a trailing parenthesis.
    """
    text = unicodedata.normalize("NFKC", text)
    code_share = _code_share(text)
    if code_share > MOSTLY_CODE_SHARE:
        return f"mostly code ({code_share:.0%} of characters)"
    if not spoken_text.strip(_SENTENCE_END + _CLAUSE_END + "… "):
        return "empty text after making it speakable"
    non_japanese = _non_japanese_reason(spoken_text)
    if non_japanese:
        return non_japanese
    if len(spoken_text) > max_turn_chars:
        return f"too long ({len(spoken_text)} chars > {max_turn_chars})"
    return None


def prepare_turns(
    dialogue: Dialogue,
    roles: tuple[str, ...],
    max_turn_chars: int,
    reading: Callable[[str], str] | None = None,
    tts_reads_kana: bool = False,
) -> None:
    """Fill `spoken_text`, `reading` and `tts_text` of the turns to be voiced, or reject the dialogue.

    `reading` gives the katakana reading of spoken text; backends that read kana (CosyVoice, whose
    frontend would read kanji the Chinese way) get it as `tts_text`, the others the spoken text.
    """
    for number, turn in enumerate(dialogue.turns, start=1):
        if turn.role not in roles:
            continue
        spoken = make_speakable(turn.text)
        reason = unspeakable_reason(turn.text, spoken, max_turn_chars)
        if reason:
            raise Rejected(f"turn {number}: {reason}")
        turn.spoken_text = spoken
        turn.reading = reading(spoken) if reading else None
        turn.tts_text = turn.reading if tts_reads_kana and turn.reading else spoken
