"""OpenTracing on a manager's span engine: ``tracing.opentracing_tracer``.

Code written for jaeger-client keeps calling OpenTracing (``opentracing.global_tracer()
.start_active_span(...)``, ``tracer.inject(span.context, Format.TEXT_MAP, carrier)``, scope
managers); the spans it makes are the manager's own (same exporter, sampler, redaction), and
they share OpenTelemetry's current context both ways:

- activating an OpenTracing span makes it the current OpenTelemetry span, so decorators,
  httpx, Celery and any OpenTelemetry instrumentation start their spans under it;
- a span made current elsewhere (the ASGI middleware's server span, ``tracing.span()``) is
  ``scope_manager.active.span``. Such a scope is a view: closing it does nothing.

Differences from jaeger-client, by design or because OpenTelemetry decides sampling when a
span starts: ``sampling.priority`` > 0 in ``start_span``'s tags forces a root span sampled
(and marks the context debug); set later, or on a child of an unsampled parent, it only marks
the context debug (downstream jaeger-client services then force-sample) and ``0`` cannot
un-sample a recording span. Trace ids are 128-bit. ``follows_from`` references become the
parent when there is no ``child_of`` (as jaeger-client did) and OpenTelemetry links (exported
as Jaeger ``FOLLOWS_FROM`` references) otherwise.

The tracer, its carriers and the global tracer are here; spans and scopes in ``ot_spans.py``.
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import opentracing
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Link
from opentracing import (
    Format,
    InvalidCarrierException,
    ReferenceType,
    SpanContextCorruptedException,
    UnsupportedFormatException,
)

from ..core import guard, lifecycle
from ..core.attributes import sanitize_tags
from ..core.manager import TracingManager
from ..core.propagation import TRACEPARENT, UBER_TRACE_ID, UBERCTX_PREFIX
from ..core.span import Span, SpanContext, to_span_kind
from .ot_spans import (
    ContextVarsScopeManager,
    NoopOpenTracingSpan,
    OpenTracingSpan,
    mark_priority,
    truncated_tags,
)

__all__ = ["OpenTracingTracer", "OpenTracingSpan", "ContextVarsScopeManager", "install_global", "restore_global"]

_TEXT_FORMATS = (Format.TEXT_MAP, Format.HTTP_HEADERS)
# jaeger-client's (and jaeger-client-go's) binary layout: trace id high/low, span id, parent id, flags, baggage count
_BINARY = struct.Struct(">QQQQBI")
_LEN = struct.Struct(">I")
_U64 = 0xFFFF_FFFF_FFFF_FFFF


class OpenTracingTracer(opentracing.Tracer):
    """An OpenTracing ``Tracer`` whose spans are ``manager``'s (``tracing.opentracing_tracer``).

    ``trace_id_header``/``baggage_header_prefix`` rename the Jaeger headers as jaeger-client's
    options did; W3C ``traceparent``/``baggage`` are written and read alongside (the
    manager's ``propagators``).
    """

    def __init__(
        self,
        manager: TracingManager,
        *,
        trace_id_header: str | None = None,
        baggage_header_prefix: str | None = None,
    ) -> None:
        super().__init__(scope_manager=ContextVarsScopeManager(manager))
        self.manager = manager
        self.trace_id_header = (trace_id_header or UBER_TRACE_ID).lower()
        self.baggage_header_prefix = (baggage_header_prefix or UBERCTX_PREFIX).lower()
        self._renamed = self.trace_id_header != UBER_TRACE_ID or self.baggage_header_prefix != UBERCTX_PREFIX
        self._forced: Any = None
        self._previous_global: tuple[Any, bool] | None = None

    @property
    def service_name(self) -> str:
        return self.manager.service_name

    # --- spans ------------------------------------------------------------------------
    def start_active_span(
        self,
        operation_name: str,
        child_of: Any = None,
        references: Any = None,
        tags: dict[str, Any] | None = None,
        start_time: float | None = None,
        ignore_active_span: bool = False,
        finish_on_close: bool = True,
    ) -> opentracing.Scope:
        span = self.start_span(operation_name, child_of, references, tags, start_time, ignore_active_span)
        return self._scope_manager.activate(span, finish_on_close)

    def start_span(
        self,
        operation_name: str | None = None,
        child_of: Any = None,
        references: Any = None,
        tags: dict[str, Any] | None = None,
        start_time: float | None = None,
        ignore_active_span: bool = False,
    ) -> OpenTracingSpan:
        manager = self.manager
        name = operation_name if type(operation_name) is str else ("" if operation_name is None else str(operation_name))
        if not manager.enabled:
            return NoopOpenTracingSpan(trace.INVALID_SPAN, manager, name)
        parent = child_of
        links = None
        if references:
            parent, links = _from_references(parent, references)
        if parent is None and ignore_active_span:
            parent = Context()  # a root, whatever is current
        cfg = manager.config
        if tags:
            tags = truncated_tags(tags, cfg.max_tag_value_length)
        if start_time is None and links is None:
            # the integrations' light span (same spans, a fraction of the SDK span's cost)
            attributes = sanitize_tags(tags, cfg.max_tag_value_length, cfg.secret_keys) if tags else {}
            kind = attributes.pop("span.kind", None) if attributes else None
            span = manager.start_light_span(name, attributes, to_span_kind(kind), parent)
        else:
            span = manager.start_span(name, parent, tags, start_time=start_time, links=links)
        if span is None:
            return NoopOpenTracingSpan(trace.INVALID_SPAN, manager, name)
        ot_span = OpenTracingSpan(span.otel_span, manager, name, span.baggage, span.debug)
        if tags:
            if "error" in tags:
                ot_span.set_tag("error", tags["error"])
            if "sampling.priority" in tags:
                ot_span = self._apply_priority(ot_span, tags, parent, start_time, links)
        return ot_span

    def _apply_priority(self, span: OpenTracingSpan, tags: dict[str, Any], parent: Any,
                        start_time: float | None, links: Any) -> OpenTracingSpan:
        """``sampling.priority`` > 0: debug, and a root the sampler dropped is started again, sampled."""
        mark_priority(span, tags["sampling.priority"])
        if not span.debug or span.otel_span.get_span_context().trace_flags.sampled:
            return span
        is_root = (parent is None and not trace.get_current_span().get_span_context().is_valid) or (
            isinstance(parent, Context) and not parent
        )
        if not is_root:
            return span
        manager = self.manager
        try:
            forced: Any = self._forced  # an SDK Tracer (its sampler is replaced)
            if forced is None:
                forced = copy.copy(manager.tracer)  # the same provider pieces, another sampler
                forced.sampler = ALWAYS_ON
                self._forced = forced
            cfg = manager.config
            attributes = sanitize_tags(tags, cfg.max_tag_value_length, cfg.secret_keys)
            kind = attributes.pop("span.kind", None)
            otel = forced.start_span(
                span.operation_name, context=Context(), kind=to_span_kind(kind), attributes=attributes,
                start_time=int(start_time * 1e9) if start_time is not None else None, links=links,
            )
        except Exception as exc:
            guard.report_error("opentracing sampling.priority", exc)
            return span
        return OpenTracingSpan(otel, manager, span.operation_name, span.baggage, True)

    # --- propagation ------------------------------------------------------------------
    def inject(self, span_context: Any, format: str, carrier: Any) -> None:
        if format in _TEXT_FORMATS:
            if not hasattr(carrier, "__setitem__"):
                raise InvalidCarrierException(f"carrier of type {type(carrier).__name__} is not a mapping")
            context = _context_of(span_context)
            if context is None:
                return
            if not self._renamed and format == Format.HTTP_HEADERS:
                self.manager.inject_span_context(context, carrier)
                return
            headers: dict[str, str] = {}
            self.manager.inject_span_context(context, headers)
            for key, value in headers.items():
                if key == UBER_TRACE_ID:
                    key = self.trace_id_header
                elif key.startswith(UBERCTX_PREFIX):
                    key = self.baggage_header_prefix + key[len(UBERCTX_PREFIX):]
                    if format == Format.TEXT_MAP:  # jaeger-client quotes baggage only in HTTP headers
                        value = context.baggage.get(key[len(self.baggage_header_prefix):], value)
                carrier[key] = value
        elif format == Format.BINARY:
            if not isinstance(carrier, bytearray):
                raise InvalidCarrierException("carrier for Format.BINARY must be a bytearray")
            context = _context_of(span_context)
            if context is None or not self.manager.enabled:
                return
            carrier += _BINARY.pack((context.trace_id >> 64) & _U64, context.trace_id & _U64,
                                    context.span_id & _U64, 0, context.flags, len(context.baggage))
            for key, value in context.baggage.items():
                for item in (str(key).encode("utf-8"), str(value).encode("utf-8")):
                    carrier += _LEN.pack(len(item))
                    carrier += item
        else:
            raise UnsupportedFormatException(f"format {format!r} is not supported")

    def extract(self, format: str, carrier: Any) -> SpanContext | None:
        """The caller's context; ``None`` without a trace header, SpanContextCorruptedException if it is malformed."""
        if format in _TEXT_FORMATS:
            if not isinstance(carrier, Mapping):
                raise InvalidCarrierException(f"carrier of type {type(carrier).__name__} is not a mapping")
            manager = self.manager
            if not manager.enabled:
                return None
            headers = self._standard_names(carrier) if self._renamed else carrier
            context = manager.extract_span_context(headers)
            if context is None and self._has_trace_header(headers):
                raise SpanContextCorruptedException("malformed trace header in carrier")
            return context
        if format == Format.BINARY:
            if not isinstance(carrier, (bytearray, bytes)):
                raise InvalidCarrierException("carrier for Format.BINARY must be a bytearray")
            if not carrier or not self.manager.enabled:
                return None
            return _from_binary(bytes(carrier))
        raise UnsupportedFormatException(f"format {format!r} is not supported")

    def _standard_names(self, carrier: Mapping[str, Any]) -> dict[str, Any]:
        headers: dict[str, Any] = {}
        prefix = self.baggage_header_prefix
        for key, value in carrier.items():
            name = key.lower() if isinstance(key, str) else key
            if name == self.trace_id_header:
                name = UBER_TRACE_ID
            elif isinstance(name, str) and name.startswith(prefix):
                name = UBERCTX_PREFIX + name[len(prefix):]
            elif name == UBER_TRACE_ID or (isinstance(name, str) and name.startswith(UBERCTX_PREFIX)):
                continue  # the default names are not ours when renamed
            headers[name] = value
        return headers

    def _has_trace_header(self, headers: Mapping[str, Any]) -> bool:
        formats = self.manager.config.propagators
        wanted = [h for h, f in ((TRACEPARENT, "tracecontext"), (UBER_TRACE_ID, "jaeger")) if f in formats]
        for key, value in headers.items():
            name = key.decode("latin-1") if isinstance(key, bytes) else key
            if isinstance(name, str) and name.lower() in wanted and value:
                return True
        return False

    # --- lifecycle --------------------------------------------------------------------
    def close(self) -> Future[None]:
        """jaeger-client's ``tracer.close()``: flush and shut the manager down; returns a done future."""
        self.manager.close_tracer()
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def __repr__(self) -> str:
        return f"<OpenTracingTracer on {self.manager!r}>"


def _context_of(span_context: Any) -> SpanContext | None:
    if isinstance(span_context, SpanContext):
        return span_context
    if isinstance(span_context, Span):
        return span_context.context
    trace_id, span_id = getattr(span_context, "trace_id", None), getattr(span_context, "span_id", None)
    if isinstance(trace_id, int) and isinstance(span_id, int) and trace_id and span_id:
        flags = getattr(span_context, "flags", 1) or 0
        return SpanContext(trace_id, span_id, bool(flags & 1), bool(flags & 2),
                           dict(getattr(span_context, "baggage", None) or {}))
    return None


def _from_references(parent: Any, references: Any) -> tuple[Any, list[Link] | None]:
    """jaeger-client's rule: the first child_of (else the first reference) is the parent; others are links."""
    if not isinstance(references, (list, tuple)):
        references = [references]
    refs = [r for r in references if r is not None and getattr(r, "referenced_context", None) is not None]
    if parent is None and refs:
        first = next((r for r in refs if r.type == ReferenceType.CHILD_OF), refs[0])
        parent = first.referenced_context
        refs = [r for r in refs if r is not first]
    links = []
    for ref in refs:
        context = _context_of(ref.referenced_context)
        if context is not None:
            links.append(Link(context.to_otel()))
    return parent, links or None


def _from_binary(data: bytes) -> SpanContext | None:
    try:
        high, low, span_id, _parent, flags, count = _BINARY.unpack_from(data, 0)
        offset = _BINARY.size
        baggage: dict[str, str] = {}
        for _ in range(count):
            items = []
            for _part in range(2):
                (length,) = _LEN.unpack_from(data, offset)
                offset += _LEN.size
                if offset + length > len(data):
                    raise ValueError("baggage item past the end of the carrier")
                items.append(data[offset:offset + length].decode("utf-8"))
                offset += length
            baggage[items[0]] = items[1]
    except (struct.error, ValueError) as exc:
        raise SpanContextCorruptedException(f"malformed binary span context: {exc}") from None
    trace_id = (high << 64) | low
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, bool(flags & 1), bool(flags & 2), baggage)


