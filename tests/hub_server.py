"""A test double for the Hugging Face Hub's HTTP API; there is no Hub behind it.

`HubServerDouble` listens on 127.0.0.1 (a free port) and keeps dataset repos (model repos come along) in memory:
enough of the Hub for the real `huggingface_hub` 2.4 client to create repos and branches, commit files, list and
download them. It answers as the Hub does where the client looks (status codes, `X-Error-Code`, `{"error": ...}`
bodies, `Link` pagination, `X-Repo-Commit` / `ETag` / `X-Linked-*` download headers), so the client raises its usual
errors (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, HfHubHTTPError).

Xet: huggingface_hub 2.4 uploads file contents through Xet whenever `hf_xet` is installed; this double does not speak
Xet. Run clients with it disabled: `HF_HUB_DISABLE_XET=1` in a subprocess's environment (`client_env` has it), or
in-process `monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)` after `from huggingface_hub import constants`
(`is_xet_available()` reads that attribute on every call; `huggingface_hub.constants` is a lazy attribute that only
exists once the submodule is imported). `create_commit` and `upload_folder` then take the legacy path: preupload ->
LFS batch -> PUT (+ verify) -> NDJSON commit. The client reads `HF_ENDPOINT` only once, at import: in-process, pass
`endpoint=server.url` to `HfApi` / `hf_hub_download` (and set `constants.HF_HUB_DISABLE_TELEMETRY`, or the client's
User-Agent fetches an agent registry from the real Hub); subprocesses get `HF_ENDPOINT` from `client_env`.

Routes, by the names `fail_next` and `RecordedRequest.route` use (`{type}` is `datasets` or `models`; `[datasets/]` is
there for a dataset repo, absent for a model repo):
  create_repo      POST /api/repos/create; 409 when the repo exists (so exist_ok=True works)
  repo_info        GET  /api/{type}/{id}[/revision/{rev}]; id, sha, private, siblings (?blobs=true adds size, lfs)
  create_branch    POST /api/{type}/{id}/branch/{branch}; from main's head (or `startingPoint`); 409 if it exists
  tree             GET  /api/{type}/{id}/tree/{rev}[/{path}]; `tree_page_size` entries a page, a `Link` to the next
  preupload        POST /api/{type}/{id}/preupload/{rev}; "lfs" for *.tar, *.parquet, *.flac, binary or > 10 MB, and
                   the oid of the file there now, computed as the client does, so that it skips unchanged files
  validate_yaml    POST /api/validate-yaml; see Simplifications
  commit           POST /api/{type}/{id}/commit/{branch}; NDJSON; a parentCommit that is not the head -> 412
  lfs_batch        POST /[datasets/]{id}.git/info/lfs/objects/batch; basic transfer; stored objects get no actions
  lfs_upload       PUT  the signed href lfs_batch gives; sha256 and size checked against the announced oid
  lfs_verify       POST /[datasets/]{id}.git/info/lfs/objects/verify
  resolve          HEAD/GET /[datasets/]{id}/resolve/{rev}/{path}; a regular file: 200, ETag = its git blob id;
                   an LFS file: 302 to lfs_download, with X-Linked-Etag (its sha256) and X-Linked-Size
  lfs_download     GET  the signed Location resolve gives, on `localhost`: an origin other than the endpoint's, so the
                   client treats it as the Hub's CDN (reads X-Linked-* off the 302, sends no Authorization)
  agent_harnesses  GET  /api/agent-harnesses; an empty registry (the client fetches it from HF_ENDPOINT for its
                   User-Agent unless HF_HUB_DISABLE_TELEMETRY is set)
Auth: every write, and every read of a private repo, needs `Authorization: Bearer <token>`, else 401 (a private repo
answers as a missing one, `X-Error-Code: RepoNotFound`, as the Hub does); a wrong token gets 401 "Invalid credentials
in Authorization header" on every route but the signed storage URLs, which take no token, as S3 and the CDN don't.

Simplifications: a new repo holds one empty commit (the Hub's also has a .gitattributes, which would show up in
`files()`); `shouldIgnore` is always false (no .gitignore rules); tree listings ignore `expand` (no lastCommit or
security fields) and give folders a stable id that is not git's; `create_pr` is refused; a request body must come with
a Content-Length (411 otherwise, as S3 answers a PUT). validate-yaml is NOT the Hub's metadata validation: it only
checks that the README's front matter is a YAML mapping and that `configs`, when present, is a list of
{config_name: str, data_files: str | list[str] | list[{split: str, path: str | list[str]}]}.

Scripted failures, for interrupted uploads: `fail_next(route, status=500)` answers the next request to `route` (a name
above) with that status and `{"error": ...}` instead of handling it; `fail_next(route, drop=True)` reads the request
and closes the connection without answering; `times=n` does it to the next n requests. A failed request changes
nothing. The client retries some routes itself, after sleeping 1 s, 2 s, ...: preupload, tree, lfs_batch, lfs_upload
and lfs_verify on a 5xx or a dropped connection; the downloads (GET of resolve and lfs_download) on a dropped
connection; create_repo, create_branch, repo_info, validate_yaml, commit and resolve's HEAD not at all.

Every request is recorded (`requests`) with its route, query and headers (the Authorization value redacted).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from http.server import BaseHTTPRequestHandler
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

from tests.local_server import LocalServer, server_fixture

DEFAULT_TOKEN = "hf_double_token"
DEFAULT_TREE_PAGE_SIZE = 1000  # the Hub's page size for tree listings
LFS_PATTERNS = ("*.tar", "*.parquet", "*.flac")  # the part of the Hub's default .gitattributes koe's files meet
LFS_MIN_BYTES = 10 * 1024 * 1024  # the Hub stores any larger file in LFS
CDN_HOST = "localhost"  # the double's other name: a different origin, so the client takes it for the Hub's CDN
INITIAL_COMMIT_MESSAGE = "initial commit"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # the client matches it in X-Error-Message
SIGNED_ROUTES = frozenset({"lfs_upload", "lfs_download"})
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"

_ID = r"(?P<repo_id>[^/]+/[^/]+)"
_API = r"/api/(?P<type>datasets|models)/" + _ID
_GIT = r"/(?:(?P<type>datasets)/)?" + _ID
_STORAGE = r"/(?P<type>dataset|model)/" + _ID + r"/(?P<oid>[0-9a-f]{64})"
ROUTES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (name, method, re.compile(f"^{pattern}$"))
    for name, method, pattern in (
        ("create_repo", "POST", r"/api/repos/create"),
        ("validate_yaml", "POST", r"/api/validate-yaml"),
        ("agent_harnesses", "GET", r"/api/agent-harnesses"),
        ("repo_info", "GET", _API + r"(?:/revision/(?P<rev>[^/]+))?"),
        ("create_branch", "POST", _API + r"/branch/(?P<rev>[^/]+)"),
        ("tree", "GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"),
        ("preupload", "POST", _API + r"/preupload/(?P<rev>[^/]+)"),
        ("commit", "POST", _API + r"/commit/(?P<rev>[^/]+)"),
        ("lfs_batch", "POST", _GIT + r"\.git/info/lfs/objects/batch"),
        ("lfs_verify", "POST", _GIT + r"\.git/info/lfs/objects/verify"),
        ("lfs_upload", "PUT", r"/lfs-upload" + _STORAGE + r"/(?P<size>\d+)"),
        ("lfs_download", "GET", r"/lfs-download" + _STORAGE),
        ("resolve", "GET", _GIT + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
    )
)
ROUTE_NAMES = frozenset(name for name, _, _ in ROUTES)
_REPO_TYPES = {"datasets": "dataset", "dataset": "dataset", "models": "model", "model": "model", None: "model"}


class HubError(Exception):
    """An error the Hub would answer with: the status, `{"error": message, **extra}`, the `X-Error-Code` it sets."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers, self.extra = headers or {}, extra or {}


