"""Speakable text: what a person would say when reading a chat turn aloud.

The original text stays in the sample; this stage adds `spoken_text` (markup, code and links
removed, whitespace folded) and `tts_text` (what the backend is asked to say), and rejects turns
that cannot be spoken. Long text is split at sentence boundaries to fit the backend.
"""

from __future__ import annotations

import re
import unicodedata

from .records import Dialogue, Rejected

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_INLINE_CODE = re.compile(r"`([^`]*)`")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"https?://\S+|www\.\S+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.M)
_BULLET = re.compile(r"^\s*(?:[-*+・]|\d+[.)])\s+", re.M)
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}.*$", re.M)
_SENTENCE_END = "。！？!?"
_CLAUSE_END = "、，,；;：:"


def _lines_to_sentences(text: str) -> str:
    """Line breaks are pauses: end each line as a sentence unless it already ends in one."""
    lines = [line.strip(" |\t") for line in text.splitlines()]
    lines = [re.sub(r"\s*\|\s*", "、", line) for line in lines if line]
    return "".join(line if line[-1] in _SENTENCE_END + _CLAUSE_END else line + "。" for line in lines)


def make_speakable(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _CODE_BLOCK.sub("\n", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _TABLE_RULE.sub("", text)
    text = _HEADING.sub("", text)
    text = _BULLET.sub("", text)
    text = _EMPHASIS.sub("", text)
    text = re.sub(r"[ \t\u3000]+", " ", text)
    return _lines_to_sentences(text).strip()


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


def prepare_turns(dialogue: Dialogue, roles: tuple[str, ...], max_turn_chars: int) -> None:
    """Fill `spoken_text`/`tts_text` of the turns to be voiced, or reject the dialogue."""
    for number, turn in enumerate(dialogue.turns, start=1):
        if turn.role not in roles:
            continue
        spoken = make_speakable(turn.text)
        if not spoken.strip(_SENTENCE_END + _CLAUSE_END + " "):
            raise Rejected(f"turn {number}: empty text after making it speakable")
        if len(spoken) > max_turn_chars:
            raise Rejected(f"turn {number}: too long ({len(spoken)} chars > {max_turn_chars})")
        turn.spoken_text = spoken
        turn.tts_text = spoken
