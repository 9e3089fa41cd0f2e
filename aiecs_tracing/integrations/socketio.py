"""python-socketio: spans for one server's connections, events and emits.

``install_socketio_tracing(sio)`` (alias: ``instrument_socketio``) wraps a handful of dispatch methods *on that server instance
only* (no class is patched), so it works for handlers and namespaces registered before or
after the call, for ``socketio.AsyncServer`` and ``socketio.Server``:

- ``socketio connection`` (SERVER): one per sid and namespace, from the CONNECT packet to
  the disconnect; ``socketio.sid``, ``socketio.namespace``, ``socketio.transport``,
  ``client.address``. It continues the trace of the handshake: a trace carrier in the
  connect ``auth`` payload, else the handshake's HTTP headers (``traceparent``/
  ``uber-trace-id``/``baggage``), under the current span (e.g. an ASGI middleware's
  request span) when that one is in the same trace or there are no such headers.
- ``socketio connect`` / ``socketio disconnect`` (CONSUMER): the connect and disconnect
  handlers, children of the connection span.
- ``socketio <event>`` (CONSUMER): one per incoming event, current while the handler runs
  (function, catch-all ``'*'`` or namespace-class handler) and while the ack is sent.
  Its parent is the trace carrier in the event's payload when the client sends one (the
  connection span is then a link), else the connection span.
- ``socketio emit <event>`` (PRODUCER): each ``emit``/``send``/``call`` of the server (or
  of a namespace, which goes through the server); ``call`` spans the wait for the reply.

Trace carrier convention (events and connect ``auth``): a dict argument with a ``"_trace"``
key holding a dict of headers (``{"_trace": {"traceparent": "00-..."}}``), or a dict
argument that itself has a ``traceparent`` or ``uber-trace-id`` key. Nothing is removed
from the payload: handlers receive exactly what the client sent. :func:`trace_carrier`
builds such a dict from the current span, for Python clients.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from typing import Any

from ..core.instrumentation import (
    NEW_TRACE,
    Link,
    Span,
    SpanKind,
    active_manager,
    attach,
    current_span_context,
    detach,
    guarded,
    guarded_hook,
    start_span,
)
from ..core.manager import TracingManager
from ._contract import Installation, install_once, installation_of, require_framework, uninstall_installed
from ._instance import restore_instance, set_instance_wrappers

__all__ = [
    "install_socketio_tracing",
    "uninstall_socketio_tracing",
    "instrument_socketio",
    "uninstrument_socketio",
    "trace_carrier",
    "CARRIER_KEY",
]

CARRIER_KEY = "_trace"
_MAX_NAME = 100
_MAX_CONNECTIONS = 100_000  # open connection spans kept; beyond this, new ones are not tracked
_HOOKS = ("_handle_connect", "_trigger_event", "_handle_event_internal", "emit", "send", "call")
_SUPPRESS = "suppress"
_FRAMEWORK = "socketio"
_TRANSPORT_GUARD = guarded("socketio transport")
_CONNECT_GUARD = guarded("socketio connect")
_UNINSTALL_GUARD = guarded("socketio uninstrument")

# The connection whose CONNECT packet is being handled (sid learnt in _trigger_event).
_connecting: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "aiecs_tracing_socketio_connecting", default=None
)
# "send" inside Server.send, _SUPPRESS inside Server.call (its own span covers the emit).
_emit_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiecs_tracing_socketio_emit", default=None)


def trace_carrier(tracing: TracingManager | None = None) -> dict[str, dict[str, str]]:
    """``{"_trace": {...headers...}}`` for the current span, to merge into a client's payload.

    ``await client.emit("register", {"user": "u1", **trace_carrier()})`` makes the server's
    ``socketio register`` span a child of the caller's current span. Empty when there is
    no current span or tracing is off.
    """
    tracing = active_manager(tracing)
    headers: dict[str, str] = {}
    if tracing is not None:
        tracing.inject_current_context(headers)
    return {CARRIER_KEY: headers} if headers else {}


def _find_carrier(args: Any) -> dict[str, Any] | None:
    """The first trace carrier among the top-level arguments (see the module docstring)."""
    for arg in args:
        if type(arg) is dict and arg:
            sub = arg.get(CARRIER_KEY)
            if type(sub) is dict:
                return sub
            if "traceparent" in arg or "uber-trace-id" in arg:
                return arg
    return None


_ENVIRON_HEADERS = (
    ("HTTP_TRACEPARENT", "traceparent"),
    ("HTTP_TRACESTATE", "tracestate"),
    ("HTTP_BAGGAGE", "baggage"),
    ("HTTP_UBER_TRACE_ID", "uber-trace-id"),
)


def _environ_carrier(environ: dict[str, Any]) -> dict[str, str]:
    """Propagation headers of the handshake request, from its WSGI-style environ."""
    carrier: dict[str, str] = {}
    for key, header in _ENVIRON_HEADERS:
        value = environ.get(key)
        if value:
            carrier[header] = value
    if "uber-trace-id" in carrier:
        for key, value in environ.items():
            if key.startswith("HTTP_UBERCTX_"):
                carrier["uberctx-" + key[13:].lower().replace("_", "-")] = value
    return carrier


def _client_address(environ: dict[str, Any]) -> tuple[str | None, int | None]:
    scope = environ.get("asgi.scope")
    client = scope.get("client") if isinstance(scope, dict) else None
    if client:
        try:
            return str(client[0]), int(client[1])
        except (TypeError, ValueError, IndexError):  # not a guard: a malformed scope falls through
            pass
    host = environ.get("REMOTE_ADDR")
    try:
        port = int(environ.get("REMOTE_PORT") or 0) or None
    except (TypeError, ValueError):
        port = None
    return host, port


def _room(to: Any) -> str:
    if isinstance(to, (list, tuple, set)):
        return ",".join(map(str, to))
    return str(to)


def _short(name: Any) -> str:
    text = name if type(name) is str else str(name)
    return text if len(text) <= _MAX_NAME else text[:_MAX_NAME]


class _Connection:
    __slots__ = ("span", "namespace", "sid")

    def __init__(self, span: Span, namespace: str) -> None:
        self.span = span
        self.namespace = namespace
        self.sid: str | None = None


class _State(Installation):
    """Per-server bookkeeping: the manager, the open connection spans, the originals."""

    def __init__(self, sio: Any, tracing: TracingManager | None, events_in_connection_trace: bool) -> None:
        self.sio = sio
        self.tracing = tracing
        self.events_in_connection_trace = events_in_connection_trace
        self.connections: dict[tuple[str, str], _Connection] = {}
        self.originals: dict[str, Any] = {}  # hook name -> previous instance attribute, or None
        self.wrappers: dict[str, Any] = {}

    def manager(self) -> TracingManager | None:
        return active_manager(self.tracing)

    def install(self) -> _State:
        sio = self.sio
        originals = {name: getattr(sio, name) for name in _HOOKS}
        is_async = bool(getattr(sio, "is_asyncio_based", lambda: False)())
        wrappers = _hooks(self, originals, is_async)
        self.originals.update(set_instance_wrappers(sio, wrappers))
        self.wrappers.update(wrappers)
        return self

    def uninstall(self) -> None:
        restore_instance(self.sio, self.wrappers, self.originals)
        for conn in list(self.connections.values()):
            with _UNINSTALL_GUARD:
                conn.span.otel_span.set_attribute("socketio.uninstrumented", True)
                conn.span.finish()
        self.connections.clear()

    # --- connect ------------------------------------------------------------------------
    def connect_begin(
        self, t: TracingManager, eio_sid: Any, namespace: str | None, data: Any
    ) -> tuple[_Connection, Span, object, contextvars.Token[_Connection | None]]:
        ns = namespace or "/"
        environ = self.sio.environ.get(eio_sid) or {}
        parent: Any = None
        carrier = _find_carrier((data,)) if data else None
        if carrier is not None:
            parent = t.extract_span_context(carrier)
        if parent is None:
            headers = _environ_carrier(environ)
            handshake = t.extract_span_context(headers) if headers else None
            current = current_span_context()
            # Under an ASGI/WSGI tracing middleware the current span is the request carrying
            # the CONNECT packet: a child of it when it continues the handshake's trace (or
            # there is none), else the handshake wins (a polling POST may carry no headers).
            if not current.is_valid or (handshake is not None and handshake.trace_id != current.trace_id):
                parent = handshake
        host, port = _client_address(environ)
        attrs: dict[str, Any] = {
            "component": "socketio",
            "messaging.system": "socketio",
            "socketio.namespace": ns,
        }
        with _TRANSPORT_GUARD:
            attrs["socketio.transport"] = self.sio.eio.transport(eio_sid)
        if host:
            attrs["client.address"] = host
            attrs["peer.ipv4" if "." in host else "peer.hostname"] = host
        if port:
            attrs["client.port"] = port
        agent = environ.get("HTTP_USER_AGENT")
        if agent:
            attrs["user_agent.original"] = agent
        path = environ.get("PATH_INFO")
        if path:
            attrs["url.path"] = path
        conn_span = start_span(t, "socketio connection", attrs, SpanKind.SERVER, parent)
        conn = _Connection(conn_span, ns)
        connect_span = start_span(
            t,
            "socketio connect",
            {
                "component": "socketio",
                "messaging.system": "socketio",
                "messaging.operation.type": "process",
                "socketio.event": "connect",
                "socketio.namespace": ns,
            },
            SpanKind.CONSUMER,
            conn_span,
        )
        return conn, connect_span, attach(t, connect_span), _connecting.set(conn)

    def connect_end(
        self, t: TracingManager, begun: tuple[_Connection, Span, object, contextvars.Token[_Connection | None]], exc: BaseException | None
    ) -> None:
        conn, connect_span, token, cv_token = begun
        detach(t, token)
        try:
            _connecting.reset(cv_token)
        except ValueError:  # not a guard: a token of another context (the handler switched tasks)
            pass
        if exc is not None:
            connect_span.record_exception(exc)
            conn.span.record_exception(exc)
        connect_span.finish()
        connected = False
        if exc is None and conn.sid is not None:
            try:
                connected = bool(self.sio.manager.is_connected(conn.sid, conn.namespace))
            except Exception:  # not a guard: a manager that cannot tell keeps the connection open
                connected = True
        if not connected:
            if conn.sid is not None:
                self.connections.pop((conn.sid, conn.namespace), None)
            if exc is None:
                conn.span.otel_span.set_attribute("socketio.connect.refused", True)
            conn.span.finish()

    def on_connect_event(self, namespace: str, args: tuple[Any, ...]) -> None:
        conn = _connecting.get()
        if conn is None or not args:
            return
        sid = args[0]
        conn.sid = sid
        conn.span.otel_span.set_attribute("socketio.sid", str(sid))
        if len(self.connections) < _MAX_CONNECTIONS:
            self.connections[(sid, namespace or "/")] = conn

    # --- disconnect -----------------------------------------------------------------------
    def disconnect_begin(
        self, t: TracingManager, namespace: str | None, args: tuple[Any, ...]
    ) -> tuple[_Connection | None, Span, object, Any]:
        ns = namespace or "/"
        sid: Any = args[0] if args else None
        conn = self.connections.pop((sid, ns), None)
        attrs: dict[str, Any] = {
            "component": "socketio",
            "messaging.system": "socketio",
            "messaging.operation.type": "process",
            "socketio.event": "disconnect",
            "socketio.namespace": ns,
            "socketio.sid": str(sid),
        }
        reason = args[1] if len(args) > 1 else None
        if reason is not None:
            attrs["socketio.disconnect.reason"] = str(reason)
        span = start_span(t, "socketio disconnect", attrs, SpanKind.CONSUMER, conn.span if conn else None)
        return conn, span, attach(t, span), reason

    def disconnect_end(
        self, t: TracingManager, begun: tuple[_Connection | None, Span, object, Any], exc: BaseException | None
    ) -> None:
        conn, span, token, reason = begun
        detach(t, token)
        if exc is not None:
            span.record_exception(exc)
        span.finish()
        if conn is not None:
            if reason is not None:
                conn.span.otel_span.set_attribute("socketio.disconnect.reason", str(reason))
            conn.span.finish()

    # --- events ---------------------------------------------------------------------------
    def event_begin(
        self, t: TracingManager, sid: Any, data: Any, namespace: str | None, ack_id: Any
    ) -> tuple[Span, object]:
        ns = namespace or "/"
        event = data[0] if data else "message"
        args = data[1:] if data else ()
        conn = self.connections.get((sid, ns))
        parent: Any = None
        links = None
        carrier = _find_carrier(args) if args else None
        if carrier is not None:
            parent = t.extract_span_context(carrier)
        if parent is not None:
            if conn is not None:
                links = [Link(conn.span.otel_span.get_span_context())]
        elif conn is not None:
            if self.events_in_connection_trace:
                parent = conn.span
            else:
                links = [Link(conn.span.otel_span.get_span_context())]
                parent = NEW_TRACE  # a new trace, linked to the connection
        name = _short(event)
        attrs = {
            "component": "socketio",
            "messaging.system": "socketio",
            "messaging.operation.type": "process",
            "messaging.destination.name": ns,
            "socketio.event": name,
            "socketio.namespace": ns,
            "socketio.sid": str(sid),
            "socketio.args_count": len(args),
            "socketio.ack": ack_id is not None,
        }
        span = start_span(t, "socketio " + name, attrs, SpanKind.CONSUMER, parent, links=links)
        return span, attach(t, span)

    # --- emits ----------------------------------------------------------------------------
    def emit_begin(self, t: TracingManager, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
        # emit(event, data=None, to=None, room=None, skip_sid=None, namespace=None, callback=None, ...)
        # call(event, data=None, to=None, sid=None, namespace=None, timeout=60, ...)
        event = args[0] if args else kwargs.get("event", "message")
        if op == "call":
            to = kwargs.get("to") or kwargs.get("sid")
            if to is None and len(args) > 2:
                to = args[2] or (args[3] if len(args) > 3 else None)
            ns = kwargs.get("namespace") or (args[4] if len(args) > 4 else None) or "/"
            has_callback = True
        else:
            to = kwargs.get("to") or kwargs.get("room")
            if to is None and len(args) > 2:
                to = args[2] or (args[3] if len(args) > 3 else None)
            ns = kwargs.get("namespace") or (args[5] if len(args) > 5 else None) or "/"
            has_callback = (kwargs.get("callback") or (args[6] if len(args) > 6 else None)) is not None
            if op == "emit" and _emit_mode.get() == "send":
                op = "send"
        name = _short(event)
        attrs: dict[str, Any] = {
            "component": "socketio",
            "messaging.system": "socketio",
            "messaging.operation.type": "send",
            "messaging.operation.name": op,
            "messaging.destination.name": ns,
            "socketio.event": name,
            "socketio.namespace": ns,
            "socketio.operation": op,
            "socketio.broadcast": to is None,
            "socketio.ack": has_callback,
        }
        if to is not None:
            attrs["socketio.room"] = _room(to)
        return start_span(t, "socketio emit " + name, attrs, SpanKind.PRODUCER, None)


# --- the hooks: one helper makes both the async and the sync twin ----------------------------
def _around(
    original: Callable[..., Any],
    begin: Callable[[tuple[Any, ...], dict[str, Any]], Any],
    end: Callable[[Any, BaseException | None], None],
    is_async: bool,
) -> Callable[..., Any]:
    """Wrap ``original``: ``begin(args, kwargs)`` before (``None``: pass through untouched),
    ``end(begun, error)`` after, whatever happens. Both are guarded hooks: they never raise."""
    if is_async:

        async def async_hook(*args: Any, **kwargs: Any) -> Any:
            begun = begin(args, kwargs)
            if begun is None:
                return await original(*args, **kwargs)
            error: BaseException | None = None
            try:
                return await original(*args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                end(begun, error)

        return functools.wraps(original)(async_hook)

    def hook(*args: Any, **kwargs: Any) -> Any:
        begun = begin(args, kwargs)
        if begun is None:
            return original(*args, **kwargs)
        error: BaseException | None = None
        try:
            return original(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            end(begun, error)

    return functools.wraps(original)(hook)


def _hooks(state: _State, orig: dict[str, Callable[..., Any]], is_async: bool) -> dict[str, Callable[..., Any]]:
    """The wrappers of a server's dispatch methods (see ``_HOOKS``)."""

    # _handle_connect(eio_sid, namespace, data)
    @guarded_hook("socketio connect")
    def connect_begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        t = state.manager()
        if t is None:
            return None
        return t, state.connect_begin(t, *args, **kwargs)

    @guarded_hook("socketio connect")
    def connect_end(begun: Any, error: BaseException | None) -> None:
        t, inner = begun
        state.connect_end(t, inner, error)

    # _trigger_event(event, namespace, *args): the connect handler's sid, the disconnect handler
    @guarded_hook("socketio disconnect")
    def trigger_begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        event, namespace, rest = args[0], args[1], args[2:]
        if event == "connect":
            if _connecting.get() is not None:
                with _CONNECT_GUARD:
                    state.on_connect_event(namespace, rest)
            return None
        if event != "disconnect":
            return None
        t = state.manager()
        if t is None:
            return None
        return t, state.disconnect_begin(t, namespace, rest)

    @guarded_hook("socketio disconnect")
    def trigger_end(begun: Any, error: BaseException | None) -> None:
        t, inner = begun
        state.disconnect_end(t, inner, error)

    # _handle_event_internal(server, sid, eio_sid, data, namespace, id)
    @guarded_hook("socketio event")
    def event_begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        t = state.manager()
        if t is None:
            return None
        _server, sid, _eio_sid, data, namespace, ack_id = args
        return t, state.event_begin(t, sid, data, namespace, ack_id)

    @guarded_hook("socketio event")
    def event_end(begun: Any, error: BaseException | None) -> None:
        t, (span, token) = begun
        if error is not None and not isinstance(error, asyncio.CancelledError):
            span.record_exception(error)
        detach(t, token)
        span.finish()

    # emit / call: a PRODUCER span, current while the message goes out (call: until the reply)
    def emit_begin(op: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
        @guarded_hook("socketio emit")
        def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if op == "emit" and _emit_mode.get() == _SUPPRESS:
                return None  # inside call(), whose span covers this emit
            t = state.manager()
            if t is None:
                return None
            span = state.emit_begin(t, op, args, kwargs)
            if span is None:
                return None
            return t, span, attach(t, span), _emit_mode.set(_SUPPRESS) if op == "call" else None

        return begin

    @guarded_hook("socketio emit")
    def emit_end(begun: Any, error: BaseException | None) -> None:
        t, span, token, mode = begun
        if mode is not None:
            _emit_mode.reset(mode)
        detach(t, token)
        if error is not None:
            span.record_exception(error)
        span.finish()

    # send(): an emit named "send"
    def send_begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return _emit_mode.set("send")

    def send_end(token: Any, error: BaseException | None) -> None:
        _emit_mode.reset(token)

    return {
        "_handle_connect": _around(orig["_handle_connect"], connect_begin, connect_end, is_async),
        "_trigger_event": _around(orig["_trigger_event"], trigger_begin, trigger_end, is_async),
        "_handle_event_internal": _around(orig["_handle_event_internal"], event_begin, event_end, is_async),
        "emit": _around(orig["emit"], emit_begin("emit"), emit_end, is_async),
        "send": _around(orig["send"], send_begin, send_end, is_async),
        "call": _around(orig["call"], emit_begin("call"), emit_end, is_async),
    }


def install_socketio_tracing(
    sio: Any,
    tracing: TracingManager | None = None,
    *,
    events_in_connection_trace: bool = True,
) -> Any:
    """Trace ``sio`` (a ``socketio.AsyncServer`` or ``socketio.Server``); returns it.

    Idempotent. ``tracing`` defaults to the process default manager, looked up per event,
    so instrumenting before the manager exists works. With
    ``events_in_connection_trace=False`` an event without a trace carrier starts its own
    trace (linked to the connection span) instead of joining the connection's trace,
    which keeps traces small for connections that live for hours. Needs python-socketio:
    ``pip install 'aiecs-tracing[socketio]'``.
    """
    require_framework("socketio")
    if installation_of(sio, _FRAMEWORK) is None:
        missing = [name for name in _HOOKS if not callable(getattr(sio, name, None))]
        if missing:
            raise TypeError(
                f"install_socketio_tracing: {type(sio).__name__} has no {', '.join(missing)}; "
                "expected a python-socketio 5.x Server or AsyncServer"
            )
    install_once(sio, _FRAMEWORK, tracing, lambda: _State(sio, tracing, events_in_connection_trace).install())
    return sio


def uninstall_socketio_tracing(sio: Any) -> Any:
    """Undo :func:`install_socketio_tracing`; open connection spans are finished now. Idempotent."""
    uninstall_installed(sio, _FRAMEWORK)
    return sio


#: The names before the one verb pair; they still work.
instrument_socketio = install_socketio_tracing
uninstrument_socketio = uninstall_socketio_tracing
