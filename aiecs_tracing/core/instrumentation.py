"""The public instrumentation interface: the only part of core an integration may import.

Every module under :mod:`aiecs_tracing.integrations` imports from core through this module
(plus :class:`~aiecs_tracing.core.manager.TracingManager` / :func:`get_tracing_manager` for
typing and defaults) and uses no core name starting with ``_``;
``tests/test_integration_contract.py`` enforces it. What is here:

- spans: :func:`start_span` (name, attributes, kind, parent: a span, a remote context,
  :data:`NEW_TRACE` or ``None`` for the current span; ``fast=True`` lets the core pick its
  cheap light span, an implementation detail), :func:`set_attributes`, :func:`otel_span`;
- the current span: :func:`attach` / :func:`detach`, :func:`active_span`,
  :func:`current_span_context`, :func:`is_current`;
- whether to trace: :func:`active_manager`, :func:`is_active`;
- the guard ("tracing never breaks the host"): :func:`report_error`, :class:`guarded`
  (a cheap, reusable context manager), :func:`guarded_hook` (a decorator);
- propagation: :func:`span_context_fields` (the header strings of a span's context);
- shared HTTP helpers (redaction lives in :mod:`aiecs_tracing.core.redaction`), re-exported;
- semantic-convention attribute names the integrations share (:data:`WEBSOCKET_CLOSE_CODE`...).

Private core names are used here, and only here: this module is core.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, TypeVar, overload

from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, get_current_span

from . import guard as _guard
from .light import LightSpan
from .manager import TracingManager, get_tracing_manager
from .propagation import inject_fields
from .redaction import (
    REDACTED,
    SENSITIVE_HEADERS,
    SENSITIVE_QUERY_PARAMS,
    integration_secret_keys,
    is_sensitive_header,
    is_sensitive_param,
    redact_query,
    scrub_text,
)
from .span import Span, SpanContext

__all__ = [
    # spans
    "Span",
    "SpanContext",
    "SpanKind",
    "Link",
    "NEW_TRACE",
    "start_span",
    "set_attributes",
    "otel_span",
    # the current span
    "attach",
    "detach",
    "active_span",
    "current_span_context",
    "is_current",
    # whether to trace
    "TracingManager",
    "get_tracing_manager",
    "active_manager",
    "is_active",
    # the guard
    "report_error",
    "guarded",
    "guarded_hook",
    # propagation
    "span_context_fields",
    "MESSAGE_CARRIER_KEY",
    "embedded_carrier",
    # HTTP helpers
    "REDACTED",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_PARAMS",
    "integration_secret_keys",
    "is_sensitive_header",
    "is_sensitive_param",
    "redact_query",
    "scrub_text",
]

F = TypeVar("F", bound=Callable[..., Any])

#: ``parent=NEW_TRACE``: start a new trace, whatever span is current (a server span for a
#: request without trace headers, a message from an untraced publisher).
NEW_TRACE: Context = Context()

# --- semantic-convention names the integrations share ----------------------------------------
COMPONENT = "component"  # the legacy (jaeger-client) tag
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION_NAME = "messaging.destination.name"
MESSAGING_MESSAGE_ID = "messaging.message.id"
MESSAGING_BODY_SIZE = "messaging.message.body.size"
MESSAGING_BATCH_COUNT = "messaging.batch.message_count"
#: ``messaging.operation.type`` values: an incoming message is received, an outgoing one sent;
#: a task execution (Celery) is processed.
OPERATION_RECEIVE = "receive"
OPERATION_SEND = "send"
OPERATION_PROCESS = "process"
CLIENT_ADDRESS = "client.address"
CLIENT_PORT = "client.port"
URL_PATH = "url.path"
USER_AGENT = "user_agent.original"
NETWORK_PROTOCOL_NAME = "network.protocol.name"
HTTP_STATUS_CODE = "http.response.status_code"
HTTP_STATUS_CODE_LEGACY = "http.status_code"
ERROR_TYPE = "error.type"
# WebSocket: one set of names for both tracers (the ASGI middleware's and the websockets one)
WEBSOCKET_MESSAGE_TYPE = "websocket.message.type"  # text / binary / fragmented
WEBSOCKET_MESSAGE_SIZE = "websocket.message.size"
WEBSOCKET_CLOSE_CODE = "websocket.close.code"
WEBSOCKET_CLOSE_REASON = "websocket.close.reason"
WEBSOCKET_CLOSE_INITIATOR = "websocket.close.initiator"
WEBSOCKET_MESSAGES_RECEIVED = "websocket.messages.received"
WEBSOCKET_MESSAGES_SENT = "websocket.messages.sent"


# --- spans -------------------------------------------------------------------------------------
@overload
def start_span(
    tracing: TracingManager,
    name: str,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Any = None,
    *,
    start_time: int | None = None,
    links: Iterable[Link] | None = None,
    fast: Literal[False] = False,
) -> Span: ...
@overload
def start_span(
    tracing: TracingManager,
    name: str,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Any = None,
    *,
    start_time: int | None = None,
    links: Iterable[Link] | None = None,
    fast: bool,
) -> Span | None: ...
def start_span(
    tracing: TracingManager,
    name: str,
    attributes: dict[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Any = None,
    *,
    start_time: int | None = None,
    links: Iterable[Link] | None = None,
    fast: bool = False,
) -> Span | None:
    """Start a span of ``tracing`` (an active manager: see :func:`active_manager`); not current.

    ``parent``: ``None`` for the current span, :data:`NEW_TRACE` for a new trace, or a span
    (ours or OpenTelemetry's) or a remote context (``tracing.extract_span_context(...)``).
    ``attributes`` must be attribute-safe already (str, bool, int, float or sequences of
    them). ``start_time`` is in nanoseconds since the epoch.

    ``fast=True`` is the integrations' hot path: ``attributes`` holds plain values only and
    is handed over to the span, which may then be the core's light span (same ids, sampler,
    processors and export, far cheaper). Failures there are reported and give ``None``.
    Otherwise failures raise: call it inside the integration's guard.
    """
    if fast and start_time is None and links is None:
        if not tracing.enabled:
            return None
        try:
            if parent is NEW_TRACE:
                return tracing.start_from_remote(name, attributes if attributes is not None else {}, kind, None)
            if type(parent) is SpanContext:
                return tracing.start_from_remote(name, attributes if attributes is not None else {}, kind, parent)
            return tracing.start_fast(name, attributes if attributes is not None else {}, kind, parent)
        except Exception as exc:
            _guard.report_error("start_light_span", exc)
            return None
    return tracing.start_sdk(name, attributes, kind, parent, start_time, links)


def set_attributes(span: Span, attributes: dict[str, Any]) -> None:
    """Set attribute-safe ``attributes`` on ``span`` (the cheapest way the span allows)."""
    otel = span.otel_span
    if type(otel) is LightSpan:
        otel.set_plain_attributes(attributes)  # plain values: no per-value checks
    else:
        otel.set_attributes(attributes)


def otel_span(span: Span) -> Any:
    """The OpenTelemetry span behind a facade span (``span.otel_span``)."""
    return span.otel_span


# --- the current span --------------------------------------------------------------------------
def attach(tracing: TracingManager, span: Span) -> object:
    """Make ``span`` (a facade span) current; returns the token for :func:`detach`."""
    return tracing.attach(span)


def detach(tracing: TracingManager, token: object) -> None:
    """Undo :func:`attach` (harmless with a token from another context)."""
    tracing.detach(token)


def active_span(tracing: TracingManager) -> Span | None:
    """The current span as a facade span, or ``None``."""
    return tracing.get_active_span()


def current_span_context() -> Any:
    """The OpenTelemetry ``SpanContext`` of the current span, any tracer's (``.is_valid`` False: none)."""
    return get_current_span().get_span_context()


