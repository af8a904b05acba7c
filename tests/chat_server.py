"""A test double for an OpenAI-compatible model server (vLLM serving an audio captioner); no model behind it.

`ChatServerDouble` listens on 127.0.0.1 (a free port) and answers `GET /v1/models` (one model, with a
vLLM-style `root`) and `POST /v1/chat/completions`. It checks each chat request as vLLM would for
the captioner (the served model name; one user message whose content is one `input_audio` or
`audio_url` part; base64 of a WAV that soundfile reads, mono, 16 kHz) and answers with a caption
computed from the audio's duration and loudness, so the same clip always gets the same caption.

Each chat request takes the next scripted behaviour (`script([...])`), "ok" once the script is spent:
  ok          the caption, finish_reason "stop"
  <status>    that HTTP status with an OpenAI-style error body, e.g. "500", "400";
              "429" and "429:<seconds>" send Retry-After (1 s unless given)
  slow:<s>    wait s seconds, then answer as "ok" (a client with a shorter timeout has gone by then)
  drop        close the connection without any response
  empty       an empty caption
  length      the caption cut short, finish_reason "length"
  japanese    a Japanese caption
  nochoices   a 200 answer whose `choices` is empty
Every request is recorded (`requests`, `chat_requests`) with its headers, minus the key.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np
import soundfile as sf

from pipeline.captioners.base import CAPTION_SAMPLE_RATE
from tests.local_server import LocalServer, server_fixture

DEFAULT_RETRY_AFTER_SECONDS = 1
JAPANESE_CAPTION = "静かな部屋で短い物音が聞こえる。"
WORDS_BEFORE_CUT = 3
FIXED_BEHAVIOURS = {"ok", "drop", "empty", "length", "japanese", "nochoices"}


class RequestRejected(Exception):
    """What vLLM would answer with an error status instead of a completion."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case; the authorization value redacted
    body: Any  # the parsed JSON body, or None
    behaviour: str  # the scripted behaviour it got ("" for GET)
    authorized: bool  # it carried the bearer key the double was started with (always True without one)
    received_at: float  # time.monotonic()


def caption_for(audio: np.ndarray, sample_rate: int) -> str:
    """A deterministic English caption from the clip's duration and loudness."""
    seconds = audio.size / sample_rate
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    dbfs = 20 * np.log10(rms) if rms > 0 else -np.inf
    loudness = "near-silent" if dbfs < -60 else "quiet" if dbfs < -30 else "moderate" if dbfs < -12 else "loud"
    return f"A {loudness} sound lasting {seconds:.2f} seconds."


