"""instrument_httpx_client against a real uvicorn server: spans from the wire, headers as the server saw them."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, StreamingResponse
from starlette.routing import Route

from aiecs_tracing import get_tracing_manager, set_tracing_manager
from aiecs_tracing.integrations.httpx import (
    AsyncTracingTransport,
    TracingTransport,
    instrument_httpx_client,
    uninstrument_httpx_client,
)
from tests.integration._web_util import UvicornServer, wait_spans
from tests.wire import make_manager, refused_tcp_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def echo(request: Request):
    status = int(request.query_params.get("status", "200"))
    return JSONResponse({"headers": [[k, v] for k, v in request.headers.items()]}, status_code=status)


async def slow(request: Request):
    await asyncio.sleep(3)
    return JSONResponse({})


async def stream(request: Request):
    pause = float(request.query_params.get("pause", "0.01"))

    async def chunks():
        for i in range(3):
            await asyncio.sleep(pause)
            yield f"part{i};".encode()

    return StreamingResponse(chunks())


async def redirect(request: Request):
    return RedirectResponse("/echo", status_code=302)


APP = Starlette(
    routes=[
        Route("/echo", echo),
        Route("/slow", slow),
        Route("/stream", stream),
        Route("/redirect", redirect),
    ]
)


@pytest.fixture(scope="module")
def server():
    with UvicornServer(APP) as s:
        yield s


@pytest.fixture
def tracing(sink):
    manager = make_manager(sink, "caller")
    yield manager
    manager.close_tracer()


def run(mode: str, sync_fn, async_fn):
    """Call the sync or the async variant of a scenario."""
    if mode == "sync":
        return sync_fn()
    return asyncio.run(async_fn())


def client_spans(sink):
    return [s for s in sink.spans if s.kind == "client"]


def header_values(payload: dict, name: str) -> list[str]:
    return [v for k, v in payload["headers"] if k == name]


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_client_span_injects_w3c_jaeger_and_baggage(mode, server, tracing, sink):
    url = server.url.replace("http://", "http://bob:hunter2@") + "/echo?token=abc123&page=2"

    def sync():
        with instrument_httpx_client(httpx.Client(), tracing) as client, tracing.span("parent") as parent:
            parent.set_baggage_item("tenant", "acme")
            return client.get(url).json(), parent

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(), tracing) as client:
            with tracing.span("parent") as parent:
                parent.set_baggage_item("tenant", "acme")
                return (await client.get(url)).json(), parent

    payload, _ = run(mode, sync, async_)
    wait_spans(tracing, sink, 2)
    parent = sink.one("parent")
    span = sink.one("GET")
    assert span.kind == "client" and span.trace_id == parent.trace_id and span.parent_id == parent.span_id
    assert header_values(payload, "traceparent") == [f"00-{span.trace_id:032x}-{span.span_id:016x}-01"]
    assert header_values(payload, "uber-trace-id") == [f"{span.trace_id:x}:{span.span_id:x}:0:1"]
    assert header_values(payload, "baggage") == ["tenant=acme"]
    assert header_values(payload, "uberctx-tenant") == ["acme"]
    tags = span.tags
    expected_url = f"{server.url}/echo?token=REDACTED&page=2"
    assert tags["url.full"] == tags["http.url"] == expected_url
    assert tags["http.request.method"] == tags["http.method"] == "GET"
    assert tags["server.address"] == "127.0.0.1" and tags["server.port"] == server.port
    assert tags["http.response.status_code"] == tags["http.status_code"] == 200
    assert tags["network.protocol.version"] == "1.1"
    assert not span.is_error
    text = json.dumps(tags)
    assert "hunter2" not in text and "bob" not in text and "abc123" not in text


@pytest.mark.parametrize("mode", MODES)
def test_4xx_and_5xx_mark_the_span_as_error(mode, server, tracing, sink):
    def sync():
        with instrument_httpx_client(httpx.Client(base_url=server.url), tracing) as client:
            return [client.get("/echo", params={"status": s}).status_code for s in (404, 503)]

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(base_url=server.url), tracing) as client:
            return [(await client.get("/echo", params={"status": s})).status_code for s in (404, 503)]

    assert run(mode, sync, async_) == [404, 503]
    spans = sorted(wait_spans(tracing, sink, 2), key=lambda s: s.start_us)
    assert [(s.tags["http.status_code"], s.is_error, s.tags.get("error.type")) for s in spans] == [
        (404, True, "404"),
        (503, True, "503"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused_is_an_error_and_reraised(mode, tracing, sink):
    url = f"http://127.0.0.1:{refused_tcp_port()}/nothing"

    def sync():
        with instrument_httpx_client(httpx.Client(), tracing) as client:
            with pytest.raises(httpx.ConnectError) as info:
                client.get(url)
            return info.value

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(), tracing) as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(url)
            return info.value

    error = run(mode, sync, async_)
    wait_spans(tracing, sink, 1)
    span = sink.one("GET")
    assert span.is_error and span.tags["error.type"] == "httpx.ConnectError"
    assert span.tags["error.message"] == str(error)
    assert "http.status_code" not in span.tags


@pytest.mark.parametrize("mode", MODES)
def test_timeout_is_an_error(mode, server, tracing, sink):
    def sync():
        with instrument_httpx_client(httpx.Client(timeout=0.2), tracing) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.get(f"{server.url}/slow")

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(timeout=0.2), tracing) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{server.url}/slow")

    run(mode, sync, async_)
    wait_spans(tracing, sink, 1)
    span = sink.one("GET")
    assert span.is_error and span.tags["error.type"] == "httpx.ReadTimeout"


@pytest.mark.parametrize("mode", MODES)
def test_streamed_response_span_covers_the_body(mode, server, tracing, sink):
    marks: dict[str, float] = {}

    def sync():
        with instrument_httpx_client(httpx.Client(), tracing) as client:
            with client.stream("GET", f"{server.url}/stream?pause=0.05") as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    marks["last_chunk"] = time.time()
            return body

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(), tracing) as client:
            async with client.stream("GET", f"{server.url}/stream?pause=0.05") as response:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    marks["last_chunk"] = time.time()
            return body

    assert run(mode, sync, async_) == b"part0;part1;part2;"
    wait_spans(tracing, sink, 1)
    span = sink.one("GET")
    assert not span.is_error and span.tags["http.status_code"] == 200
    # the span covers the whole body: it ends when the response is closed (httpx closes it
    # once the body is exhausted), after the last chunk reached the caller
    assert (span.start_us + span.duration_us) / 1e6 >= marks["last_chunk"] - 0.001


@pytest.mark.parametrize("mode", MODES)
def test_stream_closed_early_still_ends_the_span(mode, server, tracing, sink):
    def sync():
        with instrument_httpx_client(httpx.Client(), tracing) as client:
            with client.stream("GET", f"{server.url}/stream?pause=0.2") as response:
                return next(response.iter_bytes())

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(), tracing) as client:
            async with client.stream("GET", f"{server.url}/stream?pause=0.2") as response:
                async for chunk in response.aiter_bytes():
                    return chunk

    assert run(mode, sync, async_).startswith(b"part0")
    wait_spans(tracing, sink, 1)
    assert sink.one("GET").tags["http.status_code"] == 200


@pytest.mark.parametrize("mode", MODES)
def test_instrumenting_twice_gives_one_span_and_one_header(mode, server, tracing, sink):
    def sync():
        client = httpx.Client(transport=TracingTransport(httpx.HTTPTransport(), tracing))
        instrument_httpx_client(client, tracing)
        instrument_httpx_client(client, tracing)
        with client:
            return client.get(f"{server.url}/echo").json()

    async def async_():
        client = httpx.AsyncClient(transport=AsyncTracingTransport(httpx.AsyncHTTPTransport(), tracing))
        instrument_httpx_client(client, tracing)
        instrument_httpx_client(client, tracing)
        async with client:
            return (await client.get(f"{server.url}/echo")).json()

    payload = run(mode, sync, async_)
    spans = wait_spans(tracing, sink, 1)
    tracing.flush()
    assert len(sink.spans) == 1, spans
    assert len(header_values(payload, "traceparent")) == 1
    assert len(header_values(payload, "uber-trace-id")) == 1


def test_nested_tracing_transports_span_once(server, tracing, sink):
    inner = TracingTransport(httpx.HTTPTransport(), tracing)
    with httpx.Client(transport=TracingTransport(inner, tracing)) as client:
        payload = client.get(f"{server.url}/echo").json()
    wait_spans(tracing, sink, 1)
    tracing.flush()
    assert len(sink.spans) == 1 and len(header_values(payload, "traceparent")) == 1


def test_uninstrument_and_redirect_hops(server, tracing, sink):
    client = instrument_httpx_client(httpx.Client(base_url=server.url, follow_redirects=True), tracing)
    with client:
        assert client.get("/redirect").status_code == 200
        spans = sorted(wait_spans(tracing, sink, 2), key=lambda s: s.start_us)
        assert [s.tags["http.status_code"] for s in spans] == [302, 200]
        assert not any(s.is_error for s in spans)
        assert spans[0].tags["url.full"].endswith("/redirect") and spans[1].tags["url.full"].endswith("/echo")
        uninstrument_httpx_client(client)
        uninstrument_httpx_client(client)
        payload = client.get("/echo").json()
    assert header_values(payload, "traceparent") == []
    tracing.flush()
    assert len(sink.spans) == 2


def test_default_manager_is_looked_up_per_request(server, sink):
    previous = get_tracing_manager()
    set_tracing_manager(None)
    try:
        client = instrument_httpx_client(httpx.Client())  # before any manager exists
        with client:
            untouched = client.get(f"{server.url}/echo").json()  # no manager: no headers
            manager = make_manager(sink, "late")
            set_tracing_manager(manager)
            payload = client.get(f"{server.url}/echo").json()
    finally:
        set_tracing_manager(previous)
    assert header_values(untouched, "traceparent") == []
    assert len(header_values(payload, "traceparent")) == 1
    wait_spans(manager, sink, 1)
    assert sink.one("GET").service == "late"
    manager.close_tracer()


def test_rejects_non_clients():
    with pytest.raises(TypeError):
        instrument_httpx_client(object())  # type: ignore[type-var]


@pytest.mark.parametrize("mode", MODES)
def test_timeout_while_reading_the_body_is_an_error(mode, server, tracing, sink):
    url = f"{server.url}/stream?pause=1.0"

    def sync():
        with instrument_httpx_client(httpx.Client(timeout=0.2), tracing) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.get(url)

    async def async_():
        async with instrument_httpx_client(httpx.AsyncClient(timeout=0.2), tracing) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)

    run(mode, sync, async_)
    wait_spans(tracing, sink, 1)
    span = sink.one("GET")
    assert span.tags["http.status_code"] == 200  # the headers came, the body did not
    assert span.is_error and span.tags["error.type"] == "httpx.ReadTimeout"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://u:p@api.example.com/v1/x?api_key=k1&page=2#frag", "https://api.example.com/v1/x?api_key=REDACTED&page=2"),
        ("http://h:8080/p?password=a&max_tokens=5&accessToken=t", "http://h:8080/p?password=REDACTED&max_tokens=5&accessToken=REDACTED"),
        ("https://s3.example.com/b/k?X-Amz-Signature=abc&X-Amz-Date=1", "https://s3.example.com/b/k?X-Amz-Signature=REDACTED&X-Amz-Date=1"),
        ("https://h/p?sig=1&signature=2&flag&empty=", "https://h/p?sig=REDACTED&signature=REDACTED&flag&empty="),
        ("http://[::1]:9000/x", "http://[::1]:9000/x"),
    ],
)
def test_redact_url(url, expected):
    from aiecs_tracing.integrations.httpx import redact_url

    assert redact_url(httpx.URL(url)) == expected
