"""Speaker diarization of real mono recordings (for `koe ingest-mono`).

It hears with `pipeline/listen.py` (voice activity, voice embeddings). Diarizers share one small
interface, `Diarizer`, and are built by name with `make_diarizer`:

- "vad-embedding" (`VadEmbeddingDiarizer`) runs anywhere with no download: silero-vad speech
  regions, resemblyzer embeddings of short windows, agglomerative clustering. It cannot detect
  overlapped speech, so its exclusive and full turns are the same.
- "pyannote" (`PyannoteDiarizer`) runs pyannote.audio 4 from a local checkpoint folder and reports
  overlapped speech, on the GPU when there is one. It is an optional extra: pyannote.audio 4.0.7
  requires torch>=2.8 and torchaudio>=2.8 and resolves beside koe's torch 2.13, but PyPI's Linux
  torchaudio (2.11.1+cu132) is a CUDA build that links libtorch_cuda, so it imports beside a
  CUDA torch (GPU nodes) and not beside the CPU-only torch of the test environment.

Heavy imports (torch, silero-vad, resemblyzer, pyannote.audio) happen on first use.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .audio import resample
from .errors import BackendSetupError
from .listen import VAD_RATE, Interval, speech_segments, voice_encoder

PYANNOTE_INSTALL_HINT = (
    "install it with `pip install 'koe[pyannote]'`; it needs torchaudio, and PyPI's torchaudio is a CUDA "
    "build that imports beside PyPI's (CUDA) torch, not beside a CPU-only torch"
)
DEVICES = ("auto", "cpu", "cuda")  # auto: cuda when torch sees a GPU, else cpu


class DiarizerSetupError(BackendSetupError):
    """A diarizer cannot start here (package or checkpoint missing): stop before reading audio."""


@dataclass(frozen=True)
class SpeakerTurn:
    speaker: str  # label as the diarizer gives it
    start: float
    end: float


class Diarizer(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """The diarizer, its settings and the device it runs on, for the records."""

    def diarize(self, audio: np.ndarray, sample_rate: int) -> tuple[list[SpeakerTurn], list[SpeakerTurn]]:
        """(exclusive turns: at most one speaker at any time, full turns: may overlap) for a mono recording."""


# --- VAD + speaker-embedding diarizer ---------------------------------------------------------


def _windows(regions: list[Interval], length: float, hop: float) -> list[Interval]:
    """Windows of `length` every `hop` inside each region, the last one flush with the region's end;
    a region shorter than `length` is one window."""
    windows: list[Interval] = []
    for start, end in regions:
        if end - start <= length:
            windows.append((start, end))
            continue
        starts = np.arange(start, end - length, hop).tolist() + [end - length]
        windows.extend((s, s + length) for s in starts)
    return windows


class VadEmbeddingDiarizer:
    """silero-vad regions → resemblyzer embeddings of windows → agglomerative clustering → turns.

    The number of speakers is where average-linkage (cosine) clustering of the full-length windows
    stops merging below `threshold`, capped at `max_speakers`, unless `num_speakers` fixes it.
    Each 20 ms frame of speech takes the speaker whose centroid the windows covering it resemble
    most (smoothed over `smoothing` seconds), so a turn change inside continuous speech lands
    within about half a window. It has no overlap detection: exclusive and full turns are equal.
    """

    name = "vad-embedding"
    frame = 0.02  # seconds per labelled frame

    def __init__(
        self,
        num_speakers: int | None = None,
        max_speakers: int = 4,
        threshold: float = 0.3,
        window: float = 1.5,
        hop: float = 0.75,
        smoothing: float = 0.5,
    ):
        if num_speakers is not None and num_speakers < 1:
            raise ValueError(f"num_speakers must be at least 1, got {num_speakers}")
        if max_speakers < 1:
            raise ValueError(f"max_speakers must be at least 1, got {max_speakers}")
        if not 0 < hop <= window:
            raise ValueError(f"need 0 < hop <= window, got hop {hop} and window {window}")
        self.num_speakers = num_speakers
        self.max_speakers = max_speakers
        self.threshold = threshold
        self.window = window
        self.hop = hop
        self.smoothing = smoothing
        self._encoder = voice_encoder()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": "cpu",  # resemblyzer's encoder is loaded on the CPU; silero-vad runs in ONNX Runtime
            "num_speakers": self.num_speakers,
            "max_speakers": self.max_speakers,
            "threshold": self.threshold,
            "window": self.window,
            "hop": self.hop,
            "smoothing": self.smoothing,
        }

    def diarize(self, audio: np.ndarray, sample_rate: int) -> tuple[list[SpeakerTurn], list[SpeakerTurn]]:
        samples = resample(np.asarray(audio, dtype=np.float32), sample_rate, VAD_RATE)
        regions = speech_segments(samples, VAD_RATE)
        windows = _windows(regions, self.window, self.hop)
        if not windows:
            return [], []
        embeddings = self._embed(samples, regions, windows)
        centroids = self._centroids(embeddings, windows)
        turns = self._turns(regions, windows, embeddings @ centroids.T)
        return turns, list(turns)

    def _embed(self, samples: np.ndarray, regions: list[Interval], windows: list[Interval]) -> np.ndarray:
        """One L2-normed embedding per window, batched by window length."""
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        # The encoder's mel spectrogram is not logarithmic, so level matters: bring the speech to the
        # -30 dBFS that resemblyzer's own preprocessing targets.
        speech = np.concatenate([samples[round(s * VAD_RATE) : round(e * VAD_RATE)] for s, e in regions])
        rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64))))
        samples = samples * (10 ** (-30 / 20) / max(rms, 1e-6))
        mels = [wav_to_mel_spectrogram(samples[round(s * VAD_RATE) : round(e * VAD_RATE)]) for s, e in windows]
        embeddings = np.zeros((len(windows), 256), dtype=np.float32)
        # One thread: as fast as two on an idle 2-core machine (0.3 s for 20 s of dialogue), and ten
        # times faster than two when another process holds a core (torch's threads wait on each other).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for frames in sorted({len(mel) for mel in mels}):
                indices = [i for i, mel in enumerate(mels) if len(mel) == frames]
                with torch.no_grad():
                    batch = self._encoder(torch.from_numpy(np.stack([mels[i] for i in indices])))
                embeddings[indices] = batch.numpy()
        finally:
            torch.set_num_threads(threads)
        return embeddings

    def _centroids(self, embeddings: np.ndarray, windows: list[Interval]) -> np.ndarray:
        """Cluster the full-length windows (short ones embed poorly); clusters numbered by first appearance."""
        from scipy.cluster.hierarchy import fcluster, linkage

        full = np.array([end - start >= self.window - 1e-6 for start, end in windows])
        if full.sum() < 2:
            full[:] = True
        reliable = embeddings[full]
        if len(reliable) < 2:
            labels = np.ones(len(reliable), dtype=int)
        else:
            tree = linkage(reliable, method="average", metric="cosine")
            if self.num_speakers is not None:
                labels = fcluster(tree, self.num_speakers, criterion="maxclust")
            else:
                labels = fcluster(tree, self.threshold, criterion="distance")
                if labels.max() > self.max_speakers:
                    labels = fcluster(tree, self.max_speakers, criterion="maxclust")
        order = list(dict.fromkeys(labels.tolist()))  # windows are in time order
        centroids = np.stack([reliable[labels == label].mean(axis=0) for label in order])
        return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)

    def _turns(self, regions: list[Interval], windows: list[Interval], similarity: np.ndarray) -> list[SpeakerTurn]:
        from scipy.ndimage import uniform_filter1d

        frame_count = int(np.ceil(max(end for _, end in regions) / self.frame)) + 1
        scores = np.zeros((frame_count, similarity.shape[1]))
        for (start, end), row in zip(windows, similarity, strict=True):
            scores[round(start / self.frame) : max(round(end / self.frame), round(start / self.frame) + 1)] += row
        turns: list[SpeakerTurn] = []
        for start, end in regions:
            first, last = round(start / self.frame), max(round(end / self.frame), round(start / self.frame) + 1)
            size = max(1, min(last - first, round(self.smoothing / self.frame)))
            labels = uniform_filter1d(scores[first:last], size=size, axis=0, mode="nearest").argmax(axis=1)
            changes = np.flatnonzero(np.diff(labels)) + 1
            bounds = [start, *((first + changes) * self.frame).tolist(), end]
            for (turn_start, turn_end), label in zip(
                zip(bounds[:-1], bounds[1:], strict=True), labels[np.r_[0, changes]], strict=True
            ):
                turns.append(SpeakerTurn(f"SPEAKER_{label:02d}", round(turn_start, 3), round(turn_end, 3)))
        return turns


# --- pyannote.audio ---------------------------------------------------------------------------


class PyannotePipeline(Protocol):
    """What koe uses of a loaded `pyannote.audio.Pipeline`."""

    def __call__(self, file: dict[str, Any], **kwargs: int) -> Any:
        """Returns a `DiarizeOutput` with `.speaker_diarization` and `.exclusive_speaker_diarization`."""

    def to(self, device: Any) -> Any:
        """Moves its models and inferences to a `torch.device` (pyannote.audio 4 refuses a string); returns itself."""


def resolve_device(device: str) -> str:
    """The device for an option (auto, cpu, cuda): auto takes cuda when torch sees a GPU, else cpu;
    cuda without a GPU is a setup error."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; known: {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise DiarizerSetupError("device cuda was asked for, but torch sees no GPU here: use device auto or cpu")
    return "cpu"