def is_current(span: Span) -> bool:
    """True when ``span`` is the current span here (this thread / asyncio task)."""
    return get_current_span() is span.otel_span


# --- whether to trace --------------------------------------------------------------------------
def is_active(tracing: TracingManager | None) -> bool:
    """True when ``tracing`` is a manager that records spans now (enabled and not closed)."""
    return tracing is not None and tracing.enabled


def active_manager(tracing: TracingManager | None) -> TracingManager | None:
    """``tracing`` or else the process default manager, if it traces now; else ``None``.

    Integrations call it at each event, so installing before the manager exists works.
    """
    if tracing is None:
        tracing = get_tracing_manager()
    return tracing if tracing is not None and tracing.enabled else None


# --- the guard ---------------------------------------------------------------------------------
report_error = _guard.report_error


class guarded:
    """``with guarded("kind"):`` swallows and reports (:func:`report_error`) any ``Exception``.

    Stateless, so one instance may be made once and reused (``_GUARD = guarded("x")``);
    cheaper than a generator-based context manager. ``BaseException`` (cancellation,
    ``SystemExit``) passes through.
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc_type is not None and issubclass(exc_type, Exception):
            _guard.report_error(self.kind, exc)
            return True
        return False


def guarded_hook(kind: str, default: Any = None) -> Callable[[F], F]:
    """Decorate a tracing hook (sync or async): an ``Exception`` it raises is reported, ``default`` returned."""

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_hook(*args: Any, **kwargs: Any) -> Any:
                try:
                    return await func(*args, **kwargs)
                except Exception as exc:
                    _guard.report_error(kind, exc)
                    return default

            return async_hook  # type: ignore[return-value]

        @functools.wraps(func)
        def hook(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                _guard.report_error(kind, exc)
                return default

        return hook  # type: ignore[return-value]

    return decorate


# --- propagation -------------------------------------------------------------------------------
#: Where a message payload (Socket.IO event data, an AIECS WebSocket JSON message) carries its headers.
MESSAGE_CARRIER_KEY = "_trace"


def embedded_carrier(data: Any) -> dict[str, Any] | None:
    """The trace headers a message dict carries: under :data:`MESSAGE_CARRIER_KEY`, or at its top level."""
    if type(data) is dict:
        sub = data.get(MESSAGE_CARRIER_KEY)
        if type(sub) is dict:
            return sub
        if "traceparent" in data or "uber-trace-id" in data:
            return data
    return None


def span_context_fields(span: Span, formats: Iterable[str]) -> Mapping[str, str]:
    """The headers ``formats`` (``"tracecontext"``, ``"jaeger"``) write for ``span``'s context alone.

    No baggage: e.g. the ``traceresponse`` a server returns to its caller.
    """
    sc = span.otel_span.get_span_context()
    written: dict[str, str] = {}
    inject_fields(sc.trace_id, sc.span_id, bool(sc.trace_flags & 1), False, {}, None, written, tuple(formats))
    return written
