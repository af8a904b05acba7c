"""The cosyvoice2/cosyvoice3 backends around a stand-in for the CosyVoice model object.

The model needs its weights and a GPU, so `CosyVoiceModelDouble` takes its place and only its
place: options, the early failures (with the real loader), prompt checks and registration, locking,
seeding, chunk joining and the output contract all run for real.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.audio import PEAK_CEILING
from pipeline.keys import attempt_seed
from pipeline.recipe import RenderConfig
from pipeline.records import Rejected, Turn
from pipeline.render import render_turn
from pipeline.tts.base import EmptyAudio
from pipeline.tts.cosyvoice import (
    CONFIG_FILES,
    DEFAULT_V3_INSTRUCTION,
    END_OF_PROMPT,
    MODEL_FILES,
    Backend,
    CosyVoiceSetupError,
    Options,
    SpeakerPromptError,
    require_cuda,
)
from tests.conftest import REFERENCE_TRANSCRIPT, reference_speaker, write_tone

TRANSCRIPT = REFERENCE_TRANSCRIPT


class CosyVoiceModelDouble:
    """Test double for the CosyVoice2/CosyVoice3 model object (cosyvoice.cli.cosyvoice), nothing more.

    It has the real object's surface as the backend uses it: `sample_rate`; `add_zero_shot_spk(prompt_text,
    prompt_wav, zero_shot_spk_id)` keeping the prompt per id; and `inference_zero_shot(...)`, a generator of
    `{'tts_speech': tensor(1, T)}` chunks that fails like the real one for an unregistered id and, as CosyVoice3,
    for a prompt without <|endofprompt|>. Its samples are drawn from torch's global RNG, as the real LLM's are,
    so seeding shows in the output. It records every call.
    """

    def __init__(self, model_class: str, chunks=3, chunk_samples=2400, amplitude=0.5, registration_seconds=0.0):
        self.model_class = model_class
        self.sample_rate = 24000
        self.chunks, self.chunk_samples, self.amplitude = chunks, chunk_samples, amplitude
        self.registration_seconds = registration_seconds  # a slow registration widens any race
        self.spk2info: dict[str, dict] = {}
        self.registrations: list[str] = []
        self.calls: list[dict] = []

    def add_zero_shot_spk(self, prompt_text, prompt_wav, zero_shot_spk_id):
        time.sleep(self.registration_seconds)
        self.spk2info[zero_shot_spk_id] = {"prompt_text": prompt_text, "prompt_wav": prompt_wav}
        self.registrations.append(zero_shot_spk_id)
        return True

    def inference_zero_shot(
        self, tts_text, prompt_text, prompt_wav, zero_shot_spk_id="", stream=False, speed=1.0, text_frontend=True
    ):
        prompt = self.spk2info[zero_shot_spk_id]
        if self.model_class == "CosyVoice3":
            assert END_OF_PROMPT in prompt["prompt_text"], "<|endofprompt|> not detected in CosyVoice3 prompt_text"
        call = dict(text=tts_text, spk=zero_shot_spk_id, stream=stream, speed=speed, text_frontend=text_frontend)
        self.calls.append({**call, "torch_seed": torch.initial_seed()})
        for _ in range(self.chunks):
            yield {"tts_speech": self.amplitude * (2 * torch.rand(1, self.chunk_samples) - 1)}


class OldApiModelDouble(CosyVoiceModelDouble):
    """The same double with the API before December 2025, which took a 16 kHz tensor instead of a path."""

    def add_zero_shot_spk(self, prompt_text, prompt_speech_16k, zero_shot_spk_id):
        return super().add_zero_shot_spk(prompt_text, prompt_speech_16k, zero_shot_spk_id)


def make_model_dir(root: Path, model_class: str, skip: str | None = None) -> Path:
    """A folder with every file `model_class` loads (empty: only their presence is checked before loading)."""
    folder = root / {"CosyVoice2": "CosyVoice2-0.5B", "CosyVoice3": "Fun-CosyVoice3-0.5B"}[model_class]
    folder.mkdir()
    for name in (CONFIG_FILES[model_class], *MODEL_FILES[model_class]):
        if name == skip:
            continue
        if name == "CosyVoice-BlankEN":
            (folder / name).mkdir()
        else:
            (folder / name).touch()
    return folder


@pytest.fixture
def voices(tmp_path):
    return [reference_speaker(f"spk0{i}", write_tone(tmp_path / f"spk0{i}.wav", 5.0)) for i in (1, 2)]


@pytest.fixture
def build(tmp_path):
    """`build(model_class, **options)` → (backend, double): a real Backend around a model double."""

    def make(model_class="CosyVoice2", double_class=CosyVoiceModelDouble, double=None, **options):
        model_dir = make_model_dir(tmp_path, model_class)
        double = double or double_class(model_class)
        loads = []

        def loader(name, folder, engine):
            loads.append((name, folder, engine))
            return double

        backend = Backend(model_dir=str(model_dir), model_loader=loader, **options)
        assert len(loads) == 1 and loads[0][:2] == (model_class, model_dir)
        return backend, double

    return make


@pytest.fixture
def clean_imports(monkeypatch):
    """Fake or hidden `cosyvoice`/`matcha` packages for one test, none of them left behind."""
    before = set(sys.modules)
    yield monkeypatch
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("cosyvoice", "matcha"):
            del sys.modules[name]


def write_package(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# Options


def test_options_defaults_and_validation():
    options = Options(model_dir="/models/CosyVoice2-0.5B").model_dump()
    assert options == {
        "model_dir": "/models/CosyVoice2-0.5B",
        "load_jit": False,
        "load_trt": False,
        "load_vllm": False,
        "fp16": False,
        "trt_concurrent": 1,
        "max_chars": 80,
        "speed": 1.0,
    }
    for bad in ({}, {"model_dir": "models/x"}, {"model_dir": "/m", "batch": 4}, {"model_dir": "/m", "speed": 3}):
        with pytest.raises(ValidationError):
            Options.model_validate(bad)
    with pytest.raises(ValidationError, match="absolute path"):
        Options(model_dir="pretrained_models/CosyVoice2-0.5B")
    assert json.loads(json.dumps(options)) == options  # the registry caches backends by their options' JSON


# Early failures, before any model is loaded


def test_missing_model_dir_fails_before_loading(tmp_path):
    loads = []
    with pytest.raises(CosyVoiceSetupError, match="model folder not found") as error:
        Backend(model_dir=str(tmp_path / "absent"), model_loader=lambda *args: loads.append(args))
    assert str(tmp_path / "absent") in str(error.value) and "snapshot_download" in str(error.value)
    assert loads == []


def test_model_dir_without_config_or_with_missing_files(tmp_path):
    with pytest.raises(CosyVoiceSetupError, match="not a CosyVoice2/3 model folder"):
        Backend(model_dir=str(tmp_path), model_loader=lambda *args: None)
    incomplete = make_model_dir(tmp_path, "CosyVoice3", skip="speech_tokenizer_v3.onnx")
    with pytest.raises(CosyVoiceSetupError, match="incomplete CosyVoice3 download, missing speech_tokenizer_v3.onnx"):
        Backend(model_dir=str(incomplete), model_loader=lambda *args: None)


def test_missing_cosyvoice_package_says_what_to_install(tmp_path, clean_imports):
    clean_imports.setitem(sys.modules, "cosyvoice", None)  # not importable, whatever this machine has
    with pytest.raises(CosyVoiceSetupError) as error:
        Backend(model_dir=str(make_model_dir(tmp_path, "CosyVoice2")))
    message = str(error.value)
    assert "'cosyvoice' not found" in message
    for hint in ("not on PyPI", "github.com/FunAudioLLM/CosyVoice", "PYTHONPATH", "cluster/cosyvoice/install.sh"):
        assert hint in message


def test_missing_matcha_submodule_is_named(tmp_path, clean_imports):
    clean_imports.syspath_prepend(str(write_package(tmp_path / "checkout", {"cosyvoice/__init__.py": ""})))
    clean_imports.setitem(sys.modules, "matcha", None)
    with pytest.raises(CosyVoiceSetupError, match=r"'matcha' not found: its Matcha-TTS submodule \(third_party"):
        Backend(model_dir=str(make_model_dir(tmp_path, "CosyVoice2")))


@pytest.mark.parametrize(
    ("cli_module", "problem"),
    [
        (None, r"does not import \(No module named 'cosyvoice.cli'\): the checkout is incomplete"),
        ("from hyperpyyaml import load_hyperpyyaml\n", "hyperpyyaml.*: its requirements are not installed"),
        ("class CosyVoice2:\n    pass\n", "has no CosyVoice3: not the official CosyVoice code"),  # a fork, or too old
    ],
)
def test_broken_or_unofficial_cosyvoice_package(tmp_path, clean_imports, cli_module, problem):
    files = {"cosyvoice/__init__.py": "", "matcha/__init__.py": ""}
    if cli_module:
        files.update({"cosyvoice/cli/__init__.py": "", "cosyvoice/cli/cosyvoice.py": cli_module})
    clean_imports.syspath_prepend(str(write_package(tmp_path / "checkout", files)))
    clean_imports.setitem(sys.modules, "hyperpyyaml", None)
    with pytest.raises(CosyVoiceSetupError, match=problem) as error:
        Backend(model_dir=str(make_model_dir(tmp_path, "CosyVoice3")))
    assert "cluster/cosyvoice/install.sh" in str(error.value)


def test_gpu_only_options_are_refused_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(CosyVoiceSetupError, match="load_vllm, fp16 need a CUDA GPU"):
        require_cuda({"load_trt": False, "load_vllm": True, "fp16": True, "trt_concurrent": 1})
    require_cuda({"load_trt": False, "load_vllm": False, "fp16": False, "trt_concurrent": 1})


def test_load_jit_exists_only_for_cosyvoice2(build):
    backend, _ = build("CosyVoice2", load_jit=True)
    assert backend.name == "cosyvoice2"
    with pytest.raises(CosyVoiceSetupError, match="load_jit exists only for CosyVoice2"):
        build("CosyVoice3", load_jit=True)


# The backend contract


@pytest.mark.parametrize("model_class", ["CosyVoice2", "CosyVoice3"])
def test_version_comes_from_the_model_folder(build, model_class):
    backend, _ = build(model_class, max_chars=60)
    assert backend.name == model_class.lower()
    assert backend.sample_rate == 24000 and backend.max_chars == 60
    described = backend.describe()
    assert described["model"].startswith(model_class) and "/" not in str(described)


def test_engine_options_reach_the_model_constructor(tmp_path):
    engines = []
    model_dir = make_model_dir(tmp_path, "CosyVoice2")
    Backend(
        model_dir=str(model_dir),
        load_trt=True,
        trt_concurrent=4,
        model_loader=lambda name, folder, engine: engines.append(engine) or CosyVoiceModelDouble(name),
    )
    assert engines == [{"load_jit": False, "load_trt": True, "load_vllm": False, "fp16": False, "trt_concurrent": 4}]


def test_synthesis_calls_zero_shot_with_katakana_settings(build, voices):
    backend, double = build(speed=1.1)
    audio = backend.synthesize("コンニチワ。", voices[0], seed=7)
    assert double.calls == [
        dict(text="コンニチワ。", spk="spk01", stream=False, speed=1.1, text_frontend=False, torch_seed=7)
    ]
    assert audio.dtype == np.float32 and audio.ndim == 1


def test_chunks_are_joined_in_order_and_kept_in_range(build, voices):
    backend, double = build(double=CosyVoiceModelDouble("CosyVoice2", chunks=4, chunk_samples=1000, amplitude=1.5))
    audio = backend.synthesize("ア", voices[0], seed=3)
    torch.manual_seed(3)
    expected = np.concatenate([(1.5 * (2 * torch.rand(1, 1000) - 1)).numpy().ravel() for _ in range(4)])
    assert audio.shape == (4000,) and audio.dtype == np.float32
    # over full scale: scaled down whole to the -1 dBFS ceiling, never clipped (the waveform's shape is kept)
    np.testing.assert_allclose(audio, expected * (PEAK_CEILING / np.abs(expected).max()), rtol=1e-5)
    assert np.isclose(np.abs(audio).max(), PEAK_CEILING) and np.sum(np.abs(audio) == np.abs(audio).max()) == 1


def test_seed_is_applied_before_each_call(build, voices):
    backend, double = build()
    first = backend.synthesize("ア", voices[0], seed=11)
    torch.manual_seed(999)  # whatever happened in between
    again = backend.synthesize("ア", voices[0], seed=11)
    other = backend.synthesize("ア", voices[0], seed=12)
    big = backend.synthesize("ア", voices[0], seed=2**40 + 5)  # seeds beyond NumPy's 32 bits work
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert [c["torch_seed"] for c in double.calls] == [11, 11, 12, 2**40 + 5]
    assert big.size == first.size


def test_empty_or_broken_output_is_a_retryable_error(build, voices):
    backend, _ = build(double=CosyVoiceModelDouble("CosyVoice2", chunks=0))
    with pytest.raises(EmptyAudio, match="no audio for speaker spk01"):
        backend.synthesize("ア", voices[0], seed=1)
    backend, _ = build("CosyVoice3", double=CosyVoiceModelDouble("CosyVoice3", chunks=1, amplitude=float("nan")))
    with pytest.raises(EmptyAudio, match="non-finite"):
        backend.synthesize("ア", voices[0], seed=1)


# Speakers: prompts, checks, registration


def test_each_speaker_is_registered_once_with_its_prompt(build, voices):
    backend, double = build("CosyVoice2")
    for seed in range(3):
        for voice in voices:
            backend.synthesize("ア", voice, seed)
    assert double.registrations == ["spk01", "spk02"]
    assert double.spk2info["spk01"] == {"prompt_text": TRANSCRIPT, "prompt_wav": str(voices[0].reference_audio)}


def test_registration_happens_once_under_concurrent_calls(build, voices):
    backend, double = build(double=CosyVoiceModelDouble("CosyVoice2", registration_seconds=0.05))
    with ThreadPoolExecutor(max_workers=8) as pool:
        outputs = list(pool.map(lambda i: backend.synthesize("ア", voices[i % 2], i), range(32)))
    assert sorted(double.registrations) == ["spk01", "spk02"]
    assert len(double.calls) == 32 and all(o.size == 3 * 2400 for o in outputs)


def test_a_changed_bank_entry_is_registered_again(build, voices, tmp_path):
    backend, double = build()
    backend.synthesize("ア", voices[0], 1)
    moved = voices[0].model_copy(update={"reference_audio": write_tone(tmp_path / "new.wav", 4.0)})
    backend.synthesize("ア", moved, 1)
    backend.synthesize("ア", moved, 2)
    assert double.registrations == ["spk01", "spk01"]
    assert double.spk2info["spk01"]["prompt_wav"] == str(tmp_path / "new.wav")


def test_cosyvoice3_prompt_gets_an_instruction(build, voices):
    backend, double = build("CosyVoice3")
    own = reference_speaker("spk03", voices[1].reference_audio, "Speak calmly." + END_OF_PROMPT + TRANSCRIPT)
    backend.synthesize("ア", voices[0], 1)
    backend.synthesize("ア", own, 1)
    assert double.spk2info["spk01"]["prompt_text"] == DEFAULT_V3_INSTRUCTION + TRANSCRIPT
    assert double.spk2info["spk03"]["prompt_text"] == "Speak calmly." + END_OF_PROMPT + TRANSCRIPT


def test_cosyvoice2_prompt_drops_a_cosyvoice3_instruction(build, voices):
    backend, double = build("CosyVoice2")
    backend.synthesize(
        "ア", reference_speaker("spk03", voices[0].reference_audio, DEFAULT_V3_INSTRUCTION + TRANSCRIPT), 1
    )
    assert double.spk2info["spk03"]["prompt_text"] == TRANSCRIPT


def test_old_api_gets_a_16khz_tensor(build, voices):
    backend, double = build(double_class=OldApiModelDouble)
    backend.synthesize("ア", voices[0], 1)
    tensor = double.spk2info["spk01"]["prompt_wav"]
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (1, 5 * 16000)


@pytest.mark.parametrize(
    ("audio", "transcript", "problem"),
    [
        (None, TRANSCRIPT, "has no reference_audio: CosyVoice clones a voice"),
        ("short.wav", None, "has no transcript"),
        ("short.wav", DEFAULT_V3_INSTRUCTION, "has no transcript"),
        (None, "", "has no reference_audio and no transcript"),
        ("absent.wav", TRANSCRIPT, "reference audio not found on this node"),
        ("long.wav", TRANSCRIPT, "reference audio is 35.0 s, CosyVoice takes at most 30 s"),
        ("narrow.wav", TRANSCRIPT, "reference audio is 8000 Hz, CosyVoice needs at least 16000 Hz"),
        ("text.wav", TRANSCRIPT, "reference audio unreadable"),
    ],
)
def test_unusable_speakers_are_clear_errors(build, tmp_path, audio, transcript, problem):
    write_tone(tmp_path / "short.wav", 5.0)
    write_tone(tmp_path / "long.wav", 35.0)
    write_tone(tmp_path / "narrow.wav", 5.0, rate=8000)
    (tmp_path / "text.wav").write_text("not audio")
    backend, double = build()
    voice = reference_speaker("spk09", tmp_path / audio if audio else None, transcript)
    with pytest.raises(SpeakerPromptError, match=problem):
        backend.synthesize("ア", voice, 1)
    assert double.registrations == [] and double.calls == []


class FlakyModelDouble(CosyVoiceModelDouble):
    """The double, failing the way CosyVoice does for its first calls: nothing, then a runaway render."""

    def __init__(self, model_class: str, chunk_counts: list[int]):
        super().__init__(model_class)
        self.chunk_counts = list(chunk_counts)

    def inference_zero_shot(self, *args, **kwargs):
        self.chunks = self.chunk_counts.pop(0)
        yield from super().inference_zero_shot(*args, **kwargs)


def test_render_stage_retries_cosyvoice_failures_with_new_seeds(build, voices):

    reading = "キョーワイイテンキデスネ"  # about 1.6 s of speech
    # first call: no audio; second: 100 chunks of 0.1 s (a runaway); third: 16 chunks (1.6 s)
    backend, double = build(double=FlakyModelDouble("CosyVoice2", [0, 100, 16]))
    turn = Turn("user", "今日はいい天気ですね", tts_text=reading, reading=reading)
    audio = render_turn(turn, voices[0], backend, seed=5, sample_rate=24000, config=RenderConfig())
    assert audio.size == 16 * 2400
    assert [c["torch_seed"] for c in double.calls] == [attempt_seed(5, a) for a in range(3)]
    assert turn.seed == attempt_seed(5, 2)
    assert all(c["text"] == reading and c["text_frontend"] is False for c in double.calls)


def test_render_stage_rejects_what_cosyvoice_never_renders(build, voices):

    reading = "キョーワイイテンキデスネ"
    backend, _ = build(double=FlakyModelDouble("CosyVoice2", [0, 0, 0]))
    with pytest.raises(Rejected, match="no audio after 3 render"):
        render_turn(Turn("user", "x", tts_text=reading, reading=reading), voices[0], backend, 5, 24000, RenderConfig())
