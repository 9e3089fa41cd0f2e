"""The span engine: start spans, resolve their parents, make them current.

:class:`SpanEngine` is the layer between OpenTelemetry and :class:`~aiecs_tracing.core.manager.TracingManager`
(which is one): every span - the seed API, the decorators, the integrations (through
:mod:`aiecs_tracing.core.instrumentation`) - starts in :meth:`SpanEngine.start_fast`, which
takes a light span (:mod:`aiecs_tracing.core.light`) when the provider allows it and the
SDK's own span otherwise, with the same ids, sampler, processors and export either way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanKind

from ..version import __version__
from . import guard
from .light import LightSource, start_light
from .sdk_internals import WRAPPER_KEY, attach_span, current_context, reset_current
from .span import Span, SpanContext

logger = logging.getLogger("aiecs_tracing")

#: The instrumentation scope of every span the engine starts.
SCOPE = InstrumentationScope("aiecs_tracing", __version__)


class SpanEngine:
    """Spans on one provider; :class:`TracingManager` adds configuration, propagation and export."""

    provider: TracerProvider | None
    tracer: trace.Tracer | None
    config: Any

    def __init__(self) -> None:
        self.provider = None
        self.tracer = None
        self._active = False
        self._light_source: LightSource | Literal[False] | None = None
        self._spans_started = 0
        self._spans_finished = 0

    @property
    def enabled(self) -> bool:
        """True while spans are recorded (tracing enabled, set up, not closed)."""
        return self._active

    @property
    def light_spans(self) -> bool:
        """True once spans take the light path; False before the first span, or on the SDK's own spans."""
        source = self._light_source
        return source is not None and source is not False

    def note_finished(self) -> None:
        """Counted by each span as it finishes (``get_tracer_info()["spans_finished"]``)."""
        self._spans_finished += 1

    def _light_spans_possible(self) -> bool:
        """Whether the sampler is the ``const 1`` one: decided inline by light spans."""
        return False

    # --- parents ----------------------------------------------------------------------
    def _parent_context(self, parent: Any) -> tuple[Context | None, dict[str, str], bool]:
        """(OpenTelemetry context to start in, baggage to inherit, debug flag) for ``parent``."""
        if parent is None:
            wrapper: Span | None = current_context().get(WRAPPER_KEY)  # type: ignore[assignment]  # set by attach
            if wrapper is not None:
                return None, dict(wrapper.baggage), wrapper.debug
            return None, {}, False
        if isinstance(parent, Span):
            return trace.set_span_in_context(parent.otel_span, Context()), dict(parent.baggage), parent.debug
        if isinstance(parent, SpanContext):
            span = NonRecordingSpan(parent.to_otel())
            return trace.set_span_in_context(span, Context()), dict(parent.baggage), parent.debug
        if isinstance(parent, trace.Span):
            return trace.set_span_in_context(parent, Context()), {}, False
        if isinstance(parent, trace.SpanContext):
            return trace.set_span_in_context(NonRecordingSpan(parent), Context()), {}, False
        if isinstance(parent, Context):
            wrapper = parent.get(WRAPPER_KEY)  # type: ignore[assignment]  # our Span, set by attach
            return parent, (dict(wrapper.baggage) if wrapper else {}), (wrapper.debug if wrapper else False)
        trace_id, span_id = getattr(parent, "trace_id", None), getattr(parent, "span_id", None)
        if isinstance(trace_id, int) and isinstance(span_id, int) and trace_id and span_id:
            # jaeger-client / OpenTracing span contexts, or spans exposing ``.context``
            flags = getattr(parent, "flags", 1)
            sc = SpanContext(trace_id, span_id, bool(flags & 1), bool(flags & 2), dict(getattr(parent, "baggage", {}) or {}))
            return self._parent_context(sc)
        inner = getattr(parent, "context", None)
        if inner is not None and inner is not parent:
            return self._parent_context(inner)
        logger.debug("start_span: parent of type %s not understood; using the current span", type(parent).__name__)
        return self._parent_context(None)

    # --- starting spans ---------------------------------------------------------------
    def start_sdk(
        self,
        operation_name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: Any = None,
        start_time: int | None = None,
        links: Any = None,
    ) -> Span:
        """An SDK span (start times and links need it); ``attributes`` already attribute-safe. Raises."""
        ctx, baggage, debug = self._parent_context(parent)
        otel_span = self.tracer.start_span(  # type: ignore[union-attr]
            operation_name, context=ctx, kind=kind, attributes=attributes, start_time=start_time, links=links
        )
        self._spans_started += 1
        return Span(otel_span, self, operation_name, baggage, debug)

    def _source(self) -> LightSource | Literal[False]:
        source = self._light_source
        if source is None:
            try:
                source = LightSource(self.provider, SCOPE, self._light_spans_possible())  # type: ignore[arg-type]
            except Exception as exc:  # another provider: the SDK's spans from now on
                logger.debug("light spans unavailable (%s); using the SDK's spans", exc)
                source = False
            self._light_source = source
        return source

    def start_fast(
        self, operation_name: str, attributes: dict[str, Any], kind: SpanKind, parent_span: Any = None
    ) -> Span:
        """The one path of every span; ``attributes`` (plain values) is kept by the span. Raises.

        ``parent_span``: ``None`` for the current span, else a span or context (ours,
        OpenTelemetry's, jaeger-client's) or an OpenTelemetry ``Context`` (empty: a new trace).
        """
        source = self._light_source or self._source()
        if source is False:
            return self.start_sdk(operation_name, attributes, kind, parent_span)
        ctx, baggage, debug = self._parent_context(parent_span)
        if ctx is None:
            ctx = current_context()
        parent = trace.get_current_span(ctx).get_span_context()
        light = start_light(source, operation_name, kind, attributes, ctx, parent if parent.is_valid else None)
        self._spans_started += 1
        return Span(light, self, operation_name, baggage, debug)

    def start_from_remote(
        self, name: str, attributes: dict[str, Any], kind: SpanKind, remote: SpanContext | None
    ) -> Span:
        """A server span under ``remote`` (extracted from headers) or, if ``None``, a new trace. Raises.

        Never the current span. Skips the generic parent resolution (a ``Context`` and a
        ``NonRecordingSpan`` built only for the sampler to take apart again); the span, its
        baggage and debug flag, and the counters are those :meth:`start_fast` gives.
        """
        source = self._light_source or self._source()
        if source is False:
            return self.start_sdk(name, attributes, kind, remote if remote is not None else Context())
        if remote is None:
            parent, baggage, debug = None, {}, False
        else:
            parent = remote.to_otel()
            baggage, debug = dict(remote.baggage), remote.debug
            if not parent.is_valid:
                parent = None
        light = start_light(source, name, kind, attributes, None, parent)
        self._spans_started += 1
        return Span(light, self, name, baggage, debug)

    def start_light_span(
        self,
        operation_name: str,
        attributes: dict[str, Any],
        kind: SpanKind = SpanKind.INTERNAL,
        parent_span: Any = None,
    ) -> Span | None:
        """:meth:`start_fast` for callers outside a guard: ``None`` when off or on failure (reported)."""
        if not self._active:
            return None
        try:
            return self.start_fast(operation_name, attributes, kind, parent_span)
        except Exception as exc:
            guard.report_error("start_light_span", exc)
            return None

    # --- the current span -------------------------------------------------------------
    def get_active_span(self) -> Span | None:
        """The current span as our facade (wrapping a foreign OpenTelemetry span if needed)."""
        if not self._active:
            return None
        current = current_context()
        otel_span = trace.get_current_span(current)
        if not otel_span.get_span_context().is_valid:
            return None
        wrapper: Span | None = current.get(WRAPPER_KEY)  # type: ignore[assignment]  # our Span, set by attach
        if wrapper is not None and wrapper.otel_span is otel_span:
            return wrapper
        return Span(otel_span, self, getattr(otel_span, "name", ""))

    def attach(self, span: Span | trace.Span) -> object:
        """Make ``span`` current until :meth:`detach` is called with the returned token."""
        if type(span) is not Span and not isinstance(span, Span):
            span = Span(span, self, getattr(span, "name", ""))
        return attach_span(span.otel_span, span)

    def detach(self, token: object) -> None:
        """Undo :meth:`attach`; harmless with a token from another context."""
        try:
            reset_current(token)
        except Exception:  # noqa: BLE001 - not a guard: a token from another context (a generator finalised elsewhere)
            pass

    @contextmanager
    def activate(self, span: Span | None) -> Iterator[Span | None]:
        """Make ``span`` current inside the block (it is not finished on exit)."""
        if span is None or not self._active:
            yield span
            return
        token = self.attach(span)
        try:
            yield span
        finally:
            self.detach(token)
