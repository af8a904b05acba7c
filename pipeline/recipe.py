"""Recipes: YAML files validated once, at the edge, into typed config.

Everything downstream receives a `Recipe` and trusts it. Every problem (an unknown key, a wrong
type, a missing file) is reported in one `RecipeError` naming the file and the dotted key, before
any work starts. `--set a.b=value` overrides are applied to the YAML before validation, so they are
checked exactly like the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .corpora import ADAPTERS, CLIP_ADAPTERS, ColumnMapping
from .keys import MAX_SOURCE_CHARS, SOURCE_NAME_PATTERN
from .safe_yaml import parse_yaml, read_yaml_file

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class RecipeError(ValueError):
    """A recipe that cannot be run; the message lists every problem with file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_short_name(value: str) -> str:
    if not re.match(SOURCE_NAME_PATTERN, value):
        shown = value[:40] + ("..." if len(value) > 40 else "")
        raise ValueError(
            f"{shown!r} ({len(value)} characters) must be 1 to {MAX_SOURCE_CHARS} letters, digits or underscores: "
            "it starts every key and file name"
        )
    return value


ShortName = Annotated[str, AfterValidator(_check_short_name)]


def _resolve_path(value: str, info: ValidationInfo) -> Path:
    base = Path((info.context or {}).get("base_dir", "."))
    return (base / value).resolve()


class SourceConfig(_Strict):
    """One input corpus: a local file/folder/glob, or a Hub dataset id at a pinned revision."""

    name: ShortName = Field(description="short name; the prefix of every key")
    dataset: str = Field(description="local path (relative to the recipe) or Hub dataset id")
    adapter: str = Field(description="which corpus schema the rows follow")
    license: str
    revision: str | None = Field(default=None, description="Hub commit or tag; required for Hub ids")
    split: str = "train"
    data_files: list[str] | None = Field(default=None, description="Hub only: files within the repo")
    columns: ColumnMapping | None = Field(default=None, description="adapter 'generic': where the turns are")
    _local_path: Path | None = PrivateAttr(default=None)

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, value: str) -> str:
        known = [*ADAPTERS, *CLIP_ADAPTERS]
        if value not in known:
            raise ValueError(f"unknown adapter {value!r}; known: {', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _columns_for_generic(self) -> SourceConfig:
        if (self.adapter == "generic") != (self.columns is not None):
            raise ValueError("'columns' goes with adapter 'generic', and only with it")
        return self

    @property
    def mapping(self) -> ColumnMapping | None:
        """Where this source keeps its turns: the recipe's own columns or the adapter's preset (none for clips)."""
        return self.columns or ADAPTERS.get(self.adapter)

    @model_validator(mode="after")
    def _locate(self, info: ValidationInfo) -> SourceConfig:
        local = _resolve_path(self.dataset, info)
        if local.exists():
            self._local_path = local
            return self
        if HUB_ID.match(self.dataset) and not self.dataset.startswith((".", "/")):
            if not self.revision:
                raise ValueError(f"dataset {self.dataset!r} is a Hub id: pin it with 'revision' (a commit sha or tag)")
            return self
        raise ValueError(f"dataset file not found: {local}")

    @property
    def local_path(self) -> Path | None:
        """The resolved local copy, or None for a Hub dataset."""
        return self._local_path

    def content_digest(self) -> str | None:
        """The bytes of a local corpus (its .jsonl/.parquet files), so that an edited file is a new recipe
        whose shards are redone; None for a Hub corpus (its pinned revision says it) or a sound collection."""
        from .corpora import CLIP_ADAPTERS, local_files
        from .keys import files_digest

        if self.local_path is None or self.adapter in CLIP_ADAPTERS:
            return None
        return files_digest([Path(f) for f in local_files(self.local_path)])


class SpeakersConfig(_Strict):
    bank: Path = Field(description="speaker bank YAML (relative to the recipe)")

    @field_validator("bank", mode="before")
    @classmethod
    def _bank_exists(cls, value: Any, info: ValidationInfo) -> Path:
        path = _resolve_path(str(value), info)
        if not path.is_file():
            raise ValueError(f"speaker bank not found: {path}")
        return path


class TextConfig(_Strict):
    max_turn_chars: int = Field(default=600, gt=0, description="longer spoken turns are rejected")
    max_sample_seconds: float = Field(default=120.0, gt=0, description="longer samples are rejected")
    max_stage_seconds: float = Field(
        default=5.0, gt=0, description="a row whose text stage took longer is rejected (it is linear: a guard)"
    )


class ModelStageConfig(_Strict):
    """A model stage (TTS or captioner): which backend, its options, and where it runs on Ray."""

    backend: str
    options: dict[str, Any] = Field(default_factory=dict, description="backend-specific settings")
    num_gpus: float = Field(default=0, ge=0, description="> 0: the model runs in a pool of Ray GPU actors")
    actors: int | None = Field(default=None, gt=0, description="actors in the pool; default: cluster GPUs / num_gpus")
    cpus_per_actor: float = Field(default=1.0, ge=0, description="CPUs each GPU actor holds")
    accelerator_type: str | None = Field(default=None, description="Ray accelerator type, e.g. H200")
    concurrency: int = Field(default=1, gt=0, description="requests in flight per actor, sharing its model")
    runtime_env: dict[str, Any] | None = Field(
        default=None, description="Ray runtime_env of the actors (a mapping, or a YAML file relative to the recipe)"
    )

    @field_validator("runtime_env", mode="before")
    @classmethod
    def _runtime_env_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        path = _resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"runtime_env file not found: {path}")
        loaded = read_yaml_file(path, "runtime_env")
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a runtime_env is a YAML mapping")
        return loaded


