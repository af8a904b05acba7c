"""What a recipe kind is: the part of the program that differs between SFT, DPO, duplex and captions.

A kind owns its chain (the `RowMaker` that turns one input row into tar members and its manifest
row) and says what the rest of koe needs to know of it: the roles it voices, the model stage whose
model may run on GPU actors, its recipe checks and preflight, the fields of its sample JSON, and
what the dataset card, the report and the exporters say of it. Everything outside `pipeline/kinds/`
asks the kind; nothing there compares a kind with a name.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, ClassVar

from ..records import ManifestRow, SourceItem

if TYPE_CHECKING:
    from ..recipe import ModelStageConfig, Recipe


class RowMaker:
    """Turns one `SourceItem` into tar members and its manifest row, holding what is loaded once per job.

    `make` raises `Rejected` for a row that cannot become a sample; any other exception is retried
    by the shard job and then recorded as failed.
    """

    def make(self, item: SourceItem, shard: str) -> tuple[dict[str, bytes], ManifestRow]:
        raise NotImplementedError


def written(
    item: SourceItem, shard: str, flac: bytes, document: bytes, seconds: float, render_seconds: float, **fields: Any
) -> tuple[dict[str, bytes], ManifestRow]:
    """A made sample's tar members and its manifest row: checksums, duration, generation and render time,
    plus what the kind records of it (`fields`)."""
    row = ManifestRow.of(
        item,
        shard,
        "written",
        duration=round(seconds, 6),
        flac_sha256=hashlib.sha256(flac).hexdigest(),
        json_sha256=hashlib.sha256(document).hexdigest(),
        generation=item.generation,
        render_seconds=round(render_seconds, 3),
        **fields,
    )
    return {"flac": flac, "json": document}, row


class Kind:
    """One recipe kind. Subclasses set the class attributes and implement `row_maker`."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line, for `koe describe` and the README
    voiced_roles: ClassVar[tuple[str, ...]] = ()  # roles whose turns are spoken; () for a kind that speaks none
    model_stage: ClassVar[str] = "tts"  # the recipe section of the model that may run on GPU actors
    model_record: ClassVar[str] = "render"  # the sample JSON field that records that model
    channels: ClassVar[int] = 1
    language: ClassVar[str] = "ja"  # of the published audio and text, for the Hub card
    made_from: ClassVar[str] = "Japanese text dialogue corpora"  # what its inputs are, for the card
    task_categories: ClassVar[tuple[str, ...]] = ()  # the Hub's task categories for the card
    json_fields: ClassVar[dict[str, str]] = {}  # what each `<key>.json` field holds, for the card and the README
    required_fields: ClassVar[tuple[str, ...]] = ()  # what `koe validate` requires in every sample's JSON
    settings_sections: ClassVar[tuple[str, ...]] = ()  # kind-specific recipe sections that shape the output
    listening: ClassVar[tuple[str, str]] = ("turn", "voice")  # the report plays one <unit> per <label>
    exports_dialogues: ClassVar[bool] = False  # `koe export` (moshi, J-Moshi layouts) reads its outputs

    @property
    def speaks(self) -> bool:
        """Whether the kind renders speech from text (and so needs a speaker bank and has turns to check)."""
        return bool(self.voiced_roles)

    def check_recipe(self, recipe: Recipe) -> None:
        """Raise `ValueError` for a recipe this kind cannot run; called once, when the recipe is validated."""

    def preflight(self, recipe: Recipe, in_process: bool) -> None:
        """Fail before a row is read: load what runs in this process, check what the chain will need."""

    def stage_config(self, recipe: Recipe) -> ModelStageConfig:
        return getattr(recipe, self.model_stage)

    def row_maker(self, recipe: Recipe, model: Any = None) -> RowMaker:
        """The chain for one shard job; `model` is the stage's model when it runs elsewhere (GPU actors)."""
        raise NotImplementedError

    def estimate_refusal(self) -> str | None:
        """Why `koe estimate` cannot forecast this kind, or None when it can."""
        return None if self.speaks else f"koe estimate forecasts rendered speech; kind {self.name!r} renders none"

    def describe_chain(self, recipe: Recipe) -> list[tuple[str, str]]:
        """The kind's steps as (stage, what it does), for `koe describe`."""
        raise NotImplementedError

    # What the published dataset's card and files say of the kind (see pipeline/card.py, pipeline/publish.py).

    def card_summary(self, recipe: dict[str, Any]) -> dict[str, Any]:
        """The summary fields the card's "how it was made" needs from a run's recipe (`run.json`)."""
        return {"qc": recipe.get("qc"), "duplex": None}

    def licenses(self, summary: dict[str, Any]) -> set[str]:
        """License names of what a published split holds (the card's `license`)."""
        return {source["license"] for source in summary["sources"]}

    def how_made(self, summary: dict[str, Any]) -> list[str]:
        """The card's first lines on how a split was made."""
        return []

    def card_section(self, summaries: list[dict[str, Any]]) -> list[str]:
        """A section of its own on the card for the splits of this kind (Markdown lines), or none."""
        return []

    def published_files(self, facts) -> dict[str, bytes]:
        """Extra files published beside a split's manifest (by name)."""
        return {}
