"""The ASGI middleware's less travelled paths, driven as a server drives it (scope, receive, send).

- the server's ``send`` fails mid-response (the client went away): the request's span still
  ends, as an error naming what failed, and the failure reaches the server unchanged;
- a response with trailers (``http.response.trailers``): the request is complete, and its
  span ends, with the last trailers, not with the body;
- ``uninstall_fastapi_tracing`` (and its older name) removes what the install added;
- a request the app never answers, or leaves open, or ends with ``pathsend``; what the span
  says of an unknown method, HTTP/2, IPv6 hosts, excluded URLs as one string;
- WebSocket connections that end otherwise than with a normal close: an app error after or
  before the accept, a refused handshake (close before accept, denial response), a send
  that fails.
"""

from __future__ import annotations

import asyncio
import json
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


# --- how a request ends when the app does not close it with a body -------------------------------


async def collect(app: Any, scope: dict[str, Any], tracing: Any, **options: Any) -> list[dict]:
    """Serve one request through the middleware; the messages the server was sent."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await TracingMiddleware(app, tracing, **options)(scope, receive, send)
    return sent


def test_an_app_returning_without_a_response_is_a_500_incomplete_response(sink, tracing) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        return None  # a bug: the server answers 500 on its own

    assert asyncio.run(collect(app, http_scope(), tracing)) == []
    (span,) = settled(sink, tracing)
    assert span.tags["http.response.status_code"] == 500
    assert span.is_error and span.tags["error.type"] == "incomplete_response"


def test_a_response_left_open_ends_when_the_app_returns(sink, tracing) -> None:
    """A body never closed (more_body forever), or a server extension's message: passed on untouched."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 206, "headers": []})
        await send({"type": "http.response.zerocopysend", "file": 3, "more_body": True})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})

    sent = asyncio.run(collect(app, http_scope(), tracing))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.zerocopysend", "http.response.body"]
    (span,) = settled(sink, tracing)
    assert span.tags["http.response.status_code"] == 206 and not span.is_error


