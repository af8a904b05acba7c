"""OpenJTalk's words of a text and, before a sample is rendered, where each of them will lie in its audio.

OpenJTalk decides the length of every HMM state in frames before it makes a single sample, from the
duration model in its voice file. pyopenjtalk does not expose those lengths, so `openjtalk_timing`
recomputes them the way HTS_Engine 1.10 does (decision tree, rounding, the rule for speed != 1):
the timings are exact, and the sample count they predict is the one the engine renders. The words
(`spoken_words`) are also what the CTC aligner times in a neural backend's audio (`pipeline/align.py`).
"""

from __future__ import annotations

import re
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyopenjtalk

from ..records import Alignment, WordTiming

OPENJTALK_METHOD = "openjtalk-labels"
_PAUSE, _SILENCE = "pau", "sil"
_NOT_IN_LABELS = frozenset({_PAUSE, "sp", "unk"})  # mapping phonemes for symbols, spaces and unread text


# --- OpenJTalk's words -------------------------------------------------------------------------


@dataclass(frozen=True)
class SpokenWord:
    """One pronounced OpenJTalk word: its text as written, its phonemes, its katakana reading."""

    text: str
    phonemes: tuple[str, ...]
    reading: str  # as read, not as pronounced: 今日 -> キョウ, は -> ハ


def _as_written(text: str, span: tuple[int, int], surface: str) -> bool:
    """Whether a morpheme is the text it came from (up to width), not a rewrite such as 2024 -> 二千二十四."""
    start, end = span
    return end > start and unicodedata.normalize("NFKC", text[start:end]) == unicodedata.normalize("NFKC", surface)


def spoken_words(text: str) -> tuple[list[SpokenWord], list[str]]:
    """OpenJTalk's pronounced words of `text`, and the full-context labels that `pyopenjtalk.tts` synthesizes.

    Words are pyopenjtalk-plus's surface-to-phoneme mapping with their spans in `text`. Morphemes that
    rewrite the text (digits read as 二千二十四) have no span of their own, so a run of them is one word:
    the digits as written.
    """
    njd_features, morphs = pyopenjtalk.run_frontend_detailed(text)
    labels = pyopenjtalk.make_label(njd_features)  # before the mapping, which fills in flags on the features
    mapping = pyopenjtalk.make_phoneme_mapping(njd_features, morphs, caller_text=text)
    groups: list[list[pyopenjtalk.SurfacePhonemeMapping]] = []
    in_rewrite = False
    for entry in mapping:
        pronounced = any(p not in _NOT_IN_LABELS for p in entry["phonemes"])
        rewritten = pronounced and not _as_written(text, entry["char_span"], entry["surface"])
        if rewritten and in_rewrite:
            groups[-1].append(entry)
        elif pronounced:
            groups.append([entry])
        in_rewrite = rewritten
    words = []
    for group in groups:
        spans = [e["char_span"] for e in group if e["char_span"][1] > e["char_span"][0]]
        written = text[min(s for s, _ in spans) : max(e for _, e in spans)] if spans else ""
        words.append(
            SpokenWord(
                text=written or "".join(e["surface"] for e in group),
                phonemes=tuple(p for e in group for p in e["phonemes"] if p not in _NOT_IN_LABELS),
                reading="".join(e["read"] for e in group),
            )
        )
    return words, labels


def _label_phoneme(label: str) -> str:
    """The current phoneme of a full-context label: p3 in `p1^p2-p3+p4=p5/A:...`."""
    return label.split("-", 1)[1].split("+", 1)[0]


# --- HTS duration model ------------------------------------------------------------------------

_TOKEN = re.compile(r"\"([^\"]*)\"|'([^']*)'|(,)|([^ \n]+)")  # HTS_get_pattern_token: quoted, comma, or word


