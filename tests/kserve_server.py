"""A test double for a Triton Inference Server serving upstream CosyVoice's Triton models; no model behind it.

`KServeServerDouble` listens on 127.0.0.1 and answers the KServe v2 HTTP protocol as far as `tritonclient.http`
uses it: `GET /v2/health/live`, `/v2/health/ready`, `/v2` (server metadata), `/v2/models/<m>/ready`, `/v2/models/<m>`
(metadata), `/v2/models/<m>/config`, `POST /v2/repository/index`, and `POST /v2/models/<m>/infer` with tensors as
JSON `data` or as binary data after the JSON header (`Inference-Header-Content-Length`; BYTES elements as a 4-byte
little-endian length and the bytes), answered in binary when asked. Errors are `{"error": "..."}` with Triton's
status codes (400 for a bad request or an unknown model, 500 for a model exception).

Its models have the interface of upstream's BLS models (FunAudioLLM/CosyVoice ace7c47, runtime/triton_trtllm/
model_repo/cosyvoice2/config.pbtxt, and the same in cosyvoice2_dit and model_repo_cosyvoice3/cosyvoice3): inputs
`reference_wav` FP32 [-1], `reference_wav_len` INT32 [1], `reference_text` BYTES [1] (all three optional: without
them the model speaks its cached default speaker) and `target_text` BYTES [1]; output `waveform` FP32 [-1]; with
`max_batch_size` > 0 every shape gets a leading batch dimension. The prompt audio is taken as 16 kHz, as upstream
hard-codes. As upstream's cosyvoice3 and cosyvoice2_dit models do, those two keep prompt features per
`reference_text`: a second prompt with the same text gets the first one's voice. `seed_input` adds an optional
UINT64 input of that name, which upstream's models do not have (a patched model repository would).

The waveform is 24 kHz and `seconds_per_char` × len(target_text) long: a tone whose pitch follows the voice (a digest
of the prompt audio used) plus noise that follows the text and the seed (42 when none is sent: upstream's cosyvoice2
model fixes the LLM's random_seed at 42). So the same request gives the same audio, another seed another.

A batching server: `capacity` requests are served at once, each for `base_latency` + `latency_per_char` ×
len(target_text) seconds; more wait their turn (so throughput grows with requests in flight up to `capacity`).
Every infer is recorded (`infers`), and with `log_path` appended to that file as one JSON line (from another process).

Each infer request takes the next scripted behaviour (`script([...])`), "ok" once the script is spent:
  ok          the waveform
  <status>    that HTTP status with a Triton-style error body, e.g. "500", "400"
  slow:<s>    wait s seconds more, then answer as "ok"
  drop        close the connection without any response
  empty       a waveform of no samples
  nan         a waveform of NaNs
  exit        the whole process exits at once (the process double: a crashed tritonserver)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np

from tests.local_server import POLL_SECONDS, LocalServer, _Server

OUTPUT_RATE = 24000  # upstream's clients write the waveform at 24 kHz for CosyVoice
PROMPT_RATE = 16000  # upstream's model resamples the prompt from 16 kHz ("sample rate hardcoded in server")
UPSTREAM_SEED = 42  # model_repo/cosyvoice2/1/model.py forward_llm: random_seed
CACHES_PROMPTS_BY_TEXT = {"cosyvoice3", "cosyvoice2_dit"}  # their BLS keeps speaker_cache[reference_text]
DTYPES = {"FP32": np.float32, "INT32": np.int32, "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_}
FIXED_BEHAVIOURS = {"ok", "drop", "empty", "nan", "exit"}


class TritonError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class ModelDouble:
    """One served model: upstream's interface (see the module docstring) and its readiness."""

    name: str
    max_batch_size: int = 16
    decoupled: bool = False
    seed_input: str | None = None
    ready_after_seconds: float = 0.0  # still loading until then (from server start)
    state: str = "READY"  # what the repository index says once loaded; "UNAVAILABLE" never gets ready
    unavailable_reason: str = ""

    def inputs(self) -> list[tuple[str, str, list[int], bool]]:
        """(name, datatype, dims without the batch dimension, optional)"""
        declared = [
            ("reference_wav", "FP32", [-1], True),
            ("reference_wav_len", "INT32", [1], True),
            ("reference_text", "BYTES", [1], True),
            ("target_text", "BYTES", [1], False),
        ]
        if self.seed_input:
            declared.append((self.seed_input, "UINT64", [1], True))
        return declared

    def batched(self, dims: list[int]) -> list[int]:
        return [-1, *dims] if self.max_batch_size > 0 else dims

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": "python",
            "inputs": [{"name": n, "datatype": t, "shape": self.batched(d)} for n, t, d, _ in self.inputs()],
            "outputs": [{"name": "waveform", "datatype": "FP32", "shape": self.batched([-1])}],
        }

    def config(self) -> dict:
        """As Triton's JSON model config writes it (int64 dims as strings)."""
        kinds = {"BYTES": "TYPE_STRING"}
        return {
            "name": self.name,
            "platform": "",
            "backend": "python",
            "max_batch_size": self.max_batch_size,
            "input": [
                {"name": n, "data_type": kinds.get(t, f"TYPE_{t}"), "dims": [str(x) for x in d], "optional": o}
                for n, t, d, o in self.inputs()
            ],
            "output": [{"name": "waveform", "data_type": "TYPE_FP32", "dims": ["-1"]}],
            "dynamic_batching": {"max_queue_delay_microseconds": "0"},
            "model_transaction_policy": {"decoupled": self.decoupled},
            "instance_group": [{"count": 4, "kind": "KIND_CPU"}],
        }


