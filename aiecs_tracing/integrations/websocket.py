"""AIECS's WebSocketManager: a span per connection, per message and per outgoing operation.

:func:`install_websocket_tracing` (alias: ``instrument_websocket_manager``) traces an
AIECS-style manager whose ``start_server()`` calls
``websockets.serve(self._handle_client_connection, host, port)``. Called before
``start_server()``, it replaces that bound method *on the instance* (no class is patched):

- ``websocket connection`` (SERVER): one per client, handshake to close; ``url.path``,
  ``client.address``, ``websocket.close.code``/``websocket.close.reason``,
  ``websocket.messages.received``/``websocket.messages.sent`` (the ASGI middleware's names). It continues the trace
  in the handshake headers (``traceparent``/``uber-trace-id``/``baggage``), read from
  ``websocket.request.headers`` (websockets >= 13) or ``websocket.request_headers``
  (the legacy API).
- ``websocket <action>`` (CONSUMER, ``messaging.operation.type=receive``): one per received message, named by its JSON
  ``action`` (``websocket confirm``, ``websocket ping``...; ``websocket message`` when it
  has none). It starts when the message is received and ends when the manager asks for
  the next one, so it measures the handling, not the idle wait, and it is the current
  span meanwhile (replies, decorated functions, httpx calls become its children). The
  JSON is parsed for the name and attributes only; the manager receives the original
  message. Invalid JSON sets ``message.invalid_json=true`` and marks the span as error,
  never raising inside the manager. A message carrying a trace carrier (a ``"_trace"``
  dict of headers, or top-level ``traceparent``/``uber-trace-id``) continues that trace
  instead, linked to the connection span.
- ``websocket broadcast`` / ``websocket send_to_user`` / ``websocket notify_user``
  (PRODUCER) per call, with ``websocket.recipients``: the sends that went out on traced
  connections during the call, or, when none were seen, the size of the manager's
  registry (``active_connections``/``connections``/``user_connections``/``clients``).
- ``websocket heartbeat`` (PRODUCER): one per beat. A ``send_heartbeat`` that sends
  through ``broadcast_message``/``send_to_user`` gets one span per such call (so a
  heartbeat *loop* yields a span per beat); one that writes to connections directly gets
  one span for the whole call.

Where it is done: the connection and message spans here; the per-message machinery,
shared with the generic :func:`trace_websocket_connection` (re-exported here), in
``websocket_connection.py``; the outgoing operations in ``websocket_operations.py``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from ..core.instrumentation import (
    MESSAGE_CARRIER_KEY,
    MESSAGING_BODY_SIZE,
    OPERATION_RECEIVE,
    WEBSOCKET_CLOSE_CODE,
    WEBSOCKET_CLOSE_REASON,
    WEBSOCKET_MESSAGES_RECEIVED,
    WEBSOCKET_MESSAGES_SENT,
    Link,
    Span,
    SpanKind,
    active_manager,
    attach,
    detach,
    embedded_carrier,
    guarded,
    guarded_hook,
    report_error,
    start_span,
)
from ..core.manager import TracingManager
from ._contract import Installation, install_once, installation_of, require_framework, uninstall_installed
from ._instance import restore_instance, set_instance_wrappers
from .websocket_connection import (
    MAX_NAME_LENGTH,
    ConnectionTracer,
    message_attributes,
    trace_websocket_connection,
    untrace_websocket_connection,
)
from .websocket_operations import OperationTracer

__all__ = [
    "install_websocket_tracing",
    "uninstall_websocket_tracing",
    "instrument_websocket_manager",
    "uninstrument_websocket_manager",
    "trace_websocket_connection",
    "untrace_websocket_connection",
]

logger = logging.getLogger("aiecs_tracing")
CARRIER_KEY = MESSAGE_CARRIER_KEY
_FRAMEWORK = "websocket"
_ID_KEYS = ("user_id", "task_id", "callback_id")
_HEADERS_GUARD = guarded("websocket handshake headers")


# --- the messages: AIECS's JSON protocol --------------------------------------------------------


class _ManagerConnectionTracer(ConnectionTracer):
    """A manager's connection: receive spans named by the JSON ``action``, sends only counted."""

    def __init__(self, ws: Any, tracing: TracingManager | None, connection_span: Span, max_parse_bytes: int) -> None:
        super().__init__(ws, tracing, "websocket", connection_span=connection_span, send_spans=False)
        self.max_parse_bytes = max_parse_bytes

    def start_message_span(self, t: TracingManager, message: Any) -> Span:
        attrs = message_attributes(message, OPERATION_RECEIVE)
        size = attrs.get(MESSAGING_BODY_SIZE)
        parent: Any = self.connection_span
        links = None
        name = f"{self.name} message"
        invalid = False
        data: Any = None
        if size is not None and size <= self.max_parse_bytes:
            try:
                data = json.loads(message)
            except ValueError:  # JSONDecodeError and bad UTF-8
                invalid = True
        if type(data) is dict:
            action = data.get("action")
            if type(action) is str and action:
                action = action[:MAX_NAME_LENGTH]
                name = f"{self.name} {action}"
                attrs["websocket.message.action"] = action
                attrs["messaging.operation.name"] = action
            for key in _ID_KEYS:
                value = data.get(key)
                if type(value) in (str, int):
                    attrs["websocket.message." + key] = value
            carrier = embedded_carrier(data)
            if carrier is not None:
                remote = t.extract_span_context(carrier)
                if remote is not None:
                    if self.connection_span is not None:
                        links = [Link(self.connection_span.otel_span.get_span_context())]
                    parent = remote
        elif invalid:
            attrs["message.invalid_json"] = True
            attrs["error"] = True
            attrs["error.type"] = "invalid_json"
        span = start_span(t, name, attrs, SpanKind.CONSUMER, parent, links=links)
        if invalid:
            span.set_status_error("invalid JSON")
        return span


