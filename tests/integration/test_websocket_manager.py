"""An AIECS-style WebSocketManager on the real ``websockets`` library, real clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from typing import Any

import pytest
import websockets
from websockets.sync.client import connect as sync_connect

from aiecs_tracing import TracingManager
from aiecs_tracing.integrations.websocket import (
    instrument_websocket_manager,
    trace_websocket_connection,
    uninstrument_websocket_manager,
    untrace_websocket_connection,
)
from tests.integration._ws_util import StandInWebSocketManager, run
from tests.wire import make_manager, settled

pytestmark = pytest.mark.slow

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
MSG_TRACE = "5bf92f3577b34da6a3ce929d0e0e4736"
MSG_PARENT = "10f067aa0ba902b7"


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _off() -> TracingManager:
    return TracingManager("off", enable_tracing=False, set_global_provider=False, set_default_manager=False)


async def _recv_json(ws: Any) -> Any:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    message.pop("timestamp", None)
    message.pop("callback_id", None)
    return message


async def manager_scenario(tracing: TracingManager, instrument: bool) -> dict[str, Any]:
    """Everything a client (and the caller of the manager's methods) observes."""
    mgr = StandInWebSocketManager()
    if instrument:
        instrument_websocket_manager(mgr, tracing)

    async def on_action(action: Any, data: dict) -> None:
        with tracing.span(f"handle {action}"):  # the application's own work for a message
            await asyncio.sleep(0)

    mgr.on_action = on_action
    port = await mgr.start_server()
    url = f"ws://127.0.0.1:{port}/ws"
    out: dict[str, Any] = {}
    a1 = await websockets.connect(url, additional_headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    a2 = await websockets.connect(url)
    b = await websockets.connect(url)
    try:
        for name, ws, user in (("a1", a1, "u1"), ("a2", a2, "u1"), ("b", b, "u2")):
            await ws.send(json.dumps({"action": "subscribe", "user_id": user}))
            out[f"subscribe {name}"] = await _recv_json(ws)
        await a1.send(json.dumps({"action": "ping", "echo": 1}))
        out["ping"] = await _recv_json(a1)
        await a1.send("{not json")
        out["invalid"] = await _recv_json(a1)
        await a1.send("[1, 2]")
        out["not an object"] = await _recv_json(a1)
        await a1.send(json.dumps({"action": "dance"}))
        out["unknown"] = await _recv_json(a1)
        await a1.send(json.dumps({"action": "cancel", "task_id": "t9"}))
        out["cancel"] = await _recv_json(a1)
        carried = {"action": "ping", "echo": 2, "_trace": {"traceparent": f"00-{MSG_TRACE}-{MSG_PARENT}-01"}}
        await a1.send(json.dumps(carried))
        out["ping carried"] = await _recv_json(a1)

        with tracing.span("push job"):
            out["broadcast returned"] = await mgr.broadcast_message({"type": "announcement", "text": "hi"})
        out["broadcast received"] = [await _recv_json(ws) for ws in (a1, a2, b)]
        out["send_to_user returned"] = await mgr.send_to_user("u1", {"type": "progress", "pct": 50})
        out["send_to_user received"] = [await _recv_json(ws) for ws in (a1, a2)]

        notify = asyncio.create_task(mgr.notify_user({"score": 0.9}, "u2", "t1", 3))
        step = json.loads(await asyncio.wait_for(b.recv(), 5))
        out["notify pushed"] = {k: v for k, v in step.items() if k != "callback_id"}
        await b.send(json.dumps({"action": "confirm", "callback_id": step["callback_id"], "proceed": False, "feedback": "no"}))
        out["confirm reply"] = await _recv_json(b)
        confirmation = await asyncio.wait_for(notify, 5)
        out["notify returned"] = (confirmation.proceed, confirmation.feedback)

        out["heartbeat returned"] = await mgr.send_heartbeat()
        out["heartbeat received"] = [await _recv_json(ws) for ws in (a1, a2, b)]
    finally:
        for ws in (a1, a2, b):
            await ws.close()
        await mgr.clients_gone()
        await mgr.stop_server()
    # what reached the manager, with the random callback id masked
    out["manager saw"] = [
        (kind, message.replace(step["callback_id"], "<callback>") if isinstance(message, str) else message)
        for kind, message in mgr.log
    ]
    out["cancelled"] = sorted(mgr.cancelled_tasks)
    out["connections left"] = dict(mgr.connections)
    return out


def test_manager_connections_messages_and_pushes(sink) -> None:
    tracing = make_manager(sink, "ws-manager")
    bare = run(manager_scenario(_off(), instrument=False))
    traced = run(manager_scenario(tracing, instrument=True))

    # behaviour unchanged: identical responses and the exact messages reached the manager
    assert traced == bare
    assert traced["invalid"] == {"type": "error", "error": "Invalid JSON format"}
    assert traced["broadcast returned"] == 3 and traced["send_to_user returned"] == 2
    assert traced["notify returned"] == (False, "no")
    assert ("message", "{not json") in traced["manager saw"]

    tracing.flush()
    conns = sink.wait_for(3, where=lambda s: s.operation == "websocket connection")
    tracing.flush()
    spans = sink.spans
    assert len(conns) == 3

    a1 = [c for c in conns if _hex(c.trace_id, 32) == TRACE]
    assert len(a1) == 1
    a1 = a1[0]
    assert _hex(a1.parent_id, 16) == PARENT and a1.kind == "server"
    assert a1.tags["url.path"] == "/ws" and a1.tags["client.address"] == "127.0.0.1"
    assert a1.tags["websocket.close.code"] == 1000
    assert a1.tags["websocket.messages.received"] == 7
    assert a1.tags["websocket.manager"] == "StandInWebSocketManager"
    others = [c for c in conns if c is not a1]
    assert all(c.parent_id == 0 and c.trace_id != a1.trace_id for c in others)

    def named(name: str, where: Any = None) -> list:
        return [s for s in spans if s.operation == name and (where is None or where(s))]

    in_a1 = lambda s: s.parent_id == a1.span_id  # noqa: E731
    subscribe = named("websocket subscribe", in_a1)
    assert len(subscribe) == 1 and subscribe[0].kind == "consumer"
    assert subscribe[0].tags["websocket.message.action"] == "subscribe"
    assert subscribe[0].tags["websocket.message.user_id"] == "u1"
    assert subscribe[0].tags["messaging.system"] == "websocket"
    # the handling of a message happens inside its span
    handled = named("handle subscribe", lambda s: s.parent_id == subscribe[0].span_id)
    assert len(handled) == 1
    ping = named("websocket ping", in_a1)
    assert len(ping) == 1 and ping[0].tags["websocket.message.type"] == "text"
    assert ping[0].tags["messaging.message.body.size"] == len(json.dumps({"action": "ping", "echo": 1}))
    assert not ping[0].is_error
    messages = named("websocket message", in_a1)
    invalid = [m for m in messages if m.tags.get("message.invalid_json")]
    assert len(invalid) == 1 and invalid[0].is_error
    assert len([m for m in messages if not m.tags.get("message.invalid_json")]) == 1  # "[1, 2]" is valid JSON
    assert len(named("websocket dance", in_a1)) == 1
    assert len(named("websocket cancel", in_a1)) == 1
    # a trace carrier inside the message: that trace, linked to the connection
    carried = named("websocket ping", lambda s: _hex(s.trace_id, 32) == MSG_TRACE)
    assert len(carried) == 1 and _hex(carried[0].parent_id, 16) == MSG_PARENT
    assert ("FOLLOWS_FROM", a1.trace_id, a1.span_id) in carried[0].references

    job = named("push job")[0]
    broadcast = named("websocket broadcast")
    assert len(broadcast) == 1 and broadcast[0].parent_id == job.span_id and broadcast[0].kind == "producer"
    assert broadcast[0].tags["websocket.recipients"] == 3
    assert broadcast[0].tags["websocket.message.kind"] == "announcement"

    send = named("websocket send_to_user", lambda s: s.tags.get("websocket.message.kind") == "progress")
    assert len(send) == 1 and send[0].tags["websocket.recipients"] == 2 and send[0].tags["user.id"] == "u1"

    notify = named("websocket notify_user")
    assert len(notify) == 1
    notify = notify[0]
    assert notify.tags["user.id"] == "u2" and notify.tags["websocket.task_id"] == "t1"
    assert notify.tags["websocket.step"] == 3 and notify.tags["websocket.recipients"] == 1
    assert notify.tags["websocket.confirmation.proceed"] is False
    inner = named("websocket send_to_user", lambda s: s.parent_id == notify.span_id)
    assert len(inner) == 1 and inner[0].tags["websocket.message.kind"] == "task_step_result"
    confirm = named("websocket confirm")
    assert len(confirm) == 1 and "websocket.message.callback_id" in confirm[0].tags

    heartbeat = named("websocket heartbeat")
    assert len(heartbeat) == 1 and heartbeat[0].kind == "producer"
    assert heartbeat[0].tags["websocket.recipients"] == 3
    assert heartbeat[0].tags["websocket.operation"] == "broadcast"


def test_heartbeat_loop_and_direct_writes_give_one_span_per_beat(sink) -> None:
    tracing = make_manager(sink, "ws-manager")

    class DirectHeartbeat(StandInWebSocketManager):
        async def send_heartbeat(self, user_id: str | None = None) -> int:
            for ws in self._all():
                await ws.send(json.dumps({"type": "heartbeat"}))
            return len(self._all())

    async def go() -> None:
        loop_mgr = instrument_websocket_manager(StandInWebSocketManager(), tracing)
        direct = instrument_websocket_manager(DirectHeartbeat(), tracing)
        for mgr in (loop_mgr, direct):
            port = await mgr.start_server()
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send(json.dumps({"action": "subscribe", "user_id": "u"}))
                await ws.recv()
                if mgr is loop_mgr:
                    mgr.start_heartbeat(0.01)
                    for _ in range(3):
                        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "heartbeat"
                    mgr._heartbeat_task.cancel()
                else:
                    assert await mgr.send_heartbeat() == 1
                    await ws.recv()
            await mgr.stop_server()

    run(go())
    tracing.flush()
    beats = sink.wait_for(4, where=lambda s: s.operation == "websocket heartbeat")
    looped = [b for b in beats if b.tags["websocket.operation"] == "broadcast"]
    direct = [b for b in beats if b.tags["websocket.operation"] == "heartbeat"]
    assert len(looped) >= 3 and len(direct) == 1
    assert all(b.tags["websocket.recipients"] == 1 for b in looped + direct)
    assert len({b.trace_id for b in looped}) == len(looped)  # one trace per beat, not one endless span


def test_uninstrument_and_disabled(sink) -> None:
    tracing = make_manager(sink, "ws-manager")
    mgr = StandInWebSocketManager()
    instrument_websocket_manager(mgr, tracing)
    assert instrument_websocket_manager(mgr, tracing) is mgr  # idempotent
    uninstrument_websocket_manager(mgr)
    assert "_handle_client_connection" not in vars(mgr) and "broadcast_message" not in vars(mgr)
    disabled = instrument_websocket_manager(StandInWebSocketManager(), _off())

    async def go() -> list:
        replies = []
        for m in (mgr, disabled):
            port = await m.start_server()
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.send(json.dumps({"action": "ping", "echo": "x"}))
                replies.append(json.loads(await ws.recv()))
                await m.broadcast_message({"type": "t"})
                await ws.recv()
            await m.stop_server()
        return replies

    assert run(go()) == [{"type": "pong", "echo": "x"}] * 2
    tracing.flush()
    assert sink.wait_for(1, timeout=0.5) == []


def test_instrument_twice_no_duplicate_spans(sink) -> None:
    tracing = make_manager(sink, "ws-manager")
    mgr = StandInWebSocketManager()
    instrument_websocket_manager(mgr, tracing)
    instrument_websocket_manager(mgr, tracing)

    async def go() -> None:
        port = await mgr.start_server()
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            await ws.recv()
        await mgr.clients_gone()
        await mgr.stop_server()

    run(go())
    tracing.flush()
    sink.wait_for(1, where=lambda s: s.operation == "websocket connection")
    assert sorted(s.operation for s in sink.wait_for(2, timeout=1)) == ["websocket connection", "websocket ping"]


def test_handler_error_is_recorded_and_close_code_1011(sink) -> None:
    tracing = make_manager(sink, "ws-manager")

    class Broken(StandInWebSocketManager):
        async def _handle_client_connection(self, websocket: Any) -> None:
            await websocket.recv()
            raise RuntimeError("manager bug")

    mgr = instrument_websocket_manager(Broken(), tracing)

    async def go() -> int | None:
        port = await mgr.start_server()
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.send("hello")
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            code = ws.close_code
        await mgr.stop_server()
        return code

    assert run(go()) == 1011  # websockets' own behaviour, unchanged
    tracing.flush()
    conn = sink.wait_for(1, where=lambda s: s.operation == "websocket connection")[0]
    assert conn.is_error and conn.tags["error.kind"] == "RuntimeError"
    assert conn.tags["websocket.close.code"] == 1011
    msg = sink.wait_for(1, where=lambda s: s.operation == "websocket message")[0]
    assert msg.parent_id == conn.span_id and msg.tags["message.invalid_json"] is True


def test_legacy_websockets_api_handler_with_path(sink) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from websockets.legacy.server import serve as legacy_serve

    tracing = make_manager(sink, "ws-legacy")

    class LegacyManager(StandInWebSocketManager):
        """AIECS's original shape: websockets' legacy API and a (websocket, path) handler."""

        async def start_server(self) -> int:
            self.server = await legacy_serve(self._handle_client_connection, self.host, self.port)
            self.port = self.server.sockets[0].getsockname()[1]
            return self.port

        async def _handle_client_connection(self, websocket: Any, path: str) -> None:  # type: ignore[override]
            self.log.append(("path", path))
            await super()._handle_client_connection(websocket)

    mgr = instrument_websocket_manager(LegacyManager(), tracing)

    async def go() -> Any:
        port = await mgr.start_server()
        headers = {"uber-trace-id": f"{TRACE}:{PARENT}:0:1"}
        async with websockets.connect(f"ws://127.0.0.1:{port}/legacy", additional_headers=headers) as ws:
            await ws.send(json.dumps({"action": "ping", "echo": "L"}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await mgr.clients_gone()
        await mgr.stop_server()
        return reply

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert run(go()) == {"type": "pong", "echo": "L"}
    assert ("path", "/legacy") in mgr.log
    tracing.flush()
    conn = sink.wait_for(1, where=lambda s: s.operation == "websocket connection")[0]
    assert _hex(conn.trace_id, 32) == TRACE and _hex(conn.parent_id, 16) == PARENT
    assert conn.tags["url.path"] == "/legacy"
    ping = sink.wait_for(1, where=lambda s: s.operation == "websocket ping")[0]
    assert ping.parent_id == conn.span_id


# --- the generic connection wrapper ------------------------------------------------------------


def test_generic_wrapper_on_server_and_client_connections(sink) -> None:
    tracing = make_manager(sink, "ws-generic")

    async def echo(ws: Any) -> None:
        trace_websocket_connection(ws, tracing, name="echo")
        async for message in ws:
            with tracing.span("work"):
                pass
            await ws.send(message)

    async def go() -> list:
        server = await websockets.serve(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got = []
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            assert trace_websocket_connection(ws, tracing, name="client") is ws
            trace_websocket_connection(ws, tracing, name="client")  # idempotent
            with tracing.span("client job"):
                for payload in ("one", b"\x00\x01"):
                    await ws.send(payload)
                    got.append(await ws.recv())
                untrace_websocket_connection(ws)
        server.close()
        await server.wait_closed()
        return got

    assert run(go()) == ["one", b"\x00\x01"]
    tracing.flush()
    spans = sink.wait_for(10, timeout=3)
    job = [s for s in spans if s.operation == "client job"][0]
    client_sends = [s for s in spans if s.operation == "client send"]
    client_recvs = [s for s in spans if s.operation == "client receive"]
    assert len(client_sends) == 2 and len(client_recvs) == 2
    assert all(s.trace_id == job.trace_id for s in client_sends + client_recvs)
    first_send = min(client_sends, key=lambda s: s.start_us)
    first_recv = min(client_recvs, key=lambda s: s.start_us)
    assert first_send.parent_id == job.span_id and first_recv.parent_id == job.span_id
    # a receive span stays current until the next recv: what is sent meanwhile is its child
    assert {s.parent_id for s in client_sends} == {job.span_id, first_recv.span_id}
    assert {s.tags["websocket.message.type"] for s in client_recvs} == {"text", "binary"}
    server_recvs = [s for s in spans if s.operation == "echo receive"]
    assert len(server_recvs) == 2
    for recv in server_recvs:
        children = {s.operation for s in spans if s.parent_id == recv.span_id}
        assert children == {"work", "echo send"}


def test_generic_wrapper_on_a_sync_client(sink) -> None:
    tracing = make_manager(sink, "ws-sync")
    ready = threading.Event()
    port_box: list[int] = []
    stop: list[Any] = []

    async def serve() -> None:
        async def echo(ws: Any) -> None:
            async for message in ws:
                await ws.send(message)

        async with websockets.serve(echo, "127.0.0.1", 0) as server:
            port_box.append(server.sockets[0].getsockname()[1])
            done = asyncio.Event()
            stop.append((asyncio.get_running_loop(), done))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(5)
    try:
        with sync_connect(f"ws://127.0.0.1:{port_box[0]}") as ws:
            trace_websocket_connection(ws, tracing)
            ws.send("sync hello")
            assert ws.recv(timeout=5) == "sync hello"
            untrace_websocket_connection(ws)
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(5)
    tracing.flush()
    names = sorted(s.operation for s in sink.wait_for(2, timeout=3))
    assert names == ["websocket receive", "websocket send"]


def test_internal_tracing_failure_never_reaches_the_manager(sink, monkeypatch) -> None:
    tracing = make_manager(sink, "ws-manager")
    bare = run(manager_scenario(_off(), instrument=False))

    calls: list[str] = []

    def broken(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        raise RuntimeError("tracing bug")

    monkeypatch.setattr(tracing, "start_sdk", broken)  # the SDK's span and the fast path both fail
    monkeypatch.setattr(tracing, "start_fast", broken)
    assert run(manager_scenario(tracing, instrument=True)) == bare
    # the instrumentation did try to trace (and failed) at every kind of point, yet changed nothing
    assert "websocket connection" in calls and len(calls) >= 3, calls
    assert settled(sink, tracing) == []


def test_default_manager_is_resolved_per_connection(sink) -> None:
    from aiecs_tracing import get_tracing_manager, set_tracing_manager

    previous = get_tracing_manager()

    mgr = instrument_websocket_manager(StandInWebSocketManager())  # before any manager exists
    tracing = make_manager(sink, "ws-default")
    set_tracing_manager(tracing)

    async def go() -> None:
        port = await mgr.start_server()
        async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
            await ws.send(json.dumps({"action": "ping"}))
            await ws.recv()
        await mgr.clients_gone()
        await mgr.stop_server()

    try:
        run(go())
    finally:
        set_tracing_manager(previous)
    tracing.flush()
    assert sink.wait_for(1, where=lambda s: s.operation == "websocket ping")


def test_no_span_stays_current_after_a_connection_ends():
    """A handler that returns while a message span is open must leave no span current."""
    import asyncio as _asyncio
    import json as _json

    from opentelemetry import trace

    from aiecs_tracing import TracingManager
    from aiecs_tracing.integrations.websocket import instrument_websocket_manager

    tracing = TracingManager("leak", exporter="memory", set_global_provider=False, set_default_manager=False)

    class FakeWS:
        remote_address = ("127.0.0.1", 5555)
        close_code = 1000

        def __init__(self):
            self.queue = [_json.dumps({"action": "ping"})]

        async def recv(self):
            return self.queue.pop(0)

        async def send(self, message):
            pass

    class Manager:
        server = None

        async def _handle_client_connection(self, websocket, path=None):
            _json.loads(await websocket.recv())
            await websocket.send(_json.dumps({"type": "pong"}))

        async def broadcast_message(self, message):
            pass

    manager = instrument_websocket_manager(Manager(), tracing=tracing)

    async def main():
        await manager._handle_client_connection(FakeWS(), "/ws")
        assert not trace.get_current_span().get_span_context().is_valid
        await manager.broadcast_message({"type": "x"})

    _asyncio.run(main())
    tracing.flush()
    spans = {s.name: s for s in tracing.exporter.get_finished_spans()}
    assert spans["websocket broadcast"].parent is None  # not the closed connection's child
    tracing.close_tracer()
