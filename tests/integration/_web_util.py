"""A real uvicorn server for tests: 127.0.0.1, a free port, its own thread, bounded start/stop.

    with UvicornServer(app) as server:
        httpx.get(server.url + "/ping")
        websockets.connect(server.ws_url + "/ws")

Shared read-only by the web, Celery and Socket.IO integration tests. The socket is bound
(port 0) before the thread starts, so the port is known at once and never raced for.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


class UvicornServer:
    """uvicorn serving ``app`` in a daemon thread; a context manager (``start()``/``stop()``)."""

    def __init__(self, app: Any, *, start_timeout: float = 10.0, **config: Any) -> None:
        config.setdefault("log_level", "warning")
        config.setdefault("lifespan", "auto")
        config.setdefault("access_log", False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.host = "127.0.0.1"
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, **config))
        self.start_timeout = start_timeout
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    def start(self) -> UvicornServer:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"uvicorn did not start: {self.error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"uvicorn did not start within {self.start_timeout}s")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # a stuck connection: stop waiting for it
            self.server.force_exit = True
            self._thread.join(timeout)
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> UvicornServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()




def wait_spans(tracing: Any, sink: Any, count: int, timeout: float = 10.0, where: Any = None) -> list:
    """Flush ``tracing`` until ``sink`` holds ``count`` spans (matching ``where``) or the timeout.

    A server span ends when the response is complete, which may be a moment after the
    client got it, so one flush is not always enough.
    """
    deadline = time.monotonic() + timeout
    while True:
        tracing.flush(timeout=2)
        spans = sink.wait_for(count, timeout=0.1, where=where)
        if len(spans) >= count or time.monotonic() > deadline:
            return spans


def app_with_traced_client(tracing: Any) -> tuple[Any, dict[str, Any]]:
    """A FastAPI app whose lifespan holds an instrumented ``httpx.AsyncClient`` in ``state["client"]``."""
    from contextlib import asynccontextmanager

    import httpx
    from fastapi import FastAPI

    from aiecs_tracing.integrations.httpx import instrument_httpx_client

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        async with instrument_httpx_client(httpx.AsyncClient(timeout=10), tracing) as client:
            state["client"] = client
            yield

    return FastAPI(lifespan=lifespan), state
