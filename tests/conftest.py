"""Shared fixtures: the repo's demo recipe, small recipes written per test, and one run of each kind of output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_RECIPE = REPO / "recipes" / "demo.yaml"
BANK = REPO / "speakers" / "bank.yaml"


def koe(
    *args: str, check: bool = True, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """Run the real command line in a fresh process, as a user would (`env`: variables added to ours)."""
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"koe {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


REFERENCE_TRANSCRIPT = "キョウワ イイ テンキ デスネ。"  # in kana, as voice-cloning backends are sent it


def write_tone(path: Path, seconds: float, rate: int = 24000, pitch: float = 220.0) -> Path:
    """A sine tone as a stand-in reference recording."""
    import numpy as np
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32), rate)
    return path


def reference_speaker(speaker_id: str, audio: Path | None, transcript: str | None = REFERENCE_TRANSCRIPT):
    """A bank speaker for voice-cloning backends."""
    from pipeline.speakers import Speaker

    return Speaker(
        id=speaker_id,
        name=speaker_id,
        gender="f",
        age_band="30s",
        reference_audio=audio,
        transcript=transcript,
        license="CC0",
        source="test",
    )


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


@pytest.fixture
def local_gpu_ray():
    """A local Ray instance that advertises two (logical) GPUs for the actor pool to claim."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="error")
    yield ray
    ray.shutdown()


@pytest.fixture
def make_recipe(tmp_path):
    """Write a recipe (and its corpus) into tmp_path; returns the recipe path."""

    def make(rows: list | None = None, adapter: str = "magpie", **sections) -> Path:
        corpus = write_jsonl(tmp_path / "corpus.jsonl", rows if rows is not None else [])
        recipe = {
            "name": "t",
            "kind": "sft",
            "seed": 7,
            "sources": [{"name": "src", "dataset": str(corpus), "adapter": adapter, "license": "apache-2.0"}],
            "speakers": {"bank": str(BANK)},
            "output": {"rows_per_shard": 3},
        }
        recipe.update(sections)
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
        return path

    return make


@pytest.fixture
def reference_bank(tmp_path) -> Path:
    """A two-speaker bank with reference recordings (a tone each), as CosyVoice backends need; returns its path."""
    import numpy as np
    import soundfile as sf

    speakers = []
    for i in range(2):
        sf.write(tmp_path / f"s{i}.wav", 0.1 * np.sin(np.arange(5 * 24000) / 9), 24000)
        entry = {"id": f"s{i}", "name": "x", "gender": "f", "age_band": "30s", "license": "CC0", "source": "test"}
        speakers.append({**entry, "reference_audio": f"s{i}.wav", "transcript": "こんにちは。"})
    path = tmp_path / "reference_bank.yaml"
    path.write_text(yaml.safe_dump({"speakers": speakers}))
    return path


@pytest.fixture(scope="session")
def openjtalk():
    """The embedded backend (real OpenJTalk), loaded once."""
    from pipeline.tts import load_backend

    return load_backend("openjtalk", {"max_chars": 200})


@pytest.fixture(scope="session")
def bank_speakers():
    """The 20 voices of the embedded bank."""
    from pipeline.speakers import load_bank

    return load_bank(BANK).speakers


@pytest.fixture(scope="session")
def demo_output(tmp_path_factory) -> Path:
    """The README's demo, run once through the real CLI on local Ray with real OpenJTalk."""
    out = tmp_path_factory.mktemp("demo") / "out"
    koe("run", str(DEMO_RECIPE), "--output", str(out), "--no-progress")
    return out


@pytest.fixture(scope="session")
def duplex_output(tmp_path_factory) -> Path:
    """The duplex recipe's embedded profile (OpenJTalk, offline), run once."""
    out = tmp_path_factory.mktemp("duplex") / "out"
    koe(
        "run",
        str(REPO / "recipes" / "duplex_magpie.yaml"),
        "--set",
        "profile=embedded",
        "--output",
        str(out),
        "--no-progress",
    )
    return out


def run_captions(server_url: str, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """The captions recipe's server profile against an OpenAI-compatible server at `server_url`."""
    settings = [
        "profile=server",
        f"captioner.options.base_url={server_url}",
        "captioner.options.model=captioner-double",
    ]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    return koe(
        "run",
        str(REPO / "recipes" / "captions_fsd50k.yaml"),
        *sets,
        "--output",
        str(out),
        "--no-progress",
        *extra,
        check=check,
    )


@pytest.fixture(scope="session")
def captions_output(tmp_path_factory) -> Path:
    """The demo FSD50K clips captioned through the chat-server double, run once."""
    from tests.chat_server import ChatServerDouble

    out = tmp_path_factory.mktemp("captions") / "out"
    with ChatServerDouble() as server:
        run_captions(server.url, out)
    return out


@pytest.fixture
def demo_copy(demo_output, tmp_path) -> Path:
    """A private copy of the demo output that a test may damage."""
    return Path(shutil.copytree(demo_output, tmp_path / "copy"))
