"""Katakana readings of spoken text, and how long they take to say.

CosyVoice sends any text with kanji through its Chinese frontend and reads it with Chinese
readings, so koe gives it the katakana reading that OpenJTalk's analysis finds. The pauses of the
spoken text (、。！？) are kept where they were: OpenJTalk's reading is taken per stretch between
them and the stretches are re-joined with the marks. Whatever OpenJTalk leaves unread (Latin
letters it cannot place, symbols, rare characters) is spelled or dropped, so a reading holds only
katakana and pause marks.

The duration estimate lets a run reject text too long for the recipe before any GPU time is spent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import pyopenjtalk

from .english import spell_letters
from .speakable import collapse_pauses, make_speakable, unspeakable_reason

_PAUSE_MARKS = {"、": "、", "，": "、", "…": "、", "。": "。", "！": "！", "!": "！", "？": "？", "?": "？"}
_PAUSE_RUN = re.compile("([" + re.escape("".join(_PAUSE_MARKS)) + "]+)")
_NOT_KATAKANA = re.compile(r"[^\u30a1-\u30fa\u30fc]+")
_SMALL_KANA = set("ャュョァィゥェォヮ")  # part of the mora before them
MORAE_PER_SECOND = 7.5
SECONDS_PER_PAUSE = 0.3


OPENJTALK_MAX_CHARS = 2000  # OpenJTalk refuses longer input (measured: 4,000 pass, 8,000 fail)


def _katakana(stretch: str) -> str:
    """OpenJTalk's reading of text without pauses, reduced to katakana; very long stretches in pieces."""
    pieces = [stretch[i : i + OPENJTALK_MAX_CHARS] for i in range(0, len(stretch), OPENJTALK_MAX_CHARS)]
    reading = unicodedata.normalize("NFKC", "".join(pyopenjtalk.g2p(piece, kana=True) for piece in pieces))
    return _NOT_KATAKANA.sub("", spell_letters(reading))


def kana_reading(spoken_text: str) -> str:
    """The katakana reading of `spoken_text`, its pause marks (、。！？) kept in place."""
    parts = _PAUSE_RUN.split(spoken_text)
    stretches = parts[::2]
    marks = ["".join(_PAUSE_MARKS[c] for c in run) for run in parts[1::2]] + [""]
    return collapse_pauses("".join(_katakana(s) + m for s, m in zip(stretches, marks, strict=True)))


_SPELLINGS = {"ヲ": "オ", "ヂ": "ジ", "ヅ": "ズ", "ヴァ": "バ", "ヴィ": "ビ", "ヴェ": "ベ", "ヴォ": "ボ", "ヴ": "ブ"}
_VOWEL_OF = {
    **dict.fromkeys("アカサタナハマヤラワガザダバパャァ", "ア"),
    **dict.fromkeys("イキシチニヒミリギジヂビピィ", "イ"),
    **dict.fromkeys("ウクスツヌフムユルグズヅブプュゥ", "ウ"),
    **dict.fromkeys("エケセテネヘメレゲゼデベペェ", "エ"),
    **dict.fromkeys("オコソトノホモヨロヲゴゾドボポョォ", "オ"),
}
_LONG_VOWEL_SPELLINGS = {"ア": "ア", "イ": "イ", "ウ": "ウ", "エ": "エイ", "オ": "オウ"}  # トウキョウ is トーキョー


def comparable_reading(reading: str) -> str:
    """A reading reduced to what is heard, so spelling variants are no error: katakana only, ヲ オ, ヅ ズ,
    ヴァ バ, and a vowel held long written ー whether it was spelled トウキョウ, セイセキ or トーキョー."""
    text = _NOT_KATAKANA.sub("", unicodedata.normalize("NFKC", reading))
    for spelled, heard in _SPELLINGS.items():
        text = text.replace(spelled, heard)
    out: list[str] = []
    for char in text:
        vowel = _VOWEL_OF.get(out[-1]) if out else None
        out.append("ー" if vowel and char in _LONG_VOWEL_SPELLINGS[vowel] else char)
    return "".join(out)


def reading_errors(heard: str, expected: str | list[str]) -> tuple[int, int]:
    """Character edits between two readings (after `comparable_reading`), and the expected length.

    `expected` may list the readings that are all right (8分: ハップン or ハチフン): the closest counts.
    """
    from rapidfuzz.distance import Levenshtein

    heard = comparable_reading(heard)
    options = [comparable_reading(e) for e in ([expected] if isinstance(expected, str) else expected)]
    return min((Levenshtein.distance(heard, option), len(option)) for option in options)


def character_error_rate(pairs: list[tuple[str, str | list[str]]]) -> float:
    """Edits over expected characters, summed over (heard, expected) pairs: the CER of a set of readings."""
    errors = [reading_errors(heard, expected) for heard, expected in pairs]
    return sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))


def count_morae(reading: str) -> int:
    """Katakana morae: small ャュョァィゥェォ join the mora before them; ー, ッ and ン count."""
    return sum(1 for c in reading if "\u30a1" <= c <= "\u30fc" and c not in _SMALL_KANA and c != "・")


def estimate_seconds(reading: str) -> float:
    """A rough spoken duration of a katakana reading: morae at a conversational pace plus pauses."""
    pauses = sum(reading.count(p) for p in "、。！？")
    return count_morae(reading) / MORAE_PER_SECOND + pauses * SECONDS_PER_PAUSE


def describe_text(text: str, max_turn_chars: int = 600) -> dict[str, Any]:
    """What koe makes of one turn: its spoken text, reading, rough duration and any reject reason."""
    spoken = make_speakable(text)
    reading = kana_reading(spoken)
    return {
        "text": text,
        "spoken_text": spoken,
        "reading": reading,
        "estimated_seconds": round(estimate_seconds(reading), 2),
        "reject_reason": unspeakable_reason(text, spoken, max_turn_chars),
    }
