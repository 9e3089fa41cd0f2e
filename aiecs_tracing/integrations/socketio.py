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

Where the code is: this module installs; :mod:`.socketio_carrier` reads and writes trace
carriers, :mod:`.socketio_spans` starts and ends the spans, :mod:`.socketio_hooks` wraps
the server's dispatch methods.
"""

from __future__ import annotations

from typing import Any

from ..core.manager import TracingManager
from ._contract import install_once, installation_of, require_framework, uninstall_installed
from ._instance import restore_instance, set_instance_wrappers
from .socketio_carrier import CARRIER_KEY, trace_carrier
from .socketio_hooks import HOOKED_METHODS, server_hooks
from .socketio_spans import ServerSpans

__all__ = [
    "install_socketio_tracing",
    "uninstall_socketio_tracing",
    "instrument_socketio",
    "uninstrument_socketio",
    "trace_carrier",
    "CARRIER_KEY",
]

_FRAMEWORK = "socketio"


class _State(ServerSpans):
    """One server's installation: its spans' bookkeeping, and the methods it wrapped."""

    def __init__(self, sio: Any, tracing: TracingManager | None, events_in_connection_trace: bool) -> None:
        super().__init__(sio, tracing, events_in_connection_trace)
        self.originals: dict[str, Any] = {}  # hook name -> previous instance attribute, or None
        self.wrappers: dict[str, Any] = {}

    def install(self) -> _State:
        sio = self.sio
        originals = {name: getattr(sio, name) for name in HOOKED_METHODS}
        is_async = bool(getattr(sio, "is_asyncio_based", lambda: False)())
        wrappers = server_hooks(self, originals, is_async)
        self.originals.update(set_instance_wrappers(sio, wrappers))
        self.wrappers.update(wrappers)
        return self

    def uninstall(self) -> None:
        restore_instance(self.sio, self.wrappers, self.originals)
        self.end_open_connections()


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
        missing = [name for name in HOOKED_METHODS if not callable(getattr(sio, name, None))]
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
