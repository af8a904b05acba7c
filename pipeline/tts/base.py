"""The TTS backend interface: the one seam every speech model sits behind."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..speakers import Speaker


class BackendSetupError(RuntimeError):
    """A backend cannot start here (package, model folder or device missing): stop the run, say how to fix it."""


class EmptyAudio(RuntimeError):
    """The model produced no audio for a text: a render failure worth retrying with another seed."""


class TTSBackend(Protocol):
    """Text in, mono float32 audio in [-1, 1] at `sample_rate` out; nothing else is shared."""

    name: str
    sample_rate: int  # the backend's native rate; the render stage resamples to the recipe's
    max_chars: int  # longest text one call accepts; the speakable stage splits to fit

    def describe(self) -> dict[str, Any]:
        """Model name and version, recorded in every sample's render settings."""

    def synthesize(self, text: str, speaker: Speaker, seed: int) -> np.ndarray:
        """Render `text` in `speaker`'s voice; `seed` makes sampling backends reproducible."""
