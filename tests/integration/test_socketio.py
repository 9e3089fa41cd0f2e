"""python-socketio under uvicorn with real socketio clients; spans decoded from the UDP wire."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import socketio

from aiecs_tracing import TracingManager
from aiecs_tracing.integrations.socketio import instrument_socketio, trace_carrier, uninstrument_socketio
from tests.integration._ws_util import run, serve_asgi
from tests.wire import make_manager, settled

pytestmark = pytest.mark.slow

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
PAYLOAD_TRACE = "1af7651916cd43dd8448eb211c80319c"
PAYLOAD_PARENT = "c7ad6b7169203331"

logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the "boom" handler's unretrieved task


def build_server(tracing: Any, *, instrument: str | None = "before", times: int = 1) -> socketio.AsyncServer:
    """An AIECS-like Socket.IO server; ``instrument``: "before"/"after" registering handlers, or None."""
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=0.5, ping_timeout=1)
    if instrument == "before":
        for _ in range(times):
            instrument_socketio(sio, tracing)

    @sio.event
    async def connect(sid: str, environ: dict, auth: Any) -> None:
        await sio.save_session(sid, {"auth": auth})

    @sio.event
    async def register(sid: str, data: dict) -> dict:
        with tracing.span("lookup user", {"user": data.get("user")}):
            await asyncio.sleep(0)
        await sio.emit("registered", {"user": data.get("user")}, to=sid)
        return {"ok": True, "user": data.get("user"), "keys": sorted(data)}

    @sio.event
    async def multi(sid: str, a: int, b: int) -> tuple:
        return a + b, a * b

    @sio.event
    async def boom(sid: str, data: Any) -> None:
        raise ValueError("boom")

    @sio.event
    async def ask(sid: str) -> Any:
        return await sio.call("question", "ready?", to=sid, timeout=5)

    @sio.on("*")
    async def catch_all(event: str, sid: str, *args: Any) -> str:
        return f"caught {event} {list(args)}"

    @sio.event
    async def disconnect(sid: str, reason: str) -> None:
        pass

    class Chat(socketio.AsyncNamespace):
        async def on_say(self, sid: str, text: str) -> str:
            await self.emit("said", text, to=sid)
            return text.upper()

    sio.register_namespace(Chat("/chat"))
    if instrument == "after":
        for _ in range(times):
            instrument_socketio(sio, tracing)
    return sio


async def scenario(port: int, transport: str) -> dict[str, Any]:
    """What a client sees: acks, pushed events, and that the server survives a handler error."""
    client = socketio.AsyncClient()
    pushed: list[tuple[str, Any]] = []

    @client.on("registered")
    async def on_registered(data: Any) -> None:
        pushed.append(("registered", data))

    @client.on("said", namespace="/chat")
    async def on_said(data: Any) -> None:
        pushed.append(("said", data))

    @client.on("question")
    async def on_question(text: str) -> str:
        return f"yes to {text}"

    await client.connect(
        f"http://127.0.0.1:{port}",
        headers={"traceparent": TRACEPARENT},
        transports=[transport],
        namespaces=["/", "/chat"],
        wait_timeout=5,
    )
    out: dict[str, Any] = {}
    out["register"] = await client.call("register", {"user": "u1"}, timeout=5)
    out["multi"] = await client.call("multi", (2, 5), timeout=5)
    out["catch_all"] = await client.call("whatever", {"x": 1}, timeout=5)
    out["say"] = await client.call("say", "hi", namespace="/chat", timeout=5)
    out["ask"] = await client.call("ask", timeout=5)
    await client.emit("boom", {"n": 1})
    out["after_boom"] = await client.call("multi", (3, 4), timeout=5)
    carrier = {"user": "u2", "_trace": {"traceparent": f"00-{PAYLOAD_TRACE}-{PAYLOAD_PARENT}-01"}}
    out["carrier"] = await client.call("register", carrier, timeout=5)
    out["carrier_payload_intact"] = carrier == {
        "user": "u2",
        "_trace": {"traceparent": f"00-{PAYLOAD_TRACE}-{PAYLOAD_PARENT}-01"},
    }
    deadline = asyncio.get_running_loop().time() + 10  # a bound for a loaded machine, not a timing
    while len(pushed) < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    out["pushed"] = sorted(pushed, key=repr)
    await client.disconnect()
    return out


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_connection_events_acks_and_emits_in_the_handshake_trace(sink, transport: str) -> None:
    tracing = make_manager(sink, "socketio-svc")
    off = TracingManager("off", enable_tracing=False, set_global_provider=False, set_default_manager=False)
    with serve_asgi(socketio.ASGIApp(build_server(off, instrument=None))) as port:
        bare = run(scenario(port, transport))
    with serve_asgi(socketio.ASGIApp(build_server(tracing))) as port:
        traced = run(scenario(port, transport))

    # behaviour unchanged: the same acks and pushes as the uninstrumented server
    assert traced == bare
    assert traced["register"] == {"ok": True, "user": "u1", "keys": ["user"]}
    assert traced["multi"] == (7, 10)
    assert traced["catch_all"] == "caught whatever [{'x': 1}]"
    assert traced["say"] == "HI"
    assert traced["ask"] == "yes to ready?"
    assert traced["after_boom"] == (7, 12)
    assert traced["carrier"]["keys"] == ["_trace", "user"]  # the carrier is not stripped

    tracing.flush()
    assert len(sink.wait_for(2, where=lambda s: s.operation == "socketio connection")) == 2
    tracing.flush()
    by_name: dict[str, list] = {}
    for s in sink.spans:
        by_name.setdefault(s.operation, []).append(s)

    conns = {s.tags["socketio.namespace"]: s for s in by_name["socketio connection"]}
    assert set(conns) == {"/", "/chat"}
    for ns, conn in conns.items():
        assert _hex(conn.trace_id, 32) == TRACE and _hex(conn.parent_id, 16) == PARENT, ns
        assert conn.kind == "server"
        assert conn.tags["socketio.transport"] == transport
        assert conn.tags["client.address"] == "127.0.0.1"
        assert conn.tags["socketio.sid"]
        assert conn.tags["messaging.system"] == "socketio"
        assert "socketio.disconnect.reason" in conn.tags
    root = conns["/"]

    def one(name: str, **tags: Any) -> Any:
        found = [s for s in by_name.get(name, []) if all(s.tags.get(k) == v for k, v in tags.items())]
        assert len(found) == 1, (name, tags, found)
        return found[0]

    connect = one("socketio connect", **{"socketio.namespace": "/"})
    assert connect.parent_id == root.span_id

    register = [s for s in by_name["socketio register"] if s.trace_id == root.trace_id]
    assert len(register) == 1
    register = register[0]
    assert register.parent_id == root.span_id and register.kind == "consumer"
    assert register.tags["socketio.event"] == "register"
    assert register.tags["socketio.args_count"] == 1
    assert register.tags["socketio.ack"] is True
    assert register.tags["socketio.sid"] == root.tags["socketio.sid"]
    assert register.tags["messaging.system"] == "socketio"
    lookup = [s for s in by_name["lookup user"] if s.parent_id == register.span_id]
    assert len(lookup) == 1  # the handler's own span is a child of the event span
    emit = [s for s in by_name["socketio emit registered"] if s.parent_id == register.span_id]
    assert len(emit) == 1 and emit[0].kind == "producer"
    assert emit[0].tags["socketio.room"] == root.tags["socketio.sid"]

    catch_all = one("socketio whatever")
    assert catch_all.parent_id == root.span_id

    say = one("socketio say")
    assert say.parent_id == conns["/chat"].span_id and say.tags["socketio.namespace"] == "/chat"
    said = one("socketio emit said")
    assert said.parent_id == say.span_id and said.tags["socketio.namespace"] == "/chat"

    ask = one("socketio ask")
    call = one("socketio emit question")
    assert call.parent_id == ask.span_id and call.tags["socketio.operation"] == "call"
    assert call.tags["socketio.ack"] is True

    boom = one("socketio boom")
    assert boom.is_error and boom.tags["error.kind"] == "ValueError" and boom.tags["error.message"] == "boom"
    assert any(log.get("exception.type") == "ValueError" for log in boom.logs)

    # a carrier in the payload wins over the connection (which becomes a link)
    carried = [s for s in by_name["socketio register"] if _hex(s.trace_id, 32) == PAYLOAD_TRACE]
    assert len(carried) == 1
    assert _hex(carried[0].parent_id, 16) == PAYLOAD_PARENT
    assert ("FOLLOWS_FROM", root.trace_id, root.span_id) in carried[0].references
    assert [s for s in by_name["socketio emit registered"] if s.parent_id == carried[0].span_id]

    disconnect = one("socketio disconnect", **{"socketio.namespace": "/"})
    assert disconnect.parent_id == root.span_id

    # everything else sits in the handshake's trace
    others = [s for s in sink.spans if _hex(s.trace_id, 32) != TRACE]
    assert {s.operation for s in others} == {"socketio register", "lookup user", "socketio emit registered"}


@pytest.mark.parametrize("times", [1, 2])
@pytest.mark.parametrize("when", ["before", "after"])
def test_instrument_before_or_after_handlers_and_twice(sink, when: str, times: int) -> None:
    tracing = make_manager(sink, "socketio-svc")
    sio = build_server(tracing, instrument=when, times=times)

    async def go(port: int) -> Any:
        client = socketio.AsyncClient()
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
        result = await client.call("multi", (6, 7), timeout=5)
        await client.disconnect()
        return result

    with serve_asgi(socketio.ASGIApp(sio)) as port:
        assert run(go(port)) == (13, 42)
    tracing.flush()
    sink.wait_for(1, where=lambda s: s.operation == "socketio connection")
    names = sorted(s.operation for s in sink.wait_for(4, timeout=2))
    assert names == ["socketio connect", "socketio connection", "socketio disconnect", "socketio multi"]
    multi, conn = sink.one("socketio multi"), sink.one("socketio connection")
    assert multi.parent_id == conn.span_id and multi.trace_id == conn.trace_id
    assert conn.parent_id == 0  # no handshake headers: a new trace


def test_uninstrument_and_disabled_manager_trace_nothing(sink) -> None:
    tracing = make_manager(sink, "socketio-svc")
    sio = build_server(tracing)
    assert uninstrument_socketio(sio) is sio
    assert "emit" not in vars(sio) and "_trigger_event" not in vars(sio)
    off = TracingManager("off", enable_tracing=False, set_global_provider=False, set_default_manager=False)
    sio_off = build_server(off)

    async def go(port: int) -> Any:
        client = socketio.AsyncClient()
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
        result = await client.call("register", {"user": "x"}, timeout=5)
        await client.disconnect()
        return result

    for server in (sio, sio_off):
        with serve_asgi(socketio.ASGIApp(server)) as port:
            assert run(go(port))["ok"] is True
    assert [s.operation for s in settled(sink, tracing, off)] == ["lookup user"]  # the handler's own span only


def test_connect_auth_carrier_refused_connection_and_separate_event_traces(sink) -> None:
    tracing = make_manager(sink, "socketio-svc")
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=0.5, ping_timeout=1)
    instrument_socketio(sio, tracing, events_in_connection_trace=False)

    @sio.event
    async def connect(sid: str, environ: dict, auth: Any) -> bool:
        return bool(auth and auth.get("token") == "good")

    @sio.event
    async def ping(sid: str) -> str:
        return "pong"

    async def go(port: int) -> Any:
        good = socketio.AsyncClient()
        auth = {"token": "good", "_trace": {"traceparent": TRACEPARENT}}
        await good.connect(f"http://127.0.0.1:{port}", auth=auth, transports=["websocket"], wait_timeout=5)
        pong = await good.call("ping", timeout=5)
        await good.disconnect()
        bad = socketio.AsyncClient()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await bad.connect(f"http://127.0.0.1:{port}", auth={"token": "bad"}, transports=["websocket"], wait_timeout=5)
        with contextlib.suppress(Exception):
            await bad.disconnect()
        return pong

    with serve_asgi(socketio.ASGIApp(sio)) as port:
        assert run(go(port)) == "pong"
    tracing.flush()
    conns = sink.wait_for(2, where=lambda s: s.operation == "socketio connection")
    good = [c for c in conns if not c.tags.get("socketio.connect.refused")]
    refused = [c for c in conns if c.tags.get("socketio.connect.refused")]
    assert len(good) == 1 and len(refused) == 1
    assert _hex(good[0].trace_id, 32) == TRACE and _hex(good[0].parent_id, 16) == PARENT  # from auth
    assert not refused[0].is_error
    event = sink.wait_for(1, where=lambda s: s.operation == "socketio ping")[0]
    assert event.trace_id != good[0].trace_id and event.parent_id == 0  # its own trace...
    assert ("FOLLOWS_FROM", good[0].trace_id, good[0].span_id) in event.references  # ...linked


def test_client_side_trace_carrier_helper(sink) -> None:
    tracing = make_manager(sink, "socketio-client")
    assert trace_carrier(tracing) == {}
    with tracing.span("client op") as span:
        carrier = trace_carrier(tracing)
    assert carrier["_trace"]["traceparent"].split("-")[1] == span.context.trace_id_hex
    assert "uber-trace-id" in carrier["_trace"]


# --- the synchronous server --------------------------------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[int]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_sync_server_over_threaded_wsgi_with_polling(sink) -> None:
    tracing = make_manager(sink, "socketio-sync")
    sio = socketio.Server(async_mode="threading", ping_interval=0.5, ping_timeout=1)
    instrument_socketio(sio, tracing)

    @sio.event
    def add(sid: str, a: int, b: int) -> int:
        sio.emit("added", a + b, to=sid)
        return a + b

    @sio.event
    def fail(sid: str) -> None:
        raise RuntimeError("sync boom")

    with serve_wsgi(socketio.WSGIApp(sio)) as port:
        client = socketio.Client()
        got = threading.Event()
        client.on("added", lambda value: got.set())
        client.connect(
            f"http://127.0.0.1:{port}", headers={"traceparent": TRACEPARENT}, transports=["polling"], wait_timeout=5
        )
        assert client.call("add", (2, 3), timeout=5) == 5
        client.emit("fail")
        assert client.call("add", (1, 1), timeout=5) == 2
        assert got.wait(5)
        client.disconnect()
    tracing.flush()
    conn = sink.wait_for(1, where=lambda s: s.operation == "socketio connection")[0]
    assert _hex(conn.trace_id, 32) == TRACE and _hex(conn.parent_id, 16) == PARENT
    adds = sink.wait_for(2, where=lambda s: s.operation == "socketio add")
    assert len(adds) == 2 and all(a.parent_id == conn.span_id for a in adds)
    emits = sink.wait_for(2, where=lambda s: s.operation == "socketio emit added")
    assert {e.parent_id for e in emits} == {a.span_id for a in adds}
    failed = sink.wait_for(1, where=lambda s: s.operation == "socketio fail")[0]
    assert failed.is_error and failed.tags["error.kind"] == "RuntimeError"


def test_internal_tracing_failure_never_reaches_the_app(sink, monkeypatch) -> None:
    from aiecs_tracing.core import guard

    tracing = make_manager(sink, "socketio-svc")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracing bug")

    for method in ("start_sdk", "start_fast", "start_from_remote"):  # every way the engine starts a span
        monkeypatch.setattr(tracing, method, broken)
    before = guard.error_counts().get("socketio event", 0)
    with serve_asgi(socketio.ASGIApp(build_server(tracing))) as port:
        result = run(scenario(port, "websocket"))
    assert result["register"] == {"ok": True, "user": "u1", "keys": ["user"]}
    assert result["say"] == "HI" and result["after_boom"] == (7, 12)
    assert guard.error_counts().get("socketio event", 0) > before


def test_default_manager_is_resolved_per_event(sink) -> None:
    from aiecs_tracing import get_tracing_manager, set_tracing_manager

    previous = get_tracing_manager()

    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=0.5, ping_timeout=1)
    instrument_socketio(sio)  # before any manager exists

    @sio.event
    async def hello(sid: str) -> str:
        return "hi"

    tracing = make_manager(sink, "socketio-default")
    set_tracing_manager(tracing)
    try:

        async def go(port: int) -> Any:
            client = socketio.AsyncClient()
            await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
            result = await client.call("hello", timeout=5)
            await client.disconnect()
            return result

        with serve_asgi(socketio.ASGIApp(sio)) as port:
            assert run(go(port)) == "hi"
    finally:
        set_tracing_manager(previous)
    tracing.flush()
    assert sink.wait_for(1, where=lambda s: s.operation == "socketio hello")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_under_the_asgi_tracing_middleware(sink, transport: str) -> None:
    """Mounted behind TracingMiddleware: the connection joins the handshake's trace either way."""
    from fastapi import FastAPI

    from aiecs_tracing.integrations.asgi import TracingMiddleware

    tracing = make_manager(sink, "socketio-mw")
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=0.5, ping_timeout=1)
    instrument_socketio(sio, tracing)

    @sio.event
    async def hello(sid: str) -> str:
        return "hi"

    app = TracingMiddleware(socketio.ASGIApp(sio, other_asgi_app=FastAPI()), tracing=tracing)

    async def go(port: int) -> Any:
        client = socketio.AsyncClient()
        await client.connect(
            f"http://127.0.0.1:{port}", headers={"traceparent": TRACEPARENT}, transports=[transport], wait_timeout=5
        )
        result = await client.call("hello", timeout=5)
        await client.disconnect()
        return result

    with serve_asgi(app) as port:
        assert run(go(port)) == "hi"
    tracing.flush()
    conn = sink.wait_for(1, where=lambda s: s.operation == "socketio connection")[0]
    event = sink.wait_for(1, where=lambda s: s.operation == "socketio hello")[0]
    assert _hex(conn.trace_id, 32) == TRACE and event.trace_id == conn.trace_id
    assert event.parent_id == conn.span_id
    if transport == "websocket":  # a child of the middleware's WebSocket connection span
        parent = [s for s in sink.spans if s.span_id == conn.parent_id]
        assert parent and parent[0].kind == "server" and _hex(parent[0].parent_id, 16) == PARENT
