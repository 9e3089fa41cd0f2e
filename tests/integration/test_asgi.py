"""TracingMiddleware on a real FastAPI app under uvicorn, spans read back from the Jaeger UDP wire."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import httpx
import pytest
import websockets
from fastapi import APIRouter, FastAPI, HTTPException, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from aiecs_tracing.integrations.asgi import TracingMiddleware
from aiecs_tracing.integrations.fastapi import TracingMiddleware as FastAPIMiddleware
from aiecs_tracing.integrations.fastapi import instrument_fastapi
from tests.integration._web_util import UvicornServer, wait_spans
from tests.wire import make_manager, settled

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
BOOM = RuntimeError("boom from the handler")


def build_app(tracing, events: dict, **options) -> FastAPI:
    """A small service exercising every path the middleware must not disturb."""

    @asynccontextmanager
    async def lifespan(app):
        events["started"] = True
        yield
        events["stopped"] = True

    app = FastAPI(lifespan=lifespan)

    @tracing.with_tracing("load_task")
    def load_task(task_id: int) -> dict:
        return {"id": task_id}

    @tracing.with_tracing("cleanup")
    def cleanup(task_id: int) -> None:
        events.setdefault("cleaned", []).append(task_id)

    @tracing.with_tracing("handle_message")
    def handle_message(text: str) -> str:
        return text.upper()

    @app.get("/tasks/{task_id}")
    def get_task(task_id: int):
        return load_task(task_id)

    @app.get("/enrich/{user_id}")
    def enrich(user_id: int):
        span = tracing.get_active_span()  # what handlers do to add to the request's span
        span.set_tag("user.id", user_id)
        span.log_kv({"event": "checkpoint", "step": 1})
        return {"trace_id": f"{span.context.trace_id:032x}"}

    @app.get("/health")
    def health():
        return {"ok": True, "started": events.get("started", False)}

    @app.get("/missing")
    def missing():
        raise HTTPException(status_code=404, detail="no such thing")

    @app.get("/unavailable")
    def unavailable():
        return JSONResponse({"detail": "try later"}, status_code=503)

    @app.get("/boom")
    def boom():
        raise BOOM

    @app.get("/headers")
    def headers():
        response = PlainTextResponse("ok", headers={"x-trace-hint": "h1"})
        response.set_cookie("session", "cookie-secret-value")
        return response

    @app.get("/stream")
    async def stream():
        async def chunks():
            for i in range(3):
                await asyncio.sleep(0.02)
                if i == 2:
                    events["last_chunk_at"] = time.time()
                yield f"chunk{i};"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/tasks/{task_id}/close")
    def close_task(task_id: int):
        return JSONResponse({"closing": task_id}, background=BackgroundTask(cleanup, task_id))

    router = APIRouter(prefix="/api")

    @router.get("/items/{item_id}")
    def get_item(item_id: int):
        return {"item": item_id}

    app.include_router(router)

    async def thing(request):
        return PlainTextResponse(request.path_params["thing_id"])

    app.mount("/sub", Starlette(routes=[Route("/things/{thing_id}", thing)]))

    @app.websocket("/ws/{room}")
    async def ws(websocket: WebSocket, room: str):
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    events["client_close"] = message.get("code")
                    return
                if message.get("text") == "bye":
                    await websocket.close(code=4001, reason="done")
                    return
                if message.get("text") is not None:
                    await websocket.send_text(handle_message(message["text"]))
                else:
                    await websocket.send_bytes(message["bytes"][::-1])
        except WebSocketDisconnect as exc:
            events["client_close"] = exc.code

    @app.websocket("/push")
    async def push(websocket: WebSocket):
        """A pusher task started at connect time sends while a received message is being handled."""
        await websocket.accept()
        go, pushed = asyncio.Event(), asyncio.Event()

        async def pusher():
            await go.wait()
            await websocket.send_text("pushed")
            pushed.set()

        task = asyncio.create_task(pusher())
        assert await websocket.receive_text() == "go"
        go.set()
        await pushed.wait()  # the "go" message is still being handled while the pusher sends
        await websocket.send_text("ack")
        await task
        await websocket.close()

    # middleware_tracing=None: the middleware looks for the process default manager
    app.add_middleware(TracingMiddleware, tracing=options.pop("middleware_tracing", tracing), **options)
    return app


@pytest.fixture
def service(sink):
    """(tracing, events, make) where make(**middleware_options) starts the app under uvicorn."""
    tracing = make_manager(sink, "api")
    events: dict = {}
    servers: list[UvicornServer] = []

    def make(**options) -> UvicornServer:
        server = UvicornServer(build_app(tracing, events, **options)).start()
        servers.append(server)
        return server

    yield tracing, events, make
    for server in servers:
        server.stop()
    tracing.close_tracer()


def server_spans(spans):
    return [s for s in spans if s.kind == "server"]


def test_span_named_by_route_template_with_child_and_attributes(service, sink):
    tracing, _, make = service
    server = make()
    response = httpx.get(f"{server.url}/tasks/42?token=s3cret&page=2", headers={"user-agent": "pytest-agent"})
    assert response.json() == {"id": 42}
    spans = wait_spans(tracing, sink, 2)
    assert len(spans) == 2, spans  # one server span, one decorated child: no per-message spans
    root = sink.one("GET /tasks/{task_id}")
    child = sink.one("load_task")
    assert root.parent_id == 0 and root.kind == "server"
    assert child.trace_id == root.trace_id and child.parent_id == root.span_id
    tags = root.tags
    assert tags["http.route"] == "/tasks/{task_id}"
    assert tags["http.request.method"] == tags["http.method"] == "GET"
    assert tags["http.response.status_code"] == tags["http.status_code"] == 200
    assert tags["url.path"] == "/tasks/42"
    assert tags["url.scheme"] == "http"
    assert tags["url.query"] == "token=REDACTED&page=2"
    assert tags["http.url"] == f"{server.url}/tasks/42?token=REDACTED&page=2"
    assert tags["server.address"] == "127.0.0.1" and tags["server.port"] == server.port
    assert tags["client.address"] == "127.0.0.1"
    assert tags["user_agent.original"] == "pytest-agent"
    assert "network.protocol.version" not in tags  # recorded only when it is not HTTP/1.1
    assert "error" not in tags
    assert "s3cret" not in json.dumps(tags)


def test_router_prefix_and_mounted_app_use_templates(service, sink):
    tracing, _, make = service
    server = make()
    assert httpx.get(f"{server.url}/api/items/7").json() == {"item": 7}
    assert httpx.get(f"{server.url}/sub/things/abc").text == "abc"
    assert httpx.get(f"{server.url}/no/such/path/123").status_code == 404
    spans = wait_spans(tracing, sink, 3)
    names = sorted(s.operation for s in spans)
    assert names == ["GET", "GET /api/items/{item_id}", "GET /sub/things/{thing_id}"], names
    unmatched = sink.one("GET")
    assert unmatched.tags["url.path"] == "/no/such/path/123"
    assert "http.route" not in unmatched.tags and "error" not in unmatched.tags


@pytest.mark.parametrize(
    "headers, parent",
    [
        ({"traceparent": TRACEPARENT}, PARENT_ID),
        ({"uber-trace-id": f"{TRACE_ID:x}:{PARENT_ID:x}:0:1"}, PARENT_ID),
        ({"Uber-Trace-Id": f"{TRACE_ID:x}:{PARENT_ID:x}:0:1", "uberctx-tenant": "acme"}, PARENT_ID),
    ],
)
def test_incoming_context_continues_the_trace(service, sink, headers, parent):
    tracing, _, make = service
    server = make()
    assert httpx.get(f"{server.url}/tasks/1", headers=headers).status_code == 200
    wait_spans(tracing, sink, 2)
    root = sink.one("GET /tasks/{task_id}")
    assert root.trace_id == TRACE_ID and root.parent_id == parent
    assert sink.one("load_task").trace_id == TRACE_ID


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "garbage"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-zzzzzzzzzzzzzzzz-01"},
        {"uber-trace-id": "not:a:valid"},
        {"uber-trace-id": "x" * 9000},
        {"traceparent": "\u00ff\u00fe", "baggage": "=,;==;,", "uberctx-": "%zz"},
    ],
)
def test_malformed_headers_start_a_new_trace(service, sink, headers):
    tracing, _, make = service
    server = make()
    encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    response = httpx.get(f"{server.url}/tasks/5", headers=encoded)
    assert response.status_code == 200 and response.json() == {"id": 5}
    wait_spans(tracing, sink, 2)
    root = sink.one("GET /tasks/{task_id}")
    assert root.parent_id == 0 and root.trace_id not in (0, TRACE_ID)


def test_status_codes_and_unhandled_exception(service, sink):
    tracing, _, make = service
    server = make()
    assert httpx.get(f"{server.url}/missing").status_code == 404
    assert httpx.get(f"{server.url}/unavailable").status_code == 503
    assert httpx.get(f"{server.url}/boom").status_code == 500
    wait_spans(tracing, sink, 3)
    missing = sink.one("GET /missing")
    assert missing.tags["http.status_code"] == 404 and not missing.is_error
    unavailable = sink.one("GET /unavailable")
    assert unavailable.tags["http.status_code"] == 503 and unavailable.is_error
    assert unavailable.tags["error.type"] == "503"
    boom = sink.one("GET /boom")
    assert boom.is_error and boom.tags["http.status_code"] == 500
    assert boom.tags["error.kind"] == "RuntimeError"
    events = [log for log in boom.logs if log.get("event") == "error"]
    assert events and events[0]["exception.message"] == "boom from the handler"
    assert "Traceback" in events[0]["exception.stacktrace"]


def test_exception_is_reraised_unchanged(sink):
    tracing = make_manager(sink, "api")
    app = build_app(tracing, {})

    async def call():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await client.get("/boom")

    with pytest.raises(RuntimeError) as info:
        asyncio.run(call())
    assert info.value is BOOM
    wait_spans(tracing, sink, 1)
    assert sink.one("GET /boom").is_error
    tracing.close_tracer()


def test_excluded_urls_get_no_span(service, sink):
    tracing, _, make = service
    server = make(excluded_urls=["^/health$"])
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/tasks/3").status_code == 200
    spans = wait_spans(tracing, sink, 2)
    tracing.flush()
    assert sorted(s.operation for s in sink.spans) == ["GET /tasks/{task_id}", "load_task"], spans


def test_header_capture_with_redaction(service, sink):
    tracing, _, make = service
    server = make(
        capture_request_headers=["X-Request-ID", "Authorization", "Cookie", "x-absent"],
        capture_response_headers=["x-trace-hint", "set-cookie"],
    )
    response = httpx.get(
        f"{server.url}/headers",
        headers={"x-request-id": "req-1", "authorization": "Bearer top-secret", "cookie": "sid=cookie-secret"},
    )
    assert response.status_code == 200 and response.headers["x-trace-hint"] == "h1"
    wait_spans(tracing, sink, 1)
    tags = sink.one("GET /headers").tags
    assert json.loads(tags["http.request.header.x-request-id"]) == ["req-1"]
    assert json.loads(tags["http.request.header.authorization"]) == ["[REDACTED]"]
    assert json.loads(tags["http.request.header.cookie"]) == ["[REDACTED]"]
    assert json.loads(tags["http.response.header.x-trace-hint"]) == ["h1"]
    assert json.loads(tags["http.response.header.set-cookie"]) == ["[REDACTED]"]
    assert "http.request.header.x-absent" not in tags
    assert "http.request.header.user-agent" not in tags
    text = json.dumps(tags)
    assert "top-secret" not in text and "cookie-secret" not in text


def test_traceresponse_is_opt_in(service, sink):
    tracing, _, make = service
    plain = make()
    assert "traceresponse" not in httpx.get(f"{plain.url}/tasks/1").headers
    opted = make(traceresponse=("w3c", "jaeger"))
    response = httpx.get(f"{opted.url}/tasks/2", headers={"traceparent": TRACEPARENT})
    wait_spans(tracing, sink, 4)
    server = [s for s in server_spans(sink.spans) if s.tags["url.path"] == "/tasks/2"][0]
    assert response.headers["traceresponse"] == f"00-{TRACE_ID:032x}-{server.span_id:016x}-01"
    assert response.headers["uber-trace-id"] == f"{TRACE_ID:x}:{server.span_id:x}:0:1"


def test_streaming_response_and_background_task(service, sink):
    tracing, events, make = service
    server = make()
    with httpx.stream("GET", f"{server.url}/stream") as response:
        body = b"".join(response.iter_bytes())
    assert body == b"chunk0;chunk1;chunk2;"
    response = httpx.post(f"{server.url}/tasks/9/close")
    assert response.json() == {"closing": 9}
    spans = wait_spans(tracing, sink, 3)
    stream = sink.one("GET /stream")
    assert stream.tags["http.status_code"] == 200 and not stream.is_error
    # the span covers the whole streamed body: it ends after the last chunk was produced
    assert (stream.start_us + stream.duration_us) / 1e6 >= events["last_chunk_at"] - 0.001
    close = sink.one("POST /tasks/{task_id}/close")
    cleanup = sink.one("cleanup")
    assert events["cleaned"] == [9]
    assert cleanup.trace_id == close.trace_id and cleanup.parent_id == close.span_id, spans


def test_lifespan_passes_through(service, sink):
    tracing, events, make = service
    server = make()
    assert events.get("started") is True
    assert httpx.get(f"{server.url}/health").json() == {"ok": True, "started": True}
    wait_spans(tracing, sink, 1)
    assert [s.operation for s in sink.spans] == ["GET /health"]


def test_instrument_fastapi_is_idempotent_and_reexported(sink):
    assert FastAPIMiddleware is TracingMiddleware
    tracing = make_manager(sink, "api")
    app = FastAPI()

    @app.get("/x/{n}")
    def x(n: int):
        return {"n": n}

    instrument_fastapi(app, tracing)
    instrument_fastapi(app, tracing)
    assert sum(m.cls is TracingMiddleware for m in app.user_middleware) == 1
    with UvicornServer(app) as server:
        assert httpx.get(f"{server.url}/x/1").json() == {"n": 1}
        wait_spans(tracing, sink, 1)
    span = sink.one("GET /x/{n}")
    assert span.tags["component"] == "fastapi"
    tracing.close_tracer()


@pytest.mark.parametrize("manager", ["disabled", "missing"])
def test_disabled_or_missing_manager_is_transparent(sink, manager):
    from aiecs_tracing import TracingManager, set_tracing_manager

    off = TracingManager("off", enable_tracing=False, set_default_manager=False, set_global_provider=False)
    # traceresponse on: a manager that traced would answer with the header
    if manager == "disabled":
        app = build_app(off, {}, traceresponse=True)
    else:
        set_tracing_manager(None)  # and no manager passed: nothing to trace with (restored by conftest)
        app = build_app(off, {}, middleware_tracing=None, traceresponse=True)
    with UvicornServer(app) as server:
        assert httpx.get(f"{server.url}/tasks/4").json() == {"id": 4}
        response = httpx.get(f"{server.url}/tasks/4", headers={"traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"})
        assert response.json() == {"id": 4} and "traceresponse" not in response.headers
        assert httpx.get(f"{server.url}/boom").status_code == 500
    assert off.get_tracer_info()["spans_started"] == 0 and settled(sink) == []


# --- WebSocket -----------------------------------------------------------------------------


async def _ws_conversation(url: str, headers: dict | None = None) -> list:
    replies = []
    async with websockets.connect(url, additional_headers=headers or {}) as ws:
        await ws.send("hello")
        replies.append(await ws.recv())
        await ws.send(b"\x01\x02\x03")
        replies.append(await ws.recv())
        await ws.send("bye")
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as closed:
            replies.append((closed.rcvd.code, closed.rcvd.reason))
    return replies


def test_websocket_connection_and_message_spans(service, sink):
    tracing, _, make = service
    server = make()
    replies = asyncio.run(_ws_conversation(f"{server.ws_url}/ws/lobby", {"traceparent": TRACEPARENT}))
    assert replies == ["HELLO", b"\x03\x02\x01", (4001, "done")]
    spans = wait_spans(tracing, sink, 7)
    conn = sink.one("WEBSOCKET /ws/{room}")
    assert conn.trace_id == TRACE_ID and conn.parent_id == PARENT_ID and conn.kind == "server"
    assert conn.tags["websocket.close.code"] == 4001
    assert conn.tags["websocket.close.initiator"] == "server"
    assert conn.tags["websocket.close.reason"] == "done"
    assert conn.tags["http.route"] == "/ws/{room}" and conn.tags["url.path"] == "/ws/lobby"
    assert conn.tags["websocket.messages.received"] == 3 and conn.tags["websocket.messages.sent"] == 2
    assert not conn.is_error
    received = sorted(sink.named("receive /ws/{room}"), key=lambda s: s.start_us)
    sent = sorted(sink.named("send /ws/{room}"), key=lambda s: s.start_us)
    assert [(s.tags["websocket.message.type"], s.tags["websocket.message.size"]) for s in received] == [
        ("text", 5),
        ("binary", 3),
        ("text", 3),
    ]
    assert [(s.tags["websocket.message.type"], s.tags["websocket.message.size"]) for s in sent] == [
        ("text", 5),
        ("binary", 3),
    ]
    assert all(s.trace_id == TRACE_ID and s.parent_id == conn.span_id for s in received)
    # a reply is sent while its message is handled: a child of that message's span
    assert [s.parent_id for s in sent] == [received[0].span_id, received[1].span_id]
    handled = sink.one("handle_message")
    assert handled.parent_id == received[0].span_id
    assert len(spans) == 7  # connection, 3 received, 2 sent, 1 decorated


def test_websocket_client_close_code_and_no_message_spans(service, sink):
    tracing, events, make = service
    server = make(websocket_message_spans=False)

    async def talk():
        async with websockets.connect(f"{server.ws_url}/ws/quiet") as ws:
            await ws.send("hi")
            assert await ws.recv() == "HI"
            await ws.close(code=4002, reason="client leaving")

    asyncio.run(talk())
    wait_spans(tracing, sink, 2)
    deadline = time.monotonic() + 5
    while "client_close" not in events and time.monotonic() < deadline:
        time.sleep(0.02)
    tracing.flush()
    names = sorted(s.operation for s in sink.spans)
    assert names == ["WEBSOCKET /ws/{room}", "handle_message"], names
    conn = sink.one("WEBSOCKET /ws/{room}")
    assert conn.tags["websocket.close.code"] == 4002
    assert conn.tags["websocket.close.initiator"] == "client"
    assert conn.tags["websocket.messages.received"] == 1
    # with message spans off, work done for a message belongs to the connection span
    assert sink.one("handle_message").parent_id == conn.span_id


def test_fastapi_native_tracing_does_not_duplicate_server_spans(sink):
    """FastAPI >= 0.130 traces natively through a configured provider; only our span must remain."""
    tracing = make_manager(sink, "api")

    def app_with_native_telemetry() -> FastAPI:
        app = FastAPI(telemetry={"tracer_provider": tracing.provider})

        @app.get("/items/{item_id}")
        async def item(item_id: int):
            return {"item": item_id}

        return app

    plain = app_with_native_telemetry()
    plain.add_middleware(TracingMiddleware, tracing=tracing)  # switched off at lifespan start-up
    installed = instrument_fastapi(app_with_native_telemetry(), tracing)  # switched off at install
    with UvicornServer(plain) as a, UvicornServer(installed) as b:
        for server in (a, b):
            response = httpx.get(f"{server.url}/items/1", headers={"uber-trace-id": f"{TRACE_ID:x}:{PARENT_ID:x}:0:1"})
            assert response.json() == {"item": 1}
        wait_spans(tracing, sink, 2)
    spans = settled(sink, tracing)
    assert [s.operation for s in spans] == ["GET /items/{item_id}"] * 2, spans
    assert all(s.trace_id == TRACE_ID and s.parent_id == PARENT_ID for s in spans)
    tracing.close_tracer()


def test_websocket_send_from_another_task_belongs_to_the_connection(service, sink):
    tracing, _, make = service
    server = make()

    async def talk():
        async with websockets.connect(f"{server.ws_url}/push") as ws:
            await ws.send("go")
            return [await ws.recv(), await ws.recv()]

    assert asyncio.run(talk()) == ["pushed", "ack"]
    wait_spans(tracing, sink, 4)
    conn = sink.one("WEBSOCKET /push")
    received = sink.one("receive /push")
    sent = {s.span_id: s for s in sink.named("send /push")}
    assert len(sent) == 2 and received.parent_id == conn.span_id
    by_size = {s.tags["websocket.message.size"]: s for s in sent.values()}
    # the pusher task's message hangs off the connection, the handler's reply off the message
    assert by_size[len("pushed")].parent_id == conn.span_id
    assert by_size[len("ack")].parent_id == received.span_id


def test_handler_enriches_the_server_span_through_the_manager(service, sink):
    tracing, _, make = service
    server = make()
    body = httpx.get(f"{server.url}/enrich/7").json()
    wait_spans(tracing, sink, 1)
    span = sink.one("GET /enrich/{user_id}")
    assert body["trace_id"] == f"{span.trace_id:032x}"
    assert span.tags["user.id"] == 7
    assert [log for log in span.logs if log.get("event") == "checkpoint"][0]["step"] == 1


def test_unsampled_requests_propagate_without_exporting(sink):
    tracing = make_manager(sink, "api", sampler_type="const", sampler_param=0)
    with UvicornServer(build_app(tracing, {}, traceresponse=True)) as server:
        response = httpx.get(f"{server.url}/tasks/1")
        assert response.json() == {"id": 1}
        assert response.headers["traceresponse"].endswith("-00")  # a real trace, not sampled
        # a sampled caller is followed (parent-based), even with a const-0 sampler
        sampled = httpx.get(f"{server.url}/tasks/2", headers={"traceparent": TRACEPARENT})
        wait_spans(tracing, sink, 2)
        tracing.flush()
    assert sampled.headers["traceresponse"].startswith(f"00-{TRACE_ID:032x}-")
    assert sorted(s.operation for s in sink.spans) == ["GET /tasks/{task_id}", "load_task"]
    assert all(s.trace_id == TRACE_ID for s in sink.spans)
    info = tracing.get_tracer_info()
    assert info["spans_started"] == info["spans_finished"]
    tracing.close_tracer()


def test_regular_span_path_still_works(service, sink):
    """The core's regular spans remain the fallback (another SDK shape, or switched off)."""
    tracing, _, _ = service
    app = build_app(tracing, {})
    for middleware in app.user_middleware:
        if middleware.cls is TracingMiddleware:
            middleware.cls = type("Regular", (TracingMiddleware,), {"__init__": _regular_init})
    with UvicornServer(app) as server:
        assert httpx.get(f"{server.url}/boom").status_code == 500
        assert httpx.get(f"{server.url}/tasks/3", headers={"traceparent": TRACEPARENT}).status_code == 200
        wait_spans(tracing, sink, 3)
    boom = sink.one("GET /boom")
    assert boom.is_error and boom.tags["http.status_code"] == 500
    task = sink.one("GET /tasks/{task_id}")
    assert task.parent_id == PARENT_ID and sink.one("load_task").parent_id == task.span_id


