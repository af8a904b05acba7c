"""What koe's actor-side modules import, and that every GPU environment's lock holds it.

koe goes into the GPU environments (cluster/envs/*.txt) with `pip install --no-deps`, beside their own torch,
so the modules an actor loads may import at module level only what those locks pin: the packages of
cluster/envs/koe-actor.in. Each check runs in a fresh interpreter whose imports of everything else installed
here (torch, silero-vad, resemblyzer, matplotlib, datasets, ...) raise ImportError, as they would in an
environment that lacks them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import ray
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

ENVS = REPO / "cluster" / "envs"
LOCKS = sorted(ENVS.glob("*.txt"))
# What a ModelActor loads (pipeline/executors.py, unpickled by reference in the actor), every model it may load
# by name (each TTS backend and captioner module), and the stages meant for the pyannote and align environments.
ACTOR_MODULES = [
    "pipeline.executors",
    *(f"pipeline.{package}.{p.stem}" for package in ("tts", "captioners")
      for p in sorted((REPO / "pipeline" / package).glob("*.py")) if p.stem != "__init__"),
    "pipeline.diarize",
    "pipeline.align",
]  # fmt: skip
# Driver-side packages that no actor module may import at module level, whatever an environment holds.
DRIVER_ONLY = [
    "torch", "torchaudio", "torchcodec", "silero_vad", "resemblyzer", "webrtcvad", "matplotlib", "speechmos",
    "datasets", "openai", "webdataset", "typer", "huggingface_hub", "transformers", "scipy", "kanalizer",
    "rapidfuzz", "pyloudnorm", "pyannote", "vllm", "cosyvoice", "tritonclient",
]  # fmt: skip

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, json, os, sys

    blocked, modules, pipeline = set(json.loads(sys.argv[1])), json.loads(sys.argv[2]), sys.argv[3]
    direct = set()  # top-level modules that a file of pipeline/ imports itself

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            frame = sys._getframe(1)
            while frame and (frame.f_code.co_filename.startswith("<") or "importlib" in frame.f_code.co_filename):
                frame = frame.f_back
            if frame and frame.f_code.co_filename.startswith(pipeline) and top != "pipeline":
                direct.add(top)
            if top in blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: not in this environment)", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
    before = set(sys.modules)
    for module in modules:
        importlib.import_module(module)
    loaded = sorted({m.partition(".")[0] for m in set(sys.modules) - before})
    print(json.dumps({"loaded": loaded, "direct": sorted(direct & set(loaded))}))
    """
)


def read_lines(path: Path) -> list[Requirement]:
    """Requirements of an .in or lock file, following `-r`."""
    requirements = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        text = raw.split("#", 1)[0].strip()
        if text.startswith("-r "):
            requirements += read_lines(path.parent / text[3:].strip())
        elif text:
            requirements.append(Requirement(text))
    return requirements


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for requirement in read_lines(path):
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {requirement} is not an exact pin"
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def module_owners() -> dict[str, set[str]]:
    """Top-level module -> the installed distributions providing it (canonical names)."""
    return {m: {canonicalize_name(d) for d in dists} for m, dists in metadata.packages_distributions().items()}


def installed_closure(names: list[Requirement]) -> set[str]:
    """The installed distributions `names` need here, following their requirements (markers of this machine)."""
    environment = default_environment()
    seen: set[str] = set()
    stack = [(canonicalize_name(r.name), set(r.extras)) for r in names]
    while stack:
        name, extras = stack.pop()
        if name in seen:
            continue
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras)
            ):
                stack.append((canonicalize_name(requirement.name), set(requirement.extras)))
    return seen


def probe(allowed: set[str]) -> dict[str, list[str]]:
    """Import the actor modules with every installed distribution outside `allowed` blocked: the top-level
    modules that got loaded, and those a file of pipeline/ imported itself."""
    owners = module_owners()
    blocked = sorted(set(DRIVER_ONLY) | {m for m, dists in owners.items() if not dists & allowed and m != "pipeline"})
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(blocked), json.dumps(ACTOR_MODULES), str(REPO / "pipeline") + "/"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def third_party(modules: list[str]) -> dict[str, set[str]]:
    """Those of `modules` that come from installed distributions, with those distributions."""
    owners = module_owners()
    return {m: owners[m] for m in modules if m in owners and m not in sys.stdlib_module_names and m != "pipeline"}


@pytest.fixture(scope="module")
def actor_imports() -> dict[str, list[str]]:
    """The actor modules imported with nothing installed but koe-actor.in's packages and what they need here."""
    return probe(installed_closure(read_lines(ENVS / "koe-actor.in")) | {"koe"})


def test_actor_modules_import_with_only_the_koe_actor_packages(actor_imports):
    allowed = installed_closure(read_lines(ENVS / "koe-actor.in")) | {"koe"}
    assert not set(DRIVER_ONLY) & set(actor_imports["loaded"])
    imported = third_party(actor_imports["loaded"])
    assert imported, actor_imports
    # every third-party module loaded is koe-actor.in's or comes with one of its packages
    assert all(dists & allowed for dists in imported.values()), imported


def test_koe_actor_lists_exactly_what_the_actor_modules_import_themselves(actor_imports):
    direct = {name for dists in third_party(actor_imports["direct"]).values() for name in dists}
    listed = {canonicalize_name(r.name) for r in read_lines(ENVS / "koe-actor.in")}
    # ray is imported inside functions only, and is what runs the actor
    assert direct | {"ray"} == listed, (direct, listed)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.stem)
def test_every_lock_pins_each_koe_actor_package_within_koes_bounds(lock):
    pins = lock_pins(lock)
    for requirement in read_lines(ENVS / "koe-actor.in"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock.name} lacks {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{lock.name}: {name}=={pins[name]}"


def test_koe_actor_packages_carry_pyprojects_bounds_and_the_clusters_ray():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {canonicalize_name(Requirement(r).name): Requirement(r) for r in project["dependencies"]}
    for requirement in read_lines(ENVS / "koe-actor.in"):
        name = canonicalize_name(requirement.name)
        if name == "ray":
            assert str(requirement.specifier) == f"=={ray.__version__}"  # the Ray of the cluster and its image
            continue
        assert name in declared, f"{name} is not a dependency of koe"
        assert requirement.specifier == declared[name].specifier, (requirement, declared[name])


def test_every_environment_has_a_lock_and_every_lock_an_input():
    inputs = {p.stem for p in ENVS.glob("*.in")} - {"koe-actor", "cosyvoice-common"}
    assert inputs == {p.stem for p in LOCKS}
    assert {"cosyvoice", "cosyvoice-vllm", "vllm", "pyannote", "align", "triton-client"} <= inputs
