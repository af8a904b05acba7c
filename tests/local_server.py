"""What the server doubles share: a threaded HTTP server on 127.0.0.1 (a free port) run as a context manager.

A double subclasses `LocalServer`, names its request handler class, and reaches itself from the handler as
`self.server.double`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

POLL_SECONDS = 0.02  # how soon shutdown() is noticed; the standard 0.5 s would add it to every test


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: LocalServer


class LocalServer:
    """Serves `handler` on 127.0.0.1 from a daemon thread between `__enter__` and `__exit__`."""

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "local-server"
    server_class: ClassVar[type[_Server]] = _Server

    def __init__(self, port: int = 0) -> None:
        """`port` 0: a free one."""
        self._server = self.server_class(("127.0.0.1", port), self.handler)
        self._server.double = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name=self.thread_name,
            daemon=True,
        )

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def server_fixture(double: type[LocalServer], name: str, **options: Any) -> Any:
    """A pytest fixture (registered as `name`) that runs `double(**options)` for one test."""

    @pytest.fixture(name=name)
    def fixture() -> Iterator[LocalServer]:
        with double(**options) as server:
            yield server

    return fixture
