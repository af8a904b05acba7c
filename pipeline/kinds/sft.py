"""Kind `sft`: a text dialogue spoken turn by turn, the user's turns voiced, for speech-in SFT."""

from __future__ import annotations

from .speech import SpeechKind


class SFT(SpeechKind):
    name = "sft"
    summary = "the user's turns of a text dialogue spoken one after another (mono); the assistant's stay text"
    voiced_roles = ("user",)
    task_categories = ("audio-text-to-text", "automatic-speech-recognition")