def test_pathsend_is_the_last_message_of_a_file_response(sink, tracing) -> None:
    """``http.response.pathsend`` (a server sending a file itself) completes the request."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/srv/report.pdf"})
        await asyncio.sleep(TRAILER_DELAY)  # after the response: not part of the request's span

    scope = {**http_scope(), "extensions": {"http.response.pathsend": {}}}
    asyncio.run(collect(app, scope, tracing))
    (span,) = settled(sink, tracing)
    assert span.tags["http.response.status_code"] == 200 and span.duration_us < TRAILER_DELAY * 1e6


# --- what the span says about the request ---------------------------------------------------------


def test_excluded_urls_as_one_comma_separated_string(sink, tracing) -> None:
    app = streaming_app(chunks=1)
    for path in ("/health", "/metrics", "/report"):
        asyncio.run(collect(app, http_scope(path), tracing, excluded_urls=" /health , /metrics ,"))
    asyncio.run(collect(app, http_scope("/health"), tracing, excluded_urls=" , "))  # nothing excluded
    spans = settled(sink, tracing)
    assert sorted(s.tags["url.path"] for s in spans) == ["/health", "/report"]


def test_an_unknown_method_over_http2_from_an_ipv6_host(sink, tracing) -> None:
    scope = {
        **http_scope(), "method": "PURGE", "http_version": "2",
        "headers": [(b"host", b"[::1]:8443"), (b"x-request-id", b"r-1")],
        "app": object(),  # the hosting app, first seen here (not a FastAPI app: nothing to switch off)
    }
    sent = asyncio.run(collect(streaming_app(chunks=1), scope, tracing, capture_request_headers=["x-request-id", " "],
                               traceresponse="jaeger"))
    (span,) = settled(sink, tracing)
    assert span.operation == "HTTP"
    assert span.tags["http.request.method"] == "_OTHER" and span.tags["http.request.method_original"] == "PURGE"
    assert span.tags["network.protocol.version"] == "2"
    assert span.tags["server.address"] == "::1" and span.tags["server.port"] == 8443
    assert span.tags["http.url"] == "http://[::1]:8443/report"
    assert json.loads(span.tags["http.request.header.x-request-id"]) == ["r-1"]  # the blank name is ignored
    headers = dict(sent[0]["headers"])  # traceresponse="jaeger": uber-trace-id only
    assert headers[b"uber-trace-id"].decode().startswith(f"{span.trace_id:x}:{span.span_id:x}:")
    assert b"traceresponse" not in headers


@pytest.mark.parametrize(
    ("host", "server", "address", "port", "url"),
    [
        (b"[::1]", ("::1", 8000), "::1", 80, "http://[::1]/report"),
        (None, None, "", None, "http:///report"),
    ],
    ids=["ipv6-without-port", "no-host-no-server"],
)
def test_server_address_and_port_from_what_the_request_says(sink, tracing, host, server, address, port, url) -> None:
    scope = {**http_scope(), "headers": [(b"host", host)] if host else [], "server": server}
    asyncio.run(collect(streaming_app(chunks=1), scope, tracing))
    (span,) = settled(sink, tracing)
    assert span.tags["server.address"] == address and span.tags.get("server.port") == port
    assert span.tags["http.url"] == url


# --- WebSocket connections that do not end with a normal close -----------------------------------


def ws_scope(path: str = "/ws/feed") -> dict[str, Any]:
    return {**http_scope(path), "type": "websocket", "scheme": "ws", "subprotocols": []}


async def serve_ws(app: Any, tracing: Any, incoming: list[dict], fail_sends: bool = False, **options: Any) -> list[dict]:
    """One WebSocket connection through the middleware: ``incoming`` then a disconnect; what was sent."""
    queue = [{"type": "websocket.connect"}, *incoming]
    sent: list[dict] = []

    async def ws_receive() -> dict:
        return queue.pop(0) if queue else {"type": "websocket.disconnect", "code": 1001}

    async def ws_send(message: dict) -> None:
        if fail_sends and message["type"] == "websocket.send":
            raise ClientGone("peer closed the socket")
        sent.append(message)

    await TracingMiddleware(app, tracing, **options)(ws_scope(), ws_receive, ws_send)
    return sent


def test_a_websocket_app_error_after_accept_is_a_1011_close(sink, tracing) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the first message: handling it fails
        raise ValueError("bad subscription")

    with pytest.raises(ValueError):
        asyncio.run(serve_ws(app, tracing, [{"type": "websocket.receive", "text": "subscribe"}]))
    spans = settled(sink, tracing)
    (conn,) = [s for s in spans if s.kind == "server"]
    assert conn.is_error and conn.tags["error.kind"] == "ValueError"
    assert conn.tags["websocket.close.code"] == 1011 and conn.tags["websocket.close.initiator"] == "server"
    assert conn.tags["http.response.status_code"] == 101 and conn.tags["websocket.messages.received"] == 1
    (message,) = [s for s in spans if s.kind == "consumer"]
    assert message.parent_id == conn.span_id


def test_a_websocket_app_error_before_accept_answers_the_handshake_with_500(sink, tracing) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        raise RuntimeError("auth backend down")

    with pytest.raises(RuntimeError):
        asyncio.run(serve_ws(app, tracing, []))
    (conn,) = settled(sink, tracing)
    assert conn.tags["http.response.status_code"] == 500 and conn.is_error
    assert "websocket.close.code" not in conn.tags


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"type": "websocket.close", "code": 4401, "reason": "no token"}, 403),
        ({"type": "websocket.http.response.start", "status": 401, "headers": []}, 401),
    ],
    ids=["close-before-accept", "denial-response"],
)
def test_a_refused_handshake_says_how_it_was_refused(sink, tracing, answer: dict, status: int) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send(answer)
        if answer["type"] == "websocket.http.response.start":
            await send({"type": "websocket.http.response.body", "body": b"login first"})

    sent = asyncio.run(serve_ws(app, tracing, []))
    assert sent[0] == answer
    (conn,) = settled(sink, tracing)
    assert conn.tags["http.response.status_code"] == status and conn.tags["websocket.messages.sent"] == 0


def test_a_failing_websocket_send_is_an_error_on_its_message_span(sink, tracing) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "websocket.send", "bytes": b"\x00\x01"})
        except ClientGone:
            return  # the app gives up on this client

    sent = asyncio.run(serve_ws(app, tracing, [], fail_sends=True, traceresponse=True))
    accept_headers = dict(sent[0]["headers"])
    (conn,) = [s for s in settled(sink, tracing) if s.kind == "server"]
    assert accept_headers[b"traceresponse"].decode() == f"00-{conn.trace_id:032x}-{conn.span_id:016x}-01"
    (out,) = [s for s in sink.spans if s.kind == "producer"]
    assert out.is_error and out.tags["error.kind"] == "ClientGone"
    assert out.tags["websocket.message.type"] == "binary" and out.parent_id == conn.span_id
