"""The TTS backend interface: the one seam every speech model sits behind."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..records import Alignment
from ..speakers import Speaker


class EmptyAudio(RuntimeError):
    """The model produced no audio for a text: a render failure worth retrying with another seed."""


class TTSBackend(Protocol):
    """Text in, mono float32 audio in [-1, 1] at `sample_rate` out; nothing else is shared.

    Audio louder than full scale is scaled down (`pipeline.audio.peak_safe`), never clipped; the
    render stage sets the loudness.
    """

    name: str
    sample_rate: int  # the backend's native rate; the render stage resamples to the recipe's
    max_chars: int  # longest text one call accepts; the speakable stage splits to fit
    # True when the seed changes nothing (OpenJTalk): a render that fails a check is rejected at once,
    # since a re-render would give the same audio. A backend that does not say is taken as sampling.
    deterministic: bool

    def describe(self) -> dict[str, Any]:
        """Model name and version, recorded in every sample's render settings."""

    def synthesize(self, text: str, speaker: Speaker, seed: int) -> np.ndarray:
        """Render `text` in `speaker`'s voice; `seed` makes sampling backends reproducible."""


@runtime_checkable
class AligningBackend(TTSBackend, Protocol):
    """A backend that knows where each word lies in what it renders (OpenJTalk's durations).

    Duplex recipes need word timings; other backends are aligned afterwards by a CTC model.
    """

    def synthesize_aligned(self, text: str, speaker: Speaker, seed: int) -> tuple[np.ndarray, Alignment]:
        """`synthesize`, plus the words of `text` timed in the returned audio (seconds)."""