@dataclass(frozen=True)
class StoredFile:
    """A file in a commit. An LFS file keeps its content too, so `files()` needs no lookup in the LFS store."""

    data: bytes
    lfs: bool

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def pointer(self) -> bytes:
        """The git-lfs pointer file git holds in place of an LFS file's content."""
        return LFS_POINTER.format(oid=self.sha256, size=len(self.data)).encode()

    @cached_property
    def blob_id(self) -> str:
        """The git blob id: of the content, or of the pointer for an LFS file (what the Hub calls a file's oid)."""
        content = self.pointer if self.lfs else self.data
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    @property
    def client_oid(self) -> str:
        """What the client computes for this content (`CommitOperationAdd._local_oid`) to skip unchanged files."""
        return self.sha256 if self.lfs else self.blob_id


@dataclass(frozen=True)
class Commit:
    oid: str
    message: str
    description: str
    parent: str | None
    files: dict[str, StoredFile]  # the whole tree at this commit
    added: tuple[str, ...]  # paths written by this commit (new or changed)
    deleted: tuple[str, ...]  # paths removed by it (each file of a deleted folder)
    created_at: str  # as the Hub writes dates


@dataclass
class Repo:
    repo_type: str  # "dataset" or "model"
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)  # sha256 -> content


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case; the authorization value redacted
    route: str  # a route name of the module docstring, "unknown" when none matched
    authorized: bool  # it carried the double's token
    received_at: float  # time.monotonic()


