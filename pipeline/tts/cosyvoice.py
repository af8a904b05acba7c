"""CosyVoice2 / CosyVoice3 zero-shot voice cloning through the official FunAudioLLM/CosyVoice code.

CosyVoice is not on PyPI (the PyPI package `cosyvoice` is an unrelated fork) and pins its own torch,
so it runs in its own environment on the GPU nodes: a git checkout with its Matcha-TTS submodule on
`sys.path`, and the weights in a local model folder (see cluster/cosyvoice/README.md). Both backend
names use this module; the model folder decides the version, as CosyVoice's own `AutoModel` does
(`cosyvoice2.yaml` or `cosyvoice3.yaml` in it). Nothing is downloaded: a missing folder or package
stops the backend before its first call, with a message that says what to install and how.

Each bank speaker becomes a zero-shot prompt (its reference recording and transcript), registered
once per model with `add_zero_shot_spk`; every call then renders katakana (`text_frontend=False`:
CosyVoice's own frontend reads kanji with Chinese readings) in that voice, with `stream=False`.

Calls in flight at once (the recipe's `tts.concurrency`) share one model. What makes that safe, in
the upstream code (cosyvoice/cli/model.py, llm/llm.py, utils/common.py):
- each call keeps its state in the model's dicts under its own uuid, guarded by the model's lock;
- with `load_vllm`, every call's LLM requests go to one vLLM engine, stepped under the LLM's lock,
  which batches them: this is the path that makes `tts.concurrency` > 1 pay off. Without it, calls
  run separate PyTorch decode loops that share the GPU unbatched;
- with `load_trt`, the flow decoder has `trt_concurrent` TensorRT contexts; calls beyond that wait,
  so set `trt_concurrent` to `tts.concurrency`.
This module's own lock guards what is not safe to share: prompt registration (it writes the model's
speaker table, and must happen once) and seeding (torch's RNG is global to the process).

Seeds and reproducibility: the seed goes into Python's, NumPy's and torch's global generators
before each call, which is what the LLM's token sampling draws from. A render is reproducible with
one call in flight and without vLLM; concurrent calls draw from the same global generator in an
order nobody fixes, and vLLM samples inside its engine without a per-request seed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..audio import peak_safe, resample
from ..errors import BackendSetupError
from ..speakers import Speaker
from .base import EmptyAudio

NEEDS_REFERENCE_AUDIO = True
TEXT_INPUT = "kana"  # koe sends katakana readings; CosyVoice's frontend would read kanji the Chinese way

# The yaml that names a model folder's class, and what that class loads besides (cosyvoice/cli/cosyvoice.py).
CONFIG_FILES = {"CosyVoice2": "cosyvoice2.yaml", "CosyVoice3": "cosyvoice3.yaml"}
MODEL_FILES = {
    "CosyVoice2": ("llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v2.onnx", "CosyVoice-BlankEN"),
    "CosyVoice3": ("llm.pt", "flow.pt", "hift.pt", "campplus.onnx", "speech_tokenizer_v3.onnx", "CosyVoice-BlankEN"),
}
GPU_ONLY_OPTIONS = ("load_jit", "load_trt", "load_vllm", "fp16")

END_OF_PROMPT = "<|endofprompt|>"
# CosyVoice3's LLM asserts an instruction ending in <|endofprompt|> in the prompt; upstream's example uses this one.
DEFAULT_V3_INSTRUCTION = "You are a helpful assistant." + END_OF_PROMPT
MAX_PROMPT_SECONDS = 30.0  # the speech tokenizer refuses longer prompts (frontend._extract_speech_token)
MIN_PROMPT_RATE = 16000  # prompts are resampled down to 16 kHz; load_wav refuses lower rates
PROMPT_TENSOR_RATE = 16000  # the rate of the tensor the pre-December-2025 API took instead of a path

INSTALL_HINT = (
    "CosyVoice is not on PyPI (the PyPI package 'cosyvoice' is an unrelated fork): clone "
    "https://github.com/FunAudioLLM/CosyVoice with its submodules at the commit pinned in "
    "cluster/cosyvoice/install.sh, install its requirements, and put the checkout and its third_party/Matcha-TTS "
    "on PYTHONPATH. cluster/cosyvoice/install.sh does all of it on a node, and the actors find it through "
    "cluster/runtime_envs/cosyvoice.yaml (see cluster/cosyvoice/README.md)."
)
DOWNLOAD_HINT = (
    "download it on every GPU node (or onto storage they share), e.g. "
    "huggingface_hub.snapshot_download('FunAudioLLM/CosyVoice2-0.5B', local_dir=...) or "
    "'FunAudioLLM/Fun-CosyVoice3-0.5B-2512'; see cluster/cosyvoice/README.md"
)


class CosyVoiceSetupError(BackendSetupError):
    """CosyVoice cannot start on this node: model folder, package or GPU missing. Not worth retrying."""


class SpeakerPromptError(ValueError):
    """A bank speaker cannot be cloned: no usable reference recording or transcript."""


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_dir: str = Field(description="absolute path of the model folder on the GPU nodes; its yaml names the version")
    load_jit: bool = Field(default=False, description="CosyVoice2 only: TorchScript flow encoder")
    load_trt: bool = Field(default=False, description="TensorRT flow decoder, built into the model folder at first use")
    load_vllm: bool = Field(default=False, description="LLM in vLLM: batches concurrent calls (tts.concurrency > 1)")
    fp16: bool = Field(default=False, description="half precision for the flow and TensorRT parts")
    trt_concurrent: int = Field(default=1, ge=1, description="TensorRT contexts, flow passes at once: tts.concurrency")
    # CosyVoice's own frontend cuts text into pieces of at most 80 LLM tokens (frontend.text_normalize); with
    # text_frontend=False it cuts nothing, so koe cuts instead. 80 katakana are about 80 tokens or fewer (not
    # measured: the tokenizer ships with the weights) and about 11 s of speech at 7.5 morae/s, the length CosyVoice
    # is built for; longer single passes drop words and run away more often. Training kept texts of at most 200
    # tokens (examples/*/conf: token_max_length), hence the cap.
    max_chars: int = Field(default=80, gt=0, le=200, description="longest text per call, in characters (katakana)")
    speed: float = Field(default=1.0, ge=0.5, le=2.0, description="speaking-rate factor (CosyVoice stretches the mel)")

    @field_validator("model_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("must be an absolute path, valid on the GPU nodes where the actors load the model")
        return value


def model_class(model_dir: Path) -> str:
    """`CosyVoice2` or `CosyVoice3` from the folder's yaml, after checking every file the class loads is there."""
    if not model_dir.is_dir():
        raise CosyVoiceSetupError(f"CosyVoice model folder not found on this node: {model_dir}; {DOWNLOAD_HINT}")
    if (model_dir / "cosyvoice.yaml").is_file():
        raise CosyVoiceSetupError(f"{model_dir} holds a CosyVoice 1 model; koe supports CosyVoice2 and CosyVoice3")
    found = [name for name, config in CONFIG_FILES.items() if (model_dir / config).is_file()]
    if not found:
        raise CosyVoiceSetupError(
            f"{model_dir} is not a CosyVoice2/3 model folder (no cosyvoice2.yaml or cosyvoice3.yaml); {DOWNLOAD_HINT}"
        )
    name = found[0]  # AutoModel's order when both are present
    missing = [file for file in MODEL_FILES[name] if not (model_dir / file).exists()]
    if missing:
        raise CosyVoiceSetupError(f"{model_dir}: incomplete {name} download, missing {', '.join(missing)}")
    return name


