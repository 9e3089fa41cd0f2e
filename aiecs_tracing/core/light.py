"""Light spans: the hot-path span, without the SDK ``Span`` machinery, on public API only.

Why: on a request or a task publish, the SDK's mutable ``Span`` (locks, bounded containers
re-validating attributes that are plain already, start-time processor calls) is most of
tracing's cost. A light span uses the provider's own pieces - sampler, id generator,
resource, span processors - and at ``end()`` hands the processors a ``ReadableSpan`` made
with the SDK's public constructor. It is a complete ``opentelemetry.trace.Span``: it can be
current, so children (decorators, httpx, any OpenTelemetry instrumentation) parent to it,
and ``tracing.get_active_span().set_tag()`` lands on it. Processors' ``on_start`` is not
called for it (the core's processor does nothing there).

The span processors are known because the provider is an :class:`EngineProvider`, which
records each processor added to it; where a provider is not one (or anything else is
unexpected), the engine falls back to the SDK's own spans, so behaviour never depends on
which path was taken.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from .redaction import scrub_text
from .remote_sampling import JaegerRemoteSampler
from .sdk_internals import new_span_context, new_valid_span_context

MAX_ATTRIBUTES = 128  # the SDK's default span attribute limit
MAX_EVENTS = 128
_UNSET_STATUS = Status(StatusCode.UNSET)
_FLAGS = (TraceFlags(TraceFlags.DEFAULT), TraceFlags(TraceFlags.SAMPLED))
_PLAIN = (str, bool, int, float)
_ROOT = Context()


class EngineProvider(TracerProvider):
    """A ``TracerProvider`` that remembers its span processors, so light spans can call them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.span_processors: tuple[SpanProcessor, ...] = ()
        super().__init__(*args, **kwargs)

    def add_span_processor(self, span_processor: SpanProcessor) -> None:
        super().add_span_processor(span_processor)
        self.span_processors = (*self.span_processors, span_processor)


class LightSource:
    """The provider pieces a light span needs, looked up once per manager.

    ``always_on``: the sampler is ``ParentBased(ALWAYS_ON)`` with the default delegates (the
    manager built it from a ``const 1`` configuration): "sampled unless the parent is not", the
    parent's trace state kept, computed inline without a ``Context``, a ``SamplingResult`` and
    five calls per span.
    """

    __slots__ = ("provider", "resource", "scope", "sampler", "ids", "always_on", "remote", "new_context")

    def __init__(self, provider: TracerProvider, scope: InstrumentationScope, always_on: bool) -> None:
        if not isinstance(provider, EngineProvider):
            raise TypeError(f"light spans need an EngineProvider, not {type(provider).__name__}")
        self.provider = provider  # its span_processors are read at each end (a tuple, replaced on add)
        self.resource = provider.resource
        self.scope = scope
        self.sampler = sampler = provider.sampler
        self.ids = provider.id_generator
        # the SDK's random generator never returns an invalid id: no range check needed per span
        self.new_context = new_valid_span_context if type(self.ids) is RandomIdGenerator else new_span_context
        self.always_on = always_on
        # Remote sampling is parent-based too: children follow the parent's flag as above, only
        # roots ask its strategy (sample_root), again without a Context per span.
        self.remote = sampler if type(sampler) is JaegerRemoteSampler else None


class LightSpan(trace.Span):
    """A recording span whose ``end()`` hands the processors one public ``ReadableSpan``."""

    __slots__ = (
        "_name", "_kind", "_context", "_parent", "_attributes", "_status", "_source",
        "_start_time", "_end_time", "_events",
    )

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
        self._events: list[Event] | None = None  # most spans have none
        self._start_time = time_ns()
        self._end_time: int | None = None if source is not None else self._start_time

    # ReadableSpan's read side, for code that inspects a live span
    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> SpanKind:
        return self._kind

    @property
    def context(self) -> trace.SpanContext:
        return self._context

    @property
    def parent(self) -> trace.SpanContext | None:
        return self._parent

    @property
    def attributes(self) -> Mapping[str, Any]:
        return self._attributes

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events or ())

    @property
    def status(self) -> Status:
        return self._status

    @property
    def start_time(self) -> int:
        return self._start_time

    @property
    def end_time(self) -> int | None:
        return self._end_time

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
        if self._end_time is None and len(self._attributes) + len(attributes) <= MAX_ATTRIBUTES:
            self._attributes.update(attributes)
        else:
            self.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end_time is not None or not key or not isinstance(key, str):
            return
        attributes = self._attributes
        if len(attributes) >= MAX_ATTRIBUTES and key not in attributes:
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
        if self._end_time is None:
            events = self._events
            if events is None:
                events = self._events = []
            if len(events) < MAX_EVENTS:
                events.append(Event(name, attributes, timestamp))

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
        end = self._end_time = end_time if end_time is not None else time_ns()
        source: LightSource = self._source  # type: ignore[assignment]  # set: the span records
        readable = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=source.resource,
            attributes=self._attributes,
            events=self._events or (),
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=end,
            instrumentation_scope=source.scope,
        )
        for processor in source.provider.span_processors:
            processor.on_end(readable)


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
    if source.always_on or remote is not None:
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
        _FLAGS[1 if decision.decision.is_sampled() else 0],  # type: ignore[no-untyped-call]  # unannotated in the SDK
        decision.trace_state,
    )
    return LightSpan(name, kind, context, parent, attributes, source if decision.decision.is_recording() else None)  # type: ignore[no-untyped-call]
