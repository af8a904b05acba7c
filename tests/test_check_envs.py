"""cluster/check_envs.py: the GPU environments' locks resolve with pip's resolver, as they are.

The end-to-end test asks the package index (nothing is cached between runs; it takes a few minutes) and is
skipped when no index can be reached. The rest runs offline on the script's pieces.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
import zipfile

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

SCRIPT = REPO / "cluster" / "check_envs.py"
NO_INDEX = 3


@pytest.fixture(scope="module")
def check_envs():
    spec = importlib.util.spec_from_file_location("check_envs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_envs"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("check_envs", None)


def test_every_lock_resolves_as_it_is_and_meets_its_input():
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=1500)
    if done.returncode == NO_INDEX:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "environments ok" in done.stdout


def test_an_environment_that_cannot_resolve_fails_naming_the_conflict(tmp_path):
    (tmp_path / "clash.in").write_text("typer==0.12.0\nclick==7.0\n")  # typer 0.12 needs click>=8.0.0
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--envs-dir", str(tmp_path), "--lock"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode == NO_INDEX:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "clash: FAILED" in done.stdout and "Cannot install click==7.0 and typer" in done.stdout
    assert "The conflict is caused by" in done.stdout and "depends on click>=8" in done.stdout
    assert not (tmp_path / "clash.txt").exists()


def test_an_unreachable_index_is_said_in_one_line_and_checks_nothing():
    # a closed port on this machine: refused at once
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--index-url", "http://127.0.0.1:9/simple"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == NO_INDEX
    assert "cannot be reached" in done.stderr and "nothing was checked" in done.stderr
    assert done.stdout == ""


def test_an_unknown_environment_is_a_usage_error():
    done = subprocess.run([sys.executable, str(SCRIPT), "nosuchenv"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown environment" in done.stderr


def test_inputs_follow_includes_and_read_the_markers(check_envs, tmp_path):
    (tmp_path / "shared.in").write_text("numpy>=1.24\n# a comment\n\n")
    (tmp_path / "env.in").write_text(
        "-r shared.in\n"
        "openai-whisper==20231117  # sdist\n"
        "onnxruntime-gpu==1.18.0  # index: https://example.invalid/simple/\n"
        "tensorrt-cu12-libs==10.13.3.9  # sdist index: https://example.invalid/nvidia\n"
        "torch==2.3.1  # a plain comment\n"
    )
    lines = check_envs.read_requirements(tmp_path / "env.in")
    assert [(line.name, line.sdist, line.index, line.pinned) for line in lines] == [
        ("numpy", False, None, None),
        ("openai-whisper", True, None, "20231117"),
        ("onnxruntime-gpu", False, "https://example.invalid/simple/", "1.18.0"),
        ("tensorrt-cu12-libs", True, "https://example.invalid/nvidia", "10.13.3.9"),
        ("torch", False, None, "2.3.1"),
    ]


def test_an_input_with_an_option_or_a_bad_line_is_refused(check_envs, tmp_path):
    (tmp_path / "env.in").write_text("--extra-index-url https://example.invalid\n")
    with pytest.raises(ValueError, match="options are not supported"):
        check_envs.read_requirements(tmp_path / "env.in")
    (tmp_path / "env.in").write_text("torch===\n")
    with pytest.raises(ValueError, match="env.in:1"):
        check_envs.read_requirements(tmp_path / "env.in")


def sdist_tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_an_sdists_requirements_come_from_its_egg_info_with_marker_sections(check_envs):
    requires = "numba\ntorch\n\n[:sys_platform == 'linux']\ntriton>=2\n\n[dev]\npytest\n"
    data = sdist_tar({"pkg-1.0/PKG-INFO": "Name: pkg\n", "pkg-1.0/pkg.egg-info/requires.txt": requires})
    expected = ["numba", "torch", "triton>=2; sys_platform == 'linux'"]
    assert check_envs.parse_requires_txt(data, "pkg-1.0.tar.gz") == expected


def test_an_sdist_without_egg_info_states_them_in_pkg_info_and_a_zip_sdist_is_read(check_envs):
    info = "Metadata-Version: 2.1\nName: pkg\nRequires-Dist: nvidia-cuda-runtime-cu12\n"
    info += "Requires-Dist: numpy; extra == 'x'\n"
    assert check_envs.parse_requires_txt(sdist_tar({"pkg-1.0/PKG-INFO": info}), "pkg-1.0.tar.gz") == [
        "nvidia-cuda-runtime-cu12"
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("wget-3.2/PKG-INFO", "Metadata-Version: 1.1\nName: wget\nVersion: 3.2\n")
    assert check_envs.parse_requires_txt(buffer.getvalue(), "wget-3.2.zip") == []


def test_an_sdist_becomes_a_metadata_only_wheel_stating_its_requirements(check_envs, tmp_path):
    lines = [check_envs.Line("openai-whisper==20231117", Requirement("openai-whisper==20231117"), sdist=True)]
    check_envs.stub_wheels(tmp_path, lines, {"openai-whisper": ["tiktoken", "triton<3,>=2.0.0"]})
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == "openai_whisper-20231117-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("openai_whisper-20231117.dist-info/METADATA").decode()
        assert "openai_whisper-20231117.dist-info/RECORD" in archive.namelist()
    assert "Name: openai-whisper\nVersion: 20231117\n" in metadata
    assert "Requires-Dist: tiktoken\nRequires-Dist: triton<3,>=2.0.0\n" in metadata


def test_closure_follows_extras_and_markers_of_the_nodes(check_envs):
    metadata = {
        "a": {"requires_dist": ["b", "c; sys_platform == 'win32'", "d; extra == 'x'"]},
        "b": {"requires_dist": ["e>=1; platform_machine == 'x86_64'"]},
        "c": {}, "d": {}, "e": {}, "f": {},
    }  # fmt: skip
    assert check_envs.closure([Requirement("a")], metadata) == {"a", "b", "e"}
    assert check_envs.closure([Requirement("a[x]")], metadata) == {"a", "b", "d", "e"}


def test_pips_conflict_is_kept_and_its_noise_dropped(check_envs):
    output = (
        "Collecting torch==2.7.0\n  Obtaining dependency information from torch 2.7.0\n"
        "WARNING: pip is using lazily downloaded wheels using HTTP range requests\n"
        "ERROR: Ignored the following versions that require a different python version: 1.0 Requires-Python >=3.12\n"
        "ERROR: Cannot install openai-whisper==20231117 and torch==2.7.0 because these package versions have "
        "conflicting dependencies.\n\nThe conflict is caused by:\n"
        "    torch 2.7.0 depends on triton==3.3.0\n    openai-whisper 20231117 depends on triton<3 and >=2.0.0\n"
        "[notice] A new release of pip is available\n"
    )
    explained = check_envs.pip_error(output)
    assert explained.startswith("ERROR: Cannot install openai-whisper==20231117 and torch==2.7.0")
    assert "openai-whisper 20231117 depends on triton<3" in explained
    assert "Ignored the following" not in explained and "lazily" not in explained and "notice" not in explained


def test_the_lock_header_says_how_it_was_made_and_each_marker_is_kept(check_envs):
    inputs = [
        check_envs.Line("torch==2.3.1", Requirement("torch==2.3.1")),
        check_envs.Line("pyworld==0.3.4", Requirement("pyworld==0.3.4"), sdist=True),
        check_envs.Line("onnxruntime-gpu==1.18.0", Requirement("onnxruntime-gpu==1.18.0"), index="https://x/simple/"),
    ]
    report = {
        "install": [
            {"metadata": {"name": "torch", "version": "2.3.1"}},
            {"metadata": {"name": "pyworld", "version": "0.3.4"}},
            {"metadata": {"name": "onnxruntime-gpu", "version": "1.18.0"}},
            {"metadata": {"name": "Cython", "version": "3.0.12"}},
        ]
    }
    text = check_envs.write_lock("demo", inputs, report, "https://pypi.org/simple")
    assert "python cluster/check_envs.py --lock demo" in text and "cluster/install_env.sh demo" in text
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "Cython==3.0.12",
        "onnxruntime-gpu==1.18.0  # index: https://x/simple/",
        "pyworld==0.3.4  # sdist",
        "torch==2.3.1",
    ]
