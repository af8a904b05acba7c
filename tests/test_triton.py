"""The cosyvoice2-triton / cosyvoice3-triton backends against a KServe v2 server double (tests/kserve_server.py).

Everything on koe's side runs for real: options, readiness and model checks, prompt preparation, tritonclient's HTTP
client (one per thread), the request tensors, error mapping, and in start mode the supervision of a server process
(tests/tritonserver_double.py stands in for the `tritonserver` executable). Only the server is a double.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.errors import BackendSetupError
from pipeline.keys import attempt_seed
from pipeline.manifest import read_manifest
from pipeline.recipe import RenderConfig, load_recipe
from pipeline.records import Rejected, Turn
from pipeline.render import render_turn
from pipeline.tts import backend_options, needs_reference_audio, reads_kana
from pipeline.tts.base import EmptyAudio
from pipeline.tts.cosyvoice import DEFAULT_V3_INSTRUCTION, SpeakerPromptError
from pipeline.tts.triton import (
    Backend,
    Options,
    SpeakerPromptClash,
    TritonRequestError,
    TritonSetupError,
    TritonTimeout,
)
from tests.conftest import REFERENCE_TRANSCRIPT, REPO, koe, reference_speaker, write_tone
from tests.kserve_server import OUTPUT_RATE, KServeServerDouble, ModelDouble

TRANSCRIPT = REFERENCE_TRANSCRIPT
SECONDS_PER_CHAR = 0.15  # the double's default
FAKE_TRITONSERVER = [sys.executable, str(REPO / "tests" / "tritonserver_double.py")]


@pytest.fixture
def voices(tmp_path):
    return [
        reference_speaker(f"spk0{i}", write_tone(tmp_path / f"spk0{i}.wav", 5.0, pitch=200.0 + 50 * i)) for i in (1, 2)
    ]


@pytest.fixture
def connect():
    """`connect(server, **options)`: a url-mode backend on a running double."""
    made = []

    def make(server: KServeServerDouble, **options) -> Backend:
        backend = Backend(url=server.url, ready_timeout_seconds=options.pop("ready_timeout_seconds", 5.0), **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def server():
    with KServeServerDouble() as double:
        yield double


# Options and registration


def test_options_need_exactly_one_server_and_absolute_paths():
    defaults = Options(url="gpu-node:8000").model_dump()
    assert defaults["model"] == "cosyvoice2" and defaults["protocol"] == "http" and defaults["max_chars"] == 80
    assert defaults["sample_rate"] == 24000 and defaults["seed_input"] is None
    with pytest.raises(ValidationError, match="exactly one of url"):
        Options()
    with pytest.raises(ValidationError, match="exactly one of url"):
        Options(url="h:1", start={"model_repository": "/m"})
    with pytest.raises(ValidationError, match="absolute path"):
        Options(start={"model_repository": "model_repo_cosyvoice2"})
    with pytest.raises(ValidationError, match="https is not supported"):
        Options(url="https://h:1")
    for bad in ({"url": "h:1", "model": "cosyvoice1"}, {"url": "h:1", "protocol": "grpc"}, {"url": "h:1", "x": 1}):
        with pytest.raises(ValidationError):
            Options.model_validate(bad)


def test_backends_are_registered_as_voice_cloning_kana_readers():
    for name in ("cosyvoice2-triton", "cosyvoice3-triton"):
        options = backend_options(name, {"url": "127.0.0.1:8000"})
        assert options["url"] == "127.0.0.1:8000"
        assert needs_reference_audio(name) and reads_kana(name)


def test_missing_tritonclient_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)
    with pytest.raises(TritonSetupError, match=r"tritonclient is not installed.*pip install 'tritonclient\[http\]'"):
        Backend(url="127.0.0.1:1")


# Early failures, with the server's own reasons


def test_unreachable_server_fails_with_the_address_and_what_to_do(connect):
    started = time.monotonic()
    with pytest.raises(BackendSetupError) as error:
        Backend(url="http://127.0.0.1:9", ready_timeout_seconds=0.5)
    message = str(error.value)
    assert "Triton server at 127.0.0.1:9 not ready with model 'cosyvoice2' after 0.5 s" in message
    assert "ConnectionRefusedError" in message and "run.sh" in message and "DECOUPLED_MODE=False" in message
    assert time.monotonic() - started < 5


def test_missing_model_fails_at_once_naming_what_the_server_has(connect):
    with KServeServerDouble([ModelDouble("token2wav"), ModelDouble("tensorrt_llm")]) as double:
        started = time.monotonic()
        with pytest.raises(TritonSetupError, match=r"has no model 'cosyvoice2' .*\(it has: tensorrt_llm, token2wav\)"):
            connect(double, ready_timeout_seconds=30)
        assert time.monotonic() - started < 5  # no waiting for a model that is not there


def test_model_that_failed_to_load_gives_its_reason(connect):
    broken = ModelDouble("cosyvoice2", state="UNAVAILABLE", unavailable_reason="spk2info.pt not found in /models")
    with KServeServerDouble([broken]) as double:
        with pytest.raises(TritonSetupError, match="model 'cosyvoice2' failed to load: spk2info.pt not found"):
            connect(double, ready_timeout_seconds=30)


def test_a_model_still_loading_is_waited_for(connect, voices):
    with KServeServerDouble([ModelDouble("cosyvoice2", ready_after_seconds=1.0)]) as double:
        started = time.monotonic()
        backend = connect(double, ready_timeout_seconds=10)
        assert time.monotonic() - started >= 0.9
        assert backend.synthesize("ア", voices[0], 1).size > 0
    with KServeServerDouble([ModelDouble("cosyvoice2", ready_after_seconds=30)]) as double:
        with pytest.raises(TritonSetupError, match=r"not ready .* after 0.5 s \(model 'cosyvoice2' is loading\)"):
            connect(double, ready_timeout_seconds=0.5)


def test_streaming_model_is_refused(connect):
    with KServeServerDouble([ModelDouble("cosyvoice2", decoupled=True)]) as double:
        with pytest.raises(TritonSetupError, match=r"decoupled \(streaming\).*DECOUPLED_MODE=False"):
            connect(double)


class OtherInterface(ModelDouble):
    def inputs(self):
        return [("text", "BYTES", [1], False), ("reference_wav_len", "INT64", [1], True)]


def test_a_model_with_another_interface_is_refused(connect):
    with KServeServerDouble([OtherInterface("cosyvoice2")]) as double:
        with pytest.raises(TritonSetupError) as error:
            connect(double)
    message = str(error.value)
    assert "is not upstream's CosyVoice BLS model" in message
    assert "target_text BYTES (it has none)" in message and "reference_wav_len INT32 (it has INT64)" in message


def test_a_seed_input_the_model_lacks_is_refused(connect, server):
    with pytest.raises(TritonSetupError, match="koe_seed UINT64 or INT64 \\(it has none\\)"):
        connect(server, seed_input="koe_seed")


def test_served_name_can_differ_from_the_upstream_model(connect, voices):
    with KServeServerDouble([ModelDouble("tts_a")]) as double:
        backend = connect(double, model_name="tts_a")
        backend.synthesize("ア", voices[0], 1)
        assert double.infers[0].model == "tts_a" and backend.name == "cosyvoice2-triton"


# The backend contract


def test_request_tensors_and_the_returned_audio(connect, server, voices):
    backend = connect(server)
    assert (backend.name, backend.sample_rate, backend.max_chars) == ("cosyvoice2-triton", 24000, 80)
    assert backend.describe() == {"model": "CosyVoice2 (cosyvoice2 on Triton 2.59.0-double, no seeds)"}
    audio = backend.synthesize("コンニチワ。", voices[0], seed=7)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.writeable
    assert audio.size == round(len("コンニチワ。") * SECONDS_PER_CHAR * OUTPUT_RATE)
    assert np.abs(audio).max() <= 1.0
    (record,) = server.infers
    assert record.target_text == "コンニチワ。"
    assert record.reference_text == TRANSCRIPT  # CosyVoice2: the spoken words alone
    assert record.prompt_samples == 5 * 16000  # the 24 kHz recording, sent at 16 kHz as upstream expects
    assert record.seed is None  # upstream's model takes none
    infer_paths = [path for method, path in server.requests if method == "POST"]
    assert infer_paths == ["/v2/models/cosyvoice2/infer"]


def test_unbatched_model_gets_unbatched_shapes(connect, voices):
    with KServeServerDouble([ModelDouble("cosyvoice2", max_batch_size=0)]) as double:
        backend = connect(double)
        assert backend.synthesize("アイ", voices[0], 1).size == round(2 * SECONDS_PER_CHAR * OUTPUT_RATE)


def test_cosyvoice3_gets_an_instruction_before_the_prompt(connect, voices):
    with KServeServerDouble([ModelDouble("cosyvoice3")]) as double:
        backend = connect(double, model="cosyvoice3")
        assert backend.name == "cosyvoice3-triton" and backend.deterministic is False
        backend.synthesize("ア", voices[0], 1)
        assert double.infers[0].reference_text == DEFAULT_V3_INSTRUCTION + TRANSCRIPT


def test_the_registry_checks_the_backend_name_against_the_model(server):
    from pipeline.tts import load_backend

    with pytest.raises(
        ValueError, match="tts.backend is 'cosyvoice3-triton' but the model loaded is 'cosyvoice2-triton'"
    ):
        load_backend("cosyvoice3-triton", backend_options("cosyvoice3-triton", {"url": server.url}))


# Speaker prompts: prepared once per speaker, sent with every request


def test_each_prompt_is_read_once_and_sent_with_every_request(connect, server, voices):
    backend = connect(server)
    for voice in voices:
        backend.synthesize("ア", voice, 1)
    for voice in voices:
        voice.reference_audio.unlink()  # prepared already: the files are not read again
    for seed in range(2, 5):
        for voice in voices:
            backend.synthesize("ア", voice, seed)
    digests = {}
    for record in server.infers:
        digests.setdefault(record.reference_text, set()).add(record.prompt_digest)
    assert len(server.infers) == 8 and len(digests[TRANSCRIPT]) == 2  # two voices, each always the same audio


def test_a_changed_bank_entry_is_prepared_again(connect, server, voices, tmp_path):
    backend = connect(server)
    backend.synthesize("ア", voices[0], 1)
    moved = voices[0].model_copy(update={"reference_audio": write_tone(tmp_path / "new.wav", 4.0)})
    backend.synthesize("ア", moved, 1)
    assert [r.prompt_samples for r in server.infers] == [5 * 16000, 4 * 16000]


def test_concurrent_first_calls_prepare_consistent_prompts(connect, server, voices):
    backend = connect(server)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: backend.synthesize("ア", voices[i % 2], i), range(64)))
    assert len({r.prompt_digest for r in server.infers}) == 2


def test_prompts_that_would_share_a_server_side_voice_are_refused(connect, voices, tmp_path):
    twin = reference_speaker("spk09", write_tone(tmp_path / "twin.wav", 5.0, pitch=400.0))  # same transcript as spk01
    with KServeServerDouble([ModelDouble("cosyvoice3")]) as double:
        backend = connect(double, model="cosyvoice3")
        backend.synthesize("ア", voices[0], 1)
        with pytest.raises(SpeakerPromptClash, match="speakers spk01 and spk09 have the same transcript"):
            backend.synthesize("ア", twin, 1)
        moved = voices[0].model_copy(update={"reference_audio": twin.reference_audio})
        with pytest.raises(SpeakerPromptClash, match="spk01's recording changed but its transcript did not"):
            backend.synthesize("ア", moved, 1)
        assert len(double.infers) == 1
    with KServeServerDouble([ModelDouble("cosyvoice2")]) as double:  # re-embeds every prompt: no clash
        backend = connect(double)
        backend.synthesize("ア", voices[0], 1)
        backend.synthesize("ア", twin, 1)
        assert len({r.voice for r in double.infers}) == 2


@pytest.mark.parametrize(
    ("audio", "transcript", "problem"),
    [
        (None, TRANSCRIPT, "has no reference_audio: CosyVoice clones a voice"),
        ("short.wav", None, "has no transcript"),
        ("long.wav", TRANSCRIPT, "reference audio is 35.0 s, CosyVoice takes at most 30 s"),
        ("narrow.wav", TRANSCRIPT, "reference audio is 8000 Hz, CosyVoice needs at least 16000 Hz"),
    ],
)
def test_unusable_speakers_are_clear_errors_before_any_request(connect, server, tmp_path, audio, transcript, problem):
    write_tone(tmp_path / "short.wav", 5.0)
    write_tone(tmp_path / "long.wav", 35.0)
    write_tone(tmp_path / "narrow.wav", 5.0, rate=8000)
    backend = connect(server)
    with pytest.raises(SpeakerPromptError, match=problem):
        backend.synthesize("ア", reference_speaker("spk09", tmp_path / audio if audio else None, transcript), 1)
    assert server.infers == []


# Seeds and the re-render rules


def test_upstream_cosyvoice2_is_deterministic_and_gets_no_seed(connect, server, voices):
    backend = connect(server)
    assert backend.deterministic is True
    first, other = (backend.synthesize("アイウ", voices[0], seed) for seed in (1, 2))
    np.testing.assert_array_equal(first, other)  # its LLM samples with random_seed 42 whatever koe's seed
    assert {r.seed for r in server.infers} == {None}


def test_a_patched_model_with_a_seed_input_gets_every_seed(connect, voices):
    with KServeServerDouble([ModelDouble("cosyvoice2", seed_input="koe_seed")]) as double:
        backend = connect(double, seed_input="koe_seed")
        assert backend.deterministic is False and "koe's seeds" in backend.describe()["model"]
        first = backend.synthesize("アイウ", voices[0], 11)
        again = backend.synthesize("アイウ", voices[0], 11)
        other = backend.synthesize("アイウ", voices[0], 12)
        backend.synthesize("アイウ", voices[0], 2**70 + 5)  # beyond 64 bits: wrapped
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)
        assert [r.seed for r in double.infers] == [11, 11, 12, 5]


def test_render_stage_rejects_a_deterministic_failure_at_once(connect, server, voices):
    reading = "キョーワイイテンキデスネ"
    backend = connect(server)
    server.script(["empty"])
    with pytest.raises(Rejected, match=r"no audio after 1 render \(deterministic backend"):
        render_turn(Turn("user", "x", tts_text=reading, reading=reading), voices[0], backend, 5, 24000, RenderConfig())
    assert len(server.infers) == 1


def test_render_stage_retries_with_new_seeds_when_the_model_takes_them(connect, voices):
    reading = "キョーワイイテンキデスネ"
    with KServeServerDouble([ModelDouble("cosyvoice2", seed_input="koe_seed")]) as double:
        backend = connect(double, seed_input="koe_seed")
        double.script(["empty", "nan"])
        turn = Turn("user", "今日はいい天気ですね", tts_text=reading, reading=reading)
        audio = render_turn(turn, voices[0], backend, seed=5, sample_rate=24000, config=RenderConfig())
        assert audio.size > 0 and turn.seed == attempt_seed(5, 2)
        assert [r.seed for r in double.infers] == [attempt_seed(5, a) for a in range(3)]


# Errors and timeouts


def test_server_errors_are_clear_row_errors(connect, server, voices):
    backend = connect(server)
    server.script(["500", "empty", "nan"])
    with pytest.raises(
        TritonRequestError, match=r"model 'cosyvoice2' failed on speaker spk01.*Generated IDs.*status 500"
    ):
        backend.synthesize("ア", voices[0], 1)
    with pytest.raises(EmptyAudio, match="Triton returned no audio for speaker spk01"):
        backend.synthesize("ア", voices[0], 1)
    with pytest.raises(EmptyAudio, match="non-finite"):
        backend.synthesize("ア", voices[0], 1)
    assert backend.synthesize("ア", voices[0], 1).size > 0  # the connection is still good


def test_a_slow_answer_times_out(connect, server, voices):
    backend = connect(server, request_timeout_seconds=0.5)
    server.script(["slow:3"])
    started = time.monotonic()
    with pytest.raises(TritonTimeout, match="within 0.5 s \\(tts.options.request_timeout_seconds\\)"):
        backend.synthesize("ア", voices[0], 1)
    assert time.monotonic() - started < 2.5
    assert backend.synthesize("ア", voices[0], 1).size > 0  # a fresh connection after the abandoned one


def test_a_dropped_connection_is_retried_once(connect, server, voices):
    backend = connect(server)
    server.script(["drop"])
    assert backend.synthesize("ア", voices[0], 1).size > 0
    assert [r.behaviour for r in server.infers] == ["ok"]  # the dropped one is not recorded as served


def test_a_server_that_goes_away_stops_the_backend(connect, voices):
    double = KServeServerDouble().__enter__()
    backend = connect(double, ready_timeout_seconds=0.5)
    backend.synthesize("ア", voices[0], 1)
    double.__exit__(None, None, None)
    with pytest.raises(TritonSetupError, match="not ready with model 'cosyvoice2' after 0.5 s"):
        backend.synthesize("ア", voices[0], 1)


# Hundreds in flight


def test_many_threads_share_one_backend_each_with_its_own_connection(connect, voices):
    with KServeServerDouble(capacity=16, base_latency=0.1) as double:
        backend = connect(double)
        threads = 64
        barrier = threading.Barrier(threads)

        def work(i: int) -> int:
            barrier.wait(timeout=10)
            return sum(backend.synthesize("アイウ", voices[i % 2], i * 10 + k).size for k in range(3))

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            sizes = list(pool.map(work, range(threads)))
        wall = time.monotonic() - started
        assert all(size == 3 * round(3 * SECONDS_PER_CHAR * OUTPUT_RATE) for size in sizes)
        assert len(double.infers) == 3 * threads and double.peak_in_flight >= 48
        # one connection per client thread (the server double runs one thread per connection)
        assert len({r.thread for r in double.infers}) == threads
        assert wall < 3 * threads * 0.1 / 16 * 2.5  # batched: the server's capacity, not one at a time


# Start mode: koe runs and supervises the server


def model_repository(tmp_path: Path, **config) -> Path:
    repository = tmp_path / "model_repo"
    repository.mkdir(exist_ok=True)
    (repository / "kserve_double.json").write_text(json.dumps(config))
    return repository


def starts(repository: Path) -> list[dict]:
    path = repository / "starts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def served_by(repository: Path, pid: int | None = None) -> list[dict]:
    """What the server process `pid` (default: every one) answered, from its log."""
    logs = [repository / f"infers-{pid}.jsonl"] if pid else sorted(repository.glob("infers-*.jsonl"))
    return [json.loads(line) for log in logs if log.exists() for line in log.read_text().splitlines()]


def start_backend(repository: Path, tmp_path: Path, **start) -> Backend:
    options = {"model_repository": str(repository), "command": FAKE_TRITONSERVER, "log_dir": str(tmp_path), **start}
    return Backend(start=options)


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reaped by us if it was our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def test_start_mode_launches_waits_and_stops_the_server(tmp_path, voices, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what Ray sets in a GPU actor
    repository = model_repository(tmp_path, server={"ready_after_seconds": 0.5})
    backend = start_backend(repository, tmp_path, args=["--log-verbose=0"])
    try:
        assert backend.synthesize("アイ", voices[0], 1).size > 0
        (launch,) = starts(repository)
        argv = launch["argv"]
        assert argv[:2] == ["--model-repository", str(repository)] and argv[-1] == "--log-verbose=0"
        ports = [int(argv[argv.index(flag) + 1]) for flag in ("--http-port", "--grpc-port", "--metrics-port")]
        assert len(set(ports)) == 3 and launch["cuda_visible_devices"] == "3"
        pid = backend._server.pid
    finally:
        backend.close()
    assert gone(pid)


def test_a_dead_server_is_restarted_and_the_request_sent_again(tmp_path, voices):
    repository = model_repository(tmp_path, scripts=[["ok", "exit"], []])
    backend = start_backend(repository, tmp_path)
    try:
        backend.synthesize("ア", voices[0], 1)
        assert backend.synthesize("イ", voices[0], 1).size > 0  # its server died answering it
        first, second = starts(repository)
        assert first["pid"] != second["pid"] and first["argv"] != second["argv"]  # new ports
        assert backend._server.restarts == 1
        served = [served_by(repository, launch["pid"]) for launch in (first, second)]
        assert [[r["target_text"] for r in infers] for infers in served] == [["ア"], ["イ"]]
    finally:
        backend.close()


def test_start_mode_gives_up_after_max_restarts(tmp_path, voices):
    repository = model_repository(tmp_path, scripts=[["exit"], ["exit"], ["exit"]])
    backend = start_backend(repository, tmp_path, max_restarts=1)
    try:
        with pytest.raises(TritonSetupError):
            backend.synthesize("ア", voices[0], 1)  # lost, restarted once, lost again
        with pytest.raises(TritonSetupError, match=r"exited \(1\) after 1 restart\(s\), giving up"):
            backend.synthesize("ア", voices[0], 1)
    finally:
        backend.close()


def test_a_server_that_cannot_start_fails_the_backend_with_its_output(tmp_path):
    repository = model_repository(tmp_path, exit_at_start=2)
    with pytest.raises(TritonSetupError) as error:
        start_backend(repository, tmp_path)
    message = str(error.value)
    assert "tritonserver exited (2) before it was ready" in message
    assert "failed to load all models (double)" in message  # the server's own last words
    assert len(starts(repository)) == 1  # not restarted: it would fail again


def test_a_server_never_ready_is_killed_after_the_timeout(tmp_path):
    repository = model_repository(tmp_path, server={"ready_after_seconds": 60})
    started = time.monotonic()
    with pytest.raises(TritonSetupError, match=r"not ready .* after 1 s \(server not ready|not ready with model"):
        start_backend(repository, tmp_path, ready_timeout_seconds=1)
    assert time.monotonic() - started < 15
    (launch,) = starts(repository)
    assert gone(launch["pid"])


def test_a_missing_model_repository_is_named(tmp_path):
    with pytest.raises(TritonSetupError, match="model repository not found on this node: /nonexistent/repo"):
        start_backend(Path("/nonexistent/repo"), tmp_path)


def test_a_missing_executable_is_named(tmp_path):
    with pytest.raises(TritonSetupError, match="cannot run '/nonexistent/tritonserver'"):
        start_backend(model_repository(tmp_path), tmp_path, command=["/nonexistent/tritonserver"])


ORPHAN_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from pipeline.tts.triton import Backend
backend = Backend(start={{"model_repository": {repository!r}, "command": {command!r}, "log_dir": {log_dir!r}}})
print(backend._server.pid, flush=True)
time.sleep(60)
"""


