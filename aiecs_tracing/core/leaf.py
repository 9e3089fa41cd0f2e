"""Leaf spans: the cheap span for hot paths that never make it current (a message publish).

A span that is never current and has no children in this process does not need the SDK's
mutable ``Span`` (locks, bounded attribute containers, start-time processor calls). The
manager's own sampler, id generator, resource and span processors are used directly, and
the finished span goes to the processors as the ``ReadableSpan`` the SDK itself would
have built at ``end()``: about a third of a regular span's cost, paid on every Celery
publish. Whenever the shortcut does not apply (baggage or a debug flag to inherit, a
provider without the expected internals, a failure to record) a regular span is used, so
behaviour never depends on which path was taken.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags

from .. import __version__
from .span import Span

if TYPE_CHECKING:
    from .manager import TracingManager

_SCOPE = InstrumentationScope("aiecs_tracing", __version__)  # what the manager's tracer reports
_UNSET = Status(StatusCode.UNSET)
_FLAGS = (TraceFlags(TraceFlags.DEFAULT), TraceFlags(TraceFlags.SAMPLED))


class LeafSpan:
    """A started leaf span: inject it, then ``finish()`` or ``record_exception()`` + ``finish()``."""

    __slots__ = (
        "_manager",
        "name",
        "attributes",
        "kind",
        "otel_context",
        "parent",
        "parent_context",
        "recording",
        "start",
        "processor",
        "resource",
        "finished",
        "_promoted",
    )

    def __init__(self) -> None:
        self.finished = False
        self._promoted: Span | None = None

    def get_span_context(self) -> trace.SpanContext:
        return self.otel_context

    def record_exception(self, exc: BaseException) -> LeafSpan:
        """Rare: become a regular span (same identity start and parent) to carry the error."""
        if self.finished or not self.recording:
            return self
        if self._promoted is None:
            self._promoted = self._manager._start(
                self.name, self.attributes, self.kind, self.parent_context, self.start
            )
        if self._promoted is not None:
            self._promoted.record_exception(exc)
        return self

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self._promoted is not None:
            self._promoted.finish()
            return
        if not self.recording:
            return
        self.processor.on_end(
            ReadableSpan(
                self.name,
                self.otel_context,
                self.parent,
                self.resource,
                self.attributes,
                (),
                (),
                self.kind,
                None,
                _UNSET,
                self.start,
                time.time_ns(),
                _SCOPE,
            )
        )
        manager = self._manager
        manager._spans_started += 1
        manager._spans_finished += 1


def start_leaf(
    manager: TracingManager, name: str, attributes: dict[str, Any], kind: SpanKind, wrapper_key: str
) -> LeafSpan | Span | None:
    """A leaf span under the current span, or a regular span when the shortcut does not apply.

    ``attributes`` must already hold plain attribute values (str, bool, int, float).
    """
    provider = manager.provider
    processor = getattr(provider, "_active_span_processor", None)
    current: Context = otel_context.get_current()
    wrapper = current.get(wrapper_key)
    if processor is None or (wrapper is not None and (wrapper.baggage or wrapper.debug)):
        return manager._start(name, attributes, kind)
    parent = trace.get_current_span(current).get_span_context()
    ids = provider.id_generator
    if parent.is_valid:
        trace_id = parent.trace_id
    else:
        parent = None
        trace_id = ids.generate_trace_id()
    decision = provider.sampler.should_sample(current, trace_id, name, kind, attributes)
    leaf = LeafSpan()
    leaf._manager = manager
    leaf.name = name
    leaf.attributes = decision.attributes if decision.attributes is not None else attributes
    leaf.kind = kind
    leaf.otel_context = trace.SpanContext(
        trace_id,
        ids.generate_span_id(),
        False,
        _FLAGS[1 if decision.decision.is_sampled() else 0],
        decision.trace_state,
    )
    leaf.parent = parent
    leaf.parent_context = current
    leaf.recording = decision.decision.is_recording()
    leaf.processor = processor
    leaf.resource = provider.resource
    leaf.start = time.time_ns()
    return leaf