@dataclass(frozen=True)
class _Failure:
    status: int
    drop: bool


@dataclass(frozen=True)
class _Call:
    """A request as the route handlers see it."""

    path: str
    params: dict[str, str]  # the route's path parameters, unquoted
    query: dict[str, list[str]]
    body: bytes
    auth: str  # "ok", "missing" or "wrong"

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError:
            raise HubError(400, "the request body is not JSON") from None

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")

    @property
    def repo_key(self) -> tuple[str, str]:
        return _REPO_TYPES[self.params.get("type")], self.params["repo_id"]


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _json_reply(payload: Any, status: int = 200, content_type: str = "application/json") -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), content_type=content_type)


def _error_reply(error: HubError) -> _Reply:
    headers = dict(error.headers)
    if error.code is not None:
        headers["X-Error-Code"] = error.code
    return _Reply(error.status, json.dumps({"error": error.message, **error.extra}).encode(), headers)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _match(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The route name and its unquoted parameters (revisions and paths come %-quoted, "/" included)."""
    for name, route_method, pattern in ROUTES:
        if route_method == ("GET" if method == "HEAD" else method) and (found := pattern.match(path)):
            return name, {key: unquote(value) for key, value in found.groupdict().items() if value is not None}
    return "unknown", {}


def _stores_in_lfs(path: str, sample: bytes, size: int) -> bool:
    """The Hub's choice between LFS and a plain git blob for a file to upload."""
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS) or b"\0" in sample or size > LFS_MIN_BYTES


def _card_metadata_error(content: str) -> str | None:
    """Why the Hub would refuse this README's YAML front matter (only the checks in the module docstring), or None."""
    found = re.match(r"---[ \t]*\r?\n(.*?)^---[ \t]*$", content, re.DOTALL | re.MULTILINE)
    if found is None:
        return None
    try:
        metadata = yaml.safe_load(found.group(1))
    except yaml.YAMLError as exc:
        return f"the front matter is not valid YAML: {exc}"
    if metadata is None:  # empty front matter: nothing to check
        return None
    if not isinstance(metadata, dict):
        return "the front matter must be a YAML mapping"
    if "configs" not in metadata:
        return None
    configs = metadata["configs"]
    if not isinstance(configs, list):
        return '"configs" must be a list'
    for index, config in enumerate(configs):
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            return f'"configs[{index}].config_name" must be a string'
        if not _valid_data_files(config.get("data_files")):
            return (
                f'"configs[{index}].data_files" must be a path, a list of paths '
                "or a list of {split: str, path: str | list[str]}"
            )
    return None