class TTSConfig(ModelStageConfig):
    backend: str = "openjtalk"
    sample_rate: int = Field(default=24000, ge=8000, le=48000)

    @model_validator(mode="after")
    def _known_backend(self) -> TTSConfig:
        from .tts import backend_options

        object.__setattr__(self, "options", backend_options(self.backend, self.options))
        return self


class CaptionerConfig(ModelStageConfig):
    """Kind `captions`: the audio captioner (Qwen3-Omni-Captioner through vLLM or a served endpoint)."""

    backend: str = "openai"
    max_attempts: int = Field(default=3, ge=1, description="captions of a window before the clip is rejected")
    window_seconds: float = Field(default=30.0, gt=0, le=30.0, description="longer clips are captioned per window")

    @model_validator(mode="after")
    def _known_backend(self) -> CaptionerConfig:
        from .captioners import captioner_options

        object.__setattr__(self, "options", captioner_options(self.backend, self.options))
        return self


class RenderConfig(_Strict):
    turn_gap_seconds: float = Field(default=0.5, ge=0, description="silence between spoken turns")
    max_attempts: int = Field(default=3, ge=1, description="renders of a turn, each with a new seed, before rejecting")
    duration_ratio: tuple[float, float] = Field(
        default=(0.4, 2.5), description="accepted audio length / length expected from the reading (truncation, runaway)"
    )
    loudness_lufs: float | None = Field(
        default=-23.0,
        le=-6,
        ge=-50,
        description=(
            "integrated loudness (ITU-R BS.1770-4) every kept utterance is brought to, gain limited so the peak "
            "stays at -1 dBFS; null leaves the backend's level. -23 LUFS (EBU R 128): TTS speech peaks 17-18 dB "
            "over its loudness, so at -23 the limit never bites and every turn lands on the target, with headroom "
            "left for resampling and for the duplex user channel's augmentation gain"
        ),
    )

    @field_validator("duration_ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] < 1 < value[1]:
            raise ValueError("needs 0 < low < 1 < high, e.g. [0.4, 2.5]")
        return value


def _ordered_range(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"a range is [low, high], got {list(value)}")
    return value


class GapConfig(_Strict):
    """Silence between one speaker's end and the other's start, drawn per turn."""

    distribution: Literal["lognormal", "normal", "uniform"] = "lognormal"
    mean: float = Field(default=0.25, gt=0, description="seconds (uniform: ignored)")
    sd: float = Field(default=0.15, ge=0, description="seconds (uniform: ignored)")
    min: float = Field(default=0.05, ge=0)
    max: float = Field(default=1.5, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> GapConfig:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class OverlapConfig(_Strict):
    share: float = Field(default=0.2, ge=0, le=1, description="share of turns that start before the other has ended")
    seconds: tuple[float, float] = Field(default=(0.4, 1.2), description="how long before the other's end")
    _ordered = field_validator("seconds")(_ordered_range)


class InterruptionConfig(_Strict):
    """Turns that cut the other off: the other stops at a phrase boundary soon after, as a yielding speaker does."""

    share: float = Field(
        default=0.05, ge=0, le=1, description="share of the turns that start while the other is mid-turn"
    )
    overlap_seconds: tuple[float, float] = Field(
        default=(0.1, 0.4), description="how long the interrupted speaker goes on over the interrupter"
    )
    _ordered = field_validator("overlap_seconds")(_ordered_range)


class AizuchiConfig(_Strict):
    """Backchannels on the listener's channel, at phrase boundaries of the speaker's longer turns."""

    rate_per_minute: float = Field(default=12.0, ge=0, description="expected aizuchi per minute of the other's speech")
    min_turn_seconds: float = Field(default=1.5, ge=0, description="shorter turns get none")
    phrases: list[str] = Field(
        default_factory=lambda: ["はい", "ええ", "そうですね", "なるほど", "そうなんですね"],
        min_length=1,
        description="said to a speaker who speaks politely (です, ます)",
    )
    casual_phrases: list[str] = Field(
        default_factory=lambda: ["うん", "へえ", "そうなんだ", "なるほどね", "そっか", "うんうん"],
        min_length=1,
        description="said to a speaker who speaks casually",
    )
    min_spacing_seconds: float = Field(default=1.0, ge=0, description="between two aizuchi of one turn")
    delay_seconds: tuple[float, float] = Field(default=(0.0, 0.15), description="after the phrase boundary")
    after_particles: bool = Field(
        default=True,
        description="also after the other's phrase-final particles (ね, よ, は, が, ...), not only at their pauses",
    )
    _ordered = field_validator("delay_seconds")(_ordered_range)


class IPUConfig(_Strict):
    """Inter-pausal units: people pause inside a long turn; the TTS barely does."""

    split_share: float = Field(
        default=0.7, ge=0, le=1, description="share of the phrase boundaries (particle ends) where a pause is put"
    )
    pause_seconds: tuple[float, float] = Field(default=(0.2, 0.45), description="a pause put there")
    min_unit_seconds: float = Field(default=0.6, ge=0, description="no unit is made shorter than this")
    _ordered = field_validator("pause_seconds")(_ordered_range)


class AugmentConfig(_Strict):
    """User-channel augmentation as Moshi did it (gain, noise, echo of the assistant); off by default."""

    enabled: bool = False
    gain_db: tuple[float, float] = (-24.0, 15.0)
    noise_dir: Path | None = Field(default=None, description="folder of noise recordings (relative to the recipe)")
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    echo_gain: tuple[float, float] = (0.0, 0.2)
    echo_delay_seconds: tuple[float, float] = (0.1, 0.5)
    _ordered = field_validator("gain_db", "noise_snr_db", "echo_gain", "echo_delay_seconds")(_ordered_range)

    @field_validator("noise_dir", mode="before")
    @classmethod
    def _noise_dir_exists(cls, value: Any, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve_path(str(value), info)
        if not path.is_dir():
            raise ValueError(f"noise folder not found: {path}")
        return path


class DuplexConfig(_Strict):
    """Kind `duplex`: both sides spoken, composed on one timeline, assistant left, user right."""

    gap: GapConfig = GapConfig()
    overlap: OverlapConfig = OverlapConfig()
    interruption: InterruptionConfig = InterruptionConfig()
    aizuchi: AizuchiConfig = AizuchiConfig()
    ipu: IPUConfig = IPUConfig()
    augment: AugmentConfig = AugmentConfig()
    ctc_model_dir: Path | None = Field(
        default=None, description="Japanese CTC model folder, to align words for backends that do not time them"
    )
    assistant_speaker: str | None = Field(
        default=None,
        description="one bank voice for the assistant in every sample (Moshi keeps one); the users' are still drawn",
    )
    check_channels: bool = Field(default=True, description="silero-vad on each channel against the timeline")
    vad_tolerance_seconds: float = Field(default=0.25, ge=0, description="speech allowed outside a planned interval")

    @field_validator("ctc_model_dir", mode="before")
    @classmethod
    def _relative_to_recipe(cls, value: Any, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve_path(str(value), info)


class QCConfig(_Strict):
    """The quality gate on every rendered utterance (pipeline/qc.py); `koe qc DIR` shows the scores' spread."""

    enabled: bool = True
    edge_seconds: float = Field(default=0.1, ge=0, description="silence kept before and after the speech")
    max_pause_seconds: float = Field(default=1.5, gt=0, description="longest silence inside an utterance")
    max_clipped_share: float = Field(
        default=0.001,
        ge=0,
        le=1,
        description="of samples on flat tops (within 0.1% of the peak): clipped, at any level",
    )
    max_dc_offset: float = Field(default=0.05, ge=0)
    rms_dbfs: tuple[float, float] = Field(
        default=(-40.0, -6.0),
        description="accepted level (RMS, dBFS); turns leveled to render.loudness_lufs -23 measure -26..-21",
    )
    morae_per_second: tuple[float, float] = Field(default=(4.0, 14.0), description="accepted pace of the speech")
    dnsmos: bool = True
    dnsmos_full: bool = Field(default=False, description="also SIG/BAK/OVRL (about 10x the CPU of P.808)")
    min_dnsmos: float = Field(default=2.5, ge=1, le=5, description="lowest DNSMOS P.808 MOS kept")
    speaker_similarity: bool = True
    min_speaker_similarity: float = Field(default=0.75, ge=-1, le=1, description="cosine to the speaker's reference")
    asr_model_dir: str | None = Field(default=None, description="local ASR model folder: the optional round trip")
    asr_device: str = Field(default="cuda", description="where the recognizer runs")
    max_cer: float = Field(default=0.15, ge=0, description="character error rate of the round trip, on readings")
    min_seconds_for_model_checks: float = Field(
        default=1.0,
        ge=0,
        description=(
            "speech shorter than this is measured but not judged by DNSMOS and the speaker check (seconds heard) "
            "nor by pace (seconds the reading predicts); in it, if silero-vad hears nothing, the audible sound counts "
            "as speech. 1 s: on the embedded bank, correct renders with under 1 s of speech fell below the DNSMOS or "
            "speaker threshold (one-word turns: most of them), none with more (108 turns of 1-1.5 s)"
        ),
    )
    _ordered = field_validator("rms_dbfs", "morae_per_second")(_ordered_range)


class OutputConfig(_Strict):
    rows_per_shard: int = Field(default=1000, gt=0, description="input rows per shard (the unit of completion)")


class ExecutionConfig(_Strict):
    cpus_per_task: float = Field(default=1.0, gt=0)
    max_tasks_in_flight: int | None = Field(
        default=None, gt=0, description="shard tasks at once; default: enough to fill the GPU actors, else 2 per CPU"
    )
    items_in_flight: int = Field(
        default=1, gt=0, description="rows a shard task renders at once (raise it when synthesis runs on GPU actors)"
    )
    row_requests_in_flight: int = Field(
        default=1,
        gt=0,
        description=(
            "synthesis requests one row (SFT, DPO) sends at once: its turns, and the pieces a long turn is split "
            "into. With synthesis on GPU actors a row's requests then wait at the server together, not one after "
            "another, which shortens each row and the end of each shard; the audio is the same. Requests a task "
            "keeps in flight: items_in_flight x row_requests_in_flight at most"
        ),
    )
    row_attempts: int = Field(
        default=3, gt=0, description="tries of a row that raises (not a rejected one) before it is recorded failed"
    )
    shard_task_attempts: int = Field(
        default=3, gt=0, description="Ray: tries of a shard task whose worker died (its finished rows are redone)"
    )
    model_call_retries: int = Field(
        default=3, ge=0, description="Ray: retries of a call to a GPU actor that died, on the restarted actor"
    )

    @model_validator(mode="before")
    @classmethod
    def _split_max_attempts(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_attempts" in data:
            raise ValueError(
                "execution.max_attempts meant three retries and is split: row_attempts, shard_task_attempts "
                "and model_call_retries"
            )
        return data

    # Timeouts of the Ray run. Here rather than in the model stage's section: they say where and how a run
    # waits, not what it makes, so they stay out of the recipe's fingerprint and can change on a resume.
    model_call_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "a request to a GPU actor (TTS or captioner) unanswered this long is given up: the row is tried again "
            "on another actor and the silent actor is restarted. Keep it above the longest call plus its wait in "
            "the actor's queue (and above a backend's own request timeout)"
        ),
    )
    model_load_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "how long the GPU actors may take to start (placement, runtime_env set-up, model load); a run whose "
            "actors have not one loaded by then stops, and a restarted actor that has not reloaded is restarted again"
        ),
    )
    connect_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="--ray-address: how long the cluster's address may take to accept a connection",
    )