@dataclass
class InferRecord:
    model: str
    target_text: str
    reference_text: str | None
    prompt_samples: int | None  # reference_wav_len
    prompt_digest: str | None  # of the prompt audio sent
    voice: str | None  # of the prompt audio used (the cached one, for a model that caches by text)
    seed: int | None
    behaviour: str
    status: int
    queued: float  # time.time() when the request arrived
    started: float  # when a capacity slot took it
    ended: float
    thread: str = field(default="")


def _bytes_elements(raw: bytes) -> list[bytes]:
    """Triton's binary BYTES tensor: each element a 4-byte little-endian length, then that many bytes."""
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TritonError(400, "malformed BYTES tensor: truncated length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TritonError(400, "malformed BYTES tensor: truncated element")
        items.append(raw[offset : offset + length])
        offset += length
    return items


def _flatten(data: Any) -> list:
    if isinstance(data, list):
        return [x for item in data for x in _flatten(item)]
    return [data]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()[:12]


class _KServeServer(_Server):
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on its request (a timeout) is no error of the double's; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class KServeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Triton's HTTP endpoint and the client's pool expect
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.double.lock:
            self.server.double.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.double.lock:
            self.server.double.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self.server.double.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.double.handle(self, "POST")


class KServeServerDouble(LocalServer):
    """See the module docstring. `port` 0: a free port (in-test use); the process double passes its `--http-port`."""

    handler = KServeHandler
    thread_name = "kserve-double"
    server_class = _KServeServer  # a deep accept queue: hundreds of clients connect at once, as to Triton

    def __init__(
        self,
        models: list[ModelDouble] | None = None,
        *,
        port: int = 0,
        capacity: int = 1_000_000,
        base_latency: float = 0.0,
        latency_per_char: float = 0.0,
        seconds_per_char: float = 0.15,
        ready_after_seconds: float = 0.0,
        log_path: str | None = None,
        version: str = "2.59.0-double",
    ):
        super().__init__(port)
        self.connections: set[socket.socket] = set()  # open keep-alive connections: closed when the server stops
        self.models = {m.name: m for m in (models or [ModelDouble("cosyvoice2")])}
        self.capacity = capacity
        self.base_latency, self.latency_per_char = base_latency, latency_per_char
        self.seconds_per_char = seconds_per_char
        self.ready_after_seconds = ready_after_seconds
        self.version = version
        self.started_at = time.monotonic()
        self.slots = threading.BoundedSemaphore(capacity)
        self.lock = threading.Lock()
        self.behaviours: deque[str] = deque()
        self.infers: list[InferRecord] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.in_flight = self.peak_in_flight = 0
        self.prompt_cache: dict[tuple[str, str], str] = {}  # (model, reference_text) -> voice
        self.log_path = log_path

    @property
    def url(self) -> str:
        """host:port, as tritonclient takes it."""
        return self.origin.removeprefix("http://")

    def script(self, behaviours: list[str]) -> None:
        for behaviour in behaviours:
            if behaviour not in FIXED_BEHAVIOURS and not behaviour.isdigit() and not behaviour.startswith("slow:"):
                raise ValueError(f"unknown behaviour {behaviour!r}")
        with self.lock:
            self.behaviours.extend(behaviours)

    def __exit__(self, *exc_info: object) -> None:
        """Stops listening and closes every open connection, as a server that goes away does."""
        super().__exit__(*exc_info)
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve_forever(self) -> None:
        """Serve from this thread until the process ends (the process double)."""
        self._server.serve_forever(poll_interval=POLL_SECONDS)

    # The protocol

    def _ready(self) -> bool:
        return time.monotonic() - self.started_at >= self.ready_after_seconds

    def _model_ready(self, model: ModelDouble) -> bool:
        loaded = time.monotonic() - self.started_at >= max(self.ready_after_seconds, model.ready_after_seconds)
        return loaded and model.state == "READY"

    def _model(self, name: str) -> ModelDouble:
        model = self.models.get(name)
        if model is None:
            raise TritonError(400, f"Request for unknown model: '{name}' is not found")
        return model

    def handle(self, request: KServeHandler, method: str) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append((method, path))
        body = b""
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            body = request.rfile.read(length)
        try:
            parts = path.strip("/").split("/")
            if method == "GET" and path == "/v2/health/live":
                return self._reply(request, 200, b"")
            if method == "GET" and path == "/v2/health/ready":
                return self._reply(request, 200 if self._ready() else 503, b"")
            if method == "GET" and path == "/v2":
                return self._json(request, 200, {"name": "triton", "version": self.version, "extensions": []})
            if method == "POST" and path == "/v2/repository/index":
                return self._json(request, 200, self._index())
            if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
                model = self._model(parts[2])
                tail = parts[3:]
                if method == "GET" and tail == ["ready"]:
                    return self._reply(request, 200 if self._model_ready(model) else 400, b"")
                if method == "GET" and not tail:
                    return self._json(request, 200, model.metadata())
                if method == "GET" and tail == ["config"]:
                    return self._json(request, 200, model.config())
                if method == "POST" and tail == ["infer"]:
                    return self._infer(request, model, body)
            raise TritonError(400, f"Not Found: {method} {path}")
        except TritonError as error:
            self._json(request, error.status, {"error": str(error)})

    def _index(self) -> list[dict]:
        index = []
        for model in self.models.values():
            state = model.state if self._model_ready(model) or model.state != "READY" else "LOADING"
            entry = {"name": model.name, "version": "1", "state": state}
            if model.unavailable_reason:
                entry["reason"] = model.unavailable_reason
            index.append(entry)
        return index

    def _reply(self, request: KServeHandler, status: int, body: bytes, headers: dict | None = None) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _json(self, request: KServeHandler, status: int, document: Any) -> None:
        self._reply(request, status, json.dumps(document).encode(), {"Content-Type": "application/json"})

    # Inference

    def _parse(self, request: KServeHandler, model: ModelDouble, body: bytes) -> tuple[dict, dict[str, np.ndarray]]:
        header_length = request.headers.get("Inference-Header-Content-Length")
        split = int(header_length) if header_length else len(body)
        try:
            document = json.loads(body[:split])
        except ValueError:
            raise TritonError(400, "failed to parse the request JSON buffer") from None
        declared = {n: (t, d, o) for n, t, d, o in model.inputs()}
        tensors: dict[str, np.ndarray] = {}
        offset = split
        for tensor in document.get("inputs", []):
            name, datatype, shape = tensor["name"], tensor["datatype"], [int(x) for x in tensor["shape"]]
            if name not in declared:
                raise TritonError(400, f"unexpected inference input '{name}' for model '{model.name}'")
            expected_type, dims, _ = declared[name]
            if datatype != expected_type:
                raise TritonError(
                    400,
                    f"inference input '{name}' data-type is '{datatype}', but model '{model.name}' expects "
                    f"'{expected_type}'",
                )
            expected_rank = len(dims) + (1 if model.max_batch_size > 0 else 0)
            fixed_ok = all(d == -1 or d == s for d, s in zip(dims, shape[-len(dims) :], strict=False))
            if len(shape) != expected_rank or not fixed_ok:
                raise TritonError(
                    400, f"unexpected shape for input '{name}' for model '{model.name}': {shape}, dims {dims}"
                )
            if model.max_batch_size > 0 and shape[0] > model.max_batch_size:
                raise TritonError(400, f"inference request batch-size must be <= {model.max_batch_size}")
            count = int(np.prod(shape))
            size = (tensor.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                raw = body[offset : offset + size]
                if len(raw) != size:
                    raise TritonError(400, f"unexpected end of binary data for input '{name}'")
                offset += size
                if datatype == "BYTES":
                    values = np.array(_bytes_elements(raw), dtype=object)
                else:
                    values = np.frombuffer(raw, dtype=DTYPES[datatype])
            else:
                flat = _flatten(tensor.get("data", []))
                if datatype == "BYTES":
                    values = np.array([v.encode() if isinstance(v, str) else v for v in flat], dtype=object)
                else:
                    values = np.array(flat, dtype=DTYPES[datatype])
            if values.size != count:
                raise TritonError(400, f"input '{name}': {values.size} elements for shape {shape}")
            tensors[name] = values.reshape(shape)
        missing = [n for n, (_, _, optional) in declared.items() if not optional and n not in tensors]
        if missing:
            raise TritonError(400, f"expected inference input '{missing[0]}' for model '{model.name}'")
        return document, tensors

    def _next_behaviour(self) -> str:
        with self.lock:
            return self.behaviours.popleft() if self.behaviours else "ok"

    def _infer(self, request: KServeHandler, model: ModelDouble, body: bytes) -> None:
        queued = time.time()
        if not self._model_ready(model):
            raise TritonError(400, f"Request for unknown model: '{model.name}' is not ready")
        document, tensors = self._parse(request, model, body)
        behaviour = self._next_behaviour()
        if behaviour == "exit":
            os._exit(1)
        if behaviour == "drop":
            request.close_connection = True
            return
        text = tensors["target_text"].reshape(-1)[0].decode("utf-8")
        reference_text = voice = prompt_digest = None
        prompt_samples = None
        if "reference_wav" in tensors:
            if "reference_wav_len" not in tensors or "reference_text" not in tensors:
                raise TritonError(500, "Failed to process the request(s) for model 'cosyvoice2_0_0': prompt incomplete")
            prompt_samples = int(tensors["reference_wav_len"].reshape(-1)[0])
            prompt = tensors["reference_wav"].reshape(-1)[:prompt_samples]
            reference_text = tensors["reference_text"].reshape(-1)[0].decode("utf-8")
            prompt_digest = voice = _digest(prompt)
            if model.name in CACHES_PROMPTS_BY_TEXT:
                with self.lock:
                    voice = self.prompt_cache.setdefault((model.name, reference_text), prompt_digest)
        seed = (
            int(tensors[model.seed_input].reshape(-1)[0]) if model.seed_input and model.seed_input in tensors else None
        )
        with self.lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            with self.slots:  # a batching server: `capacity` at once, the rest wait
                started = time.time()
                time.sleep(self.base_latency + self.latency_per_char * len(text))
                if behaviour.startswith("slow:"):
                    time.sleep(float(behaviour.split(":", 1)[1]))
                ended = time.time()
        finally:
            with self.lock:
                self.in_flight -= 1
        status = int(behaviour) if behaviour.isdigit() else 200
        record = InferRecord(
            model.name,
            text,
            reference_text,
            prompt_samples,
            prompt_digest,
            voice,
            seed,
            behaviour,
            status,
            queued,
            started,
            ended,
            threading.current_thread().name,
        )
        self._record(record)
        if status != 200:
            raise TritonError(
                status,
                f"Failed to process the request(s) for model '{model.name}_0_0', message: "
                "TritonModelException: Generated IDs is None or empty",
            )
        waveform = self._waveform(text, voice, UPSTREAM_SEED if seed is None else seed, behaviour)
        self._respond(request, document, model, waveform)

    def _record(self, record: InferRecord) -> None:
        with self.lock:
            self.infers.append(record)
            if self.log_path:
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")

    def _waveform(self, text: str, voice: str | None, seed: int, behaviour: str) -> np.ndarray:
        frames = 0 if behaviour == "empty" else round(len(text) * self.seconds_per_char * OUTPUT_RATE)
        key = hashlib.sha1(f"{seed}:{text}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
        pitch = 110.0 + int((voice or "0")[:4], 16) % 200
        t = np.arange(frames) / OUTPUT_RATE
        audio = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(frames)
        if behaviour == "nan":
            audio[:] = np.nan
        return audio.astype(np.float32)[None, :]  # [batch 1, T]

    def _respond(self, request: KServeHandler, document: dict, model: ModelDouble, waveform: np.ndarray) -> None:
        wanted = {o["name"]: o for o in document.get("outputs") or []}
        parameters = (wanted.get("waveform") or {}).get("parameters") or {}
        binary = parameters.get("binary_data", bool((document.get("parameters") or {}).get("binary_data_output")))
        shape = list(waveform.shape) if model.max_batch_size > 0 else [waveform.shape[1]]
        output: dict[str, Any] = {"name": "waveform", "datatype": "FP32", "shape": shape}
        response: dict[str, Any] = {"model_name": model.name, "model_version": "1", "outputs": [output]}
        if "id" in document:
            response["id"] = document["id"]
        if not binary:
            output["data"] = waveform.reshape(-1).tolist()
            return self._json(request, 200, response)
        raw = waveform.astype("<f4").tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps(response).encode()
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
        self._reply(request, 200, header + raw, headers)
