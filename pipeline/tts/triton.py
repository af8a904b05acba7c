"""CosyVoice2/3 through upstream's own serving code: its Triton Inference Server + TensorRT-LLM runtime.

Read (not copied) for this module: FunAudioLLM/CosyVoice at ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40 (2026-03-16),
runtime/triton_trtllm/: README.md, README.Cosyvoice2.Unet.md, README.Cosyvoice2.DiT.md, README.Cosyvoice3.md, run.sh,
run_cosyvoice3.sh, docker-compose.cosyvoice2.unet.yml, docker-compose.cosyvoice3.yml, client_http.py, client_grpc.py,
model_repo/cosyvoice2/ (config.pbtxt, 1/model.py), model_repo/cosyvoice2_dit/ (config.pbtxt, 1/model.py),
model_repo/token2wav/ (config.pbtxt, 1/model.py), model_repo_cosyvoice3/cosyvoice3/ (config.pbtxt, 1/model.py).
The client side is `tritonclient.http` 2.73.0 (read in the installed wheel): KServe v2 over HTTP.

The server, as koe relies on it:
- One BLS model (Triton's Python backend) per variant: `cosyvoice2` (CosyVoice2; its LLM in TensorRT-LLM inside the
  same Triton, UNet flow + HiFT in the `token2wav` model), `cosyvoice2_dit` (Step-Audio2's DiT token2wav; LLM behind
  `trtllm-serve`) and `cosyvoice3` (LLM behind `trtllm-serve`). All three take `target_text` BYTES [1] and, optional,
  the prompt: `reference_wav` FP32 [-1] at 16 kHz (the model resamples it to 24 kHz itself), `reference_wav_len`
  INT32 [1], `reference_text` BYTES [1]; they answer `waveform` FP32 [-1] at 24 kHz. With `max_batch_size` > 0 (16
  in run.sh, 1 in run_cosyvoice3.sh) each shape has a batch dimension in front: koe sends batch 1, one utterance
  per request, and leaves the batching to Triton's dynamic batcher and TensorRT-LLM's in-flight batching.
- The model must not be decoupled (`model_transaction_policy.decoupled`: run.sh's stage 2 with
  DECOUPLED_MODE=False, "offline TTS"; its default, True, streams, and run.sh's HTTP test client "only work[s]
  for offline TTS mode"). Checked at start.
- Launched as `tritonserver --model-repository DIR` (run.sh stage 3; run_cosyvoice3.sh adds `--http-port 18000
  --grpc-port 18001 --metrics-port 18002`), over a model repository their stages 0-2 build (download, trtllm-build,
  config templates filled). `cosyvoice3` and `cosyvoice2_dit` also need `trtllm-serve` running at
  http://localhost:8000/v1/chat/completions (cosyvoice3: its config's `llm_api_base`; cosyvoice2_dit: fixed in
  its model.py), which this module does not start.
- How much it batches is set in that model repository, not here: the cosyvoice2 BLS runs `bls_instance_num` (4 in
  run.sh) instances, each handling its requests one after another; its token2wav is one instance, one request at a
  time; the LLM batches up to its engine's max_batch_size (16). Upstream measured offline client-server TTS on one
  L20 at concurrency 4: RTF 0.061 (README.Cosyvoice2.Unet.md).

Text: katakana (koe's readings), as the in-process backend sends with text_frontend=False: the BLS tokenizes
`reference_text + target_text` as it is, with no text frontend of its own.

Speaker prompts are sent with every request: upstream has no call that registers a speaker (without a prompt the
model speaks the one speaker of its spk2info.pt). Each bank speaker is prepared once per process (checked as the
in-process backend checks it, mono, resampled to 16 kHz) and kept as arrays. The cosyvoice2 model tokenizes and
embeds the prompt again for every request; cosyvoice3 and cosyvoice2_dit keep the prompt's features server-side
under its reference text alone, so two prompts with one transcript would both speak in the first one's voice: that
is refused here (SpeakerPromptClash, a SpeakerPromptError), as is a speaker whose recording changed while its
transcript did not.

Seeds: upstream's models take none. cosyvoice2 samples every request with TensorRT-LLM `random_seed` 42 (its
forward_llm), so the same text and prompt render the same speech again: `deterministic = True`, and a render that
fails a check is rejected at once instead of re-rendered. cosyvoice3 and cosyvoice2_dit send trtllm-serve's chat API
no seed; whether it then samples anew per request was not checked here, so they are taken as sampling
(`deterministic = False`): a failing turn is rendered again, without a seed that reproduces it. `seed_input` names
an input of a model repository patched to take koe's seed (UINT64 [1]); its metadata must list it, and then every
request carries its seed and `deterministic` is False.

Where the server is (`url` or `start`, exactly one):
- url: a running server (`host:port`, `http://` optional). At start the backend waits up to
  `ready_timeout_seconds` for `GET /v2/health/ready` and `/v2/models/<name>/ready`, fails at once when the model is
  not in the server's repository or failed to load, then checks the model's metadata and config.
- start: the backend (in koe's GPU actor: one per GPU, Ray sets CUDA_VISIBLE_DEVICES) runs
  `command + --model-repository DIR --http-port P --grpc-port P2 --metrics-port P3 + args` on free ports, waits up to
  `start.ready_timeout_seconds` for it to be ready, restarts it when it dies (at most `start.max_restarts` times),
  and stops it (its process group: SIGTERM, then SIGKILL) when the process exits. Started from one long-lived thread
  with PR_SET_PDEATHSIG (Linux), the server also dies when the actor is killed.
A request that loses its connection waits for the server (restarted, or back at its url, within the ready timeout)
and is sent once more; a server that does not come back stops the backend with BackendSetupError.

Concurrency: each call is one blocking HTTP request. tritonclient's HTTP client is not thread-safe (its docstring
says so), so every thread gets its own client and connection. The GPU actor's `max_concurrency` (tts.concurrency)
is the number of requests in flight to one server: set it well above what the server batches (e.g. 256).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..audio import peak_safe, resample
from ..errors import BackendSetupError
from ..speakers import Speaker
from .base import EmptyAudio
from .cosyvoice import SpeakerPromptError, speaker_prompt

logger = logging.getLogger(__name__)

NEEDS_REFERENCE_AUDIO = True
TEXT_INPUT = "kana"  # as the in-process CosyVoice backend: the server has no Japanese text frontend

# upstream's BLS model -> the CosyVoice version it runs
UPSTREAM_MODELS = {"cosyvoice2": "CosyVoice2", "cosyvoice2_dit": "CosyVoice2", "cosyvoice3": "CosyVoice3"}
CACHES_PROMPTS_BY_TEXT = {"cosyvoice2_dit", "cosyvoice3"}  # speaker_cache[reference_text] in their model.py
FIXED_SEED_MODELS = {"cosyvoice2"}  # forward_llm: random_seed 42 for every request
PROMPT_RATE = 16000  # upstream resamples reference_wav from 16 kHz ("sample rate hardcoded in server")
UPSTREAM_RATE = 24000  # the waveform's rate (client_http.py writes it at 24 kHz for CosyVoice)
INPUTS = {"target_text": "BYTES", "reference_wav": "FP32", "reference_wav_len": "INT32", "reference_text": "BYTES"}
OUTPUT = "waveform"
SEED_TYPES = {"UINT64": np.uint64, "INT64": np.int64}
POLL_SECONDS = 0.25  # readiness and liveness polling
LOG_TAIL_LINES = 15
SERVER_HINT = (
    "build the model repository and start the server as upstream's runtime/triton_trtllm/run.sh does (stages 0-3, "
    "with DECOUPLED_MODE=False at stage 2), or let koe start one per GPU (tts.options.start)"
)

# Runs before tritonserver, in the child: the server gets SIGKILL when the thread that started it ends (the
# supervisor thread, which lives as long as the backend: a killed actor takes its servers with it), then execs.
_DEATH_SIGNAL_SHIM = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass  # not Linux: stopped by koe on exit only
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)  # the parent is already gone
os.execvp(sys.argv[2], sys.argv[2:])
"""


