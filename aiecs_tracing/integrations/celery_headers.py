"""Celery's trace headers: written into a task message, read back from a message or request.

Kept apart from the signal handlers so the rules of the carrier can be read (and tested) on
their own: which keys are trace keys, where each task protocol puts them, and what a retry
copies over from the previous attempt.

* The publisher writes the context into the message headers (``traceparent``, ``tracestate``,
  ``baggage``, ``uber-trace-id`` and Jaeger's ``uberctx-*`` baggage).
* With task protocol 2 the worker finds them at the top level of ``task.request`` (and in
  ``task.request.headers``); with protocol 1 only under ``task.request.headers``.
* A retry copies the old request's headers into the new message: stale trace keys are
  removed before the new attempt's context is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.instrumentation import Span
    from ..core.manager import TracingManager

__all__ = [
    "TRACE_KEYS",
    "UBERCTX_PREFIX",
    "header_carrier",
    "message_carrier",
    "request_carrier",
    "is_trace_key",
    "strip_trace_headers",
    "write_trace_headers",
    "parent_from_carrier",
]

#: The header keys that carry a trace context (W3C and Jaeger).
TRACE_KEYS = ("traceparent", "tracestate", "baggage", "uber-trace-id")
#: Jaeger's baggage items travel as one header each, under this prefix.
UBERCTX_PREFIX = "uberctx-"


def header_carrier(source: Any) -> dict[str, Any] | None:
    """The trace headers found in a mapping (message headers or a request's ``__dict__``).

    ``None`` when there is no context in it (neither ``traceparent`` nor ``uber-trace-id``).
    Jaeger baggage (``uberctx-*``) is taken only when there is no W3C ``baggage``.
    """
    if not isinstance(source, dict):
        return None
    carrier = {key: source[key] for key in TRACE_KEYS if key in source}
    if "traceparent" not in carrier and "uber-trace-id" not in carrier:
        return None
    if "baggage" not in carrier:
        for key, value in source.items():
            if isinstance(key, str) and key.startswith(UBERCTX_PREFIX):
                carrier[key] = value
    return carrier


def message_carrier(values: Any) -> dict[str, Any] | None:
    """Trace headers of a task message's fields: top level (protocol 2), else its ``headers``."""
    if not isinstance(values, dict):
        return None
    return header_carrier(values) or header_carrier(values.get("headers"))


def request_carrier(request: Any) -> dict[str, Any] | None:
    """Trace headers of a task request: top level (protocol 2), else ``request.headers``."""
    return message_carrier(getattr(request, "__dict__", None))


def is_trace_key(key: Any) -> bool:
    """Whether a header key belongs to a trace context (a retry must not carry it over)."""
    return isinstance(key, str) and (key in TRACE_KEYS or key.startswith(UBERCTX_PREFIX))


def strip_trace_headers(headers: dict[str, Any]) -> None:
    """Drop trace keys a retry copied from the previous attempt's request."""
    for key in [k for k in headers if is_trace_key(k)]:
        del headers[key]


def write_trace_headers(tracing: TracingManager, span: Span | None, headers: dict[str, Any]) -> None:
    """Put ``span``'s context into a message's ``headers``, replacing one a retry copied over.

    The stale context is removed even when there is no span (a light span not recorded): the
    new attempt must not claim the previous attempt's parent.
    """
    if "traceparent" in headers or "uber-trace-id" in headers:
        strip_trace_headers(headers)
    tracing.inject_span_context(span, headers)


def parent_from_carrier(tracing: TracingManager, carrier: dict[str, Any] | None) -> Any:
    """The remote parent the headers name, or ``None`` when they name none."""
    return tracing.extract_span_context(carrier) if carrier is not None else None