def _regular_init(self, *args, **kwargs):
    TracingMiddleware.__init__(self, *args, **kwargs)
    self.light_spans = False


def test_websocket_leaves_no_span_current_and_secret_looking_headers_are_redacted():
    import asyncio as _asyncio

    from opentelemetry import trace

    from aiecs_tracing import TracingManager
    from aiecs_tracing.integrations.asgi import TracingMiddleware

    tracing = TracingManager("ws-leak", exporter="memory", set_global_provider=False, set_default_manager=False)

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "echo " + message["text"]})
        else:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    middleware = TracingMiddleware(app, tracing=tracing, capture_request_headers=["private-token", "accept"])

    async def main():
        messages = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            pass

        scope = {"type": "websocket", "path": "/ws", "headers": [(b"host", b"svc")], "query_string": b""}
        await middleware(scope, receive, send)
        assert not trace.get_current_span().get_span_context().is_valid

        async def http_receive():
            return {"type": "http.request", "body": b""}

        http_scope = {"type": "http", "method": "GET", "path": "/x", "query_string": b"", "scheme": "http",
                      "headers": [(b"host", b"svc"), (b"private-token", b"glpat-SECRET"), (b"accept", b"*/*")]}
        await middleware(http_scope, http_receive, send)

    _asyncio.run(main())
    tracing.flush()
    (http_span,) = [s for s in tracing.exporter.get_finished_spans() if s.name.startswith("GET")]
    assert list(http_span.attributes["http.request.header.private-token"]) == ["[REDACTED]"]
    assert list(http_span.attributes["http.request.header.accept"]) == ["*/*"]
    tracing.close_tracer()