def load_pyannote_pipeline(checkpoint: Path) -> PyannotePipeline:
    """pyannote.audio 4 from a local clone of a pipeline repository (its config.yaml), with no network."""
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
    try:
        from pyannote.audio import Pipeline
    except (ImportError, OSError) as exc:  # OSError: torchaudio's CUDA build beside a CPU-only torch
        raise DiarizerSetupError(f"pyannote.audio does not import here ({exc}): {PYANNOTE_INSTALL_HINT}") from None
    pipeline = Pipeline.from_pretrained(checkpoint, token=None)
    if pipeline is None:
        raise DiarizerSetupError(f"pyannote.audio could not load a pipeline from {checkpoint}")
    return pipeline


def _turns_of(annotation: Any) -> list[SpeakerTurn]:
    turns = [
        SpeakerTurn(str(label), float(segment.start), float(segment.end))
        for segment, _, label in annotation.itertracks(yield_label=True)
    ]
    return sorted(turns, key=lambda turn: (turn.start, turn.end, turn.speaker))


class PyannoteDiarizer:
    """pyannote.audio 4 (e.g. speaker-diarization-community-1) from a local checkpoint folder.

    It is given in-memory 16 kHz audio, so no file decoding (torchcodec) is involved, and reports
    overlapped speech in its full turns. `device` "auto" moves the pipeline to the GPU when torch
    sees one (`Pipeline.to(torch.device("cuda"))`: `from_pretrained` leaves it on the CPU unless
    config.yaml names a device); "cpu" keeps it there and "cuda" insists. `load_pipeline` is the seam for tests.
    """

    name = "pyannote"

    def __init__(
        self,
        checkpoint: Path | str,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        device: str = "auto",
        load_pipeline: Callable[[Path], PyannotePipeline] = load_pyannote_pipeline,
    ):
        self.device = resolve_device(device)
        folder = Path(checkpoint)
        fetch_hint = (
            "clone a pyannote diarization pipeline repository (e.g. pyannote/speaker-diarization-community-1, "
            "with its config.yaml and model subfolders) there, or pass --checkpoint with its folder"
        )
        if not folder.is_dir():
            raise DiarizerSetupError(f"pyannote checkpoint folder {folder} does not exist: {fetch_hint}")
        if not (folder / "config.yaml").is_file():
            raise DiarizerSetupError(f"pyannote checkpoint folder {folder} has no config.yaml: {fetch_hint}")
        counts = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers}
        self._speaker_counts = {key: value for key, value in counts.items() if value is not None}
        self.checkpoint = folder
        pipeline = load_pipeline(folder)
        if self.device != "cpu":
            import torch

            pipeline = pipeline.to(torch.device(self.device))
        self._pipeline = pipeline

    def describe(self) -> dict[str, Any]:
        try:
            package = f"pyannote.audio {version('pyannote.audio')}"
        except PackageNotFoundError:
            package = "pyannote.audio (not installed)"
        return {
            "name": self.name,
            "model": package,
            "checkpoint": str(self.checkpoint),
            "device": self.device,
            **self._speaker_counts,
        }

    def diarize(self, audio: np.ndarray, sample_rate: int) -> tuple[list[SpeakerTurn], list[SpeakerTurn]]:
        import torch

        samples = resample(np.asarray(audio, dtype=np.float32), sample_rate, VAD_RATE)
        waveform = torch.from_numpy(np.ascontiguousarray(samples)).unsqueeze(0)
        output = self._pipeline({"waveform": waveform, "sample_rate": VAD_RATE}, **self._speaker_counts)
        return _turns_of(output.exclusive_speaker_diarization), _turns_of(output.speaker_diarization)


DIARIZERS: dict[str, type] = {"vad-embedding": VadEmbeddingDiarizer, "pyannote": PyannoteDiarizer}


def make_diarizer(name: str, **options: Any) -> Diarizer:
    """A diarizer by name; options the diarizer does not take are a ValueError (a CLI flag that does not apply)."""
    if name not in DIARIZERS:
        raise ValueError(f"unknown diarizer {name!r}; known: {', '.join(DIARIZERS)}")
    cls = DIARIZERS[name]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ValueError(f"diarizer {name!r}: {exc}") from None
    return cls(**options)
