"""The send bookkeeping of a traced connection, async and sync: spanned, counted, errors recorded.

A stand-in connection (``recv``/``send`` as instance-free methods, like ``websockets``'
classes) fails the send of ``"boom"``; the real library's paths are in
``tests/integration/test_websocket_manager.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiecs_tracing.integrations.websocket import trace_websocket_connection, untrace_websocket_connection
from aiecs_tracing.integrations.websocket_connection import SendTally
from tests.wire import make_manager, settled


class _AsyncConnection:
    async def recv(self) -> str:
        return "{}"

    async def send(self, message: Any) -> None:
        if message == "boom":
            raise ConnectionError("peer gone")


class _SyncConnection:
    def recv(self) -> str:
        return "{}"

    def send(self, message: Any) -> None:
        if message == "boom":
            raise ConnectionError("peer gone")


def _send_all(ws: Any, messages: list[Any]) -> None:
    for message in messages:
        try:
            result = ws.send(message)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except ConnectionError:
            pass


@pytest.mark.parametrize("connection", [_AsyncConnection, _SyncConnection], ids=["async", "sync"])
def test_sends_are_spanned_counted_and_their_errors_recorded(sink, connection: type) -> None:
    tracing = make_manager(sink, "ws-send")
    ws = trace_websocket_connection(connection(), tracing, name="conn")
    tally, token = SendTally.begin()
    try:
        _send_all(ws, ["hello", b"\x00\x01", "boom"])
    finally:
        SendTally.end(token)
    with pytest.raises(ConnectionError, match="peer gone"):  # the error reaches the caller unchanged
        result = ws.send("boom")
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    untrace_websocket_connection(ws)
    assert (tally.ok, tally.failed) == (2, 1)
    spans = sorted(settled(sink, tracing), key=lambda s: s.start_us)
    assert [s.operation for s in spans] == ["conn send"] * 4
    assert [s.kind for s in spans] == ["producer"] * 4
    assert [s.tags.get("websocket.message.type") for s in spans] == ["text", "binary", "text", "text"]
    assert [s.is_error for s in spans] == [False, False, True, True]
    assert any("peer gone" in str(log) for log in spans[2].logs)
    assert "send" not in vars(ws) and "recv" not in vars(ws)  # untraced: the class's methods again
