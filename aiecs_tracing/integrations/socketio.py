"""python-socketio: spans for one server's connections, events and emits.

``instrument_socketio(sio)`` wraps a handful of dispatch methods *on that server instance
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

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from ..core.guard import report_error
from ..core.manager import TracingManager, get_tracing_manager
from ..core.span import Span
from ._instance import restore_instance, set_instance_wrappers

__all__ = ["instrument_socketio", "uninstrument_socketio", "trace_carrier", "CARRIER_KEY"]

CARRIER_KEY = "_trace"
_STATE_ATTR = "_aiecs_tracing_socketio"
_MAX_NAME = 100
_MAX_CONNECTIONS = 100_000  # open connection spans kept; beyond this, new ones are not tracked
_HOOKS = ("_handle_connect", "_trigger_event", "_handle_event_internal", "emit", "send", "call")
_SUPPRESS = "suppress"

# The connection whose CONNECT packet is being handled (sid learnt in _trigger_event).
_connecting: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar(
    "aiecs_tracing_socketio_connecting", default=None
)
# "send" inside Server.send, _SUPPRESS inside Server.call (its own span covers the emit).
_emit_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiecs_tracing_socketio_emit", default=None)


def _require_socketio() -> Any:
    try:
        import socketio
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "aiecs_tracing.integrations.socketio needs python-socketio: pip install aiecs-tracing[socketio]"
        ) from exc
    return socketio


def trace_carrier(tracing: TracingManager | None = None) -> dict[str, dict[str, str]]:
    """``{"_trace": {...headers...}}`` for the current span, to merge into a client's payload.

    ``await client.emit("register", {"user": "u1", **trace_carrier()})`` makes the server's
    ``socketio register`` span a child of the caller's current span. Empty when there is
    no current span or tracing is off.
    """
    tracing = tracing or get_tracing_manager()
    headers: dict[str, str] = {}
    if tracing is not None and tracing.enabled:
        tracing.inject_current_context(headers)
    return {CARRIER_KEY: headers} if headers else {}


def _find_carrier(args: Any) -> dict | None:
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


def _environ_carrier(environ: dict) -> dict[str, str]:
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


def _client_address(environ: dict) -> tuple[str | None, int | None]:
    scope = environ.get("asgi.scope")
    client = scope.get("client") if isinstance(scope, dict) else None
    if client:
        try:
            return str(client[0]), int(client[1])
        except Exception:
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


class _State:
    """Per-server bookkeeping: the manager, the open connection spans, the originals."""

    def __init__(self, sio: Any, tracing: TracingManager | None, events_in_connection_trace: bool) -> None:
        self.sio = sio
        self.tracing = tracing
        self.events_in_connection_trace = events_in_connection_trace
        self.connections: dict[tuple[str, str], _Connection] = {}
        self.originals: dict[str, Any] = {}  # hook name -> previous instance attribute, or None
        self.wrappers: dict[str, Any] = {}

    def manager(self) -> TracingManager | None:
        t = self.tracing or get_tracing_manager()
        return t if t is not None and t._active else None

    # --- connect ------------------------------------------------------------------------
    def connect_begin(self, t: TracingManager, eio_sid: Any, namespace: str | None, data: Any) -> tuple:
        ns = namespace or "/"
        environ = self.sio.environ.get(eio_sid) or {}
        parent: Any = None
        carrier = _find_carrier((data,)) if data else None
        if carrier is not None:
            parent = t.extract_span_context(carrier)
        if parent is None:
            headers = _environ_carrier(environ)
            handshake = t.extract_span_context(headers) if headers else None
            current = trace.get_current_span().get_span_context()
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
        try:
            attrs["socketio.transport"] = self.sio.eio.transport(eio_sid)
        except Exception:
            pass
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
        conn_span = t._start("socketio connection", attrs, SpanKind.SERVER, parent)
        conn = _Connection(conn_span, ns)
        connect_span = t._start(
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
        return conn, connect_span, t.attach(connect_span), _connecting.set(conn)

    def connect_end(self, t: TracingManager, begun: tuple, exc: BaseException | None) -> None:
        conn, connect_span, token, cv_token = begun
        t.detach(token)
        try:
            _connecting.reset(cv_token)
        except Exception:
            pass
        if exc is not None:
            connect_span.record_exception(exc)
            conn.span.record_exception(exc)
        connect_span.finish()
        connected = False
        if exc is None and conn.sid is not None:
            try:
                connected = bool(self.sio.manager.is_connected(conn.sid, conn.namespace))
            except Exception:
                connected = True
        if not connected:
            if conn.sid is not None:
                self.connections.pop((conn.sid, conn.namespace), None)
            if exc is None:
                conn.span._otel.set_attribute("socketio.connect.refused", True)
            conn.span.finish()

    def on_connect_event(self, namespace: str, args: tuple) -> None:
        conn = _connecting.get()
        if conn is None or not args:
            return
        sid = args[0]
        conn.sid = sid
        conn.span._otel.set_attribute("socketio.sid", str(sid))
        if len(self.connections) < _MAX_CONNECTIONS:
            self.connections[(sid, namespace or "/")] = conn

    # --- disconnect -----------------------------------------------------------------------
    def disconnect_begin(self, t: TracingManager, namespace: str | None, args: tuple) -> tuple:
        ns = namespace or "/"
        sid = args[0] if args else None
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
        span = t._start("socketio disconnect", attrs, SpanKind.CONSUMER, conn.span if conn else None)
        return conn, span, t.attach(span), reason

    def disconnect_end(self, t: TracingManager, begun: tuple, exc: BaseException | None) -> None:
        conn, span, token, reason = begun
        t.detach(token)
        if exc is not None:
            span.record_exception(exc)
        span.finish()
        if conn is not None:
            if reason is not None:
                conn.span._otel.set_attribute("socketio.disconnect.reason", str(reason))
            conn.span.finish()

    # --- events ---------------------------------------------------------------------------
    def event_begin(self, t: TracingManager, sid: Any, data: Any, namespace: str | None, ack_id: Any) -> tuple:
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
                links = [Link(conn.span._otel.get_span_context())]
        elif conn is not None:
            if self.events_in_connection_trace:
                parent = conn.span
            else:
                links = [Link(conn.span._otel.get_span_context())]
                parent = trace.INVALID_SPAN  # a new trace, linked to the connection
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
        span = t._start("socketio " + name, attrs, SpanKind.CONSUMER, parent, None, links)
        return span, t.attach(span)

    # --- emits ----------------------------------------------------------------------------
    def emit_begin(self, t: TracingManager, op: str, args: tuple, kwargs: dict) -> tuple:
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
        return t._start("socketio emit " + name, attrs, SpanKind.PRODUCER, None)


def _fail(kind: str, exc: BaseException) -> None:
    report_error(kind, exc)


def _async_hooks(state: _State, orig: dict[str, Callable]) -> dict[str, Callable]:
    o_connect, o_trigger, o_event = orig["_handle_connect"], orig["_trigger_event"], orig["_handle_event_internal"]
    o_emit, o_send, o_call = orig["emit"], orig["send"], orig["call"]

    async def _handle_connect(eio_sid, namespace, data):
        t = state.manager()
        begun = None
        if t is not None:
            try:
                begun = state.connect_begin(t, eio_sid, namespace, data)
            except Exception as exc:
                _fail("socketio connect", exc)
        if begun is None:
            return await o_connect(eio_sid, namespace, data)
        try:
            result = await o_connect(eio_sid, namespace, data)
        except BaseException as exc:
            try:
                state.connect_end(t, begun, exc)
            except Exception as err:
                _fail("socketio connect", err)
            raise
        try:
            state.connect_end(t, begun, None)
        except Exception as err:
            _fail("socketio connect", err)
        return result

    async def _trigger_event(event, namespace, *args):
        if event == "connect":
            if _connecting.get() is not None:
                try:
                    state.on_connect_event(namespace, args)
                except Exception as exc:
                    _fail("socketio connect", exc)
            return await o_trigger(event, namespace, *args)
        if event != "disconnect":
            return await o_trigger(event, namespace, *args)
        t = state.manager()
        begun = None
        if t is not None:
            try:
                begun = state.disconnect_begin(t, namespace, args)
            except Exception as exc:
                _fail("socketio disconnect", exc)
        if begun is None:
            return await o_trigger(event, namespace, *args)
        error = None
        try:
            return await o_trigger(event, namespace, *args)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                state.disconnect_end(t, begun, error)
            except Exception as err:
                _fail("socketio disconnect", err)

    async def _handle_event_internal(server, sid, eio_sid, data, namespace, id):
        t = state.manager()
        begun = None
        if t is not None:
            try:
                begun = state.event_begin(t, sid, data, namespace, id)
            except Exception as exc:
                _fail("socketio event", exc)
        if begun is None:
            return await o_event(server, sid, eio_sid, data, namespace, id)
        span, token = begun
        try:
            return await o_event(server, sid, eio_sid, data, namespace, id)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            t.detach(token)
            span.finish()

    async def _traced_emit(op: str, original: Callable, args: tuple, kwargs: dict) -> Any:
        t = state.manager()
        span = None
        if t is not None:
            try:
                span = state.emit_begin(t, op, args, kwargs)
            except Exception as exc:
                _fail("socketio emit", exc)
        if span is None:
            return await original(*args, **kwargs)
        token = t.attach(span)
        mode = _emit_mode.set(_SUPPRESS) if op == "call" else None
        try:
            return await original(*args, **kwargs)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            if mode is not None:
                _emit_mode.reset(mode)
            t.detach(token)
            span.finish()

    @functools.wraps(o_emit)
    async def emit(*args, **kwargs):
        if _emit_mode.get() == _SUPPRESS:
            return await o_emit(*args, **kwargs)
        return await _traced_emit("emit", o_emit, args, kwargs)

    @functools.wraps(o_send)
    async def send(*args, **kwargs):
        token = _emit_mode.set("send")
        try:
            return await o_send(*args, **kwargs)
        finally:
            _emit_mode.reset(token)

    @functools.wraps(o_call)
    async def call(*args, **kwargs):
        return await _traced_emit("call", o_call, args, kwargs)

    return {
        "_handle_connect": _handle_connect,
        "_trigger_event": _trigger_event,
        "_handle_event_internal": _handle_event_internal,
        "emit": emit,
        "send": send,
        "call": call,
    }


def _sync_hooks(state: _State, orig: dict[str, Callable]) -> dict[str, Callable]:
    o_connect, o_trigger, o_event = orig["_handle_connect"], orig["_trigger_event"], orig["_handle_event_internal"]
    o_emit, o_send, o_call = orig["emit"], orig["send"], orig["call"]

    def _handle_connect(eio_sid, namespace, data):
        t = state.manager()
        begun = None
        if t is not None:
            try:
                begun = state.connect_begin(t, eio_sid, namespace, data)
            except Exception as exc:
                _fail("socketio connect", exc)
        if begun is None:
            return o_connect(eio_sid, namespace, data)
        try:
            result = o_connect(eio_sid, namespace, data)
        except BaseException as exc:
            try:
                state.connect_end(t, begun, exc)
            except Exception as err:
                _fail("socketio connect", err)
            raise
        try:
            state.connect_end(t, begun, None)
        except Exception as err:
            _fail("socketio connect", err)
        return result

    def _trigger_event(event, namespace, *args):
        if event == "connect":
            if _connecting.get() is not None:
                try:
                    state.on_connect_event(namespace, args)
                except Exception as exc:
                    _fail("socketio connect", exc)
            return o_trigger(event, namespace, *args)
        if event != "disconnect":
            return o_trigger(event, namespace, *args)
        t = state.manager()
        begun = None
        if t is not None:
            try:
                begun = state.disconnect_begin(t, namespace, args)
            except Exception as exc:
                _fail("socketio disconnect", exc)
        if begun is None:
            return o_trigger(event, namespace, *args)
        error = None
        try:
            return o_trigger(event, namespace, *args)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                state.disconnect_end(t, begun, error)
            except Exception as err:
                _fail("socketio disconnect", err)

    def _handle_event_internal(server, sid, eio_sid, data, namespace, id):
        t = state.manager()
        begun = None
        if t is not None:
            try:
                begun = state.event_begin(t, sid, data, namespace, id)
            except Exception as exc:
                _fail("socketio event", exc)
        if begun is None:
            return o_event(server, sid, eio_sid, data, namespace, id)
        span, token = begun
        try:
            return o_event(server, sid, eio_sid, data, namespace, id)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            t.detach(token)
            span.finish()

    def _traced_emit(op: str, original: Callable, args: tuple, kwargs: dict) -> Any:
        t = state.manager()
        span = None
        if t is not None:
            try:
                span = state.emit_begin(t, op, args, kwargs)
            except Exception as exc:
                _fail("socketio emit", exc)
        if span is None:
            return original(*args, **kwargs)
        token = t.attach(span)
        mode = _emit_mode.set(_SUPPRESS) if op == "call" else None
        try:
            return original(*args, **kwargs)
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            if mode is not None:
                _emit_mode.reset(mode)
            t.detach(token)
            span.finish()

    @functools.wraps(o_emit)
    def emit(*args, **kwargs):
        if _emit_mode.get() == _SUPPRESS:
            return o_emit(*args, **kwargs)
        return _traced_emit("emit", o_emit, args, kwargs)

    @functools.wraps(o_send)
    def send(*args, **kwargs):
        token = _emit_mode.set("send")
        try:
            return o_send(*args, **kwargs)
        finally:
            _emit_mode.reset(token)

    @functools.wraps(o_call)
    def call(*args, **kwargs):
        return _traced_emit("call", o_call, args, kwargs)

    return {
        "_handle_connect": _handle_connect,
        "_trigger_event": _trigger_event,
        "_handle_event_internal": _handle_event_internal,
        "emit": emit,
        "send": send,
        "call": call,
    }


def instrument_socketio(
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
    which keeps traces small for connections that live for hours.
    """
    _require_socketio()
    if getattr(sio, _STATE_ATTR, None) is not None:
        return sio
    missing = [name for name in _HOOKS if not callable(getattr(sio, name, None))]
    if missing:
        raise TypeError(
            f"instrument_socketio: {type(sio).__name__} has no {', '.join(missing)}; "
            "expected a python-socketio 5.x Server or AsyncServer"
        )
    state = _State(sio, tracing, events_in_connection_trace)
    originals = {name: getattr(sio, name) for name in _HOOKS}
    is_async = bool(getattr(sio, "is_asyncio_based", lambda: False)())
    wrappers = _async_hooks(state, originals) if is_async else _sync_hooks(state, originals)
    state.originals.update(set_instance_wrappers(sio, wrappers))
    state.wrappers.update(wrappers)
    setattr(sio, _STATE_ATTR, state)
    return sio


def uninstrument_socketio(sio: Any) -> Any:
    """Undo :func:`instrument_socketio`; open connection spans are finished now."""
    state: _State | None = vars(sio).pop(_STATE_ATTR, None)
    if state is None:
        return sio
    restore_instance(sio, state.wrappers, state.originals)
    for conn in list(state.connections.values()):
        try:
            conn.span._otel.set_attribute("socketio.uninstrumented", True)
            conn.span.finish()
        except Exception as exc:
            _fail("socketio uninstrument", exc)
    state.connections.clear()
    return sio
