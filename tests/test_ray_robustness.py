"""Nothing in a Ray run waits forever: model calls and actor loads have deadlines, an actor that stops
answering is restarted while the others carry on, the pool is sized to the GPUs of the recipe's
accelerator type, and a cluster that cannot be joined is one line, with token authentication named."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from pipeline.executors import (
    RayConnectError,
    _bounded_handshake,
    accelerator_types,
    check_reachable,
    connection_failure,
    pool_capacity,
)
from pipeline.recipe import load_recipe
from tests.conftest import koe

ROWS = [{"id": f"r{i}", "conversations": [{"role": "user", "content": f"質問その{i}です。"}]} for i in range(6)]

H200 = {"CPU": 192.0, "GPU": 8.0, "accelerator_type:H200": 1.0, "node:10.0.0.1": 1.0}
H100 = {"CPU": 96.0, "GPU": 8.0, "accelerator_type:H100": 1.0}
NODES = [
    {"Alive": True, "Resources": H200},
    {"Alive": True, "Resources": H200},
    {"Alive": True, "Resources": H100},
    {"Alive": False, "Resources": H200},  # a lost node still listed
    {"Alive": True, "Resources": {"CPU": 8.0}},  # the CPU-only head
]


def test_the_pool_counts_only_gpus_of_the_accelerator_type():
    assert pool_capacity(NODES, 1, "H200") == (16, 16.0)
    assert pool_capacity(NODES, 1, "H100") == (8, 8.0)
    assert pool_capacity(NODES, 1) == (24, 24.0)  # no type: every alive GPU
    assert pool_capacity(NODES, 1, "A100") == (0, 0.0)
    assert pool_capacity(NODES, 0.5, "H100") == (16, 8.0)
    assert pool_capacity(NODES, 3, "H200") == (4, 16.0)  # an actor cannot span nodes: 2 per node, not 16 // 3
    assert pool_capacity(NODES, 0.1, "H100") == (80, 8.0)
    assert accelerator_types(NODES) == ["H100", "H200"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_ray_address_fails_at_once_in_one_line(make_recipe, tmp_path):
    pytest.importorskip("ray")
    port = _free_port()
    started = time.monotonic()
    result = koe(
        "run", str(make_recipe(ROWS)), "--output", str(tmp_path / "out"), "--ray-address", f"127.0.0.1:{port}",
        "--set", "tts.backend=bench.latency_tts_double", "--no-progress", check=False,
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}: nothing listens on port {port}" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_dashboard_url_as_ray_address_is_one_line(make_recipe, tmp_path):
    pytest.importorskip("ray")
    result = koe(
        "run", str(make_recipe(ROWS)), "--output", str(tmp_path / "out"), "--ray-address", "http://127.0.0.1:8265",
        "--set", "tts.backend=bench.latency_tts_double", "--no-progress", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is a URL" in lines[0] and "HOST:PORT (port 6379" in lines[0], result.stderr


def test_reachability_says_why(monkeypatch):
    def refuse(address, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(RayConnectError, match=r"at 10\.0\.0\.9:6379: no answer within 5 s \(execution\.connect_"):
        check_reachable("10.0.0.9:6379", "10.0.0.9:6379", 5)

    def unknown(address, timeout):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "create_connection", unknown)
    with pytest.raises(RayConnectError, match="no host named 'head'"):
        check_reachable("head:6379", "head:6379", 5)
    check_reachable("auto", "auto", 5)  # nothing to probe: Ray finds the local cluster
    check_reachable("ray://head:10001", "ray://head:10001", 5)  # Ray Client connects its own way


def test_rays_handshake_is_bounded_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("RAY_gcs_server_port_wait_time_s", raising=False)
    with _bounded_handshake(60):
        assert os.environ["RAY_gcs_server_port_wait_time_s"] == "2"
    assert "RAY_gcs_server_port_wait_time_s" not in os.environ
    monkeypatch.setenv("RAY_gcs_server_port_wait_time_s", "30")
    with _bounded_handshake(60):
        assert os.environ["RAY_gcs_server_port_wait_time_s"] == "30"


# What ray.init raised in Ray 2.60 against a `ray start --head` cluster with token authentication on
# (measured): a ConnectionError whose cause carries the GCS client's AuthenticationError.
REFUSED = (
    "Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
    '  File "python/ray/includes/common.pxi", line 119, in ray._raylet.check_status\n'
    "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: Authentication token is missing or incorrect."
)


def _failed_join(cause: str) -> ConnectionError:
    try:
        try:
            raise RuntimeError(cause)
        except RuntimeError as exc:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from exc
    except ConnectionError as joined:
        return joined


def test_token_authentication_is_named_with_what_to_do(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    message = connection_failure("head:6379", _failed_join(REFUSED))
    assert "\n" not in message
    assert "requires token authentication" in message and "export RAY_AUTH_MODE=token" in message
    assert "/home/someone/.ray/auth_token" in message and "RAY_AUTH_TOKEN" in message

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-clusters")
    message = connection_failure("head:6379", _failed_join(REFUSED))
    assert "refused the token from RAY_AUTH_TOKEN" in message and "ray get-auth-token" in message

    ray = pytest.importorskip("ray")
    missing = ray.exceptions.AuthenticationError(
        "Token authentication is enabled but no authentication token was found"
    )
    assert "there is no token here" in connection_failure("head:6379", missing)


def test_an_address_that_is_no_gcs_is_named_so():
    timed_out = _failed_join("ray.exceptions.RpcError: Timed out while waiting for GCS to become available.")
    message = connection_failure("head:8265", timed_out)
    assert message.startswith("cannot join the Ray cluster at head:8265: ray.exceptions.RpcError: Timed out")
    assert "port 6379 by default" in message and "\n" not in message


@pytest.fixture
def local_h200_ray():
    """A local Ray instance that advertises two (logical) H200s for the actor pool to claim."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, resources={"accelerator_type:H200": 1}, include_dashboard=False)
    yield ray
    ray.shutdown()


