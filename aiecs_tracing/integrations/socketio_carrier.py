"""python-socketio: where a trace context travels - in a payload, or in the handshake's headers.

Trace carrier convention (events and connect ``auth``): a dict argument with a ``"_trace"``
key holding a dict of headers (``{"_trace": {"traceparent": "00-..."}}``), or a dict
argument that itself has a ``traceparent`` or ``uber-trace-id`` key. Nothing is removed
from the payload: handlers receive exactly what the client sent. :func:`trace_carrier`
builds such a dict from the current span, for Python clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.instrumentation import MESSAGE_CARRIER_KEY, active_manager, embedded_carrier

if TYPE_CHECKING:
    from ..core.manager import TracingManager

__all__ = ["CARRIER_KEY", "trace_carrier", "find_carrier", "environ_carrier"]

CARRIER_KEY = MESSAGE_CARRIER_KEY

_ENVIRON_HEADERS = (
    ("HTTP_TRACEPARENT", "traceparent"),
    ("HTTP_TRACESTATE", "tracestate"),
    ("HTTP_BAGGAGE", "baggage"),
    ("HTTP_UBER_TRACE_ID", "uber-trace-id"),
)


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


def find_carrier(args: Any) -> dict[str, Any] | None:
    """The first trace carrier among the top-level arguments (see the module docstring)."""
    for arg in args:
        if type(arg) is dict and arg and (carrier := embedded_carrier(arg)) is not None:
            return carrier
    return None


def environ_carrier(environ: dict[str, Any]) -> dict[str, str]:
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
