"""Where each word of a rendered text lies in its audio, for backends that do not know it.

OpenJTalk times its own words exactly (`pipeline/tts/openjtalk_timing.py`). Neural backends do not
know their durations: `CTCAligner` times the words in their audio afterwards
with a Japanese wav2vec2-style CTC model from a local folder, by Viterbi forced alignment: torchaudio's
`forced_align` when the aligner runs on a GPU and torchaudio imports (GPU nodes), koe's numpy Viterbi
otherwise. The two give the same token spans, except on some exact ties (see `ctc_forced_align`).

Both use OpenJTalk's (NJD) word segmentation (`spoken_words`), so a word means the same thing whichever
way it was timed.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from .audio import resample
from .errors import BackendSetupError
from .records import Alignment, WordTiming
from .tts.openjtalk_timing import spoken_words

MIN_PAUSE_SECONDS = 0.15  # a gap between CTC-aligned words longer than this is a pause


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
