"""Light spans: the integrations' hot-path span, without the SDK ``Span`` machinery.

Why: on a request or a task publish, the SDK's mutable ``Span`` (locks, bounded
containers re-validating attributes that are plain already, start-time processor calls) is
most of tracing's cost. A light span uses the manager's own provider pieces - sampler, id
generator, resource, span processors, instrumentation scope - and hands the processors the
same ``ReadableSpan`` the SDK builds at ``end()``. It is a complete
``opentelemetry.trace.Span``: it can be current, so children (decorators, httpx, any
OpenTelemetry instrumentation) parent to it, and ``tracing.get_active_span().set_tag()``
lands on it. Processors' ``on_start`` is not called for it (the core's processor does
nothing there). Where the provider does not have the expected shape, the manager falls
back to a regular span, so behaviour never depends on which path was taken.

Integrations reach it through ``TracingManager.start_light_span``; nothing else touches
the SDK's internals.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from .manager import TracingManager

_MAX_ATTRIBUTES = 128  # the SDK's default span attribute limit
_MAX_EVENTS = 128
_UNSET_STATUS = Status(StatusCode.UNSET)
_FLAGS = (TraceFlags(TraceFlags.DEFAULT), TraceFlags(TraceFlags.SAMPLED))
_PLAIN = (str, bool, int, float)


class LightSource:
    """The provider pieces a light span needs, looked up once per manager."""

    __slots__ = ("processor", "resource", "scope", "sampler", "ids")

    def __init__(self, manager: TracingManager) -> None:
        provider = manager.provider
        self.processor = provider._active_span_processor  # type: ignore[union-attr]
        self.resource = provider.resource  # type: ignore[union-attr]
        self.scope = manager.tracer._instrumentation_scope  # type: ignore[union-attr]
        self.sampler = provider.sampler  # type: ignore[union-attr]
        self.ids = provider.id_generator  # type: ignore[union-attr]


class LightSpan(trace.Span):
    """A recording span whose finished form is the SDK's own ``ReadableSpan``."""

    __slots__ = ("_name", "_kind", "_context", "_parent", "_attributes", "_events", "_status", "_start",
                 "_end", "_source")

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
        self._events: list[Event] = []
        self._status = _UNSET_STATUS
        self._source = source  # None: not sampled, nothing is recorded
        self._start = time_ns()
        self._end: int | None = None if source is not None else self._start

    @property
    def name(self) -> str:
        return self._name

    def get_span_context(self) -> trace.SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end is None:
            for key, value in attributes.items():
                self.set_attribute(key, value)

    def set_plain_attributes(self, attributes: dict[str, Any]) -> None:
        """Attributes already known to be plain values (the integrations' own): no checks."""
        if self._end is None and len(self._attributes) + len(attributes) <= _MAX_ATTRIBUTES:
            self._attributes.update(attributes)
        else:
            self.set_attributes(attributes)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end is not None or not key or not isinstance(key, str):
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
        if self._end is None and len(self._events) < _MAX_EVENTS:
            self._events.append(Event(name, attributes, timestamp))

    def add_link(self, context: trace.SpanContext, attributes: Any = None) -> None:
        pass  # links are given at start; light spans take none

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        new = status if isinstance(status, Status) else Status(status, description)
        if new.status_code is not StatusCode.UNSET:
            self._status = new

    def record_exception(
        self, exception: BaseException, attributes: Any = None, timestamp: int | None = None, escaped: bool = False
    ) -> None:
        event = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            ),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event.update(attributes)
        self.add_event("exception", event, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end = end_time if end_time is not None else time_ns()
        source = self._source
        source.processor.on_end(  # type: ignore[union-attr]
            ReadableSpan(
                self._name,
                self._context,
                self._parent,
                source.resource,  # type: ignore[union-attr]
                self._attributes,
                tuple(self._events) if self._events else (),
                (),
                self._kind,
                None,
                self._status,
                self._start,
                end,
                source.scope,  # type: ignore[union-attr]
            )
        )


def start_light(
    source: LightSource,
    name: str,
    kind: SpanKind,
    attributes: dict[str, Any],
    parent_context: Context,
    parent: trace.SpanContext | None,
) -> LightSpan:
    """A light span under ``parent`` (already resolved from ``parent_context``), or a new trace.

    ``attributes`` must hold plain values; the span keeps (and may extend) the dict.
    """
    trace_id = parent.trace_id if parent is not None else source.ids.generate_trace_id()
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