def _hts_pattern(pattern: str) -> str:
    """An HTS question pattern (`*` any run, `?` any one character, the rest literal) as a regex."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)


@dataclass(frozen=True)
class _Branch:
    """Where a tree node leads: another node (its index) or a leaf (a pdf number, from 1)."""

    is_leaf: bool
    number: int

    @classmethod
    def parse(cls, token: str) -> _Branch:
        """A node index is digits and '-' (HTS_is_num); a leaf is a pdf name ending in its number."""
        if re.fullmatch(r"[0-9-]+", token):
            return cls(False, int(token))
        number = re.search(r"[0-9]+$", token)
        if number is None:
            raise ValueError(f"duration tree leaf {token!r} names no pdf")
        return cls(True, int(number.group()))


@dataclass(frozen=True)
class HTSDurationModel:
    """The state-duration model of an HTS voice (.htsvoice): a decision tree from labels to Gaussian pdfs."""

    sample_rate: int
    frame_period: int  # samples per frame
    num_states: int
    nodes: dict[int, tuple[re.Pattern[str], _Branch, _Branch]]  # index -> (question, branch if no, if yes)
    pdfs: np.ndarray  # (pdf count, 2 * num_states) float32: the state means, then the state variances

    @classmethod
    def from_voice_file(cls, path: str | Path) -> HTSDurationModel:
        """Parse the [GLOBAL] and [POSITION] header and the duration tree and pdfs in [DATA]."""
        header, data = Path(path).read_bytes().split(b"[DATA]\n", 1)
        fields: dict[str, str] = {}
        for line in header.decode("utf-8").splitlines():
            key, _, value = line.partition(":")
            fields[key] = value

        def section(name: str) -> bytes:
            first, last = (int(n) for n in fields[name].split("-"))
            return data[first : last + 1]

        num_states = int(fields["NUM_STATES"])
        pdf_bytes = section("DURATION_PDF")
        (pdf_count,) = struct.unpack("<I", pdf_bytes[:4])  # one tree, so one count (HTS_Model_load_pdf)
        pdfs = np.frombuffer(pdf_bytes, "<f4", count=pdf_count * 2 * num_states, offset=4)
        tokens = [m.group(m.lastindex or 0) for m in _TOKEN.finditer(section("DURATION_TREE").decode("ascii"))]
        questions: dict[str, re.Pattern[str]] = {}
        nodes: dict[int, tuple[re.Pattern[str], _Branch, _Branch]] = {}
        trees = 0
        stream = iter(tokens)
        for token in stream:
            if token == "QS":  # QS name { "pattern" , "pattern" ... }
                name, patterns = next(stream), []
                if next(stream) != "{":
                    raise ValueError(f"{path}: question {name} has no pattern list")
                while True:
                    patterns.append(_hts_pattern(next(stream)))
                    if next(stream) == "}":
                        break
                questions[name] = re.compile("|".join(patterns), re.DOTALL)
            elif "[" in token:  # a tree: {pattern}[state] { index question no yes ... }
                trees += 1
                if trees > 1 or not token.startswith("{*}") or next(stream) != "{":
                    raise ValueError(f"{path}: unsupported duration trees (one tree for all labels expected)")
                while (index := next(stream)) != "}":
                    question, no, yes = next(stream), next(stream), next(stream)
                    nodes[int(index)] = (questions[question], _Branch.parse(no), _Branch.parse(yes))
        return cls(
            sample_rate=int(fields["SAMPLING_FREQUENCY"]),
            frame_period=int(fields["FRAME_PERIOD"]),
            num_states=num_states,
            nodes=nodes,
            pdfs=pdfs.reshape(pdf_count, 2 * num_states),
        )

    def pdf_index(self, label: str) -> int:
        """Row of `pdfs` for a label: walk the tree from node 0 (HTS_Tree_search_node)."""
        node = 0
        while True:
            question, no, yes = self.nodes[node]
            branch = yes if question.fullmatch(label) else no
            if branch.is_leaf:
                return branch.number - 1
            node = branch.number

    def state_frames(self, labels: list[str], speed: float) -> np.ndarray:
        """Frames of each state of each label, (labels, states), as HTS_SStreamSet_create sets them."""
        if not labels:
            return np.zeros((0, self.num_states), dtype=np.int64)
        rows = self.pdfs[[self.pdf_index(label) for label in labels]].astype(np.float64)
        means = rows[:, : self.num_states].ravel()
        variances = rows[:, self.num_states :].ravel()
        if speed == 1.0:
            frames = _default_duration(means)
        else:
            frames = _specified_duration(means, variances, _sequential_sum(means) / speed)
        return frames.reshape(len(labels), self.num_states)


def _sequential_sum(values: np.ndarray) -> float:
    """Sum in index order, as HTS's C loop adds (np.sum pairs terms, Python 3.12's sum compensates)."""
    return float(np.cumsum(values)[-1])


def _default_duration(means: np.ndarray) -> np.ndarray:
    """HTS_set_default_duration: each mean rounded half up, at least one frame."""
    rounded = means + 0.5
    return np.where(rounded < 1.0, 1, np.floor(rounded)).astype(np.int64)


def _specified_duration(means: np.ndarray, variances: np.ndarray, frame_length: float) -> np.ndarray:
    """HTS_set_specified_duration: stretch all states to `frame_length` frames by one shared rho.

    Each state gets mean + rho * variance rounded (at least one frame); then, while the total is off
    the target, the state whose rho after one more (or one fewer) frame is closest to the shared
    rho changes by one frame (the first such state on ties, as the C loop's strict `>` keeps it).
    """
    target = 1 if frame_length + 0.5 < 1.0 else int(frame_length + 0.5)
    if target <= means.size:
        return np.ones(means.size, dtype=np.int64)
    rho = (target - _sequential_sum(means)) / _sequential_sum(variances)
    first = means + rho * variances + 0.5
    frames = np.where(first < 1.0, 1, np.floor(first)).astype(np.int64)
    total = int(frames.sum())
    while total != target:
        step = 1 if target > total else -1
        distance = np.abs(rho - (frames + step - means) / variances)
        if step < 0:
            distance[frames <= 1] = np.inf
        frames[int(np.argmin(distance))] += step
        total += step
    return frames


@lru_cache(maxsize=1)
def openjtalk_voice_model() -> HTSDurationModel:
    """The duration model of pyopenjtalk's bundled voice, parsed once per process."""
    return HTSDurationModel.from_voice_file(pyopenjtalk.DEFAULT_HTS_VOICE.decode("utf-8"))


@dataclass(frozen=True)
class OpenJTalkTiming:
    """What `pyopenjtalk.synthesize(labels, speed)` will render, timed before it is rendered."""

    labels: list[str]
    num_samples: int
    alignment: Alignment


def openjtalk_timing(text: str, speed: float) -> OpenJTalkTiming:
    """The labels of `text`, the length of their render at `speed`, and its words and pauses in seconds.

    Raises ValueError if the words' phonemes and the labels' phonemes disagree (an OpenJTalk change).
    """
    model = openjtalk_voice_model()
    words, labels = spoken_words(text)
    label_ends = np.cumsum(model.state_frames(labels, speed).sum(axis=1)) * model.frame_period
    bounds = np.concatenate(([0], label_ends)) / model.sample_rate
    phonemes = [_label_phoneme(label) for label in labels]
    spoken = [i for i, p in enumerate(phonemes) if p not in (_PAUSE, _SILENCE)]
    expected = [p for word in words for p in word.phonemes]
    if [phonemes[i] for i in spoken] != expected:
        raise ValueError(f"OpenJTalk's words and labels disagree for {text!r}: {expected} vs {phonemes}")
    timed, position = [], 0
    for word in words:
        first, last = spoken[position], spoken[position + len(word.phonemes) - 1]
        timed.append(WordTiming(word.text, float(bounds[first]), float(bounds[last + 1])))
        position += len(word.phonemes)
    pauses = [(float(bounds[i]), float(bounds[i + 1])) for i, p in enumerate(phonemes) if p == _PAUSE]
    return OpenJTalkTiming(
        labels=labels,
        num_samples=int(label_ends[-1]) if labels else 0,
        alignment=Alignment("word", OPENJTALK_METHOD, timed, pauses),
    )