class Recipe(_Strict):
    name: ShortName
    kind: str = Field(default="sft", description="what the recipe makes: one of pipeline/kinds/ (sft, dpo, ...)")
    seed: int = 0
    sources: list[SourceConfig] = Field(min_length=1)
    speakers: SpeakersConfig | None = None
    text: TextConfig = TextConfig()
    tts: TTSConfig = TTSConfig()
    render: RenderConfig = RenderConfig()
    duplex: DuplexConfig = DuplexConfig()
    captioner: CaptionerConfig | None = None
    qc: QCConfig = QCConfig()
    output: OutputConfig = OutputConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from .kinds import kind_named

        kind_named(value)
        return value

    @model_validator(mode="after")
    def _the_kind_can_run_it(self) -> Recipe:
        from .kinds import kind_named

        kind_named(self.kind).check_recipe(self)
        return self

    @model_validator(mode="after")
    def _loudness_target_passes_the_level_check(self) -> Recipe:
        target, (low, high) = self.render.loudness_lufs, self.qc.rms_dbfs
        if self.qc.enabled and target is not None and not low <= target <= high:
            raise ValueError(
                f"render.loudness_lufs {target} lies outside qc.rms_dbfs [{low}, {high}]: leveled turns would fail it"
            )
        return self

    @property
    def model_stage(self) -> ModelStageConfig:
        """The stage whose model may run on GPU actors (the kind's: the TTS, or the captioner)."""
        from .kinds import kind_named

        return kind_named(self.kind).stage_config(self)

    @model_validator(mode="after")
    def _unique_source_names(self) -> Recipe:
        names = [s.name for s in self.sources]
        if len(names) != len(set(names)):
            raise ValueError(f"source names must be unique, got {names}")
        return self

    def fingerprint(self) -> str:
        """Digest of everything that shapes the output, not of where it runs: the bank counts by its
        content (recordings included), not its path, which differs under `ray job submit --working-dir`."""
        from .kinds import KINDS, kind_named
        from .speakers import bank_digest

        # the sections of other kinds do not shape this output (so older outputs keep resuming)
        of_kinds = {section for kind in KINDS.values() for section in kind.settings_sections}
        unused = {"execution"} | (of_kinds - set(kind_named(self.kind).settings_sections))
        if self.captioner is None:
            unused.add("captioner")
        content = self.model_dump(mode="json", exclude=unused)
        if self.speakers:
            content["speakers"]["bank"] = bank_digest(self.speakers.bank)
        for source, dumped in zip(self.sources, content["sources"], strict=True):
            dumped["content"] = source.content_digest()
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise RecipeError(f"--set {_shown(text)}: expected KEY=VALUE, e.g. tts.sample_rate=16000")
    dotted, raw = text.split("=", 1)
    try:
        value = parse_yaml(raw, f"--set {_shown(text)}") if raw.strip() else ""
    except ValueError as exc:
        raise RecipeError(str(exc).splitlines()[0]) from None
    return dotted.strip().split("."), value