def audio_of(body: Any, model: str) -> np.ndarray:
    """The one mono 16 kHz clip of a captioner chat request; raises `RequestRejected` as vLLM would answer."""
    if not isinstance(body, dict):
        raise RequestRejected(400, "the body is not a JSON object")
    if body.get("model") != model:
        raise RequestRejected(404, f"The model `{body.get('model')}` does not exist.")
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise RequestRejected(400, "the captioner takes exactly one message")
    if messages[0].get("role") != "user":
        raise RequestRejected(400, "the captioner takes exactly one user message (no system message)")
    content = messages[0].get("content")
    if not isinstance(content, list) or len(content) != 1:
        raise RequestRejected(400, "the captioner takes exactly one content part: the audio, no text")
    part = content[0] if isinstance(content[0], dict) else {}
    if part.get("type") == "input_audio":
        input_audio = part.get("input_audio") or {}
        if input_audio.get("format") != "wav":
            raise RequestRejected(400, f"unsupported input_audio format {input_audio.get('format')!r}")
        data = input_audio.get("data", "")
    elif part.get("type") == "audio_url":
        prefix = "data:audio/wav;base64,"
        url = (part.get("audio_url") or {}).get("url", "")
        if not url.startswith(prefix):
            raise RequestRejected(400, f"audio_url must be a {prefix}... data URL")
        data = url[len(prefix) :]
    else:
        raise RequestRejected(400, f"unsupported content part type {part.get('type')!r}")
    try:
        audio, rate = sf.read(io.BytesIO(base64.b64decode(data, validate=True)), dtype="float32")
    except (binascii.Error, sf.LibsndfileError) as exc:
        raise RequestRejected(400, f"the audio does not decode: {exc}") from None
    if audio.ndim != 1 or rate != CAPTION_SAMPLE_RATE:
        raise RequestRejected(
            400, f"expected mono {CAPTION_SAMPLE_RATE} Hz audio, got shape {audio.shape} at {rate} Hz"
        )
    return audio


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as vLLM's uvicorn speaks
    server: Any  # the LocalServer, whose `double` is the double

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output is for the tests."""

    def do_GET(self) -> None:
        double = self.server.double
        authorized = self._record(None, "")
        if not authorized:
            self._send_json(401, {"error": "Unauthorized"})
        elif self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [double.model_card()]})
        else:
            self._send_json(404, _error(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        double = self.server.double
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            body = None
        is_chat = self.path.rstrip("/") == "/v1/chat/completions"
        behaviour = double.next_behaviour() if is_chat else ""
        if not self._record(body, behaviour):
            self._send_json(401, {"error": "Unauthorized"})
            return
        if not is_chat:
            self._send_json(404, _error(404, f"no route {self.path}"))
            return
        with double.in_flight():
            self._answer(behaviour, body)

    def _answer(self, behaviour: str, body: Any) -> None:
        double = self.server.double
        kind, _, argument = behaviour.partition(":")
        if kind.isdigit():
            status = int(kind)
            retry_after = {"Retry-After": argument or str(DEFAULT_RETRY_AFTER_SECONDS)} if status == 429 else {}
            self._send_json(status, _error(status, f"scripted {behaviour}"), retry_after)
            return
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "slow" and double.stopping.wait(float(argument)):
            return
        try:
            audio = audio_of(body, double.model)
        except RequestRejected as exc:
            self._send_json(exc.status, _error(exc.status, str(exc)))
            return
        text, finish_reason = caption_for(audio, CAPTION_SAMPLE_RATE), "stop"
        if kind == "empty":
            text = ""
        elif kind == "length":
            text, finish_reason = " ".join(text.split()[:WORDS_BEFORE_CUT]), "length"
        elif kind == "japanese":
            text = JAPANESE_CAPTION
        choices = [] if kind == "nochoices" else [_choice(text, finish_reason)]
        self._send_json(200, double.completion(choices))

    def _record(self, body: Any, behaviour: str) -> bool:
        double = self.server.double
        authorization = self.headers.get("Authorization")
        authorized = double.api_key is None or authorization == f"Bearer {double.api_key}"
        headers = {k.lower(): v for k, v in self.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = "Bearer <redacted>"
        double.record(RecordedRequest(self.command, self.path, headers, body, behaviour, authorized, time.monotonic()))
        return authorized

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a "slow" answer past its timeout)


def _known(behaviour: str) -> bool:
    kind, _, argument = behaviour.partition(":")
    if kind == "slow":
        return argument.replace(".", "", 1).isdigit()
    if kind.isdigit():
        return len(kind) == 3 and (not argument or (kind == "429" and argument.isdigit()))
    return kind in FIXED_BEHAVIOURS and not argument


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "ChatServerDoubleError", "param": None, "code": status}}


def _choice(text: str, finish_reason: str) -> dict[str, Any]:
    return {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish_reason,
        "logprobs": None,
    }


class ChatServerDouble(LocalServer):
    """Test double for an OpenAI-compatible model server: `with ChatServerDouble(...) as server: server.url`."""

    handler = _Handler
    thread_name = "chat-server-double"

    def __init__(
        self,
        model: str = "captioner-double",
        *,
        root: str = "/models/captioner-double",
        revision: str | None = None,
        api_key: str | None = None,
        port: int = 0,
    ):
        self.model, self.root, self.revision, self.api_key = model, root, revision, api_key
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._script: deque[str] = deque()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self.max_in_flight = 0
        super().__init__(port)

    @property
    def url(self) -> str:
        """The OpenAI API root to give a client as base_url."""
        return f"{self.origin}/v1"

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()  # a slow answer in progress gives up
        super().__exit__(*exc_info)

    def script(self, behaviours: list[str]) -> None:
        """Queue behaviours for the next chat requests, in arrival order."""
        unknown = [b for b in behaviours if not _known(b)]
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}; see the chat_server module docstring")
        with self._lock:
            self._script.extend(behaviours)

    def next_behaviour(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else "ok"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.rstrip("/") == "/v1/chat/completions"]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Counts chat requests being answered at once, for concurrency assertions."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def model_card(self) -> dict[str, Any]:
        card = {
            "id": self.model,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "chat-server-double",
            "root": self.root,
            "parent": None,
        }
        if self.revision is not None:
            card["revision"] = self.revision
        return card

    def completion(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        text = choices[0]["message"]["content"] if choices else ""
        return {
            "id": "chatcmpl-double",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": len(text.split())},
        }


def chat_server_fixture(name: str = "chat_server", **options: Any) -> Any:
    """A pytest fixture (registered as `name`) that runs a `ChatServerDouble(**options)` for one test."""
    return server_fixture(ChatServerDouble, name, **options)
