"""Where each word of a rendered text lies in its audio.

OpenJTalk decides the length of every HMM state in frames before it makes a single sample, from the
duration model in its voice file. pyopenjtalk does not expose those lengths, so `openjtalk_timing`
recomputes them the way HTS_Engine 1.10 does (decision tree, rounding, the rule for speed != 1):
the timings are exact, and the sample count they predict is the one the engine renders.

Neural backends do not know their durations: `CTCAligner` times the words in their audio afterwards
with a Japanese wav2vec2-style CTC model from a local folder, by Viterbi forced alignment: torchaudio's
`forced_align` when the aligner runs on a GPU and torchaudio imports (GPU nodes), koe's numpy Viterbi
otherwise. The two give the same token spans, except on some exact ties (see `ctc_forced_align`).

Both give OpenJTalk's (NJD) word segmentation, so a word means the same thing whichever way it was timed.
"""

from __future__ import annotations

import json
import re
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyopenjtalk

from .audio import resample
from .errors import BackendSetupError
from .records import Alignment, WordTiming

OPENJTALK_METHOD = "openjtalk-labels"
MIN_PAUSE_SECONDS = 0.15  # a gap between CTC-aligned words longer than this is a pause
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


# --- CTC forced alignment ----------------------------------------------------------------------

LogProbs = Callable[[np.ndarray], np.ndarray]  # mono audio at the model's rate -> (frames, vocabulary) log-probs
_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class AlignerSetupError(BackendSetupError):
    """The CTC model cannot be used here (folder, file or package missing): stop the run, say how to fix it."""


@dataclass(frozen=True)
class CTCModelInfo:
    """What alignment needs from a CTC model folder besides the network itself."""

    vocabulary: dict[str, int]  # token -> id, from vocab.json
    blank: int  # the CTC blank: wav2vec2 uses its pad token
    sample_rate: int
    frame_seconds: float  # one output frame: the product of the conv strides over the sample rate

    @classmethod
    def read(cls, folder: Path) -> CTCModelInfo:
        """Read from the folder's JSON files alone, so a missing file stops the run before any model loads."""
        if not folder.is_dir():
            raise AlignerSetupError(f"CTC model folder {folder} does not exist: download the model there first")
        # feature extractor settings: preprocessor_config.json, or nested in processor_config.json (transformers 5)
        processor = [folder / "preprocessor_config.json", folder / "processor_config.json"]
        missing = [name for name in ("config.json", "vocab.json") if not (folder / name).is_file()]
        if not any(path.is_file() for path in processor):
            missing.append(" or ".join(path.name for path in processor))
        if missing:
            raise AlignerSetupError(
                f"CTC model folder {folder} lacks {', '.join(missing)}: not a wav2vec2-style CTC checkpoint"
            )
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        vocabulary = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        if processor[0].is_file():
            features = json.loads(processor[0].read_text(encoding="utf-8"))
        else:
            features = json.loads(processor[1].read_text(encoding="utf-8"))["feature_extractor"]
        if not all(isinstance(i, int) for i in vocabulary.values()):
            raise AlignerSetupError(f"{folder / 'vocab.json'} is not one flat token -> id table (a multilingual one?)")
        if "conv_stride" not in config or config.get("pad_token_id") not in vocabulary.values():
            raise AlignerSetupError(f"{folder / 'config.json'} has no conv_stride or no pad token in the vocabulary")
        stride = int(np.prod(config["conv_stride"]))
        if config.get("add_adapter"):
            stride *= config["adapter_stride"] ** config["num_adapter_layers"]
        return cls(vocabulary, config["pad_token_id"], features["sampling_rate"], stride / features["sampling_rate"])


def load_wav2vec2_log_probs(folder: Path, device: str) -> LogProbs:
    """The model call: a transformers CTC checkpoint from a local folder, nothing fetched."""
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise AlignerSetupError(f"CTC model folder {folder} has no weights ({' or '.join(_WEIGHT_FILES[:2])})")
    try:
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForCTC
    except ImportError as exc:
        raise AlignerSetupError(
            f"CTC alignment needs transformers and torch: pip install 'koe[align]' ({exc})"
        ) from None
    try:
        features = AutoFeatureExtractor.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCTC.from_pretrained(folder, local_files_only=True).to(device).eval()
    except (OSError, ValueError) as exc:
        raise AlignerSetupError(f"cannot load the CTC model in {folder}: {exc}") from None

    def log_probs(audio: np.ndarray) -> np.ndarray:
        inputs = features(audio, sampling_rate=features.sampling_rate, return_tensors="pt")
        with torch.inference_mode():
            logits = model(inputs.input_values.to(device)).logits[0]
        return torch.log_softmax(logits.float(), dim=-1).cpu().numpy()

    return log_probs