def _valid_data_files(data_files: Any) -> bool:
    def is_paths(value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    if is_paths(data_files):
        return True
    return isinstance(data_files, list) and all(
        isinstance(item, dict) and isinstance(item.get("split"), str) and is_paths(item.get("path"))
        for item in data_files
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub speaks
    disable_nagle_algorithm = True  # headers and body go out in two writes; with Nagle each answer waits ~40 ms
    server: Any  # the LocalServer, whose `double` is the double

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest output is for the tests."""

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        double = self.server.double
        split = urlsplit(self.path)
        route, params = _match(self.command, split.path)
        query = parse_qs(split.query, keep_blank_values=True)
        authorization = self.headers.get("Authorization")
        auth = "missing" if authorization is None else "ok" if authorization == f"Bearer {double.token}" else "wrong"
        headers = {name.lower(): value for name, value in self.headers.items()}
        if "authorization" in headers:
            headers["authorization"] = "Bearer <redacted>"
        double.record(RecordedRequest(self.command, split.path, query, headers, route, auth == "ok", time.monotonic()))
        if "transfer-encoding" in headers:  # the client always sends a Content-Length; S3 refuses a PUT without one
            self.close_connection = True  # the unread body would be taken for the next request
            self._send(_error_reply(HubError(411, "MissingContentLength: HubServerDouble needs a Content-Length")))
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        failure = double.next_failure(route)
        if failure is not None and failure.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if failure is not None:
            reply = _error_reply(HubError(failure.status, f"scripted failure of {route}"))
        else:
            reply = double.answer(route, _Call(split.path, params, query, body, auth))
        self._send(reply)

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class HubServerDouble(LocalServer):
    """Test double for the Hugging Face Hub: `with HubServerDouble(token=...) as server: HfApi(endpoint=server.url)`."""

    handler = _Handler
    thread_name = "hub-server-double"

    def __init__(
        self, token: str = DEFAULT_TOKEN, *, user: str = "koe-tester", tree_page_size: int = DEFAULT_TREE_PAGE_SIZE
    ):
        self.token, self.user, self.tree_page_size = token, user, tree_page_size
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
        self._requests: list[RecordedRequest] = []
        self._lfs_uploads: list[tuple[str, int]] = []
        self._failures: dict[str, deque[_Failure]] = {}
        self._commit_count = 0
        self._signing_key = secrets.token_bytes(16)
        self._handlers: dict[str, Callable[[_Call], _Reply]] = {
            "create_repo": self._create_repo,
            "validate_yaml": self._validate_yaml,
            "agent_harnesses": self._agent_harnesses,
            "repo_info": self._repo_info,
            "create_branch": self._create_branch,
            "tree": self._tree,
            "preupload": self._preupload,
            "commit": self._commit,
            "lfs_batch": self._lfs_batch,
            "lfs_verify": self._lfs_verify,
            "lfs_upload": self._lfs_upload,
            "lfs_download": self._lfs_download,
            "resolve": self._resolve_file,
        }
        super().__init__()

    @property
    def url(self) -> str:
        """The endpoint to give the client (`HfApi(endpoint=...)`, `HF_ENDPOINT`)."""
        return self.origin

    @property
    def client_env(self) -> dict[str, str]:
        """Environment variables for a client in a subprocess: this endpoint, Xet off, the token."""
        return {"HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": self.token}

    # ---- for tests ----

    def fail_next(self, route: str, *, status: int = 500, drop: bool = False, times: int = 1) -> None:
        """Answer the next `times` requests to `route` with `status`, or close the connection if `drop`."""
        if route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; one of {sorted(ROUTE_NAMES)}")
        with self._lock:
            self._failures.setdefault(route, deque()).extend([_Failure(status, drop)] * times)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def lfs_uploads(self) -> list[tuple[str, int]]:
        """(sha256, size) of every LFS object PUT, in upload order (an object sent twice shows twice)."""
        with self._lock:
            return list(self._lfs_uploads)

    def repo(self, repo_id: str, *, repo_type: str = "dataset") -> Repo:
        """A snapshot of the repo: private flag, branches, commits, LFS objects."""
        with self._lock:
            repo = self._stored_repo(repo_type, repo_id)
            return replace(
                repo, branches=dict(repo.branches), commits=dict(repo.commits), lfs_objects=dict(repo.lfs_objects)
            )

    def files(self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset") -> dict[str, bytes]:
        """The contents at the revision, LFS files resolved to their content."""
        return {path: stored.data for path, stored in self._commit_at(repo_type, repo_id, revision).files.items()}

    def commits(self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset") -> list[Commit]:
        """The revision's history, oldest first (the repo's empty initial commit included)."""
        with self._lock:
            repo = self._stored_repo(repo_type, repo_id)
            history = [self._commit_at(repo_type, repo_id, revision)]
            while history[-1].parent is not None:
                history.append(repo.commits[history[-1].parent])
            return history[::-1]

    def export(self, repo_id: str, revision: str, directory: str | Path, *, repo_type: str = "dataset") -> Path:
        """Write the revision's files under `directory` (e.g. for `datasets.load_dataset(directory)`)."""
        directory = Path(directory)
        for path, data in self.files(repo_id, revision, repo_type=repo_type).items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return directory

    # ---- called by the request handler ----

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def next_failure(self, route: str) -> _Failure | None:
        with self._lock:
            queue = self._failures.get(route)
            return queue.popleft() if queue else None

    def answer(self, route: str, call: _Call) -> _Reply:
        if route == "unknown":
            return _error_reply(HubError(404, f"HubServerDouble has no route for {call.path}"))
        if call.auth == "wrong" and route not in SIGNED_ROUTES:
            return _error_reply(HubError(401, INVALID_CREDENTIALS, headers={"X-Error-Message": INVALID_CREDENTIALS}))
        try:
            with self._lock:  # one request at a time changes or reads the repos
                return self._handlers[route](call)
        except HubError as error:
            return _error_reply(error)

    # ---- state ----

    def _stored_repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id} on the double") from None

    def _commit_at(self, repo_type: str, repo_id: str, revision: str) -> Commit:
        with self._lock:
            repo = self._stored_repo(repo_type, repo_id)
            try:
                return self._resolve(repo, revision)
            except HubError:
                raise KeyError(f"no revision {revision!r} in {repo_type} repo {repo_id}") from None

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        """A branch's head, or a commit by its oid, as the Hub resolves a revision."""
        commit = repo.commits.get(repo.branches.get(revision, revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _add_commit(
        self,
        repo: Repo,
        branch: str,
        message: str,
        description: str,
        files: dict[str, StoredFile],
        added: list[str],
        deleted: list[str],
    ) -> Commit:
        parent = repo.branches.get(branch)
        self._commit_count += 1
        seed = json.dumps([repo.repo_id, parent, message, self._commit_count, sorted(files)]).encode()
        commit = Commit(
            hashlib.sha1(seed).hexdigest(), message, description, parent, files, tuple(added), tuple(deleted), _now()
        )
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def _repo_url(self, repo_type: str, repo_id: str) -> str:
        return f"{self.url}/datasets/{repo_id}" if repo_type == "dataset" else f"{self.url}/{repo_id}"

    def _signed_url(self, path: str, host: str = "127.0.0.1") -> str:
        """A storage URL that needs no token, as S3's presigned URLs and the CDN's signed ones."""
        signature = hmac.new(self._signing_key, path.encode(), hashlib.sha256).hexdigest()
        return f"http://{host}:{self._server.server_address[1]}{path}?X-Amz-Signature={signature}"

    def _check_signature(self, call: _Call) -> None:
        expected = hmac.new(self._signing_key, call.path.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(call.query.get("X-Amz-Signature", [""])[-1], expected):
            raise HubError(403, "SignatureDoesNotMatch")

    def _readable_repo(self, call: _Call) -> Repo:
        """The repo, unless it is missing or private to this caller: both answer as the Hub does, RepoNotFound."""
        repo = self._repos.get(call.repo_key)
        if repo is None or (repo.private and call.auth != "ok"):
            raise HubError(401 if call.auth != "ok" else 404, "Repository not found", "RepoNotFound")
        return repo

    def _writable_repo(self, call: _Call) -> Repo:
        self._require_token(call)
        return self._readable_repo(call)

    @staticmethod
    def _require_token(call: _Call) -> None:
        if call.auth != "ok":
            raise HubError(401, "Invalid username or password.")

    # ---- routes ----

    def _create_repo(self, call: _Call) -> _Reply:
        self._require_token(call)
        body = call.json()
        name, repo_type = body.get("name"), body.get("type") or "model"
        if not isinstance(name, str) or not name or "/" in name or repo_type not in ("dataset", "model"):
            raise HubError(400, f"HubServerDouble cannot create a {repo_type!r} repo named {name!r}")
        repo_id = f"{body.get('organization') or self.user}/{name}"
        url = self._repo_url(repo_type, repo_id)
        if (repo_type, repo_id) in self._repos:
            raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})  # the client reads it
        private = body.get("visibility", "private" if body.get("private") else "public") == "private"
        repo = Repo(repo_type, repo_id, private, _now())
        self._add_commit(repo, "main", INITIAL_COMMIT_MESSAGE, "", {}, [], [])
        self._repos[(repo_type, repo_id)] = repo
        return _json_reply({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, call: _Call) -> _Reply:
        content = call.json().get("content")
        if not isinstance(content, str):
            raise HubError(400, '"content" must be a string')
        error = _card_metadata_error(content)
        if error is not None:  # the client's ValueError quotes "errors"
            raise HubError(400, error, extra={"errors": [{"message": error}], "warnings": []})
        return _json_reply({"errors": [], "warnings": []})

    def _agent_harnesses(self, call: _Call) -> _Reply:
        """No AI-agent harnesses: the client fetches this registry (for its User-Agent) unless telemetry is off."""
        return _json_reply({"standardEnvVars": [], "harnesses": {}})

    def _repo_info(self, call: _Call) -> _Reply:
        repo = self._readable_repo(call)
        commit = self._resolve(repo, call.params.get("rev", "main"))
        siblings = []
        for path, stored in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if call.flag("blobs"):
                sibling |= {"size": len(stored.data), "blobId": stored.blob_id}
                if stored.lfs:
                    sibling["lfs"] = {
                        "size": len(stored.data),
                        "sha256": stored.sha256,
                        "pointerSize": len(stored.pointer),
                    }
            siblings.append(sibling)
        return _json_reply(
            {
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "createdAt": repo.created_at,
                "lastModified": commit.created_at,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    def _create_branch(self, call: _Call) -> _Reply:
        repo = self._writable_repo(call)
        branch = call.params["rev"]
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: {branch}")
        start = self._resolve(repo, call.json().get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        return _json_reply({})

    def _tree(self, call: _Call) -> _Reply:
        repo = self._readable_repo(call)
        commit = self._resolve(repo, call.params["rev"])
        prefix = call.params.get("path", "").strip("/")
        folders = {str(parent) for path in commit.files for parent in PurePosixPath(path).parents} - {"."}
        if prefix and prefix not in folders:
            raise HubError(404, f"{prefix} does not exist on {call.params['rev']}", "EntryNotFound")
        base = f"{prefix}/" if prefix else ""
        entries: list[dict[str, Any]] = []
        for path in sorted({*commit.files, *folders}):
            if not path.startswith(base) or (not call.flag("recursive") and "/" in path[len(base) :]):
                continue
            stored = commit.files.get(path)
            if stored is None:
                listing = sorted((p, f.blob_id) for p, f in commit.files.items() if p.startswith(f"{path}/"))
                folder_id = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
                entries.append({"type": "directory", "oid": folder_id, "path": path})
                continue
            entry: dict[str, Any] = {"type": "file", "oid": stored.blob_id, "size": len(stored.data), "path": path}
            if stored.lfs:
                entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data), "pointerSize": len(stored.pointer)}
            entries.append(entry)
        start = int(call.query.get("cursor", ["0"])[-1])
        end = start + self.tree_page_size
        reply = _json_reply(entries[start:end])
        if end < len(entries):
            next_query = urlencode({**{k: v[-1] for k, v in call.query.items()}, "cursor": end})
            reply.headers["Link"] = f'<{self.url}{call.path}?{next_query}>; rel="next"'
        return reply

    def _preupload(self, call: _Call) -> _Reply:
        repo = self._writable_repo(call)
        commit = self._resolve(repo, call.params["rev"])
        files = call.json().get("files")
        if not isinstance(files, list):
            raise HubError(400, '"files" must be a list')
        answers = []
        for item in files:
            try:
                path, sample, size = item["path"], base64.b64decode(item["sample"]), int(item["size"])
            except (KeyError, TypeError, ValueError, binascii.Error):
                raise HubError(400, f"malformed file entry {item!r}") from None
            mode = "lfs" if _stores_in_lfs(path, sample, size) else "regular"
            answer: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            if path in commit.files:
                answer["oid"] = commit.files[path].client_oid
            answers.append(answer)
        return _json_reply({"files": answers, "commitOid": commit.oid})

    def _commit(self, call: _Call) -> _Reply:
        repo = self._writable_repo(call)
        if call.flag("create_pr"):
            raise HubError(400, "HubServerDouble does not open pull requests (create_pr)")
        branch = call.params["rev"]
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
        try:
            lines = [json.loads(line) for line in call.body.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise HubError(400, "the commit body is not NDJSON") from None
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the commit body must start with a header line")
        header = lines[0].get("value") or {}
        head = repo.commits[repo.branches[branch]]
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        added: list[str] = []
        deleted: list[str] = []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = value.get("path")
            if not isinstance(path, str) or not path:
                raise HubError(400, f"commit operation without a path: {line!r}")
            if key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, f"{path}: HubServerDouble takes base64 file contents")
                files[path] = StoredFile(base64.b64decode(value.get("content", "")), lfs=False)
                added.append(path)
            elif key == "lfsFile":
                data = repo.lfs_objects.get(value.get("oid", ""))
                if data is None or value.get("size", len(data)) != len(data):
                    raise HubError(
                        400,
                        "Your push was rejected because an LFS pointer pointed to a file that does not exist. "
                        f"Offending file: {path}",
                    )
                files[path] = StoredFile(data, lfs=True)
                added.append(path)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                deleted.append(path)
            elif key == "deletedFolder":
                inside = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                if not inside:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in inside:
                    del files[p]
                deleted.extend(inside)
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        message, description = header.get("summary") or "", header.get("description") or ""
        commit = self._add_commit(repo, branch, message, description, files, added, deleted)
        url = f"{self._repo_url(*call.repo_key)}/commit/{commit.oid}"
        return _json_reply({"success": True, "commitOid": commit.oid, "commitUrl": url, "pullRequestUrl": None})

    def _lfs_batch(self, call: _Call) -> _Reply:
        repo = self._writable_repo(call)
        body = call.json()
        if body.get("operation") != "upload":
            raise HubError(400, "HubServerDouble's LFS batch only takes uploads")
        verify_url = f"{self._repo_url(repo.repo_type, repo.repo_id)}.git/info/lfs/objects/verify"
        objects = []
        for item in body.get("objects") or []:
            oid, size = item.get("oid"), item.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                raise HubError(422, f"malformed LFS object {item!r}")
            answer: dict[str, Any] = {"oid": oid, "size": size}
            if oid not in repo.lfs_objects:  # a stored object gets no actions: the client does not send it again
                upload_path = f"/lfs-upload/{repo.repo_type}/{repo.repo_id}/{oid}/{size}"
                answer["authenticated"] = True
                answer["actions"] = {"upload": {"href": self._signed_url(upload_path)}, "verify": {"href": verify_url}}
            objects.append(answer)
        payload = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return _json_reply(payload, content_type="application/vnd.git-lfs+json")

    def _lfs_upload(self, call: _Call) -> _Reply:
        self._check_signature(call)
        repo = self._stored_repo(*call.repo_key)
        oid, size = call.params["oid"], int(call.params["size"])
        if len(call.body) != size or hashlib.sha256(call.body).hexdigest() != oid:
            raise HubError(400, f"the content does not match the oid {oid} and size {size} it was announced with")
        repo.lfs_objects[oid] = call.body
        self._lfs_uploads.append((oid, size))
        return _Reply(200)

    def _lfs_verify(self, call: _Call) -> _Reply:
        repo = self._writable_repo(call)
        body = call.json()
        data = repo.lfs_objects.get(body.get("oid", ""))
        if data is None or len(data) != body.get("size"):
            raise HubError(404, f"LFS object {body.get('oid')} of size {body.get('size')} was not uploaded")
        return _json_reply({})

    def _resolve_file(self, call: _Call) -> _Reply:
        repo = self._readable_repo(call)
        commit = self._resolve(repo, call.params["rev"])
        headers = {"X-Repo-Commit": commit.oid}
        stored = commit.files.get(call.params["path"])
        if stored is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers)
        if not stored.lfs:
            headers["ETag"] = f'"{stored.blob_id}"'
            return _Reply(200, stored.data, headers, "application/octet-stream")
        download_path = f"/lfs-download/{repo.repo_type}/{repo.repo_id}/{stored.sha256}"
        headers |= {
            "Location": self._signed_url(download_path, host=CDN_HOST),
            "ETag": f'"{stored.blob_id}"',
            "X-Linked-Etag": f'"{stored.sha256}"',
            "X-Linked-Size": str(len(stored.data)),
        }
        return _Reply(302, b"", headers)

    def _lfs_download(self, call: _Call) -> _Reply:
        self._check_signature(call)
        data = self._stored_repo(*call.repo_key).lfs_objects[call.params["oid"]]
        return _Reply(200, data, {"ETag": f'"{call.params["oid"]}"'}, "application/octet-stream")


def hub_server_fixture(name: str = "hub_server", **options: Any) -> Any:
    """A pytest fixture (registered as `name`) that runs a `HubServerDouble(**options)` for one test."""
    return server_fixture(HubServerDouble, name, **options)
