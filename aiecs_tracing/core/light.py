"""Light spans: the integrations' hot-path span, without the SDK ``Span`` machinery.

Why: on a request or a task publish, the SDK's mutable ``Span`` (locks, bounded
containers re-validating attributes that are plain already, start-time processor calls) is
most of tracing's cost. A light span uses the manager's own provider pieces - sampler, id
generator, resource, span processors, instrumentation scope - and, at ``end()``, hands the
processors itself: a ``ReadableSpan`` (like the SDK's ``Span``) whose fields no longer change
(no per-span copy). It is a complete
``opentelemetry.trace.Span``: it can be current, so children (decorators, httpx, any
OpenTelemetry instrumentation) parent to it, and ``tracing.get_active_span().set_tag()``
lands on it. Processors' ``on_start`` is not called for it (the core's processor does
nothing there). Where the provider does not have the expected shape, the manager falls
back to a regular span, so behaviour never depends on which path was taken.

Integrations reach it through ``TracingManager.start_light_span`` (or, for a server span
whose parent comes from headers, :func:`start_light_from_remote`); nothing else touches
the SDK's internals.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from .guard import report_error
from .redaction import scrub_text
from .remote_sampling import JaegerRemoteSampler
from .span import Span

if TYPE_CHECKING:
    from .manager import TracingManager
    from .span import SpanContext as OurSpanContext

_MAX_ATTRIBUTES = 128  # the SDK's default span attribute limit
_MAX_EVENTS = 128
_UNSET_STATUS = Status(StatusCode.UNSET)
_FLAGS = (TraceFlags(TraceFlags.DEFAULT), TraceFlags(TraceFlags.SAMPLED))
_PLAIN = (str, bool, int, float)
_ROOT = Context()


def _checked_span_context(trace_id: int, span_id: int, flags: TraceFlags, state: Any) -> trace.SpanContext:
    return trace.SpanContext(trace_id, span_id, False, flags, state)


def _verified_span_context_builder() -> Any:
    """``SpanContext`` without its Python ``__new__`` (a range check per id), when the layout allows.

    ``SpanContext`` is a tuple ``(trace_id, span_id, is_remote, trace_flags, trace_state, is_valid)``;
    a light span's ids come from the provider's id generator, which never returns an invalid id,
    so the check is redundant there. Verified once against the real constructor; on any difference
    the real constructor is used.
    """
    try:
        state = trace.TraceState([("k", "v")])
        real = trace.SpanContext(0xABC, 0xDEF, False, _FLAGS[1], state)
        fast = tuple.__new__(trace.SpanContext, (0xABC, 0xDEF, False, _FLAGS[1], state, True))
        if (
            tuple(real) == tuple(fast)
            and (fast.trace_id, fast.span_id, fast.is_remote, fast.is_valid) == (0xABC, 0xDEF, False, True)
            and fast.trace_flags is _FLAGS[1]
            and fast.trace_state is state
        ):
            return lambda trace_id, span_id, flags, state: tuple.__new__(
                trace.SpanContext, (trace_id, span_id, False, flags, state, True)
            )
    except Exception:  # noqa: BLE001 - any surprise means: use the real constructor
        pass
    return _checked_span_context


_fast_span_context = _verified_span_context_builder()


class LightSource:
    """The provider pieces a light span needs, looked up once per manager."""

    __slots__ = ("processor", "multi", "resource", "scope", "sampler", "ids", "parent_based_on", "remote", "new_context")

    def __init__(self, manager: TracingManager) -> None:
        provider = manager.provider
        self.processor = provider._active_span_processor  # type: ignore[union-attr]
        # the SDK's default fan-out: its (replaced, never mutated) tuple is read at each end
        self.multi = self.processor if type(self.processor) is SynchronousMultiSpanProcessor else None
        self.resource = provider.resource  # type: ignore[union-attr]
        self.scope = manager.tracer._instrumentation_scope  # type: ignore[union-attr]
        self.sampler = sampler = provider.sampler  # type: ignore[union-attr]
        self.ids = provider.id_generator  # type: ignore[union-attr]
        # the SDK's random generator never returns an invalid id: no range check needed per span
        self.new_context = _fast_span_context if type(self.ids) is RandomIdGenerator else _checked_span_context
        # ParentBased(ALWAYS_ON) with the default delegates (the "const 1" sampler): its decision is
        # "sampled unless the parent is not", its trace state the parent's; computed inline, the
        # same result without a Context, a SamplingResult and five calls per span.
        self.parent_based_on = (
            type(sampler) is ParentBased
            and getattr(sampler, "_root", None) is ALWAYS_ON
            and getattr(sampler, "_remote_parent_sampled", None) is ALWAYS_ON
            and getattr(sampler, "_local_parent_sampled", None) is ALWAYS_ON
            and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
            and getattr(sampler, "_local_parent_not_sampled", None) is ALWAYS_OFF
        )
        # Remote sampling is parent-based too: children follow the parent's flag as above, only
        # roots ask its strategy (sample_root), again without a Context per span.
        self.remote = sampler if type(sampler) is JaegerRemoteSampler else None


class LightSpan(trace.Span, ReadableSpan):
    """A recording span that, once ended, is itself the SDK ``ReadableSpan`` the processors get.

    As the SDK's own ``Span`` is: the ``ReadableSpan`` fields under their own names, frozen at
    ``end()`` (every mutator checks ``_end_time``), so no copy is built per span.
    """

    __slots__ = ("_source",)
    _links = ()
    _events: tuple[()] | list[Event] = ()  # a list once the first event is added (most spans have none)
    _instrumentation_info = None
    _resource = None  # type: ignore[assignment]  # set per span when recorded (the provider's), read by exporters
    _instrumentation_scope = None
    # narrower than ReadableSpan's Optional fields: always set in __init__ (annotations only)
    _context: trace.SpanContext
    _attributes: dict[str, Any]

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        context: trace.SpanContext,
        parent: trace.SpanContext | None,
        attributes: dict[str, Any],
        source: LightSource | None,
    ) -> None:
        self._name = name
        self._kind = kind
        self._context = context
        self._parent = parent
        self._attributes = attributes
        self._status = _UNSET_STATUS
        self._source = source  # None: not sampled, nothing is recorded
        self._start_time = time_ns()
        self._end_time: int | None = None if source is not None else self._start_time
        if source is not None:  # ReadableSpan's fields, from the provider's pieces
            self._resource = source.resource
            self._instrumentation_scope = source.scope

    @property
    def name(self) -> str:
        return self._name

    def get_span_context(self) -> trace.SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is None:
            for key, value in attributes.items():
                self.set_attribute(key, value)

    def set_plain_attributes(self, attributes: dict[str, Any]) -> None:
        """Attributes already known to be plain values (the integrations' own): no checks."""
        if self._end_time is None and len(self._attributes) + len(attributes) <= _MAX_ATTRIBUTES:
            self._attributes.update(attributes)
        else:
            self.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is not None or not key or not isinstance(key, str):
            return
        attributes = self._attributes
        if len(attributes) >= _MAX_ATTRIBUTES and key not in attributes:
            return
        if type(value) not in _PLAIN:
            if isinstance(value, bool):
                value = bool(value)
            elif isinstance(value, int):
                value = int(value)
            elif isinstance(value, float):
                value = float(value)
            elif isinstance(value, str):
                value = str(value)
            elif isinstance(value, (list, tuple)):
                value = tuple(v if isinstance(v, _PLAIN) else str(v) for v in value)
            elif value is None:
                return
            else:
                value = str(value)
        attributes[key] = value

    def add_event(self, name: str, attributes: Any = None, timestamp: int | None = None) -> None:
        if self._end_time is None and len(self._events) < _MAX_EVENTS:
            if type(self._events) is tuple:
                self._events = []
            self._events.append(Event(name, attributes, timestamp))  # type: ignore[union-attr]

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        pass  # links are given at start; light spans take none

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.description and scrub_text(new.description) != new.description:
            new = Status(new.status_code, scrub_text(new.description))
        if new.status_code is not StatusCode.UNSET:
            self._status = new

    def record_exception(
        self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False
    ) -> None:
        event = {  # an OpenTelemetry API caller's exception: scrubbed like the facade's (redaction.py)
            "exception.type": type(exception).__qualname__,
            "exception.message": scrub_text(str(exception)),
            "exception.stacktrace": scrub_text(
                "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
            ),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        self._end_time = end_time if end_time is not None else time_ns()
        source = self._source
        multi = source.multi  # type: ignore[union-attr]
        if multi is not None:
            for processor in multi._span_processors:
                processor.on_end(self)
        else:
            source.processor.on_end(self)  # type: ignore[union-attr]


def start_light(
    source: LightSource,
    name: str,
    kind: SpanKind,
    attributes: dict[str, Any],
    parent_context: Context | None,
    parent: trace.SpanContext | None,
) -> LightSpan:
    """A light span under ``parent`` (already resolved from ``parent_context``), or a new trace.

    ``attributes`` must hold plain values; the span keeps (and may extend) the dict.
    """
    remote = source.remote
    if source.parent_based_on or remote is not None:
        if parent is None:
            trace_id = source.ids.generate_trace_id()
            flags = _FLAGS[1]
            if remote is not None:
                decision = remote.sample_root(trace_id, name)
                if decision.decision.is_sampled():  # type: ignore[no-untyped-call]  # unannotated in the SDK
                    attributes.update(decision.attributes)  # sampler.type, sampler.param
                else:
                    flags = _FLAGS[0]
            context = source.new_context(trace_id, source.ids.generate_span_id(), flags, DEFAULT_TRACE_STATE)
            if flags is _FLAGS[0]:
                return LightSpan(name, kind, context, None, attributes, None)
        else:
            context = source.new_context(
                parent.trace_id,
                source.ids.generate_span_id(),
                _FLAGS[1 if parent.trace_flags & 1 else 0],
                parent.trace_state,
            )
            if not parent.trace_flags & 1:
                return LightSpan(name, kind, context, parent, attributes, None)
        return LightSpan(name, kind, context, parent, attributes, source)
    trace_id = parent.trace_id if parent is not None else source.ids.generate_trace_id()
    if parent_context is None:
        parent_context = trace.set_span_in_context(NonRecordingSpan(parent), Context()) if parent else _ROOT
    decision = source.sampler.should_sample(parent_context, trace_id, name, kind, attributes)
    if decision.attributes:
        attributes.update(decision.attributes)
    context = trace.SpanContext(
        trace_id,
        source.ids.generate_span_id(),
        False,
        _FLAGS[1 if decision.decision.is_sampled() else 0],
        decision.trace_state,
    )
    return LightSpan(name, kind, context, parent, attributes, source if decision.decision.is_recording() else None)


def start_light_from_remote(
    manager: TracingManager,
    name: str,
    attributes: dict[str, Any],
    kind: SpanKind,
    remote: OurSpanContext | None,
) -> Span | None:
    """``manager.start_light_span(name, attributes, kind, remote or Context())``, for server spans.

    A server span's parent is the caller's context extracted from headers, or nothing (a new
    trace): never the current span. This skips the generic parent resolution (OpenTelemetry
    ``Context`` and ``NonRecordingSpan`` built only for the sampler to take apart again); the
    span, its wrapper (baggage, debug flag) and the manager's counters are the same.
    """
    source = manager._light_source
    if type(source) is not LightSource or not manager._active:
        return manager.start_light_span(name, attributes, kind, remote if remote is not None else _ROOT)
    try:
        if remote is None:
            parent, baggage, debug = None, {}, False
        else:
            parent = remote.to_otel()
            baggage, debug = dict(remote.baggage), remote.debug
            if not parent.is_valid:
                parent = None
        light = start_light(source, name, kind, attributes, None, parent)
        manager._spans_started += 1
        return Span(light, manager, name, baggage, debug)
    except Exception as exc:
        report_error("start_light_span", exc)
        return None