# --- the manager: its connections, and where the operations are wrapped ---------------------


def _handshake(ws: Any, args: tuple[Any, ...]) -> tuple[Any, str | None]:
    """(request headers, path) of a server connection, new or legacy ``websockets`` API."""
    request = getattr(ws, "request", None)
    headers = getattr(request, "headers", None)
    path = getattr(request, "path", None)
    if headers is None:
        headers = getattr(ws, "request_headers", None)
        path = getattr(ws, "path", None)
    if path is None and args and isinstance(args[0], str):
        path = args[0]  # legacy handler(websocket, path)
    return headers, path


class _ManagerState(Installation):
    """One traced manager: its wrapped methods, and the connection span of each client."""

    def __init__(self, manager: Any, tracing: TracingManager | None, max_parse_bytes: int) -> None:
        self.manager = manager
        self.tracing = tracing
        self.max_parse_bytes = max_parse_bytes
        self.previous: dict[str, Any] = {}
        self.wrappers: dict[str, Any] = {}
        self.active = True

    def resolve(self) -> TracingManager | None:
        return active_manager(self.tracing) if self.active else None

    def install(self) -> _ManagerState:
        manager = self.manager
        wrappers: dict[str, Any] = {
            "_handle_client_connection": self.wrap_connection_handler(manager._handle_client_connection)
        }
        wrappers.update(OperationTracer(manager, self.resolve).wrappers())
        self.previous.update(set_instance_wrappers(manager, wrappers))
        self.wrappers.update(wrappers)
        return self

    def uninstall(self) -> None:
        self.active = False
        restore_instance(self.manager, self.wrappers, self.previous)

    # connection
    def wrap_connection_handler(self, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self

        @functools.wraps(original)
        async def _handle_client_connection(websocket: Any, *args: Any, **kwargs: Any) -> Any:
            t = state.resolve()
            if t is None:
                return await original(websocket, *args, **kwargs)
            begun = state.connection_begin(t, websocket, args)
            if begun is None:
                return await original(websocket, *args, **kwargs)
            span, tracer, token = begun
            error: BaseException | None = None
            try:
                return await original(websocket, *args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                state.connection_end(t, websocket, span, tracer, token, error)

        return _handle_client_connection

    @guarded_hook("websocket connection")
    def connection_begin(
        self, t: TracingManager, ws: Any, args: tuple[Any, ...]
    ) -> tuple[Span, ConnectionTracer | None, object]:
        headers, path = _handshake(ws, args)
        parent = t.extract_span_context(headers) if headers is not None else None
        attrs: dict[str, Any] = {
            "component": "websocket",
            "network.protocol.name": "websocket",
            "websocket.manager": type(self.manager).__name__,
        }
        if path:
            attrs["url.path"] = path.split("?", 1)[0]
        remote = getattr(ws, "remote_address", None)
        if isinstance(remote, (tuple, list)) and remote:
            attrs["client.address"] = str(remote[0])
            if len(remote) > 1 and isinstance(remote[1], int):
                attrs["client.port"] = remote[1]
        if headers is not None:
            with _HEADERS_GUARD:
                agent = headers.get("User-Agent")
                if agent:
                    attrs["user_agent.original"] = str(agent)
        span = start_span(t, "websocket connection", attrs, SpanKind.SERVER, parent)
        tracer: ConnectionTracer | None = _ManagerConnectionTracer(ws, self.tracing, span, self.max_parse_bytes)
        try:
            tracer.install()  # type: ignore[union-attr]
        except Exception as exc:  # e.g. a connection class with __slots__: the connection span only
            report_error("websocket messages", exc)
            tracer = None
        return span, tracer, attach(t, span)

    @guarded_hook("websocket connection")
    def connection_end(
        self,
        t: TracingManager,
        ws: Any,
        span: Span,
        tracer: ConnectionTracer | None,
        token: Any,
        error: BaseException | None,
    ) -> None:
        if tracer is not None:
            tracer.end_message()  # its context token was attached after ours: reset it first
        detach(t, token)
        otel = span.otel_span
        if tracer is not None:
            tracer.uninstall()
            otel.set_attribute(WEBSOCKET_MESSAGES_RECEIVED, tracer.received)
            otel.set_attribute(WEBSOCKET_MESSAGES_SENT, tracer.sent)
        code = getattr(ws, "close_code", None)
        if isinstance(code, int):
            otel.set_attribute(WEBSOCKET_CLOSE_CODE, code)
            reason = getattr(ws, "close_reason", None)
            if reason:
                otel.set_attribute(WEBSOCKET_CLOSE_REASON, str(reason))
        else:
            # the handler returned first; websockets closes with 1000, or 1011 after an exception
            otel.set_attribute(WEBSOCKET_CLOSE_CODE, 1011 if error is not None else 1000)
        if error is not None and not _is_connection_closed(error):
            span.record_exception(error)
        span.finish()


def _is_connection_closed(exc: BaseException) -> bool:
    return any(cls.__name__.startswith("ConnectionClosed") for cls in type(exc).__mro__)


def install_websocket_tracing(
    manager: Any, tracing: TracingManager | None = None, *, max_parse_bytes: int = 1 << 20
) -> Any:
    """Trace an AIECS-style WebSocketManager; call it before ``manager.start_server()``.

    Idempotent (a second call changes nothing but the manager, if given); returns ``manager``.
    ``tracing`` defaults to the process default manager, looked up per connection and call.
    Messages larger than ``max_parse_bytes`` are not parsed (their span is named
    ``websocket message``). Needs ``websockets``: ``pip install 'aiecs-tracing[websockets]'``.
    """
    require_framework("websockets")
    if installation_of(manager, _FRAMEWORK) is None:
        if not callable(getattr(manager, "_handle_client_connection", None)):
            raise TypeError(f"install_websocket_tracing: {type(manager).__name__} has no _handle_client_connection")
        if getattr(manager, "server", None) is not None:
            logger.warning(
                "install_websocket_tracing(%s) called after start_server(): "
                "connections of the running server are not traced",
                type(manager).__name__,
            )
    install_once(manager, _FRAMEWORK, tracing, lambda: _ManagerState(manager, tracing, max_parse_bytes).install())
    return manager


def uninstall_websocket_tracing(manager: Any) -> Any:
    """Undo :func:`install_websocket_tracing`; a running server's handler stops tracing too. Idempotent."""
    uninstall_installed(manager, _FRAMEWORK)
    return manager


#: The names before the one verb pair; they still work.
instrument_websocket_manager = install_websocket_tracing
uninstrument_websocket_manager = uninstall_websocket_tracing