def engine_options(options: Options, name: str) -> dict[str, Any]:
    """The constructor arguments of `name` (CosyVoice3 has no `load_jit`)."""
    engine = {
        "load_trt": options.load_trt,
        "load_vllm": options.load_vllm,
        "fp16": options.fp16,
        "trt_concurrent": options.trt_concurrent,
    }
    if name == "CosyVoice2":
        engine["load_jit"] = options.load_jit
    elif options.load_jit:
        raise CosyVoiceSetupError("load_jit exists only for CosyVoice2; CosyVoice3 has no TorchScript parts")
    return engine


def import_cosyvoice(name: str) -> ModuleType:
    """The official `cosyvoice.cli.cosyvoice`, or a message naming what is missing and how to install it."""
    for package, what in (
        ("cosyvoice", "the CosyVoice checkout"),
        ("matcha", "its Matcha-TTS submodule (third_party/Matcha-TTS)"),
    ):
        if importlib.util.find_spec(package) is None:
            raise CosyVoiceSetupError(
                f"Python package {package!r} not found: {what} is not on sys.path; {INSTALL_HINT}"
            )
    try:
        module = importlib.import_module("cosyvoice.cli.cosyvoice")
    except ImportError as exc:
        own = (exc.name or "").split(".")[0] in ("cosyvoice", "matcha")
        cause = "the checkout is incomplete" if own else "its requirements are not installed in this environment"
        raise CosyVoiceSetupError(
            f"CosyVoice is on sys.path but does not import ({exc}): {cause}. {INSTALL_HINT}"
        ) from exc
    if not hasattr(module, name):
        raise CosyVoiceSetupError(
            f"{module.__file__} has no {name}: not the official CosyVoice code, or a checkout too old. {INSTALL_HINT}"
        )
    return module


