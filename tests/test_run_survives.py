"""The run survives its own helpers and its environment: a lost progress inbox is restarted, and
SIGTERM or a full disk end the run with one line and an exit code, after which a rerun resumes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pipeline.recipe import load_recipe
from pipeline.run import run_recipe
from pipeline.validate import validate_output
from tests.conftest import REPO, koe

ROWS = [{"id": f"r{i}", "conversations": [{"role": "user", "content": f"{i}番目の質問です。"}]} for i in range(8)]


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    yield ray
    ray.shutdown()


def test_losing_the_progress_inbox_is_survived(local_ray, make_recipe, tmp_path):
    from pipeline.executors import RayExecutor

    recipe = load_recipe(
        make_recipe(ROWS),
        [
            "tts.backend=bench.latency_tts_double",
            'tts.options={"latency_seconds": 0.4}',
            "qc.enabled=false",  # the double's audio is no speech
            "output.rows_per_shard=2",
            "execution.max_tasks_in_flight=1",  # shards one after another: the kill lands mid-run
        ],
    )
    killed = []

    def kill_the_inbox() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            names = [n for n in local_ray.util.list_named_actors() if n.startswith("koe-row-inbox-")]
            if names and list((tmp_path / "out" / "_state").glob("*.done.json")):
                local_ray.kill(local_ray.get_actor(names[0]), no_restart=False)  # its process dies
                killed.append(names[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_inbox, daemon=True)
    killer.start()
    summary = run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    killer.join(timeout=5)
    assert killed, "the inbox was never seen"
    assert (summary.inputs, summary.statuses["written"], summary.shards_failed) == (8, 8, [])
    assert validate_output(tmp_path / "out").ok


SLOW_SHARDS = [
    "tts.backend=bench.latency_tts_double",
    'tts.options={"latency_seconds": 0.5}',
    "qc.enabled=false",
    "output.rows_per_shard=1",
    "execution.max_tasks_in_flight=1",
]


def _set_args(overrides: list[str]) -> list[str]:
    return [arg for override in overrides for arg in ("--set", override)]


def test_sigterm_stops_the_run_in_one_line_and_a_rerun_resumes(make_recipe, tmp_path):
    pytest.importorskip("ray")
    recipe = make_recipe(ROWS)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "pipeline", "run", str(recipe), "--output", str(out), *_set_args(SLOW_SHARDS)]
    run = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "_state").glob("*.done.json")) and run.poll() is None:
        time.sleep(0.1)
    assert run.poll() is None, "the run ended before it could be stopped"
    run.terminate()
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143, stderr
    assert "stopped by SIGTERM" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr, stderr
    done_before = len(list((out / "_state").glob("*.done.json")))
    assert 1 <= done_before < len(ROWS)

    rerun = koe("run", str(recipe), "--output", str(out), *_set_args(SLOW_SHARDS))
    assert f"{done_before} already done" in rerun.stdout + rerun.stderr
    assert validate_output(out).ok
    assert len(list((out / "_state").glob("*.done.json"))) == len(ROWS)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 192 KiB tmpfs as the output folder: room for a shard or two, not for the run. Needs root."""
    mount_point = tmp_path / "out"
    mount_point.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount_point)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.parametrize("executor", ["inline", "ray"])
def test_a_full_disk_stops_the_run_in_one_line_and_a_rerun_resumes(executor, make_recipe, tiny_disk):
    if executor == "ray":
        pytest.importorskip("ray")
    recipe = make_recipe(ROWS)
    args = ["run", str(recipe), "--output", str(tiny_disk), "--executor", executor, *_set_args(SLOW_SHARDS[2:])]
    args += _set_args(["tts.backend=bench.latency_tts_double"])
    full = koe(*args, check=False)
    assert full.returncode == 1, full.stdout + full.stderr
    assert "disk full writing" in full.stderr and "run the same command again" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr and "failed" not in full.stdout, full.stdout

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    koe(*args)
    report = validate_output(tiny_disk)
    assert report.ok, report
    assert len(list((tiny_disk / "_state").glob("*.done.json"))) == len(ROWS)