# --- the global tracer, as jaeger-client's Config set it ---------------------------------------
def install_global(manager: TracingManager, force: bool = False) -> bool:
    """Make ``manager``'s tracer ``opentracing.tracer``, unless another (not the no-op default) is set.

    ``force`` replaces whatever is there (jaeger-client's ``initialize_tracer``). What was
    there is put back by :func:`restore_global` (``close_tracer()`` calls it).
    """
    current = opentracing.tracer
    tracer = manager.opentracing_tracer
    if current is tracer or (not force and type(current) is not opentracing.Tracer):
        return False
    tracer._previous_global = (current, bool(getattr(opentracing, "is_tracer_registered", False)))
    opentracing.set_global_tracer(tracer)
    return True


def restore_global(manager: TracingManager) -> None:
    tracer = getattr(manager, "_opentracing_tracer", None)
    previous = getattr(tracer, "_previous_global", None)
    if previous is None:
        return
    tracer._previous_global = None  # type: ignore[union-attr]
    if opentracing.tracer is tracer:
        opentracing.tracer, opentracing.is_tracer_registered = previous


# What ``tracing.opentracing_tracer`` and the manager's start and close use (core imports nothing here).
lifecycle.register_opentracing(lifecycle.OpenTracingSupport(OpenTracingTracer, install_global, restore_global))