def require_cuda(engine: dict[str, Any]) -> None:
    """Without CUDA, CosyVoice silently turns GPU-only options off (CosyVoice3 then fails in vLLM): refuse instead."""
    import torch

    wanted = [option for option in GPU_ONLY_OPTIONS if engine.get(option)]
    if wanted and not torch.cuda.is_available():
        raise CosyVoiceSetupError(f"{', '.join(wanted)} need a CUDA GPU, and torch sees none in this process")


def register_vllm_model() -> None:
    """vLLM runs CosyVoice's LLM as a custom architecture, registered before loading (upstream vllm_example.py)."""
    try:
        from vllm import ModelRegistry
    except ImportError as exc:
        raise CosyVoiceSetupError(
            "load_vllm needs vllm in the CosyVoice environment (cluster/cosyvoice/install.sh with KOE_COSYVOICE_VLLM=1)"
        ) from exc
    from cosyvoice.vllm.cosyvoice2 import CosyVoice2ForCausalLM

    ModelRegistry.register_model("CosyVoice2ForCausalLM", CosyVoice2ForCausalLM)


def load_cosyvoice(name: str, model_dir: Path, engine: dict[str, Any]) -> Any:
    """The real model object: official code, checked GPU, engines built (takes minutes on first use)."""
    module = import_cosyvoice(name)
    require_cuda(engine)
    if engine["load_vllm"]:
        register_vllm_model()
    return getattr(module, name)(str(model_dir), **engine)


ModelLoader = Callable[[str, Path, dict[str, Any]], Any]


@dataclass(frozen=True)
class SpeakerPrompt:
    text: str  # the prompt text as CosyVoice receives it
    wav: Path


def split_transcript(transcript: str) -> tuple[str, str]:
    """(an instruction ending in <|endofprompt|>, or "", the spoken words) of a bank transcript."""
    instruction, marker, spoken = transcript.rpartition(END_OF_PROMPT)
    return instruction + marker, spoken.strip()


def prompt_text(transcript: str, name: str) -> str:
    """CosyVoice3 needs an instruction ending in <|endofprompt|> before the spoken words (a bank entry may
    bring its own); CosyVoice2 takes the spoken words alone."""
    instruction, spoken = split_transcript(transcript)
    if name == "CosyVoice2":
        return spoken
    return (instruction or DEFAULT_V3_INSTRUCTION) + spoken


def check_prompt_audio(speaker_id: str, path: Path) -> None:
    """CosyVoice asserts deep inside its frontend on these; say which speaker and file instead."""
    if not path.is_file():
        raise SpeakerPromptError(f"speaker {speaker_id}: reference audio not found on this node: {path}")
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as exc:
        raise SpeakerPromptError(f"speaker {speaker_id}: reference audio unreadable: {path} ({exc})") from None
    if info.frames == 0:
        raise SpeakerPromptError(f"speaker {speaker_id}: reference audio is empty: {path}")
    if info.duration > MAX_PROMPT_SECONDS:
        raise SpeakerPromptError(
            f"speaker {speaker_id}: reference audio is {info.duration:.1f} s, CosyVoice takes at most "
            f"{MAX_PROMPT_SECONDS:.0f} s: {path}"
        )
    if info.samplerate < MIN_PROMPT_RATE:
        raise SpeakerPromptError(
            f"speaker {speaker_id}: reference audio is {info.samplerate} Hz, CosyVoice needs at least "
            f"{MIN_PROMPT_RATE} Hz: {path}"
        )


