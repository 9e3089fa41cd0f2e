"""``websockets`` connections and AIECS's WebSocketManager: a span per connection and message.

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

:func:`trace_websocket_connection` is the generic part: it spans every message received
(``<name> receive``) and sent (``<name> send``) on any ``websockets`` connection (asyncio,
legacy or sync API), including ``async for message in ws`` which goes through ``recv``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..core.instrumentation import (
    MESSAGING_BODY_SIZE,
    OPERATION_RECEIVE,
    OPERATION_SEND,
    WEBSOCKET_CLOSE_CODE,
    WEBSOCKET_CLOSE_REASON,
    WEBSOCKET_MESSAGE_SIZE,
    WEBSOCKET_MESSAGE_TYPE,
    WEBSOCKET_MESSAGES_RECEIVED,
    WEBSOCKET_MESSAGES_SENT,
    Link,
    Span,
    SpanKind,
    active_manager,
    attach,
    detach,
    guarded,
    guarded_hook,
    report_error,
    start_span,
)
from ..core.manager import TracingManager
from ._contract import Installation, install_once, installation_of, require_framework, uninstall_installed
from ._instance import restore_instance, set_instance_wrappers

__all__ = [
    "install_websocket_tracing",
    "uninstall_websocket_tracing",
    "instrument_websocket_manager",
    "uninstrument_websocket_manager",
    "trace_websocket_connection",
    "untrace_websocket_connection",
]

logger = logging.getLogger("aiecs_tracing")
CARRIER_KEY = "_trace"
_FRAMEWORK = "websocket"
_CONNECTION = "websocket_connection"
_CONN_ATTR = "_aiecs_tracing_websocket_connection"  # what install_once names the marker
_MAX_NAME = 100
_ID_KEYS = ("user_id", "task_id", "callback_id")
_REGISTRY_ATTRS = ("active_connections", "connections", "user_connections", "clients")
_HEADERS_GUARD = guarded("websocket handshake headers")
_MESSAGE_GUARD = guarded("websocket message")
_SEND_GUARD = guarded("websocket send")
_HEARTBEAT_GUARD = guarded("websocket heartbeat")
_MANAGER_OPS = {
    "broadcast_message": "broadcast",
    "send_to_user": "send_to_user",
    "notify_user": "notify_user",
}


def _find_carrier(data: Any) -> dict[str, Any] | None:
    if type(data) is dict:
        sub = data.get(CARRIER_KEY)
        if type(sub) is dict:
            return sub
        if "traceparent" in data or "uber-trace-id" in data:
            return data
    return None


def _size_and_type(message: Any) -> tuple[int | None, str]:
    if isinstance(message, str):
        return (len(message) if message.isascii() else len(message.encode("utf-8", "replace"))), "text"
    if isinstance(message, (bytes, bytearray, memoryview)):
        return len(message), "binary"
    return None, "fragmented"  # an iterable of fragments


# --- per-operation send accounting -------------------------------------------------------------


class _Sends:
    """Sends seen on traced connections while a manager operation runs (nested ops count up)."""

    __slots__ = ("ok", "failed", "parent")

    def __init__(self, parent: _Sends | None) -> None:
        self.ok = 0
        self.failed = 0
        self.parent = parent

    def count(self, ok: bool) -> None:
        rec: _Sends | None = self
        while rec is not None:
            if ok:
                rec.ok += 1
            else:
                rec.failed += 1
            rec = rec.parent


class _Heartbeat:
    __slots__ = ("spanned",)

    def __init__(self) -> None:
        self.spanned = False


_sends: contextvars.ContextVar[_Sends | None] = contextvars.ContextVar("aiecs_tracing_ws_sends", default=None)
_heartbeat: contextvars.ContextVar[_Heartbeat | None] = contextvars.ContextVar(
    "aiecs_tracing_ws_heartbeat", default=None
)


# --- one connection -----------------------------------------------------------------------------


class _ConnectionTracer(Installation):
    """Wraps ``recv``/``send`` of one connection object (instance attributes, undone on exit)."""

    def __init__(
        self,
        ws: Any,
        tracing: TracingManager | None,
        name: str,
        *,
        manager_mode: bool,
        connection_span: Span | None = None,
        max_parse_bytes: int = 1 << 20,
        send_spans: bool = True,
    ) -> None:
        self.ws = ws
        self.tracing = tracing
        self.name = name
        self.manager_mode = manager_mode
        self.connection_span = connection_span
        self.max_parse_bytes = max_parse_bytes
        self.send_spans = send_spans and not manager_mode
        self.received = 0
        self.sent = 0
        self._span: Span | None = None
        self._token: Any = None
        self._t: TracingManager | None = None
        self._previous: dict[str, Any] = {}
        self._wrappers: dict[str, Any] = {}

    # install / uninstall
    def install(self) -> _ConnectionTracer:
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
        size, kind = _size_and_type(message)
        attrs: dict[str, Any] = {
            "component": "websocket",
            "messaging.system": "websocket",
            "messaging.operation.type": OPERATION_RECEIVE,
            WEBSOCKET_MESSAGE_TYPE: kind,
        }
        if size is not None:
            attrs[MESSAGING_BODY_SIZE] = size
            attrs[WEBSOCKET_MESSAGE_SIZE] = size
        parent: Any = self.connection_span
        links = None
        name = f"{self.name} receive"
        invalid = False
        if self.manager_mode:
            name = f"{self.name} message"
            data: Any = None
            if size is not None and size <= self.max_parse_bytes:
                try:
                    data = json.loads(message)
                except ValueError:  # JSONDecodeError and bad UTF-8
                    invalid = True
            if type(data) is dict:
                action = data.get("action")
                if type(action) is str and action:
                    action = action[:_MAX_NAME]
                    name = f"{self.name} {action}"
                    attrs["websocket.message.action"] = action
                    attrs["messaging.operation.name"] = action
                for key in _ID_KEYS:
                    value = data.get(key)
                    if type(value) in (str, int):
                        attrs["websocket.message." + key] = value
                carrier = _find_carrier(data)
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
        self._t = t
        self._span = span
        self._token = attach(t, span)

    def _send_begin(self, message: Any) -> Span | None:
        t = active_manager(self.tracing)
        if t is None:
            return None
        size, kind = _size_and_type(message)
        attrs: dict[str, Any] = {
            "component": "websocket",
            "messaging.system": "websocket",
            "messaging.operation.type": OPERATION_SEND,
            WEBSOCKET_MESSAGE_TYPE: kind,
        }
        if size is not None:
            attrs[MESSAGING_BODY_SIZE] = size
            attrs[WEBSOCKET_MESSAGE_SIZE] = size
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
            self.sent += 1
            rec = _sends.get()
            span = None
            if self.send_spans:
                with _SEND_GUARD:
                    span = self._send_begin(message)
            try:
                result = await original(message, *args, **kwargs)
            except BaseException as exc:
                if rec is not None:
                    rec.count(False)
                if span is not None:
                    span.record_exception(exc)
                    span.finish()
                raise
            if rec is not None:
                rec.count(True)
            if span is not None:
                span.finish()
            return result

        return send

    def _sync_send(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def send(message: Any, *args: Any, **kwargs: Any) -> Any:
            self.sent += 1
            rec = _sends.get()
            span = None
            if self.send_spans:
                with _SEND_GUARD:
                    span = self._send_begin(message)
            try:
                result = original(message, *args, **kwargs)
            except BaseException as exc:
                if rec is not None:
                    rec.count(False)
                if span is not None:
                    span.record_exception(exc)
                    span.finish()
                raise
            if rec is not None:
                rec.count(True)
            if span is not None:
                span.finish()
            return result

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
        install_once(ws, _CONNECTION, tracing, lambda: _ConnectionTracer(ws, tracing, name, manager_mode=False).install())
    return ws


def untrace_websocket_connection(ws: Any) -> Any:
    """Undo :func:`trace_websocket_connection` (the open receive span is finished)."""
    uninstall_installed(ws, _CONNECTION)
    return ws


# --- the manager --------------------------------------------------------------------------------


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


def _registry_count(manager: Any, user_id: Any = None) -> int | None:
    for attr in _REGISTRY_ATTRS:
        registry = getattr(manager, attr, None)
        if registry is None or isinstance(registry, (str, bytes)):
            continue
        if isinstance(registry, Mapping):
            values = [registry.get(user_id)] if user_id is not None else list(registry.values())
            total = 0
            for value in values:
                if value is None:
                    continue
                total += len(value) if isinstance(value, (set, frozenset, list, tuple, Mapping)) else 1
            return total
        if user_id is None and isinstance(registry, (set, frozenset, list, tuple)):
            return len(registry)
    return None


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


class _ManagerState(Installation):
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
        for method, op in _MANAGER_OPS.items():
            original = getattr(manager, method, None)
            if inspect.iscoroutinefunction(original):
                wrappers[method] = self.wrap_operation(op, original)
        heartbeat = getattr(manager, "send_heartbeat", None)
        if inspect.iscoroutinefunction(heartbeat):
            wrappers["send_heartbeat"] = self.wrap_heartbeat(heartbeat)
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
    ) -> tuple[Span, _ConnectionTracer | None, object]:
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
        tracer: _ConnectionTracer | None = _ConnectionTracer(
            ws, self.tracing, "websocket", manager_mode=True, connection_span=span,
            max_parse_bytes=self.max_parse_bytes,
        )
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
        tracer: _ConnectionTracer | None,
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

    # operations
    def wrap_operation(self, op: str, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self

        @functools.wraps(original)
        async def operation(*args: Any, **kwargs: Any) -> Any:
            t = state.resolve()
            if t is None:
                return await original(*args, **kwargs)
            begun = state.operation_begin(t, op, args, kwargs)
            if begun is None:
                return await original(*args, **kwargs)
            span, rec, tokens = begun
            error: BaseException | None = None
            result: Any = None
            try:
                result = await original(*args, **kwargs)
                return result
            except BaseException as exc:
                error = exc
                raise
            finally:
                state.operation_end(t, op, args, kwargs, span, rec, tokens, error, result)

        return operation

    @guarded_hook("websocket operation")
    def operation_begin(
        self, t: TracingManager, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Span, _Sends, tuple[Any, ...]]:
        attrs: dict[str, Any] = {
            "component": "websocket",
            "messaging.system": "websocket",
            "messaging.operation.type": "send",
            "messaging.operation.name": op,
            "websocket.operation": op,
        }
        name = "websocket " + op
        hb = _heartbeat.get()
        hb_token = None
        if hb is not None:
            hb.spanned = True
            name = "websocket heartbeat"
            hb_token = _heartbeat.set(None)  # nested operations keep their own names
        message: Any = None
        if op == "broadcast":
            message = _arg(args, kwargs, 0, "message")
        elif op == "send_to_user":
            attrs["user.id"] = str(_arg(args, kwargs, 0, "user_id"))
            message = _arg(args, kwargs, 1, "message")
        elif op == "notify_user":
            attrs["user.id"] = str(_arg(args, kwargs, 1, "user_id"))
            task_id = _arg(args, kwargs, 2, "task_id")
            step = _arg(args, kwargs, 3, "step")
            if task_id is not None:
                attrs["websocket.task_id"] = str(task_id)
            if type(step) in (int, str):
                attrs["websocket.step"] = step
        if isinstance(message, Mapping):
            kind = message.get("type")
            if type(kind) is str:
                attrs["websocket.message.kind"] = kind[:_MAX_NAME]
        span = start_span(t, name, attrs, SpanKind.PRODUCER, None)
        rec = _Sends(_sends.get())
        return span, rec, (attach(t, span), _sends.set(rec), hb_token)

    @guarded_hook("websocket operation")
    def operation_end(
        self, t: TracingManager, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], span: Span, rec: _Sends,
        tokens: tuple[Any, ...], error: BaseException | None, result: Any,
    ) -> None:
        token, sends_token, hb_token = tokens
        _sends.reset(sends_token)
        if hb_token is not None:
            _heartbeat.reset(hb_token)
        detach(t, token)
        otel = span.otel_span
        user_id = None
        if op == "send_to_user":
            user_id = _arg(args, kwargs, 0, "user_id")
        elif op == "notify_user":
            user_id = _arg(args, kwargs, 1, "user_id")
        _record_recipients(otel, rec, _registry_count(self.manager, user_id))
        if op == "notify_user" and result is not None:
            proceed = getattr(result, "proceed", None)
            if isinstance(proceed, bool):
                otel.set_attribute("websocket.confirmation.proceed", proceed)
            feedback = getattr(result, "feedback", None)
            if isinstance(feedback, str) and feedback:
                otel.set_attribute("websocket.confirmation.feedback", feedback[:256])
        if error is not None:
            span.record_exception(error)
        span.finish()

    def wrap_heartbeat(self, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self

        @functools.wraps(original)
        async def send_heartbeat(*args: Any, **kwargs: Any) -> Any:
            t = state.resolve()
            if t is None:
                return await original(*args, **kwargs)
            start = time.time_ns()
            hb = _Heartbeat()
            rec = _Sends(_sends.get())
            hb_token, sends_token = _heartbeat.set(hb), _sends.set(rec)
            error: BaseException | None = None
            try:
                return await original(*args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                _sends.reset(sends_token)
                _heartbeat.reset(hb_token)
                if not hb.spanned:  # it wrote to connections itself: one span for the call
                    with _HEARTBEAT_GUARD:
                        attrs = {
                            "component": "websocket",
                            "messaging.system": "websocket",
                            "messaging.operation.type": "send",
                            "messaging.operation.name": "heartbeat",
                            "websocket.operation": "heartbeat",
                        }
                        span = start_span(t, "websocket heartbeat", attrs, SpanKind.PRODUCER, None, start_time=start)
                        _record_recipients(span.otel_span, rec, _registry_count(state.manager))
                        if error is not None:
                            span.record_exception(error)
                        span.finish()

        return send_heartbeat


def _record_recipients(otel: Any, rec: _Sends, registry: int | None) -> None:
    if rec.ok or rec.failed:
        recipients = rec.ok
    else:
        recipients = registry if registry is not None else 0
    otel.set_attribute("websocket.recipients", recipients)
    otel.set_attribute("messaging.batch.message_count", recipients)
    if rec.failed:
        otel.set_attribute("websocket.send_failures", rec.failed)
    if registry is not None:
        otel.set_attribute("websocket.connections", registry)


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