class TritonSetupError(BackendSetupError):
    """The Triton server cannot be reached or started, or does not serve the model as upstream's: not worth retrying."""


class _LaunchEnded(TritonSetupError):
    """The server being started exited, or koe is stopping it."""


class TritonRequestError(RuntimeError):
    """One request failed on the server (an error status): the row is retried, then failed with this message."""


class TritonTimeout(RuntimeError):
    """No answer within `request_timeout_seconds`."""


class SpeakerPromptClash(SpeakerPromptError):
    """Two prompts would share one server-side voice (a model that caches prompts by their text)."""


class StartOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_repository: str = Field(description="absolute path, on the GPU nodes, of the model repository run.sh built")
    command: list[str] = Field(default=["tritonserver"], min_length=1, description="argv before koe's own arguments")
    args: list[str] = Field(default_factory=list, description="more tritonserver arguments, after koe's")
    ready_timeout_seconds: float = Field(default=1200.0, gt=0, description="from launch to model ready (engines load)")
    max_restarts: int = Field(default=3, ge=0, description="restarts after the server died, before giving up")
    stop_timeout_seconds: float = Field(default=30.0, gt=0, description="SIGTERM to SIGKILL")
    log_dir: str | None = Field(default=None, description="where the server's output goes (default: the temp dir)")

    @field_validator("model_repository")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError("must be an absolute path, valid on the GPU nodes where the actors start the server")
        return value


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Literal["cosyvoice2", "cosyvoice2_dit", "cosyvoice3"] = Field(
        default="cosyvoice2", description="upstream's BLS model: decides the prompt, caching and seeding"
    )
    model_name: str | None = Field(default=None, description="the name it is served under (default: model)")
    url: str | None = Field(default=None, description="a running server's HTTP endpoint, host:port")
    start: StartOptions | None = Field(default=None, description="start one tritonserver per GPU actor instead")
    protocol: Literal["http"] = "http"
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    request_timeout_seconds: float = Field(
        default=600.0, gt=0, description="per request, queueing on the server included"
    )
    ready_timeout_seconds: float = Field(default=60.0, gt=0, description="url: for readiness at start and after a loss")
    sample_rate: int = Field(default=UPSTREAM_RATE, ge=8000, le=48000, description="the waveform's rate")
    max_chars: int = Field(default=80, gt=0, le=200, description="longest text per request (as the in-process backend)")
    seed_input: str | None = Field(default=None, description="input of a patched model that takes koe's seed")

    @field_validator("url")
    @classmethod
    def _plain_http(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("https://"):
            raise ValueError("https is not supported: reach the server over http (inside the cluster) or a tunnel")
        return value

    @model_validator(mode="after")
    def _one_server(self) -> Options:
        if (self.url is None) == (self.start is None):
            raise ValueError("give exactly one of url (a running server) and start (koe starts one per GPU)")
        return self


def server_address(url: str) -> str:
    """`host:port[/path]` as tritonclient takes it, from a URL with or without `http://`."""
    return url.removeprefix("http://").rstrip("/")


def free_ports(count: int) -> list[int]:
    """Ports free now on 127.0.0.1 (a server that loses the race to one exits, and is started again elsewhere)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _http():
    try:
        import tritonclient.http as http
    except ImportError as exc:
        raise TritonSetupError(
            f"tritonclient is not installed in this environment ({exc}): pip install 'tritonclient[http]'"
        ) from None
    return http


def _server_exception():
    from tritonclient.utils import InferenceServerException

    return InferenceServerException


def _connection_lost() -> tuple[type[BaseException], ...]:
    """What a request raises when the server went away: refused or reset (OSError), or closed mid-answer."""
    from geventhttpclient.response import HTTPConnectionClosed

    return (ConnectionError, HTTPConnectionClosed)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "(no output)"
    return " | ".join(line.strip() for line in text if line.strip()) or "(no output)"


def probe(client, address: str, model_name: str) -> str | None:
    """None when the server and `model_name` are ready, else why not yet; raises when the model never will be."""
    try:
        if client.is_server_ready() and client.is_model_ready(model_name):
            return None
        return _why_not_ready(client, address, model_name)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    except _server_exception() as exc:
        return exc.message()
    except _connection_lost() as exc:
        return f"connection closed ({exc})"


def _why_not_ready(client, address: str, model_name: str) -> str:
    """Why the server or the model is not ready yet, from the repository index; raises when it never will be."""
    entries = {entry.get("name"): entry for entry in client.get_model_repository_index()}
    entry = entries.get(model_name)
    if entry is None:
        served = ", ".join(sorted(str(name) for name in entries)) or "nothing"
        raise TritonSetupError(
            f"Triton server at {address} has no model {model_name!r} in its model repository (it has: {served}); "
            "set tts.options.model_name to the name it is served under"
        )
    state = entry.get("state") or "not loaded"
    if state == "UNAVAILABLE":
        reason = entry.get("reason") or "no reason given"
        raise TritonSetupError(f"Triton server at {address}: model {model_name!r} failed to load: {reason}")
    return f"model {model_name!r} is {state.lower()}"


def wait_until_ready(
    address: str, model_name: str, timeout: float, check: Callable[[], None] = lambda: None, hint: str = SERVER_HINT
) -> None:
    """Polls until the server and `model_name` are ready, at most `timeout` seconds; `check` may raise to stop it."""
    client = _http().InferenceServerClient(address, connection_timeout=min(timeout, 5.0), network_timeout=10.0)
    deadline = time.monotonic() + timeout
    try:
        while True:
            why = probe(client, address, model_name)
            if why is None:
                return
            check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TritonSetupError(
                    f"Triton server at {address} not ready with model {model_name!r} after {timeout:g} s ({why}); "
                    + hint
                )
            time.sleep(min(POLL_SECONDS, remaining))
    finally:
        client.close()


class ManagedServer:
    """A `tritonserver` this process started, on free ports: restarted when it dies, stopped when the process exits.

    Every launch and restart happens on the supervisor thread (see `_DEATH_SIGNAL_SHIM`). `generation` counts
    launches, so a request knows whether the server it lost has been replaced.
    """

    def __init__(self, options: StartOptions, model_name: str):
        self.options = options
        self.model_name = model_name
        log_dir = Path(options.log_dir or tempfile.gettempdir())
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"koe-tritonserver-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        self._changed = threading.Condition()
        self._process: subprocess.Popen | None = None
        self.address: str | None = None
        self.generation = 0
        self.ready = False
        self.failure: str | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="koe-tritonserver", daemon=True)
        self._thread.start()
        atexit.register(self.stop)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def wait_ready(self, timeout: float) -> tuple[str, int]:
        """(address, generation) of the ready server, waiting while it is (re)started."""
        with self._changed:
            done = self._changed.wait_for(lambda: self.failure is not None or self.ready, timeout)
            if self.failure is not None:
                raise TritonSetupError(self.failure)
            if not done:
                raise TritonSetupError(f"tritonserver not ready within {timeout:g} s; its output: {self.log_path}")
            return self.address, self.generation

    def wait_replaced(self, generation: int, timeout: float) -> None:
        """After a request lost generation `generation`: until it answers ready again, or a newer one is ready.

        The connection can close before the process is gone, so liveness is asked of the server, not the process.
        """
        deadline = time.monotonic() + timeout
        client = None
        try:
            while True:
                address, current = self.wait_ready(max(0.0, deadline - time.monotonic()))
                if current != generation:
                    return
                if client is None:
                    client = _http().InferenceServerClient(address, connection_timeout=2.0, network_timeout=5.0)
                if self._alive() and probe(client, address, self.model_name) is None:
                    return
                if time.monotonic() >= deadline:
                    raise TritonSetupError(f"tritonserver not back within {timeout:g} s; its output: {self.log_path}")
                time.sleep(POLL_SECONDS)
        finally:
            if client is not None:
                client.close()

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _supervise(self) -> None:
        try:
            self._launch()  # a first start that fails is final: it would fail again
            while not self._stopping.wait(POLL_SECONDS):
                if self._alive():
                    continue
                with self._changed:
                    self.ready = False
                if self._stopping.is_set():
                    break
                self._restart(f"exited ({self._process.returncode})")
        except TritonSetupError as exc:
            with self._changed:
                self.failure = str(exc)
                self.ready = False
                self._changed.notify_all()
            self._terminate()

    def _restart(self, why: str) -> None:
        """Launches again until one is ready (a launch that exits before it is ready counts as a restart too)."""
        while True:
            if self.restarts >= self.options.max_restarts:
                raise TritonSetupError(
                    f"tritonserver {why} after {self.restarts} restart(s), giving up (tts.options.start.max_restarts); "
                    f"last output: {log_tail(self.log_path)}"
                )
            self.restarts += 1
            logger.warning("tritonserver %s; restarting it (%d of %d)", why, self.restarts, self.options.max_restarts)
            try:
                self._launch()
                return
            except _LaunchEnded as exc:
                if self._stopping.is_set():
                    raise
                why = f"exited again before it was ready ({self._process.returncode})"
                logger.warning("%s", exc)

    def _launch(self) -> None:
        http_port, grpc_port, metrics_port = free_ports(3)
        argv = [
            *self.options.command,
            "--model-repository",
            self.options.model_repository,
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(grpc_port),
            "--metrics-port",
            str(metrics_port),
            *self.options.args,
        ]
        if shutil.which(argv[0]) is None:
            raise TritonSetupError(
                f"cannot run {argv[0]!r}: not found on this node (tts.options.start.command); tritonserver ships in "
                "NVIDIA's Triton images, e.g. nvcr.io/nvidia/tritonserver:25.06-trtllm-python-py3, which upstream's "
                "runtime/triton_trtllm/Dockerfile.server builds on"
            )
        with open(self.log_path, "ab") as log:
            log.write(f"koe: launching {' '.join(argv)}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    [sys.executable, "-c", _DEATH_SIGNAL_SHIM, str(os.getpid()), *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped whole, and spared the terminal's Ctrl-C
                )
            except OSError as exc:
                raise TritonSetupError(f"cannot run {argv[0]!r}: {exc}") from None
        with self._changed:
            self._process = process
        address = f"127.0.0.1:{http_port}"

        def check() -> None:
            if self._stopping.is_set():
                raise _LaunchEnded("stopped while tritonserver was starting")
            if process.poll() is not None:
                raise _LaunchEnded(
                    f"tritonserver exited ({process.returncode}) before it was ready: {argv[0]} --model-repository "
                    f"{self.options.model_repository}; last output: {log_tail(self.log_path)}"
                )

        try:
            wait_until_ready(
                address,
                self.model_name,
                self.options.ready_timeout_seconds,
                check,
                hint="tts.options.start.ready_timeout_seconds",
            )
        except _LaunchEnded:
            raise
        except TritonSetupError as exc:  # not ready in time, or the model is missing or failed to load
            raise TritonSetupError(f"{exc}; last output of tritonserver: {log_tail(self.log_path)}") from None
        with self._changed:
            self.address = address
            self.generation += 1
            self.ready = True
            self._changed.notify_all()
        logger.info("tritonserver %d ready at %s (output: %s)", process.pid, address, self.log_path)

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, self.options.stop_timeout_seconds), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        """Stop supervising and stop the server (SIGTERM first); safe to call more than once."""
        self._stopping.set()
        with self._changed:
            self.ready = False
            self._changed.notify_all()
        self._terminate()
        self._thread.join(timeout=self.options.stop_timeout_seconds + 10.0)
        self._terminate()  # one a launch in progress started meanwhile


@dataclass(frozen=True)
class PreparedPrompt:
    """A bank speaker as every request carries it: the prompt text, and the recording at 16 kHz."""

    speaker_id: str
    text: str
    wav: np.ndarray  # float32, mono, PROMPT_RATE
    digest: str


def prepare_prompt(speaker: Speaker, model_class: str) -> PreparedPrompt:
    """The in-process backend's checks and prompt text (`cosyvoice.speaker_prompt`), the audio read once."""
    prompt = speaker_prompt(speaker, model_class)
    audio, rate = sf.read(str(prompt.wav), dtype="float32", always_2d=True)
    wav = np.ascontiguousarray(resample(audio.mean(axis=1), rate, PROMPT_RATE), dtype=np.float32)
    digest = hashlib.sha256(wav.tobytes()).hexdigest()[:16]
    return PreparedPrompt(speaker.id, prompt.text, wav, digest)


def checked_audio(audio: np.ndarray | None, what: str) -> np.ndarray:
    """The waveform as mono float32 in [-1, 1]; nothing or non-finite samples are a render worth retrying."""
    if audio is None:
        raise TritonRequestError(f"Triton answered without a {OUTPUT!r} output for {what}")
    samples = np.array(audio, dtype=np.float32).reshape(-1)  # a copy: the answer's buffer is read-only
    if samples.size == 0:
        raise EmptyAudio(f"Triton returned no audio for {what}")
    if not np.isfinite(samples).all():
        raise EmptyAudio(f"Triton returned non-finite samples for {what}")
    return peak_safe(samples)  # over full scale: scaled down whole, never clipped


class Backend:
    """CosyVoice2/3 served by upstream's Triton runtime (see the module docstring), shared by every thread."""

    def __init__(self, **options: Any):
        self.options = Options.model_validate(options)
        opts = self.options
        self.model_class = UPSTREAM_MODELS[opts.model]
        self.name = f"{self.model_class.lower()}-triton"
        self.model_name = opts.model_name or opts.model
        self.max_chars = opts.max_chars
        self.sample_rate = opts.sample_rate
        _http()  # fails here, with the install hint, when tritonclient is missing
        self._local = threading.local()
        self._lock = threading.Lock()
        self._prompts: dict[str, tuple[tuple[Path | None, str | None], PreparedPrompt]] = {}
        self._prompt_texts: dict[str, PreparedPrompt] = {}  # for the models that cache prompts by their text
        self._server: ManagedServer | None = None
        if opts.start is not None:
            if not Path(opts.start.model_repository).is_dir():
                raise TritonSetupError(
                    f"Triton model repository not found on this node: {opts.start.model_repository}; " + SERVER_HINT
                )
            self._server = ManagedServer(opts.start, self.model_name)
            try:
                address, _ = self._server.wait_ready(opts.start.ready_timeout_seconds + 30.0)
            except TritonSetupError:
                self._server.stop()
                raise
        else:
            address = server_address(opts.url)
            wait_until_ready(address, self.model_name, opts.ready_timeout_seconds)
        self._address = address
        try:
            self._check_model(address)
        except TritonSetupError:
            self.close()
            raise

    # Set-up

    def _check_model(self, address: str) -> None:
        """The model is upstream's interface, offline (not decoupled), and has `seed_input` if one is named."""
        http = _http()
        client = http.InferenceServerClient(address, connection_timeout=self.options.connect_timeout_seconds)
        try:
            metadata = client.get_model_metadata(self.model_name)
            config = client.get_model_config(self.model_name)
            self.server_version = str(client.get_server_metadata().get("version", "unknown"))
        except _server_exception() as exc:
            raise TritonSetupError(f"Triton server at {address}: model {self.model_name!r}: {exc.message()}") from None
        finally:
            client.close()
        where = f"model {self.model_name!r} on the Triton server at {address}"
        declared = {i["name"]: i["datatype"] for i in metadata.get("inputs", [])}
        expected = dict(INPUTS)
        if self.options.seed_input:
            expected[self.options.seed_input] = declared.get(self.options.seed_input, "UINT64 or INT64")
        wrong = [
            f"{name} {want} (it has {declared.get(name, 'none')})"
            for name, want in expected.items()
            if declared.get(name) != want
        ]
        if self.options.seed_input and declared.get(self.options.seed_input) not in SEED_TYPES:
            wrong.append(f"{self.options.seed_input} as UINT64 or INT64 (tts.options.seed_input)")
        outputs = {o["name"]: o["datatype"] for o in metadata.get("outputs", [])}
        if outputs.get(OUTPUT) != "FP32":
            wrong.append(f"output {OUTPUT} FP32 (it has {outputs.get(OUTPUT, 'none')})")
        if wrong:
            raise TritonSetupError(
                f"{where} is not upstream's CosyVoice BLS model (runtime/triton_trtllm/model_repo); it lacks inputs "
                + "; ".join(dict.fromkeys(wrong))
            )
        if (config.get("model_transaction_policy") or {}).get("decoupled"):
            raise TritonSetupError(
                f"{where} is decoupled (streaming); koe needs the offline model: build the model repository with "
                "DECOUPLED_MODE=False (run.sh stage 2)"
            )
        self.batched = int(config.get("max_batch_size") or 0) > 0
        self.seed_datatype = declared[self.options.seed_input] if self.options.seed_input else None
        # see the module docstring: a fixed LLM seed repeats a failed render; a seed input reproduces any render
        self.deterministic = self.seed_datatype is None and self.options.model in FIXED_SEED_MODELS

    def describe(self) -> dict[str, Any]:
        seeds = "koe's seeds" if self.seed_datatype is not None else "no seeds"
        return {"model": f"{self.model_class} ({self.options.model} on Triton {self.server_version}, {seeds})"}

    def close(self) -> None:
        """Stop the server this backend started (also done when the process exits)."""
        if self._server is not None:
            self._server.stop()

    # Synthesis

    def synthesize(self, text: str, speaker: Speaker, seed: int) -> np.ndarray:
        """`text` in katakana, in `speaker`'s voice; `seed` is sent only to a model that takes one."""
        http = _http()
        prompt = self._prompt(speaker)
        what = f"speaker {speaker.id}, text {text[:40]!r}"
        inputs = [
            self._tensor(http, "target_text", np.array([text.encode("utf-8")], dtype=object), "BYTES"),
            self._tensor(http, "reference_wav", prompt.wav, "FP32"),
            self._tensor(http, "reference_wav_len", np.array([prompt.wav.size], dtype=np.int32), "INT32"),
            self._tensor(http, "reference_text", np.array([prompt.text.encode("utf-8")], dtype=object), "BYTES"),
        ]
        if self.seed_datatype is not None:  # any int seed, wrapped into the input's range
            value = np.array([seed % (2**64 if self.seed_datatype == "UINT64" else 2**63)], dtype=object)
            typed = value.astype(SEED_TYPES[self.seed_datatype])
            inputs.append(self._tensor(http, self.options.seed_input, typed, self.seed_datatype))
        outputs = [http.InferRequestedOutput(OUTPUT, binary_data=True)]
        result = self._infer(inputs, outputs, what)
        return checked_audio(result.as_numpy(OUTPUT), what)

    def _tensor(self, http, name: str, values: np.ndarray, datatype: str):
        shaped = values.reshape(1, -1) if self.batched else values.reshape(-1)
        tensor = http.InferInput(name, list(shaped.shape), datatype)
        tensor.set_data_from_numpy(shaped, binary_data=True)
        return tensor

    def _infer(self, inputs: list, outputs: list, what: str):
        """One request; after a lost connection, once more when the server is back."""
        error = _server_exception()
        lost = _connection_lost()
        for attempt in range(2):
            client, generation = self._client()
            try:
                return client.infer(self.model_name, inputs, outputs=outputs)
            except error as exc:
                raise TritonRequestError(
                    f"Triton model {self.model_name!r} failed on {what}: {exc.message()} (status {exc.status()})"
                ) from None
            except TimeoutError:
                self._drop_client()
                raise TritonTimeout(
                    f"no answer from Triton model {self.model_name!r} for {what} within "
                    f"{self.options.request_timeout_seconds:g} s (tts.options.request_timeout_seconds)"
                ) from None
            except (*lost, OSError) as exc:
                self._drop_client()
                if attempt:
                    raise TritonSetupError(
                        f"Triton server lost again right after it was back ({type(exc).__name__}: {exc})"
                    ) from None
                logger.warning("Triton connection lost (%s: %s); waiting for the server", type(exc).__name__, exc)
                self._await_server(generation)
        raise AssertionError("unreachable")

    def _await_server(self, generation: int) -> None:
        if self._server is not None:
            self._server.wait_replaced(generation, self.options.start.ready_timeout_seconds + 30.0)
        else:
            wait_until_ready(self._address, self.model_name, self.options.ready_timeout_seconds)

    def _client(self):
        """This thread's client of the current server (a restarted server has new ports: new clients)."""
        if self._server is not None:
            address, generation = self._server.wait_ready(self.options.start.ready_timeout_seconds + 30.0)
        else:
            address, generation = self._address, 0
        local = self._local
        if getattr(local, "generation", None) != generation or getattr(local, "client", None) is None:
            self._drop_client()
            local.client = _http().InferenceServerClient(
                address,
                connection_timeout=self.options.connect_timeout_seconds,
                network_timeout=self.options.request_timeout_seconds,
            )
            local.generation = generation
        return local.client, generation

    def _drop_client(self) -> None:
        client = getattr(self._local, "client", None)
        self._local.client = None
        if client is not None:
            try:
                client.close()
            except Exception:  # a broken connection may fail to close: it is dropped either way
                pass

    def _prompt(self, speaker: Speaker) -> PreparedPrompt:
        """Prepared once per speaker id; again only if the bank entry behind the id changed."""
        source = (speaker.reference_audio, speaker.transcript)
        with self._lock:
            known = self._prompts.get(speaker.id)
            if known is not None and known[0] == source:
                return known[1]
        prompt = prepare_prompt(speaker, self.model_class)  # outside the lock: reading audio takes a while
        with self._lock:
            if self.options.model in CACHES_PROMPTS_BY_TEXT:
                self._check_clash(prompt)
            self._prompts[speaker.id] = (source, prompt)
        return prompt

    def _check_clash(self, prompt: PreparedPrompt) -> None:
        other = self._prompt_texts.setdefault(prompt.text, prompt)
        if other.digest == prompt.digest:
            return
        if other.speaker_id == prompt.speaker_id:
            problem = f"speaker {prompt.speaker_id}'s recording changed but its transcript did not"
            fix = "restart the server to clear its cache"
        else:
            problem = f"speakers {other.speaker_id} and {prompt.speaker_id} have the same transcript"
            fix = "give each recording its own exact transcript"
        raise SpeakerPromptClash(
            f"{problem}: upstream's {self.options.model} model keeps prompt features by their text, so both would "
            f"speak in the first one's voice; {fix}"
        )