def speaker_prompt(speaker: Speaker, name: str) -> SpeakerPrompt:
    """The checked prompt of a bank entry, or which of its fields keeps it from being cloned."""
    lacking = ["reference_audio"] if speaker.reference_audio is None else []
    lacking += [] if split_transcript(speaker.transcript or "")[1] else ["transcript"]
    if lacking:
        raise SpeakerPromptError(
            f"speaker {speaker.id} has no {' and no '.join(lacking)}: CosyVoice clones a voice from a recording "
            "and its exact transcript (see speakers/README.md)"
        )
    check_prompt_audio(speaker.id, speaker.reference_audio)
    return SpeakerPrompt(prompt_text(speaker.transcript, name), speaker.reference_audio)


def load_prompt_tensor(path: Path) -> Any:
    """Mono (1, T) float tensor at 16 kHz: what `add_zero_shot_spk` took before it took a path."""
    import torch

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(resample(audio.mean(axis=1), rate, PROMPT_TENSOR_RATE)).unsqueeze(0)


def register_prompt(model: Any, speaker_id: str, prompt: SpeakerPrompt) -> None:
    """`add_zero_shot_spk(prompt_text, prompt_wav, zero_shot_spk_id)`, or the older `prompt_speech_16k` form."""
    takes_tensor = "prompt_speech_16k" in inspect.signature(model.add_zero_shot_spk).parameters
    audio = load_prompt_tensor(prompt.wav) if takes_tensor else str(prompt.wav)
    model.add_zero_shot_spk(prompt.text, audio, speaker_id)


def seed_everything(seed: int) -> None:
    """The generators CosyVoice's `set_all_random_seed` seeds (torch's covers every GPU), for any int seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def join_chunks(chunks: Iterable[dict[str, Any]], what: str) -> np.ndarray:
    """Every `{'tts_speech': tensor(1, T)}` chunk of one call, in order, as mono float32 in [-1, 1]."""
    pieces = [chunk["tts_speech"].reshape(-1).float().numpy(force=True) for chunk in chunks]
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    if audio.size == 0:
        raise EmptyAudio(f"CosyVoice returned no audio for {what}")
    if not np.isfinite(audio).all():
        raise EmptyAudio(f"CosyVoice returned non-finite samples for {what}")
    return peak_safe(audio.astype(np.float32, copy=False))  # over full scale: scaled down whole, never clipped


class Backend:
    """One CosyVoice2/3 model, loaded once, shared by every call of this process (see the module docstring).

    It samples (`deterministic = False`): a render that fails a check is rendered again with a new seed.

    `model_loader` builds the model object; tests give a double here, everything around it is real.
    """

    deterministic = False

    def __init__(self, *, model_loader: ModelLoader = load_cosyvoice, **options: Any):
        self.options = Options.model_validate(options)
        model_dir = Path(self.options.model_dir)
        self.model_class = model_class(model_dir)
        self.name = self.model_class.lower()
        self.max_chars = self.options.max_chars
        self._model_dir_name = model_dir.name
        self._model = model_loader(self.model_class, model_dir, engine_options(self.options, self.model_class))
        self.sample_rate = int(self._model.sample_rate)
        self._lock = threading.Lock()
        self._registered: dict[str, tuple[Path | None, str | None]] = {}

    def describe(self) -> dict[str, Any]:
        return {"model": f"{self.model_class} ({self._model_dir_name})"}

    def synthesize(self, text: str, speaker: Speaker, seed: int) -> np.ndarray:
        """`text` in katakana. The call's generator is made right after seeding; it samples while it is read."""
        self._register(speaker)
        with self._lock:
            seed_everything(seed)
            chunks = self._model.inference_zero_shot(
                text,
                "",  # prompt text and audio come from the registered speaker
                "",
                zero_shot_spk_id=speaker.id,
                stream=False,
                speed=self.options.speed,
                text_frontend=False,
            )
        return join_chunks(chunks, f"speaker {speaker.id}, text {text[:40]!r}")

    def _register(self, speaker: Speaker) -> None:
        """Once per speaker id; again only if the bank entry behind the id changed."""
        source = (speaker.reference_audio, speaker.transcript)
        with self._lock:
            if self._registered.get(speaker.id) == source:
                return
            register_prompt(self._model, speaker.id, speaker_prompt(speaker, self.model_class))
            self._registered[speaker.id] = source