POOL = [
    "qc.enabled=false",  # the doubles' audio is no speech
    "tts.num_gpus=1",
    "tts.cpus_per_actor=0",  # the two local CPUs go to shard tasks
    "tts.concurrency=2",
    "execution.items_in_flight=2",
]


def test_an_actor_that_stops_answering_is_restarted_and_every_row_is_written(local_h200_ray, make_recipe, tmp_path):
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    marker = tmp_path / "hung.pid"
    options = {"latency_seconds": 0.05, "hang_marker": str(marker)}
    recipe = load_recipe(
        make_recipe(ROWS),
        [
            *POOL,
            "tts.backend=tests.hanging_tts_double",
            f"tts.options={json.dumps(options)}",
            "tts.accelerator_type=H200",  # the node has it: both actors are placed
            "execution.model_call_timeout_seconds=3",
        ],
    )
    started = time.monotonic()
    summary = run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    assert time.monotonic() - started < 120
    assert (summary.statuses["written"], summary.shards_failed) == (6, [])
    hung = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # the silent actor's process was killed (and Ray started another)


def test_calls_that_never_return_fail_their_rows_and_the_run_ends(local_h200_ray, make_recipe, tmp_path):
    from pipeline.executors import RayExecutor
    from pipeline.manifest import read_manifest
    from pipeline.run import run_recipe

    recipe = load_recipe(
        make_recipe(ROWS[:2]),
        [
            *POOL,
            "tts.backend=tests.hanging_tts_double",
            'tts.options={"hang_every_call": true}',
            "execution.model_call_timeout_seconds=2",
            "execution.row_attempts=2",
        ],
    )
    started = time.monotonic()
    summary = run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    assert time.monotonic() - started < 120
    assert (summary.statuses["failed"], summary.shards_failed) == (2, [])
    errors = read_manifest(tmp_path / "out" / "manifest.parquet").column("error").to_pylist()
    assert all("ModelCallTimeout" in e and "did not answer a synthesize call within 2 s" in e for e in errors), errors


def test_a_pool_of_an_accelerator_type_the_cluster_lacks_fails_before_any_work(local_h200_ray, make_recipe, tmp_path):
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    overrides = [*POOL, "tts.backend=bench.latency_tts_double", "tts.accelerator_type=H100"]
    recipe = load_recipe(make_recipe(ROWS), overrides)
    with pytest.raises(ValueError, match=r"has 0 of accelerator type H100 \(types present: H200\), room for 0 actor"):
        run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)


def test_actors_that_never_start_stop_the_run_at_the_load_timeout(local_h200_ray, make_recipe, tmp_path):
    from pipeline.errors import BackendSetupError
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    recipe = load_recipe(
        make_recipe(ROWS),
        [
            *POOL,
            "tts.backend=bench.latency_tts_double",
            "tts.cpus_per_actor=8",  # more than the cluster has: the actors wait for a node forever
            "execution.model_load_timeout_seconds=4",
        ],
    )
    started = time.monotonic()
    with pytest.raises(BackendSetupError, match=r"none of the 2 model actor\(s\) loaded its model within 4 s"):
        run_recipe(recipe, tmp_path / "out", RayExecutor(), show_progress=False)
    assert time.monotonic() - started < 60
    assert not list((tmp_path / "out" / "shards").glob("*.tar"))


def test_the_new_timeouts_leave_the_fingerprint_alone(make_recipe):
    path = make_recipe(ROWS)
    base = load_recipe(path).fingerprint()
    changed = ["execution.model_call_timeout_seconds=5", "execution.model_load_timeout_seconds=5"]
    assert load_recipe(path, [*changed, "execution.connect_timeout_seconds=5"]).fingerprint() == base
