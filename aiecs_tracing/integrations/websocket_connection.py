"""One ``websockets`` connection: a span per message received and sent on it.

:func:`trace_websocket_connection` spans every message received (``<name> receive``,
CONSUMER) and sent (``<name> send``, PRODUCER) on any ``websockets`` connection (asyncio,
legacy or sync API), including ``async for message in ws`` which goes through ``recv``.
A receive span lasts from the message's arrival to the next ``recv`` call and is the
current span meanwhile, so the handling of the message becomes its children.

:class:`ConnectionTracer` is the machinery, also used by the WebSocketManager integration
(``websocket.py``), which names its receive spans by the message's JSON ``action``
(by overriding :meth:`ConnectionTracer.start_message_span`) and counts the sends of its
``broadcast``/``send_to_user`` calls through a :class:`SendTally`.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..core.instrumentation import (
    MESSAGING_BODY_SIZE,
    OPERATION_RECEIVE,
    OPERATION_SEND,
    WEBSOCKET_MESSAGE_SIZE,
    WEBSOCKET_MESSAGE_TYPE,
    Span,
    SpanKind,
    active_manager,
    attach,
    detach,
    guarded,
    start_span,
)
from ..core.manager import TracingManager
from ._contract import Installation, install_once, require_framework, uninstall_installed
from ._instance import restore_instance, set_instance_wrappers

__all__ = [
    "trace_websocket_connection",
    "untrace_websocket_connection",
    "ConnectionTracer",
    "SendTally",
    "message_attributes",
    "MAX_NAME_LENGTH",
]

_CONNECTION = "websocket_connection"
_CONN_ATTR = "_aiecs_tracing_websocket_connection"  # what install_once names the marker
_MESSAGE_GUARD = guarded("websocket message")
_SEND_GUARD = guarded("websocket send")

#: The longest text taken from a message into a span name or attribute (an action, a kind).
MAX_NAME_LENGTH = 100


def _size_and_type(message: Any) -> tuple[int | None, str]:
    if isinstance(message, str):
        return (len(message) if message.isascii() else len(message.encode("utf-8", "replace"))), "text"
    if isinstance(message, (bytes, bytearray, memoryview)):
        return len(message), "binary"
    return None, "fragmented"  # an iterable of fragments


def message_attributes(message: Any, operation: str) -> dict[str, Any]:
    """What every message span carries, received or sent: its type and, when known, its size.

    ``operation`` is ``OPERATION_RECEIVE`` or ``OPERATION_SEND``; the size is under
    ``MESSAGING_BODY_SIZE`` (absent for a fragmented message).
    """
    size, kind = _size_and_type(message)
    attrs: dict[str, Any] = {
        "component": "websocket",
        "messaging.system": "websocket",
        "messaging.operation.type": operation,
        WEBSOCKET_MESSAGE_TYPE: kind,
    }
    if size is not None:
        attrs[MESSAGING_BODY_SIZE] = size
        attrs[WEBSOCKET_MESSAGE_SIZE] = size
    return attrs


# --- sends counted for whoever asked (a manager operation) -------------------------------------


class SendTally:
    """Sends seen on traced connections while a manager operation runs (nested tallies count up).

    :meth:`begin` makes it the current tally (a context variable, so concurrent operations
    each count their own sends); every send on a traced connection counts into it until
    :meth:`end`.
    """

    __slots__ = ("ok", "failed", "parent")

    def __init__(self, parent: SendTally | None) -> None:
        self.ok = 0
        self.failed = 0
        self.parent = parent

    def count(self, ok: bool) -> None:
        tally: SendTally | None = self
        while tally is not None:
            if ok:
                tally.ok += 1
            else:
                tally.failed += 1
            tally = tally.parent

    @classmethod
    def begin(cls) -> tuple[SendTally, contextvars.Token[SendTally | None]]:
        """A new tally inside the current one, made current; pass the token to :meth:`end`."""
        tally = cls(_current_tally.get())
        return tally, _current_tally.set(tally)

    @staticmethod
    def end(token: contextvars.Token[SendTally | None]) -> None:
        """Make the tally that was current before :meth:`begin` current again."""
        _current_tally.reset(token)


_current_tally: contextvars.ContextVar[SendTally | None] = contextvars.ContextVar(
    "aiecs_tracing_ws_sends", default=None
)


class _Sending:
    """The bookkeeping around one ``send`` call: counted, spanned, its error recorded.

    A context manager, so the async and the sync ``send`` wrappers share it.
    """

    __slots__ = ("tally", "span")

    def __init__(self, tracer: ConnectionTracer, message: Any) -> None:
        tracer.sent += 1
        self.tally = _current_tally.get()
        self.span: Span | None = None
        if tracer.send_spans:
            with _SEND_GUARD:
                self.span = tracer.start_send_span(message)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.tally is not None:
            self.tally.count(exc is None)
        if self.span is not None:
            if exc is not None:
                self.span.record_exception(exc)
            self.span.finish()


# --- one connection -----------------------------------------------------------------------------


class ConnectionTracer(Installation):
    """Wraps ``recv``/``send`` of one connection object (instance attributes, undone on exit)."""

    def __init__(
        self,
        ws: Any,
        tracing: TracingManager | None,
        name: str,
        *,
        connection_span: Span | None = None,
        send_spans: bool = True,
    ) -> None:
        self.ws = ws
        self.tracing = tracing
        self.name = name
        self.connection_span = connection_span
        self.send_spans = send_spans
        self.received = 0
        self.sent = 0
        self._span: Span | None = None
        self._token: Any = None
        self._t: TracingManager | None = None
        self._previous: dict[str, Any] = {}
        self._wrappers: dict[str, Any] = {}

    # install / uninstall
    def install(self) -> ConnectionTracer:
        ws = self.ws
        recv, send = ws.recv, ws.send
        if inspect.iscoroutinefunction(recv):
            wrappers = {"recv": self._async_recv(recv), "send": self._async_send(send)}
        else:
            wrappers = {"recv": self._sync_recv(recv), "send": self._sync_send(send)}
        self._previous.update(set_instance_wrappers(ws, wrappers))
        self._wrappers.update(wrappers)
        setattr(ws, _CONN_ATTR, self)
        return self

    def uninstall(self) -> None:
        self.end_message()
        instance = vars(self.ws)
        if instance.get(_CONN_ATTR) is self:
            del instance[_CONN_ATTR]
        restore_instance(self.ws, self._wrappers, self._previous)

    # message spans
    def end_message(self) -> None:
        span, token = self._span, self._token
        if span is None:
            return
        self._span = self._token = None
        with _MESSAGE_GUARD:
            if token is not None and self._t is not None:
                detach(self._t, token)
            span.finish()

    def begin_message(self, message: Any) -> None:
        self.received += 1
        t = active_manager(self.tracing)
        if t is None:
            return
        span = self.start_message_span(t, message)
        self._t = t
        self._span = span
        self._token = attach(t, span)

    def start_message_span(self, t: TracingManager, message: Any) -> Span:
        """The span of a received message (``<name> receive``); a subclass may name it otherwise."""
        attrs = message_attributes(message, OPERATION_RECEIVE)
        return start_span(t, f"{self.name} receive", attrs, SpanKind.CONSUMER, self.connection_span)

    def start_send_span(self, message: Any) -> Span | None:
        t = active_manager(self.tracing)
        if t is None:
            return None
        attrs = message_attributes(message, OPERATION_SEND)
        return start_span(t, f"{self.name} send", attrs, SpanKind.PRODUCER, None)

    # wrappers
    def _async_recv(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        async def recv(*args: Any, **kwargs: Any) -> Any:
            if self._span is not None:
                self.end_message()
            message = await original(*args, **kwargs)
            with _MESSAGE_GUARD:
                self.begin_message(message)
            return message

        return recv

    def _sync_recv(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def recv(*args: Any, **kwargs: Any) -> Any:
            if self._span is not None:
                self.end_message()
            message = original(*args, **kwargs)
            with _MESSAGE_GUARD:
                self.begin_message(message)
            return message

        return recv

    def _async_send(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        async def send(message: Any, *args: Any, **kwargs: Any) -> Any:
            with _Sending(self, message):
                return await original(message, *args, **kwargs)

        return send

    def _sync_send(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def send(message: Any, *args: Any, **kwargs: Any) -> Any:
            with _Sending(self, message):
                return original(message, *args, **kwargs)

        return send


def trace_websocket_connection(ws: Any, tracing: TracingManager | None = None, name: str = "websocket") -> Any:
    """Span each message received (``<name> receive``) and sent (``<name> send``) on ``ws``.

    Works for ``websockets`` asyncio, legacy and sync connections (``recv``/``send`` and
    iteration, which calls ``recv``). A receive span lasts from the message's arrival to
    the next ``recv`` call and is current meanwhile. Idempotent; returns ``ws``. Call
    :func:`untrace_websocket_connection` if you stop receiving before the connection ends.
    """
    require_framework("websockets")
    with guarded("websocket trace_websocket_connection"):
        install_once(ws, _CONNECTION, tracing, lambda: ConnectionTracer(ws, tracing, name).install())
    return ws


def untrace_websocket_connection(ws: Any) -> Any:
    """Undo :func:`trace_websocket_connection` (the open receive span is finished)."""
    uninstall_installed(ws, _CONNECTION)
    return ws
