"""The ASGI middleware's less travelled paths, driven as a server drives it (scope, receive, send).

- the server's ``send`` fails mid-response (the client went away): the request's span still
  ends, as an error naming what failed, and the failure reaches the server unchanged;
- a response with trailers (``http.response.trailers``): the request is complete, and its
  span ends, with the last trailers, not with the body;
- ``uninstall_fastapi_tracing`` (and its older name) removes what the install added.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from aiecs_tracing.integrations.asgi import TracingMiddleware, install_asgi_tracing, uninstall_asgi_tracing
from aiecs_tracing.integrations.fastapi import (
    install_fastapi_tracing,
    uninstall_fastapi_tracing,
    uninstrument_fastapi,
)
from tests.wire import make_manager, settled

pytestmark = pytest.mark.timeout(60)

TRAILER_DELAY = 0.05


class ClientGone(OSError):
    """What a server's send raises once the client closed the connection."""


def http_scope(path: str = "/report") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"svc.local")], "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def streaming_app(chunks: int):
    """Sends a 200 and ``chunks`` body parts, the last one closing the response."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(chunks):
            await send({"type": "http.response.body", "body": b"part", "more_body": i < chunks - 1})

    return app


def failing_send(fail_at: int, sent: list[dict]):
    """A server's send that fails at message number ``fail_at`` (0 is the response start)."""

    async def send(message: dict) -> None:
        if len(sent) == fail_at:
            raise ClientGone("connection reset by peer")
        sent.append(message)

    return send


@pytest.fixture
def tracing(sink):
    return make_manager(sink, "asgi-edges")  # closed after the test by tests/conftest.py


@pytest.mark.parametrize("fail_at", [1, 3], ids=["first-chunk", "last-chunk"])
def test_send_failing_mid_response_ends_the_span_as_an_error_and_reraises(sink, tracing, fail_at: int) -> None:
    middleware = TracingMiddleware(streaming_app(chunks=3), tracing)
    sent: list[dict] = []
    with pytest.raises(ClientGone):
        asyncio.run(middleware(http_scope(), receive, failing_send(fail_at, sent)))
    assert len(sent) == fail_at  # what reached the client before the failure
    (span,) = settled(sink, tracing)
    assert span.operation == "GET" and span.kind == "server"
    assert span.tags["http.response.status_code"] == 200  # the status had been sent
    assert span.is_error and span.tags["error.kind"] == "ClientGone"
    assert any("connection reset by peer" in str(log.get("message", log)) for log in span.logs)


def test_a_response_with_trailers_ends_with_its_last_trailers(sink, tracing) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"payload", "more_body": False})
        await asyncio.sleep(TRAILER_DELAY)  # e.g. a checksum computed after the body
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-rows", b"3")], "more_trailers": False})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(TracingMiddleware(app, tracing)(http_scope(), receive, send))
    assert [m["type"] for m in sent] == [
        "http.response.start", "http.response.body", "http.response.trailers", "http.response.trailers",
    ]
    (span,) = settled(sink, tracing)
    assert span.tags["http.response.status_code"] == 200 and not span.is_error
    assert span.duration_us >= TRAILER_DELAY * 1e6  # the trailers are part of the request


def test_a_trailer_send_failing_is_the_request_error(sink, tracing) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"ok", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})

    sent: list[dict] = []
    with pytest.raises(ClientGone):
        asyncio.run(TracingMiddleware(app, tracing)(http_scope(), receive, failing_send(2, sent)))
    (span,) = settled(sink, tracing)
    assert span.tags["http.response.status_code"] == 201
    assert span.is_error and span.tags["error.kind"] == "ClientGone"


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        return {"item": item_id}

    return app


async def get(app: Any, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.local") as client:
        return await client.get(path)


@pytest.mark.parametrize("uninstall", [uninstall_fastapi_tracing, uninstrument_fastapi], ids=["new-name", "old-name"])
def test_uninstall_fastapi_tracing_before_start_leaves_an_untraced_app(sink, tracing, uninstall) -> None:
    app = install_fastapi_tracing(fastapi_app(), tracing)
    assert uninstall(app) is app
    assert uninstall(app) is app  # idempotent
    response = asyncio.run(get(app, "/items/7"))
    assert response.json() == {"item": 7} and "traceparent" not in response.headers
    assert settled(sink, tracing) == []


def test_reinstalling_after_uninstall_traces_again(sink, tracing) -> None:
    app = fastapi_app()
    install_fastapi_tracing(app, tracing)
    uninstall_fastapi_tracing(app)
    install_fastapi_tracing(app, tracing)
    assert asyncio.run(get(app, "/items/3")).json() == {"item": 3}
    (span,) = settled(sink, tracing)
    assert span.operation == "GET /items/{item_id}" and span.tags["component"] == "fastapi"


def test_a_plain_asgi_app_is_wrapped_and_unwrapped(sink, tracing) -> None:
    inner = streaming_app(chunks=1)
    wrapped = install_asgi_tracing(inner, tracing)
    assert isinstance(wrapped, TracingMiddleware) and install_asgi_tracing(wrapped, tracing) is wrapped
    assert uninstall_asgi_tracing(wrapped) is inner
