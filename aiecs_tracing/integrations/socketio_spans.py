"""python-socketio: the spans of one server - its connections, handlers, events and emits.

:class:`ServerSpans` starts and ends them; :mod:`.socketio_hooks` calls it from the wrapped
dispatch methods and :mod:`.socketio` installs both on a server (what each span is, and
its attributes, is in that module's docstring).

- A connection span lives from the CONNECT packet to the disconnect; it is kept per
  ``(sid, namespace)`` (at most :data:`MAX_CONNECTIONS`) so events and the disconnect
  find it. The sid is learnt only when the connect handler is triggered, hence the
  ``_connecting`` context variable set while a CONNECT packet is handled.
- An event's parent is the carrier in its payload (the connection span then a link), else
  the connection span, or a new trace linked to it (``events_in_connection_trace=False``).
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

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
from ._contract import Installation
from .socketio_carrier import environ_carrier, find_carrier

if TYPE_CHECKING:
    from ..core.manager import TracingManager

__all__ = ["ServerSpans", "MAX_CONNECTIONS"]

_MAX_NAME = 100
MAX_CONNECTIONS = 100_000  # open connection spans kept; beyond this, new ones are not tracked
_TRANSPORT_GUARD = guarded("socketio transport")
_UNINSTALL_GUARD = guarded("socketio uninstrument")

# The connection whose CONNECT packet is being handled (sid learnt in _trigger_event).
_connecting: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "aiecs_tracing_socketio_connecting", default=None
)

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
    """One open connection: its span, its namespace, and its sid once the connect handler learns it."""

    __slots__ = ("span", "namespace", "sid")

    def __init__(self, span: Span, namespace: str) -> None:
        self.span = span
        self.namespace = namespace
        self.sid: str | None = None


class ServerSpans(Installation):
    """Per-server bookkeeping: the manager, the open connection spans, and every span's begin/end."""

    def __init__(self, sio: Any, tracing: TracingManager | None, events_in_connection_trace: bool) -> None:
        self.sio = sio
        self.tracing = tracing
        self.events_in_connection_trace = events_in_connection_trace
        self.connections: dict[tuple[str, str], _Connection] = {}

    def manager(self) -> TracingManager | None:
        return active_manager(self.tracing)

    def end_open_connections(self) -> None:
        """Uninstalled: the connections still open end now, marked as such."""
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
        carrier = find_carrier((data,)) if data else None
        if carrier is not None:
            parent = t.extract_span_context(carrier)
        if parent is None:
            headers = environ_carrier(environ)
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

    @guarded_hook("socketio connect")
    def on_connect_event(self, namespace: str, args: tuple[Any, ...]) -> None:
        """The connect handler is triggered: the connection being handled learns its sid."""
        conn = _connecting.get()
        if conn is None or not args:
            return
        sid = args[0]
        conn.sid = sid
        conn.span.otel_span.set_attribute("socketio.sid", str(sid))
        if len(self.connections) < MAX_CONNECTIONS:
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
        carrier = find_carrier(args) if args else None
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

    def event_end(self, t: TracingManager, begun: tuple[Span, object], exc: BaseException | None) -> None:
        span, token = begun
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            span.record_exception(exc)
        detach(t, token)
        span.finish()

    # --- emits ----------------------------------------------------------------------------
    def emit_begin(
        self, t: TracingManager, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Span, object]:
        """A PRODUCER span for ``op`` (``emit``, ``send`` - an emit - or ``call``), made current."""
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
        span = start_span(t, "socketio emit " + name, attrs, SpanKind.PRODUCER, None)
        return span, attach(t, span)

    def emit_end(self, t: TracingManager, begun: tuple[Span, object], exc: BaseException | None) -> None:
        span, token = begun
        detach(t, token)
        if exc is not None:
            span.record_exception(exc)
        span.finish()
