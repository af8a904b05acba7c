"""Speakable text: what a person would say when reading a chat turn aloud.

The original text stays in the sample; this stage adds `spoken_text` and `tts_text` (what the
backend is asked to say), and rejects turns that cannot be spoken. Long text is split at sentence
boundaries to fit the backend.

`spoken_text` is plain Japanese that every backend reads the same way:

- Markup goes: markdown headings, bullets, emphasis, tables and link targets. A fenced code block
  becomes the sentence コードは省略します (code omitted), so the listener knows something was there.
  Inline code keeps its text, identifiers said as names (`df.groupby` → ディーエフドットグループバイ).
  Every line ends as a sentence.
- Numbers stay in Arabic digits: OpenJTalk reads them with the right counter sound changes
  (10分 ジュップン, 1日 ツイタチ/イチニチ, 20日 ハツカ, 6本 ロッポン), which kanji numerals would lose
  (十分 is ジューブン, "enough"). Patterns OpenJTalk misreads are rewritten around the digits:
  dates (`2024/1/5` → 2024年1月5日), times (`14:30` → 14時30分; a single-digit part after a colon is a
  ratio, `16:9` → 16対9), fractions (`1/2` → 2分の1), ranges (`3~5`, `3〜5`, `3-5` → から), phone and
  postal codes (digit by digit joined by の), percentages, currencies and units after a number
  (`60km/h` → 時速60キロメートル), signs (マイナス), version numbers (`3.11.2` → 3点11点2).
- Calculations are said as such: `100-35=65` → 100ひく35は65, `×` かける, `÷` わる, `x²` xの2乗,
  `√2` ルート2, `π` パイ. A hyphen between numbers is subtraction only inside a calculation (another
  operator, `=`, or a word such as 計算 or 答え in the turn); elsewhere it is a range.
- English is katakana (pipeline/english.py): words and brand names as Japanese say them, acronyms
  spelled or read as words, an English sentence word by word. Digits inside Latin names are read
  the English way (`5G` ファイブジー, `F1` エフワン, `iPhone 15` アイフォーンフィフティーン, `No.1`
  ナンバーワン), except paper sizes and resolutions (`A4` エーヨン, `4K` ヨンケー).
- Emails, domains, URLs and file names are said as people say them: `support@example.com` →
  サポートアットマークイグザンプルドットコム; a URL is said as its domain; `report.pdf` →
  リポートドットピーディーエフ. Hashtags are ハッシュタグ + the tag, `★5` is 星5.
- Emoji, arrows and decorative symbols are not said but leave a pause (、) where they separated
  phrases, as do spaces between Japanese phrases. `〜` between kana lengthens the vowel. Punctuation
  becomes Japanese (、。！？).
- Kanji whose reading depends on context (辛い: カライ with food, ツライ otherwise; 何曜日 ナンヨービ)
  are written in kana where the context decides (`_CONTEXT_READINGS`), so that every backend, and
  the reading, say the same word.

A turn is rejected when it is mostly code (more than half of its non-space characters sit in code
blocks, inline code or lines that read as code; inline code that is a single name such as
`groupby` does not count), when nothing speakable is left, when it is mostly non-Japanese (under
30% of its weighted letters are kana or kanji, a Latin letter counting a third of a Japanese
character; or 20 or more letters without a single kana, which is Chinese), and when it is longer
than the recipe allows.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from .english import ENGLISH_WORDS, english_number, english_phrase, spell_letters, word_to_katakana

_CODE_BLOCK = re.compile(r"```.*?(?:```|$)", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.M)
_BULLET = re.compile(r"^[ \t]*(?:[-*+・]|\d+[.)])[ \t]+", re.M)
_STAR_BETWEEN_DIGITS = re.compile(r"(?<=\d)\s*\*\s*(?=\d)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~)")
_TABLE_RULE = re.compile(r"^[ \t]*\|?[ \t]*:?-{2,}.*$", re.M)
_SENTENCE_END = "。！？!?"
_CLAUSE_END = "、，,；;：:"
_PAUSES = "、。！？"
_CLOSING_QUOTES = "」』)）】"
CODE_OMITTED = "コードは省略します。"

MOSTLY_CODE_SHARE = 0.5  # more code than this share of non-space characters: not a spoken turn
MIN_JAPANESE_SHARE = 0.3  # fewer kana/kanji than this share of weighted letters: not Japanese
LATIN_LETTER_WEIGHT = 1 / 3  # a Latin letter carries about a third of what a kana or kanji does
KANA_FREE_LETTERS = 20  # this many letters without a single kana: Chinese, not Japanese

# --- numbers ---------------------------------------------------------------------------------

_DIGIT_KANJI = "零一二三四五六七八九"
_MAX_INTEGER_DIGITS = 16  # OpenJTalk reads longer runs digit by digit, and so do people

_NUMERAL = r"(?<![\d,.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)*"
_SIGN = r"(?:(?<![0-9A-Za-z.])[-−])?"
_SIGNED_NUMERAL = _SIGN + _NUMERAL


def digits_to_kanji(digits: str) -> str:
    """Digit by digit, as codes are said: 090 → 零九零 (OpenJTalk reads each digit)."""
    return "".join(_DIGIT_KANJI[int(d)] for d in digits)


def say_number(numeral: str) -> str:
    """A numeral as written (`-1,234.5`, `007`, `3.11.2`) in the form OpenJTalk reads right.

    Digits stay Arabic; a sign is マイナス, a version number's dots are 点, and an integer longer
    than `_MAX_INTEGER_DIGITS` is said digit by digit.
    """
    sign = "マイナス" if numeral[0] in "-−" else ""
    whole, *fractions = numeral.lstrip("-−").replace(",", "").split(".")
    if len(whole) > _MAX_INTEGER_DIGITS:
        whole = digits_to_kanji(whole)
    if len(fractions) > 1:  # a version number: each part is a whole number
        return sign + "点".join((whole, *fractions))
    return sign + whole + "".join("." + f for f in fractions)


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
_SIGNED_PLUS = re.compile(r"(?<![\dA-Za-z)])\+(?=\d)")  # +15%: the sign is said
_PLUS_MINUS = re.compile(r"±\s*")

_CURRENCIES = {"¥": "円", "$": "ドル", "€": "ユーロ", "£": "ポンド", "₩": "ウォン"}
_CURRENCY = re.compile(r"([¥$€£₩])\s*(" + _NUMERAL + r")([万億兆]*)")
_PERCENT = re.compile(r"(" + _SIGNED_NUMERAL + r")\s*%")

# "{}" is where the number goes: speed and Fahrenheit are said before it (時速60キロメートル).
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
    "min": "{}分",
    "sec": "{}秒",
}
_UNIT = re.compile(
    r"("
    + _SIGNED_NUMERAL
    + r"|何"
    + r")\s*("
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z0-9])"
)
_NUMBER = re.compile(_SIGNED_NUMERAL)
_ROMAN_NUMERALS = {chr(0x2160 + i): str(i + 1) for i in range(12)} | {chr(0x2170 + i): str(i + 1) for i in range(12)}


def _date(match: re.Match) -> str:
    year, _, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group()
    return f"{int(year)}年{int(month)}月{int(day)}日"


def _weekday_date(match: re.Match) -> str:
    month, day, weekday = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group()
    return f"{int(month)}月{int(day)}日{weekday}曜日"


def _code_number(match: re.Match) -> str:
    return "の".join(digits_to_kanji(group) for group in match.group().split("-"))


def _time(match: re.Match) -> str:
    hours, minutes, seconds = match.groups()
    if int(hours) > 30 or int(minutes) > 59 or (seconds and int(seconds) > 59):
        return match.group()
    text = f"{int(hours)}時"
    if int(minutes) or seconds:
        text += f"{int(minutes)}分"
    if seconds:
        text += f"{int(seconds)}秒"
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


# --- calculations ----------------------------------------------------------------------------

_OPERAND = r"(?:\d+(?:\.\d+)?[A-Za-z]?|[A-Za-zπ]|√\s*\d+)(?![A-Za-z])"
_OPERATOR = r"[-−+×÷*/=]"
_CALCULATION = re.compile(
    rf"(?<![\w.,^@/])\(?\s*{_OPERAND}(?:\^\d)?\)?(?:\s*{_OPERATOR}\s*\(?\s*{_OPERAND}(?:\^\d)?\)?)+(?![\w.,/@])",
    re.A,
)
_CALCULATION_WORDS = re.compile(r"計算|答え|解い|解き|求め|いくつ|何になる|式|引き算|足し算|掛け算|割り算")
_TRIGONOMETRY = re.compile(r"(?<![A-Za-z])(sin|cos|tan|log)\s*(?=\d)")  # sin30°: サイン, then the number
_FACTORIAL = re.compile(r"(?<=\d)!(?=\s*(?:は|を|の|=|[-+×÷*/]))")  # 5!は: five factorial, not an exclamation
_POWER = re.compile(r"(?<=[A-Za-z0-9)])\^(\d)")
def _power(match: re.Match) -> str:
    """x² is エックス2乗 (a formula), 2³ is 2の3乗."""
    return ("" if match.string[match.start() - 1].isalpha() else "の") + match[1] + "乗"


_SAID_OPERATORS = {"+": "たす", "-": "ひく", "−": "ひく", "×": "かける", "*": "かける", "÷": "わる", "/": "わる", "=": "は"}
_ALGEBRA_OPERATORS = _SAID_OPERATORS | {"+": "プラス", "-": "マイナス", "−": "マイナス"}  # with variables: x²+2x+1


def _is_calculation(match: re.Match) -> bool:
    """An arithmetic expression, not a range (3-5), date or code: it has `=`, `×`, `÷`, `*`, a power,
    more than one operator, is asked about (100-35は？), or the turn talks about calculating."""
    expression = match.group()
    operators = re.findall(_OPERATOR, expression)
    if "=" in operators or set(operators) & set("×÷*") or "^" in expression or "√" in expression:
        return True
    if not re.search(r"\d", expression):
        return False
    asked = re.match(r"\s*(?:は|って|の答え)", match.string[match.end() :])
    return len(operators) > 1 or bool(asked) or bool(_CALCULATION_WORDS.search(match.string))


def _say_calculation(match: re.Match) -> str:
    expression = match.group()
    if not _is_calculation(match):
        return expression
    said = _POWER.sub(_power, expression)
    said = said.replace("√", "ルート").replace("π", "パイ")
    said = re.sub(r"[()\s]", "", said)
    said = re.sub(r"(\d+)/(\d+)", r"\2分の\1", said) if re.search(r"[-−+×*=]", said) else said
    left, equals, right = said.partition("=")
    algebra = bool(re.search(r"[A-Za-z]", expression))
    if algebra or not re.search(_OPERATOR, left):  # x=5 and 3x+2=11 are equations: イコール; 3+4=7 は
        said = left + equals.replace("=", "イコール") + right
    operators = _ALGEBRA_OPERATORS if algebra else _SAID_OPERATORS
    said = re.sub(_OPERATOR, lambda m: operators[m.group()], said)
    return re.sub(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", lambda m: spell_letters(m.group()), said)


# --- addresses, files and names with digits -------------------------------------------------------

_TLD_WORDS = {"com": "コム", "net": "ネット", "org": "オルグ", "info": "インフォ", "biz": "ビズ"}
_EXTENSIONS = {
    "py": "パイ",
    "js": "ジェーエス",
    "ts": "ティーエス",
    "json": "ジェイソン",
    "yaml": "ヤムル",
    "yml": "ヤムル",
    "md": "エムディー",
    "txt": "テキスト",
    "jpg": "ジェイペグ",
    "jpeg": "ジェイペグ",
    "png": "ピング",
    "gif": "ジフ",
    "zip": "ジップ",
    "exe": "エグゼ",
    "docx": "ドックス",
    "xlsx": "エクセル",
    "pptx": "パワーポイント",
    "sh": "エスエイチ",
    "ipynb": "アイパイエヌビー",
    "java": "ジャバ",
    "go": "ゴー",
    "rs": "アールエス",
    "rb": "アールビー",
    "log": "ログ",
}
_FILE_EXTENSION = (
    r"pdf|csv|tsv|py|js|ts|tsx|jsx|json|ya?ml|md|txt|html?|css|png|jpe?g|gif|svg|docx?|xlsx?|pptx?"
    r"|zip|exe|sh|ipynb|mp3|mp4|wav|log|xml|sql|java|cpp|rs|rb|php|go|toml|ini|cfg|c|h"
)
_EMAIL = re.compile(r"(?<![\w.+-])([A-Za-z0-9._%+-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)(?![\w-])", re.A)
_URL = re.compile(r"(?:https?://|(?=www\.))([A-Za-z0-9.-]+)(/[!-~]*)?")  # ASCII only: Japanese often follows unspaced
_DOMAIN = re.compile(
    r"(?<![\w.@/-])((?:[A-Za-z0-9-]+\.)+(?:com|net|org|info|io|ai|dev|app|co|jp|us|uk|de|fr|cn|kr|tv|me))(?![\w.-])",
    re.A,
)
_FILE_NAME = re.compile(rf"(?<![\w.-])([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\.({_FILE_EXTENSION})(?![\w.])", re.I | re.A)
_DOTFILE = re.compile(r"(?<![\w.])\.(?=[A-Za-z]\w*)", re.A)  # .env, .gitignore
_HASHTAG = re.compile(r"(?<![\w&])[#＃](?=[^\s#＃\d])")
_MENTION = re.compile(r"(?<![\w.])@(?=[A-Za-z0-9_])", re.A)
_IDENTIFIER = re.compile(
    r"(?<![\w.])(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+(?:\(\))?|[A-Za-z0-9]+_\w+)(?!\w)", re.A
)
_NAME_WITH_DIGITS = re.compile(
    r"(?<![A-Za-z0-9.])(?:(?P<numero>No)\.?\s*(?P<rank>\d{1,2})|(?P<size>[AB]\d{1,2}|\d{1,2}K)|(?P<glued>(?:[A-Za-z]+\d+[A-Za-z]*|\d+[A-Za-z]+)(?:\d+[A-Za-z]*)*)"
    r"|(?P<name>[A-Za-z][A-Za-z]*)[ -](?P<number>\d{1,2}))(?![A-Za-z0-9]|\.\d)"
)


def _say_words(text: str, hyphen: str = "") -> str:
    """Latin words, digits and separators of an address or name, each said; a hyphen as `hyphen`.

    Dots are said (ドット) and underscores separate words: `df.groupby`, `read_csv`, `tanaka.taro`."""
    text = text.replace(".", "ドット").replace("_", " ")
    parts = re.findall(r"[A-Za-z]+|\d+|\S", text)
    return "".join(word_to_katakana(p) if p.isascii() and p.isalpha() else p.replace("-", hyphen) for p in parts)


def _say_domain(domain: str) -> str:
    labels = domain.lower().removeprefix("www.").split(".")
    said = []
    for index, label in enumerate(labels):
        last = index == len(labels) - 1
        if last and label in _TLD_WORDS:
            said.append(_TLD_WORDS[label])
        elif len(label) <= 3 and index > 0:  # co.jp, ac.uk, io: spelled
            said.append(spell_letters(label))
        else:
            said.append(_say_words(label, "ハイフン"))
    return "ドット".join(said)


def _say_file(match: re.Match) -> str:
    name, extension = match.groups()
    extension = extension.lower()
    said = _EXTENSIONS.get(extension) or spell_letters(extension)
    return _say_words(name) + "ドット" + said


def _say_identifier(match: re.Match) -> str:
    """`df.groupby()`, `read_csv`: the parts of a name said one after another."""
    name = match.group().removesuffix("()")
    return _say_words(name)


def _say_name_with_digits(match: re.Match) -> str:
    if match["size"]:  # A4, B5, 4K: digits the Japanese way, letters by name
        return re.sub(r"[A-Z]", lambda m: spell_letters(m.group()), match["size"])
    if match["numero"]:
        return "ナンバー" + english_number(int(match["rank"]))
    if match["name"]:
        return word_to_katakana(match["name"]) + english_number(int(match["number"]))
    glued = match["glued"]  # 5G, F1, MP3, PS5: letters by name (or as a word), digits the English way
    return "".join(
        (english_number(int(part)) if int(part) < 100 else part) if part.isdigit() else word_to_katakana(part)
        for part in re.findall(r"\d+|[A-Za-z]+", glued)
    )


def _url(match: re.Match) -> str:
    """A URL as people say it: its domain, and its path when that is one short word (/login, /docs)."""
    path = (match[2] or "").strip("/")
    short_path = re.fullmatch(r"[A-Za-z]{1,12}", path)
    return _say_domain(match[1].rstrip(".")) + ("スラッシュ" + word_to_katakana(path) if short_path else "")


# --- English words -------------------------------------------------------------------------------

_LATIN_WORD = re.compile(r"(?<![A-Za-z'])[A-Za-z]+(?:'[A-Za-z]+)?(?![A-Za-z'])")
_LAUGHTER = re.compile(r"(?<![A-Za-z])(?:(?<=[^\x00-\x7f])w+|w{2,})(?![A-Za-z])")  # ですwww: not said
_SPECIAL_WORDS = re.compile(  # curated words with more than letters in them: C++, Wi-Fi, 7-Eleven, McDonald's
    r"(?<![A-Za-z0-9])(?:"
    + "|".join(re.escape(w) for w in sorted(ENGLISH_WORDS, key=len, reverse=True) if not w.isalpha())
    + r")(?![A-Za-z0-9+#])",
    re.I,
)
_ENGLISH_RUN = re.compile(r"(?<![A-Za-z'])[A-Za-z]+(?:'[A-Za-z]+)?(?:[ ,]+[A-Za-z]+(?:'[A-Za-z]+)?)+")


# --- symbols and punctuation ---------------------------------------------------------------

_STAR_RATING = re.compile(r"[★☆]\s*(?=\d)")
_STARS = re.compile(r"★+☆*(?=[^★☆]|$)")  # ★★★☆☆: three stars of five


def _stars(match: re.Match) -> str:
    return f"星{match.group().count('★')}つ" if len(match.group()) > 1 else match.group()


_SYMBOL_REPLACEMENTS = {
    "&": "アンド", "@": "アット", "=": "イコール", "%": "パーセント", "/": "、", "_": " ", "√": "ルート", "π": "パイ",
    "○": "まる", "◯": "まる", "×": "ばつ", "△": "さんかく", "≒": "ニアリーイコール", "≠": "ノットイコール",
}
_UNSAID_CATEGORIES = {"So", "Sk", "Sm", "Sc", "Co", "Cs", "Cf"}
_SILENT_CHARACTERS = set("#*\\|<>^`") | {chr(c) for c in range(0xFE00, 0xFE10)} | {"\u20e3", "\u200d"}
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|「\s*」|『\s*』|【\s*】")
_PAUSE_PUNCTUATION = {"!": "！", "?": "？", ",": "、", ":": "、", ";": "、"}
_FULL_STOP = re.compile(r"\.(?![0-9A-Za-z])|(?<![0-9A-Za-z])\.")
_ELLIPSIS = re.compile(r"\.{2,}|・{2,}")
_PAUSE_RUN = re.compile(rf"[{_PAUSES}](?:\s*[{_PAUSES}])+")
_SPACE = re.compile(r"[ \t\u3000]+")
_SPACE_AROUND_PAUSE = re.compile(rf"\s*([{_PAUSES}…])\s*")
_SPACE_IN_JAPANESE = re.compile(r"(?<=[^\x00-\x7f])[ \t]+(?=[^\x00-\x7f])")
_SPACE_BESIDE_JAPANESE = re.compile(r"(?<=[^\x00-\x7f]) +| +(?=[^\x00-\x7f])")


def _say_symbol(char: str) -> str:
    """What a symbol becomes in speech: a word, a pause (emoji, arrows, ※), a word break, or nothing."""
    if char in _SYMBOL_REPLACEMENTS:
        return _SYMBOL_REPLACEMENTS[char]
    if char in _SILENT_CHARACTERS:
        return ""
    if unicodedata.category(char) in _UNSAID_CATEGORIES or char in "※•†‡§¶":
        return "、"
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
    text = _SPACE_BESIDE_JAPANESE.sub("", text)
    return collapse_pauses(text).strip()


# --- kanji read by their context --------------------------------------------------------------

_FOOD = (
    r"カレー|ラーメン|料理|味|食べ|食う|飲|スパイス|唐辛子|とうがらし|キムチ|麻婆|担々|わさび|山椒|ソース|スープ|鍋"
    r"|激辛|甘|しょっぱ|酸っぱ|舌|ピリ|タバスコ|胡椒|コショウ|ハバネロ|チリ|タイ料理|韓国料理|四川|メニュー|お店"
)
_MARKET_GOODS = r"魚|野菜|果物|朝市|築地|豊洲|買い物|新鮮|鮮魚|青果|フリー|のみの|蚤の"
_RAW_FOOD = r"冷蔵|刺身|傷み|痛み|腐|食べ|賞味|消費期限|お寿司|寿司|生もの"
# (kanji, context in the same sentence or None for always, what is written instead); the first rule that
# matches wins, so 辛い is カライ beside food and ツライ elsewhere. Where no rule matches, OpenJTalk's own
# reading stands (市場 シジョー, 生物 セーブツ, 人気 ニンキ).
_CONTEXT_READINGS = [
    (r"辛(?=[いくさかけそすっ])", _FOOD, "から"),
    (r"辛(?=[いくさかけそすっ])", None, "つら"),  # OpenJTalk is not consistent between the two
    (r"(?<=月)(の)?[1一]日(?![間中目0-9])", None, r"\1ついたち"),  # 来月の1日, 5月1日: the date, not a day's length
    (r"分別", r"ゴミ|ごみ|資源|リサイクル|ペットボトル|缶|瓶|びん|プラ|収集", "ぶんべつ"),
    (r"下手", r"舞台|ステージ|客席|劇|役者|登場|退場", "しもて"),
    (r"上手(?=から|に|へ|側)", r"舞台|ステージ|客席|劇|役者|登場|退場", "かみて"),
    (r"空(?=い(?:て|た|てる)|く(?:な|時間))", r"電車|バス|道|店|お腹|おなか|車内|時間帯|混雑|平日|朝|夜|比較的", "す"),
    (r"色紙", r"寄せ書き|サイン|書く|書い|色紙に", "しきし"),
    (r"開(?=[かきくけこい])", r"ドア|窓|扉|蓋|ふた|フタ|ファスナー|ジッパー|門|鍵|カギ", "あ"),
    (r"目下(?=の(?:人|者|相手)|に対)", None, "めした"),
    (r"(?<!魚)(?<!株式)(?<!金融)(?<!労働)(?<!国内)(?<!海外)市場(?!規模|価格|調査|経済|シェア|原理|参入|全体)", _MARKET_GOODS, "いちば"),
    (r"生物(?!学)", _RAW_FOOD, "なまもの"),
    (r"何(?=曜日|時間|年生|ヶ月|か月|カ月|日間|週間|分間|秒間|番線|番目|割|倍|回目|歳|才|度目|人前)", None, "なん"),
    (r"人気(?=の(?:ない|無い|少ない|多い)|が(?:ない|無い|少な|なく|多))", None, "ひとけ"),
]
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]*")


def _read_in_context(sentence: str) -> str:
    for kanji, context, kana in _CONTEXT_READINGS:
        if context is None or re.search(context, sentence):
            sentence = re.sub(kanji, kana, sentence)
    return sentence


def read_in_context(text: str) -> str:
    """Kanji whose reading OpenJTalk gets wrong in a context found in the same sentence, written in kana there."""
    return _SENTENCE.sub(lambda m: _read_in_context(m.group()), text)


# --- speakable text ------------------------------------------------------------------------


def _is_kana(char: str) -> bool:
    return "\u3041" <= char <= "\u30ff" and char not in "゠・"


_KANJI_RANGES = (("\u3400", "\u4dbf"), ("\u4e00", "\u9fff"), ("\U00020000", "\U0003134f"))


def _is_kanji(char: str) -> bool:
    return char in ("々", "〆") or any(low <= char <= high for low, high in _KANJI_RANGES)


def _strip_markdown(text: str) -> str:
    text = _CODE_BLOCK.sub("\n" + CODE_OMITTED + "\n", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _INLINE_CODE.sub(r" \1 ", text)
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


_RULES: list[tuple[re.Pattern, str | Callable[[re.Match], str]]] = [
    # addresses and names first: their dots, digits and hyphens are not numbers or sentence ends
    (_EMAIL, lambda m: _say_words(m[1], "ハイフン") + "アットマーク" + _say_domain(m[2])),
    (_URL, _url),
    (_FILE_NAME, _say_file),
    (_DOTFILE, "ドット"),
    (_DOMAIN, lambda m: _say_domain(m[1])),
    (_HASHTAG, "ハッシュタグ"),
    (_MENTION, "アット"),
    (_SPECIAL_WORDS, lambda m: word_to_katakana(m.group())),
    (_IDENTIFIER, _say_identifier),
    (_DATE, _date),
    (_WEEKDAY_DATE, _weekday_date),
    (_CODE_NUMBER, _code_number),
    (_TIME, _time),
    (_TRIGONOMETRY, lambda m: word_to_katakana(m[1])),
    (_CALCULATION, _say_calculation),
    (_POWER, _power),
    (_RATIO, lambda m: f"{say_number(m[1])}対{say_number(m[2])}"),
    (_FRACTION, lambda m: f"{say_number(m[2])}分の{say_number(m[1])}"),
    (_TILDE, _tilde),
    (_HYPHEN_RANGE, "から"),
    (_PLUS, "プラス"),
    (_SIGNED_PLUS, "プラス"),
    (_PLUS_MINUS, "プラスマイナス"),
    (_FACTORIAL, "の階乗"),
    (_CURRENCY, lambda m: say_number(m[2]) + m[3] + _CURRENCIES[m[1]]),
    (_PERCENT, lambda m: say_number(m[1]) + "パーセント"),
    (_UNIT, lambda m: _UNITS[m[2]].format(say_number(m[1]))),
    (_NAME_WITH_DIGITS, _say_name_with_digits),
    (_STAR_RATING, "星"),
    (_STARS, _stars),
    (_NUMBER, lambda m: say_number(m.group())),
    # English
    (_LAUGHTER, ""),
    (_ENGLISH_RUN, lambda m: english_phrase(m.group())),
    (_LATIN_WORD, lambda m: word_to_katakana(m.group())),
]


def _verbalize(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return "".join(_say_symbol(c) for c in text)


_SUPERSCRIPTS = {"²": "^2", "³": "^3"}
_ACCENTED_LATIN = re.compile(r"[À-ÖØ-öø-ÿ]")


def make_speakable(text: str) -> str:
    """The words a person would say reading `text` aloud (see the module docstring)."""
    text = "".join(_ROMAN_NUMERALS.get(c) or _SUPERSCRIPTS.get(c) or c for c in text)
    text = _ACCENTED_LATIN.sub(lambda m: unicodedata.normalize("NFD", m.group())[0], text)  # Pokémon, café
    text = _SPACE_IN_JAPANESE.sub("、", unicodedata.normalize("NFKC", text))  # a space between Japanese phrases
    text = _lines_to_sentences(_strip_markdown(text))
    return read_in_context(_tidy_punctuation(_verbalize(text)))


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


_NAME = re.compile(r"[\w.-]+(?:\(\))?")  # `groupby`, `df.head()`: a name said in a sentence, not code
_CODE_LINE = re.compile(
    r"^\s*(?:(?:def|class|return|import|from|for|while|if|elif|else|try|except|with|print|const|let|var|"
    r"function|public|private|static|#include|using|package|func|fn|SELECT|INSERT|UPDATE|CREATE)\b.*"
    r"|.*[;{}]\s*$|[\w.\[\]]+\s*[-+*/]?=\s*\S.*|[\w.]+\(.*\)\s*:?\s*$|\s*[)}\]]+;?\s*$)"
)


def _looks_like_code(line: str) -> bool:
    """A line of code without fences: a keyword start, a statement end, an assignment or a call, in ASCII."""
    stripped = line.strip()
    if not stripped or any(ord(c) > 0x7F for c in stripped):
        return False
    return bool(_CODE_LINE.match(stripped))


def _code_share(text: str) -> float:
    """Share of the non-space characters in code blocks, inline code (fences included) or code lines.

    Inline code that is a single name is not counted: people say `groupby` or `main.py`.
    """
    total = _non_space_length(text)
    blocks = [m.group() for m in _CODE_BLOCK.finditer(text)]
    prose = _CODE_BLOCK.sub(" ", text)
    inline = [m.group() for m in _INLINE_CODE.finditer(prose) if not _NAME.fullmatch(m[1])]
    lines = [line for line in _INLINE_CODE.sub(" ", prose).splitlines() if _looks_like_code(line)]
    return sum(map(_non_space_length, blocks + inline + lines)) / total if total else 0.0


_PROSE_WORD = re.compile(r"[A-Za-z]*[a-z][A-Za-z]*")  # acronyms (GPU, OK) are said within Japanese, not prose


def _non_japanese_reason(text: str) -> str | None:
    """Judged on the text as written: English words count a third of a kana or kanji each letter."""
    latin = sum(map(len, _PROSE_WORD.findall(text)))
    non_latin = [c for c in text if c.isalpha() and not c.isascii()]
    kana = sum(map(_is_kana, non_latin))
    japanese = kana + sum(map(_is_kanji, non_latin))
    letters = japanese + latin * LATIN_LETTER_WEIGHT
    if letters and japanese / letters < MIN_JAPANESE_SHARE:
        return f"mostly non-Japanese ({japanese / letters:.0%} of letters are kana or kanji)"
    if len(non_latin) >= KANA_FREE_LETTERS and not kana:
        return f"mostly non-Japanese (no kana in {len(non_latin)} letters)"
    return None


def unspeakable_reason(text: str, spoken_text: str, max_turn_chars: int) -> str | None:
    """Why the original `text`, made into `spoken_text`, should not be spoken; None when it is fine.

    Reasons are short and stable; row-specific detail goes in a trailing parenthesis.
    """
    text = unicodedata.normalize("NFKC", text)
    code_share = _code_share(text)
    if code_share > MOSTLY_CODE_SHARE:
        return f"mostly code ({code_share:.0%} of characters)"
    if not spoken_text.replace(CODE_OMITTED, "").strip(_SENTENCE_END + _CLAUSE_END + "… "):
        return "empty text after making it speakable"
    non_japanese = _non_japanese_reason(_strip_markdown(text))
    if non_japanese:
        return non_japanese
    if len(spoken_text) > max_turn_chars:
        return f"too long ({len(spoken_text)} chars > {max_turn_chars})"
    return None