def _shown(text: str, limit: int = 80) -> str:
    """A `--set` argument as messages quote it: a huge value is cut, so the error stays one line."""
    return repr(text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)")


def apply_overrides(data: dict[str, Any], overrides: list[str], origin: str) -> dict[str, Any]:
    """Set `a.b.0.c=value` paths in the raw recipe; list items are addressed by index."""
    for text in overrides:
        path, value = _parse_override(text)
        node: Any = data
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            where = ".".join(path[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise RecipeError(f"{origin}: --set {_shown(text)}: no list item {where}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise RecipeError(f"{origin}: --set {_shown(text)}: {where} is not a mapping")
    return data


def _apply_profile(data: dict[str, Any], overrides: list[str], origin: str) -> dict[str, Any]:
    """`profile: NAME` applies the recipe's `profiles.NAME` (dotted keys), then `--set` again on top.

    A profile is how one recipe serves both the cluster (Hub corpus, CosyVoice) and a laptop (the
    bundled sample rows, the embedded backend) with a single `--set profile=embedded`.
    """
    profiles = data.pop("profiles", None) or {}
    name = data.pop("profile", None)
    if name is None:
        return data
    if not isinstance(profiles, dict) or name not in profiles:
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) else "none"
        raise RecipeError(f"{origin}: profile {name!r} is not defined in 'profiles' (defined: {known or 'none'})")
    settings = profiles[name]
    if not isinstance(settings, dict):
        raise RecipeError(f"{origin}: profiles.{name} must map dotted keys to values")
    as_overrides = [f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in settings.items()]
    explicit = [o for o in overrides if o.split("=", 1)[0].strip() != "profile"]
    return apply_overrides(apply_overrides(data, as_overrides, f"{origin} (profile {name})"), explicit, origin)


def _format_errors(origin: str, error: ValidationError) -> str:
    lines = [f"{origin}: invalid recipe ({error.error_count()} problem(s)):"]
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"  - {key}: {message}")
    return "\n".join(lines)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    origin = str(path)
    try:
        data = read_yaml_file(path, "recipe")
    except ValueError as exc:
        raise RecipeError(str(exc)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe is a YAML mapping at the top level")
    data = _apply_profile(apply_overrides(data, overrides or [], origin), overrides or [], origin)
    try:
        return Recipe.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise RecipeError(_format_errors(origin, exc)) from None
