"""Kind `dpo`: as `sft`, and the sample keeps the row's chosen and rejected replies as text."""

from __future__ import annotations

from typing import Any

from ..corpora import ParsedRow
from ..recipe import Recipe
from .speech import SpeechKind


class DPO(SpeechKind):
    name = "dpo"
    summary = "the user's turns spoken (mono), with the row's chosen and rejected replies kept as text"
    voiced_roles = ("user",)
    task_categories = ("audio-text-to-text", "automatic-speech-recognition")
    json_fields = SpeechKind.json_fields | {
        "chosen": "the preferred reply, as text",
        "rejected": "the dispreferred reply, as text",
    }

    def text_fields(self, parsed: ParsedRow) -> dict[str, Any]:
        return {"chosen": parsed.chosen, "rejected": parsed.rejected}

    def check_recipe(self, recipe: Recipe) -> None:
        lacking = [s.name for s in recipe.sources if not (s.mapping.chosen and s.mapping.rejected)]
        if lacking:
            raise ValueError(f"kind 'dpo' needs chosen and rejected replies; sources {lacking} have none")
        super().check_recipe(recipe)