def test_the_server_dies_with_a_killed_actor(tmp_path):
    repository = model_repository(tmp_path)
    script = ORPHAN_SCRIPT.format(
        repo=str(REPO), repository=str(repository), command=FAKE_TRITONSERVER, log_dir=str(tmp_path)
    )
    actor = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(actor.stdout.readline())
        assert not gone(server_pid, within=0.2)
    finally:
        actor.send_signal(signal.SIGKILL)  # no atexit, no cleanup: as Ray kills an actor
        actor.wait(timeout=10)
    assert gone(server_pid)


# End to end


def triton_recipe(make_recipe, bank: Path, rows: int, **options) -> Path:
    conversations = [
        {"id": f"r{i}", "conversations": [{"role": "user", "content": f"質問その{i}です。よろしく。"}]}
        for i in range(rows)
    ]
    return make_recipe(
        conversations,
        speakers={"bank": str(bank)},
        tts={"backend": "cosyvoice2-triton", "options": options},
        qc={"enabled": False},  # the double's audio is a tone
    )


def test_koe_run_through_the_server_double(make_recipe, reference_bank, tmp_path):
    with KServeServerDouble() as double:
        recipe = triton_recipe(make_recipe, reference_bank, 4, url=double.url)
        koe("run", str(recipe), "--output", str(tmp_path / "out"), "--no-progress")
        assert len(double.infers) == 4
        assert {r.reference_text for r in double.infers} == {"こんにちは。"}
    rows = read_manifest(tmp_path / "out" / "manifest.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["written"] * 4
    with tarfile.open(tmp_path / "out" / "shards" / "t-000000.tar") as tar:
        sample = json.loads(tar.extractfile("src-r0.json").read())
    render = sample["render"]
    assert render["backend"] == "cosyvoice2-triton" and render["model"].startswith("CosyVoice2 (cosyvoice2 on Triton")
    assert all(t["seed"] is not None for t in sample["turns"] if "start" in t)


def test_gpu_actor_pool_starts_one_server_per_gpu(local_gpu_ray, make_recipe, reference_bank, tmp_path):
    from pipeline.executors import RayExecutor
    from pipeline.run import run_recipe

    repository = model_repository(tmp_path, server={"capacity": 4, "base_latency": 0.05})
    start = {"model_repository": str(repository), "command": FAKE_TRITONSERVER, "log_dir": str(tmp_path)}
    path = triton_recipe(make_recipe, reference_bank, 12, start=start)
    overrides = [
        "tts.num_gpus=1",
        "tts.cpus_per_actor=0",
        "tts.concurrency=8",
        "execution.items_in_flight=4",
        "execution.row_requests_in_flight=3",
    ]
    summary = run_recipe(load_recipe(path, overrides), tmp_path / "out", RayExecutor(), show_progress=False)
    assert summary.statuses["written"] == 12
    launches = starts(repository)
    assert sorted(launch["cuda_visible_devices"] for launch in launches) == ["0", "1"]  # one server per actor's GPU
    assert len(served_by(repository)) == 12
    local_gpu_ray.shutdown()  # the actors go, and their servers with them
    assert all(gone(launch["pid"]) for launch in launches)


def test_the_triton_profile_of_sft_magpie():
    recipe = load_recipe(REPO / "recipes" / "sft_magpie.yaml", ["profile=triton"])
    tts, execution = recipe.tts, recipe.execution
    assert tts.backend == "cosyvoice2-triton" and tts.num_gpus == 1 and tts.accelerator_type == "H200"
    assert tts.concurrency == 256 and tts.runtime_env is None
    assert execution.items_in_flight * execution.row_requests_in_flight == 32  # up to 32 requests per shard task
    start = tts.options["start"]
    assert Path(start["model_repository"]).parts[1] == "models" and start["command"] == ["tritonserver"]
    # the longest a synthesize call can take (a request, a server restart, the request again) fits the pool's
    # call timeout, so a call waiting out a restart is not mistaken for a hung actor
    longest = 2 * tts.options["request_timeout_seconds"] + start["ready_timeout_seconds"] + 30
    assert longest < execution.model_call_timeout_seconds