def _hiragana(katakana: str) -> str:
    """Katakana to hiragana, for models whose vocabulary is hiragana (ー and the rest kept)."""
    return "".join(chr(ord(c) - 0x60) if "ァ" <= c <= "ヶ" else c for c in katakana)


class CTCAligner:
    """Times the words of a text in any audio of it, with a Japanese CTC model from a local folder.

    Words are OpenJTalk's, as in `openjtalk_timing`. Each word is spelled in the model's vocabulary:
    as written when the vocabulary has its characters (kanji models), else by its reading in
    katakana or hiragana (kana models); characters the vocabulary lacks are left out, and a word
    with none left is not timed.

    `device` is the model's ("auto": cuda when torch sees a GPU, else cpu). `viterbi` "auto" runs the
    forced alignment with torchaudio's kernel on that device when it is a GPU and torchaudio imports,
    and with the numpy Viterbi otherwise; "numpy" and "torchaudio" choose.
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        log_probs: LogProbs | None = None,
        viterbi: str = "auto",
    ):
        if viterbi not in ("auto", "numpy", "torchaudio"):
            raise ValueError(f"viterbi must be auto, numpy or torchaudio, got {viterbi!r}")
        if viterbi == "torchaudio" and torchaudio_forced_align_function() is None:
            raise AlignerSetupError("viterbi torchaudio: torchaudio.functional.forced_align does not import here")
        folder = Path(model_dir).resolve()
        self.method = f"ctc:{folder.name}"
        self.info = CTCModelInfo.read(folder)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._log_probs = log_probs or load_wav2vec2_log_probs(folder, device)
        self.device = device
        if viterbi == "auto":
            viterbi = "torchaudio" if device != "cpu" and torchaudio_forced_align_function() else "numpy"
        self.viterbi = viterbi

    def word_tokens(self, text: str) -> list[tuple[str, list[int]]]:
        """The words of `text` that the vocabulary can spell, each with its token ids."""
        vocabulary, spelled = self.info.vocabulary, []
        for word in spoken_words(text)[0]:
            spellings = (unicodedata.normalize("NFKC", word.text), word.reading, _hiragana(word.reading))
            whole = [s for s in spellings if all(c in vocabulary for c in s)]
            best = whole[0] if whole else max(spellings, key=lambda s: sum(c in vocabulary for c in s))
            tokens = [vocabulary[c] for c in best if c in vocabulary]
            if tokens:
                spelled.append((word.text, tokens))
        return spelled

    def align(self, audio: np.ndarray, sample_rate: int, text: str) -> Alignment:
        """Words of `text` in `audio` (seconds); none when the audio is too short for the text."""
        info = self.info
        log_probs = self._log_probs(resample(audio.astype(np.float32), sample_rate, info.sample_rate))
        words = self.word_tokens(text)
        try:
            targets = [t for _, tokens in words for t in tokens]
            if self.viterbi == "torchaudio":
                spans = torchaudio_ctc_forced_align(log_probs, targets, info.blank, self.device)
            else:
                spans = ctc_forced_align(log_probs, targets, info.blank)
        except ValueError:
            return Alignment("word", self.method, [])
        duration, timed, first = audio.size / sample_rate, [], 0
        for word, tokens in words:
            start, end = spans[first][0], spans[first + len(tokens) - 1][1]
            timed.append(WordTiming(word, start * info.frame_seconds, min(end * info.frame_seconds, duration)))
            first += len(tokens)
        pauses = [(a.end, b.start) for a, b in pairwise(timed) if b.start - a.end > MIN_PAUSE_SECONDS]
        return Alignment("word", self.method, timed, pauses)


def ctc_forced_align(log_probs: np.ndarray, targets: list[int], blank: int) -> list[tuple[int, int]]:
    """The most likely CTC path of `targets` through `log_probs` (frames, vocabulary): each target's frames.

    Returns (first frame, last frame + 1) per target. This is the standard Viterbi trellis over the
    targets with blanks between them (stay, advance, or skip a blank between two different tokens),
    what torchaudio.functional.forced_align computes, summed in the log-probs' precision as its kernel
    does. On exact ties it takes the first best move (stay, advance, skip) and ends in the last target
    rather than a trailing blank; torchaudio 2.11.1 gives the same spans except on some exact ties,
    where its kernel keeps a worse move (pytorch/audio#4221) and its path can score lower. It is kept
    for machines without torchaudio: PyPI's torchaudio 2.11.1 installs beside torch 2.13 (it requires
    torch>=2.11) but is a CUDA build that imports only beside a CUDA torch. ctc-segmentation times
    only where each token starts (so no word ends).
    Raises ValueError when there are fewer frames than the targets need.
    """
    _check_frames(len(log_probs), targets)
    labels = np.full(2 * len(targets) + 1, blank)
    labels[1::2] = targets
    # sums in the log-probs' own precision (float32 from a model)
    emissions = np.asarray(log_probs[:, labels], dtype=np.result_type(log_probs.dtype, np.float32))
    can_skip = np.zeros(labels.size, dtype=bool)
    can_skip[3::2] = labels[3::2] != labels[1:-2:2]
    score = np.full(labels.size, -np.inf, dtype=emissions.dtype)
    score[:2] = emissions[0, :2]
    moves = np.zeros((len(log_probs), labels.size), dtype=np.int8)  # 0 stay, 1 from the previous state, 2 skip one
    unreachable = np.full(2, -np.inf, dtype=emissions.dtype)
    for t in range(1, len(log_probs)):
        advance = np.concatenate((unreachable[:1], score[:-1]))
        skip = np.where(can_skip, np.concatenate((unreachable, score[:-2])), unreachable[0])
        candidates = np.stack([score, advance, skip])
        moves[t] = np.argmax(candidates, axis=0)
        score = candidates[moves[t], np.arange(labels.size)] + emissions[t]
    if max(score[-2:]) == -np.inf:
        raise ValueError("no CTC path ends in the last target: the model gives it no probability")
    state = labels.size - 1 if score[-1] > score[-2] else labels.size - 2
    path = np.empty(len(log_probs), dtype=np.int64)
    for t in range(len(log_probs) - 1, -1, -1):
        path[t] = state
        state -= int(moves[t, state])  # a Python int: int8 arithmetic would overflow past 127 states
    spans = []
    for i in range(len(targets)):
        frames = np.flatnonzero(path == 2 * i + 1)
        spans.append((int(frames[0]), int(frames[-1]) + 1))
    return spans


def _check_frames(frames: int, targets: list[int]) -> None:
    repeats = sum(a == b for a, b in pairwise(targets))  # a repeated token needs a blank frame between
    if not targets or len(targets) + repeats > frames:
        raise ValueError(f"{frames} frames cannot hold {len(targets)} CTC targets")


@lru_cache(maxsize=1)
def torchaudio_forced_align_function() -> Callable[..., Any] | None:
    """`torchaudio.functional.forced_align`, or None where torchaudio is missing or does not load (a CUDA
    build beside a CPU-only torch fails with OSError, not ImportError)."""
    try:
        from torchaudio.functional import forced_align
    except (ImportError, OSError, RuntimeError):
        return None
    return forced_align


def torchaudio_ctc_forced_align(
    log_probs: np.ndarray, targets: list[int], blank: int, device: str = "cpu"
) -> list[tuple[int, int]]:
    """`ctc_forced_align` by torchaudio's kernel on `device` (torchaudio 2.11's
    `forced_align(log_probs (1, T, C), targets (1, L), blank=...)`, which returns each frame's label).

    Only the blank's and the targets' columns travel to the device, renumbered. Each run of frames with
    the same non-blank label is one target (a repeated target has a blank between its two runs).
    Raises ValueError as `ctc_forced_align` does, and RuntimeError where torchaudio is not available.
    """
    forced_align = torchaudio_forced_align_function()
    if forced_align is None:
        raise RuntimeError("torchaudio.functional.forced_align is not available here")
    import torch

    _check_frames(len(log_probs), targets)
    columns = sorted({blank, *targets})
    index = {token: i for i, token in enumerate(columns)}
    emissions = torch.from_numpy(np.ascontiguousarray(log_probs[:, columns]))[None].to(device)
    ids = torch.tensor([[index[t] for t in targets]], dtype=torch.int32, device=device)
    path, scores = forced_align(emissions, ids, blank=index[blank])
    path, scores = path[0].cpu().numpy(), scores[0].cpu().numpy()
    if not np.isfinite(scores).all():
        raise ValueError("no CTC path ends in the last target: the model gives it no probability")
    starts = np.flatnonzero((path != index[blank]) & (path != np.r_[-1, path[:-1]]))
    ends = np.flatnonzero((path != index[blank]) & (path != np.r_[path[1:], -1])) + 1
    if len(starts) != len(targets):  # not a path of the targets: torchaudio found none
        raise ValueError("no CTC path ends in the last target: the model gives it no probability")
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]
