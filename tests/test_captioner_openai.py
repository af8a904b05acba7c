"""The `openai` captioner backend against a local test double of an OpenAI-compatible server.

Retry waits are the openai client's own (0.5 s backoff, or Retry-After); each test keeps them to about a second.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from chat_server import JAPANESE_CAPTION, ChatServerDouble, chat_server_fixture
from pydantic import ValidationError

from pipeline.captioners.base import CAPTION_SAMPLE_RATE, Caption
from pipeline.captioners.openai import Captioner, CaptionRequestError, Options
from pipeline.errors import BackendSetupError

MODEL = "qwen3-omni-captioner-under-test"
CAPTION = "A moderate sound lasting 1.00 seconds."  # what the double says of CLIP
CLIP = (0.1 * np.sin(2 * np.pi * 440 * np.arange(CAPTION_SAMPLE_RATE) / CAPTION_SAMPLE_RATE)).astype(np.float32)
KEY_ENV = "KOE_TEST_CAPTIONER_KEY"
SECRET = "sk-koe-test-0123456789"
SEED = 11

chat_server = chat_server_fixture("chat_server", model=MODEL)


def make_backend(server: ChatServerDouble, **options) -> Captioner:
    return Captioner(**{"base_url": server.url, "model": MODEL, "timeout_seconds": 5, "max_retries": 2, **options})


def unused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def sent_audio(part: dict) -> np.ndarray:
    data = part["input_audio"]["data"] if part["type"] == "input_audio" else part["audio_url"]["url"].split(",", 1)[1]
    audio, rate = sf.read(io.BytesIO(base64.b64decode(data)), dtype="float32")
    assert rate == CAPTION_SAMPLE_RATE
    return audio


def test_one_audio_part_in_one_user_message_with_the_card_sampling(chat_server):
    backend = make_backend(chat_server)
    assert backend.caption(CLIP, SEED) == Caption(CAPTION, "stop")
    (request,) = chat_server.chat_requests
    body = request.body
    assert [m["role"] for m in body["messages"]] == ["user"]
    (part,) = body["messages"][0]["content"]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    assert np.abs(sent_audio(part) - CLIP).max() < 1e-4  # 16-bit PCM
    assert (body["model"], body["temperature"], body["top_p"], body["top_k"]) == (MODEL, 0.6, 0.95, 20)
    assert (body["max_tokens"], body["seed"]) == (512, SEED)  # the caller's seed, per request


def test_audio_url_part(chat_server):
    assert make_backend(chat_server, content_part="audio_url").caption(CLIP, SEED) == Caption(CAPTION, "stop")
    (request,) = chat_server.chat_requests
    (part,) = request.body["messages"][0]["content"]
    assert part["audio_url"]["url"].startswith("data:audio/wav;base64,")
    assert np.abs(sent_audio(part) - CLIP).max() < 1e-4


def test_429_is_retried_after_the_servers_retry_after(chat_server):
    chat_server.script(["429:1"])
    assert make_backend(chat_server).caption(CLIP, SEED) == Caption(CAPTION, "stop")
    first, second = chat_server.chat_requests
    assert second.received_at - first.received_at >= 0.95  # the backoff alone would be 0.375-0.5 s


@pytest.mark.parametrize("failure", ["500", "drop"])
def test_server_error_and_dropped_connection_are_retried(chat_server, failure):
    chat_server.script([failure])
    assert make_backend(chat_server).caption(CLIP, SEED) == Caption(CAPTION, "stop")
    assert [r.behaviour for r in chat_server.chat_requests] == [failure, "ok"]


def test_answer_slower_than_the_timeout_is_abandoned_and_retried(chat_server):
    chat_server.script(["slow:5"])
    started = time.monotonic()
    assert make_backend(chat_server, timeout_seconds=0.5).caption(CLIP, SEED) == Caption(CAPTION, "stop")
    assert time.monotonic() - started < 2.5
    assert len(chat_server.chat_requests) == 2


@pytest.mark.parametrize("failure", ["503", "slow:5"])
def test_spent_retries_raise_without_hanging(chat_server, failure):
    chat_server.script([failure] * 3)
    started = time.monotonic()
    with pytest.raises(CaptionRequestError, match="127.0.0.1"):
        make_backend(chat_server, max_retries=2, timeout_seconds=0.3).caption(CLIP, SEED)
    assert time.monotonic() - started < 4  # three attempts, backoff 0.5 s then 1 s (less jitter)
    assert len(chat_server.chat_requests) == 3


@pytest.mark.parametrize(("answer", "message"), [("400", "BadRequestError"), ("nochoices", "without choices")])
def test_a_4xx_or_an_answer_without_choices_raises_at_once(chat_server, answer, message):
    chat_server.script([answer, "ok"])
    with pytest.raises(CaptionRequestError, match=message):
        make_backend(chat_server).caption(CLIP, SEED)
    assert len(chat_server.chat_requests) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("empty", Caption("", "stop")), ("length", Caption("A moderate sound", "length")), ("japanese", None)],
)
def test_the_models_answer_is_returned_as_is_for_the_caller_to_judge(chat_server, answer, expected):
    chat_server.script([answer])
    assert make_backend(chat_server).caption(CLIP, SEED) == (expected or Caption(JAPANESE_CAPTION, "stop"))


def test_requests_in_flight_stay_within_max_concurrency(chat_server):
    backend = make_backend(chat_server, max_concurrency=2)
    chat_server.script(["slow:0.3"] * 6)
    results: list[Caption] = []
    threads = [threading.Thread(target=lambda: results.append(backend.caption(CLIP, SEED))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [Caption(CAPTION, "stop")] * 6
    assert chat_server.max_in_flight == 2


def test_describe_names_model_revision_endpoint_and_sampling_from_one_models_call():
    with ChatServerDouble(MODEL, root="/models/weights", revision="0123abc") as server:
        backend = make_backend(server)
        described = [backend.describe() for _ in range(3)]
        port = server.url.split(":")[2].split("/")[0]
        assert [r.path for r in server.requests] == ["/v1/models"]
    assert described[0] == {
        "model": MODEL,
        "revision": "0123abc",
        "root": "/models/weights",
        "endpoint": f"127.0.0.1:{port}",
        "sampling": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "max_tokens": 512},
    }
    assert described[0] == described[2]


def test_revision_is_empty_when_the_server_reports_none(chat_server):
    assert make_backend(chat_server).describe()["revision"] == ""


def test_the_key_goes_as_a_bearer_token_and_nowhere_else(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ChatServerDouble(MODEL, api_key=SECRET) as server:
        backend = make_backend(server, api_key_env=KEY_ENV, max_retries=0)
        assert backend.caption(CLIP, SEED) == Caption(CAPTION, "stop")
        server.script(["500"])
        with pytest.raises(CaptionRequestError) as failure:
            backend.caption(CLIP, SEED)
        assert all(r.authorized for r in server.requests) and len(server.requests) == 3
        assert SECRET not in json.dumps([r.headers for r in server.requests])
    assert SECRET not in json.dumps(backend.describe())
    assert SECRET not in str(failure.value) and SECRET not in str(failure.value.__cause__)


def test_a_missing_key_variable_sends_empty_as_vllm_expects(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ChatServerDouble(MODEL, api_key="EMPTY") as server:
        assert make_backend(server, api_key_env=KEY_ENV).caption(CLIP, SEED) == Caption(CAPTION, "stop")


def test_setup_fails_on_a_wrong_key_naming_the_variable_not_the_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    with ChatServerDouble(MODEL, api_key="another-key") as server:
        with pytest.raises(BackendSetupError, match=KEY_ENV) as failure:
            make_backend(server, api_key_env=KEY_ENV)
    assert SECRET not in str(failure.value)


def test_setup_fails_early_when_no_server_answers():
    url = unused_url()
    with pytest.raises(BackendSetupError, match="no OpenAI-compatible server answers") as failure:
        Captioner(base_url=url, model=MODEL, max_retries=0)
    assert url in str(failure.value)


def test_setup_fails_early_when_the_model_is_not_served():
    with ChatServerDouble("some-other-model") as server:
        with pytest.raises(BackendSetupError) as failure:
            make_backend(server)
    assert all(part in str(failure.value) for part in (server.url, MODEL, "it serves: some-other-model"))


def test_options_defaults_and_what_a_recipe_may_not_say():
    options = Options(base_url="http://gpu-node:8000/v1/", model=MODEL)
    assert options.base_url == "http://gpu-node:8000/v1"
    assert (options.api_key_env, options.timeout_seconds, options.max_retries, options.max_concurrency) == (
        "OPENAI_API_KEY",
        120,
        5,
        8,
    )
    assert (options.content_part, options.temperature, options.top_p, options.top_k) == ("input_audio", 0.6, 0.95, 20)
    for bad in (
        {"api_key": SECRET},
        {"base_url": "http://user:pw@gpu-node:8000/v1"},
        {"base_url": "gpu-node:8000"},
        {"content_part": "text"},
        {"max_concurrency": 0},
    ):
        with pytest.raises(ValidationError):
            Options(**{"base_url": "http://gpu-node:8000/v1", "model": MODEL, **bad})


def test_stereo_audio_is_refused_before_any_request(chat_server):
    with pytest.raises(ValueError, match="mono"):
        make_backend(chat_server).caption(np.zeros((CAPTION_SAMPLE_RATE, 2), dtype=np.float32), SEED)
    assert chat_server.chat_requests == []


def audio_part(audio: np.ndarray, rate: int = CAPTION_SAMPLE_RATE) -> dict:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="PCM_16")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(), "format": "wav"},
    }


def user(*parts: dict) -> dict:
    return {"role": "user", "content": list(parts)}


@pytest.mark.parametrize(
    ("messages", "status"),
    [
        ([user(audio_part(CLIP))], 200),
        ([{"role": "system", "content": "Describe."}, user(audio_part(CLIP))], 400),
        ([user({"type": "text", "text": "Describe."}, audio_part(CLIP))], 400),
        ([user({"type": "input_audio", "input_audio": {"data": "!!", "format": "wav"}})], 400),
        ([user(audio_part(CLIP, 44100))], 400),
        ([user(audio_part(np.stack([CLIP, CLIP], axis=1)))], 400),
    ],
    ids=["valid", "system-message", "text-part", "not-base64", "44k", "stereo"],
)
def test_the_double_refuses_what_the_captioner_server_would(chat_server, messages, status):
    request = urllib.request.Request(
        f"{chat_server.url}/chat/completions",
        data=json.dumps({"model": MODEL, "messages": messages}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            answered = response.status
    except urllib.error.HTTPError as error:
        answered = error.code
    assert answered == status


def test_the_double_refuses_an_unknown_script():
    with ChatServerDouble() as server, pytest.raises(ValueError, match="slwo"):
        server.script(["ok", "slwo:1"])
