"""Socket.IO connect handlers that raise: the connection's spans say why, and the server goes on.

A connect handler that fails (a bug, a backend down) refuses that client; python-socketio
logs the error and the client's connect times out. The traces must show it: the ``socketio
connect`` span and its ``socketio connection`` both end as errors naming the exception
(a refusal by ``ConnectionRefusedError`` is an answer, not an error), and the next client
connects and is traced as usual.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import pytest
import socketio

from aiecs_tracing.integrations.socketio import install_socketio_tracing, trace_carrier
from tests.integration._ws_util import run, serve_asgi
from tests.wire import make_manager, settled

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


class BackendDown(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def _quiet_socketio_logs():
    """python-socketio logs the handler's traceback: expected here."""
    loggers = [logging.getLogger(name) for name in ("socketio", "engineio", "socketio.server", "engineio.server")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def server(tracing: Any) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=0.5, ping_timeout=1)
    install_socketio_tracing(sio, tracing)

    @sio.event
    async def connect(sid: str, environ: dict, auth: Any) -> None:
        token = (auth or {}).get("token")
        if token == "crash":
            raise BackendDown("session store unreachable")
        if token == "refuse":
            raise socketio.exceptions.ConnectionRefusedError("bad token")

    @sio.event
    async def ping(sid: str) -> str:
        return "pong"

    return sio


async def try_connect(port: int, token: str) -> str:
    client = socketio.AsyncClient()
    try:
        await client.connect(
            f"http://127.0.0.1:{port}", auth={"token": token}, transports=["websocket"], wait_timeout=1
        )
    except socketio.exceptions.ConnectionError:
        return "not connected"
    try:
        return await client.call("ping", timeout=5)
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def test_a_connect_handler_that_raises_ends_both_spans_as_errors(sink) -> None:
    tracing = make_manager(sink, "sio-connect")

    async def scenario(port: int) -> list[str]:
        return [await try_connect(port, token) for token in ("crash", "refuse", "good")]

    try:
        with serve_asgi(socketio.ASGIApp(server(tracing))) as port:
            outcomes = run(scenario(port))
        assert outcomes == ["not connected", "not connected", "pong"]  # the server survived the crash
        spans = settled(sink, tracing)
    finally:
        tracing.close_tracer()
    connects = [s for s in spans if s.operation == "socketio connect"]
    connections = {s.span_id: s for s in spans if s.operation == "socketio connection"}
    assert len(connects) == 3 and len(connections) == 3
    crashed = [s for s in connects if s.is_error]
    assert len(crashed) == 1 and crashed[0].tags["error.kind"] == "BackendDown"
    crashed_connection = connections[crashed[0].parent_id]
    assert crashed_connection.is_error and crashed_connection.tags["error.kind"] == "BackendDown"
    assert "socketio.connect.refused" not in crashed_connection.tags  # it failed, nobody refused it
    refused = [c for c in connections.values() if c.tags.get("socketio.connect.refused")]
    assert len(refused) == 1 and not refused[0].is_error
    good = [c for c in connections.values() if not c.is_error and not c.tags.get("socketio.connect.refused")]
    assert len(good) == 1
    (ping,) = [s for s in spans if s.operation == "socketio ping"]
    assert ping.parent_id == good[0].span_id


TRACE = 0x1AF7651916CD43DD8448EB211C80319C
PARENT = 0xC7AD6B7169203331


def test_a_jaeger_client_handshake_and_a_payload_with_its_own_traceparent(sink) -> None:
    """A jaeger-client caller sends uber-trace-id and uberctx-* baggage on the handshake; an event
    may carry W3C headers at the top level of its payload (what some clients send)."""
    tracing = make_manager(sink, "sio-legacy")
    sio = socketio.AsyncServer(async_mode="asgi", ping_interval=0.5, ping_timeout=1)
    install_socketio_tracing(sio, tracing, events_in_connection_trace=False)
    seen: dict[str, Any] = {}

    @sio.event
    async def connect(sid: str, environ: dict) -> None:
        seen["tenant"] = tracing.get_active_span().get_baggage_item("tenant")

    @sio.event
    async def report(sid: str, payload: dict) -> str:
        return "ok"

    event_parent = f"00-{TRACE:032x}-{0x00F067AA0BA902B7:016x}-01"

    async def scenario(port: int) -> str:
        client = socketio.AsyncClient()
        headers = {"uber-trace-id": f"{TRACE:x}:{PARENT:x}:0:1", "uberctx-tenant": "acme"}
        await client.connect(f"http://127.0.0.1:{port}", headers=headers, transports=["websocket"], wait_timeout=5)
        try:
            return await client.call("report", {"traceparent": event_parent, "rows": 3}, timeout=5)
        finally:
            await client.disconnect()

    try:
        with serve_asgi(socketio.ASGIApp(sio)) as port:
            assert run(scenario(port)) == "ok"
        spans = settled(sink, tracing)
    finally:
        tracing.close_tracer()
    assert seen["tenant"] == "acme"  # the handshake's baggage reached the connect handler
    (connection,) = [s for s in spans if s.operation == "socketio connection"]
    assert (connection.trace_id, connection.parent_id) == (TRACE, PARENT)
    (event,) = [s for s in spans if s.operation == "socketio report"]
    assert (event.trace_id, event.parent_id) == (TRACE, 0x00F067AA0BA902B7)


def test_trace_carrier_without_a_manager_is_empty() -> None:
    assert trace_carrier() == {}
