"""Leaf spans (the cheap publish span): same wire result as a regular span."""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from aiecs_tracing import Span
from aiecs_tracing.core.leaf import LeafSpan
from tests.wire import make_manager


def test_leaf_span_is_a_child_with_headers_and_kind(sink):
    t = make_manager(sink, "leafy")
    with t.span("caller") as caller:
        leaf = t.start_leaf_span("send task.x", {"messaging.system": "celery", "n": 3})
        assert isinstance(leaf, LeafSpan)
        headers: dict[str, str] = {}
        t.inject_span_context(leaf, headers)
        leaf.finish()
        leaf.finish()
    t.flush()
    spans = {s.operation: s for s in sink.wait_for(2)}
    wire = spans["send task.x"]
    assert wire.parent_id == caller.context.span_id and wire.trace_id == caller.context.trace_id
    assert wire.kind == "producer" and wire.tags["n"] == 3
    assert headers["traceparent"] == f"00-{wire.trace_id:032x}-{wire.span_id:016x}-01"
    assert headers["uber-trace-id"] == f"{wire.trace_id:x}:{wire.span_id:x}:0:1"
    assert t.get_tracer_info()["spans_finished"] == 2
    t.close_tracer()


def test_leaf_failure_records_the_exception(sink):
    t = make_manager(sink, "leafy")
    leaf = t.start_leaf_span("send broken", {}, SpanKind.PRODUCER)
    leaf.record_exception(ConnectionError("broker down"))
    leaf.finish()
    t.flush()
    (wire,) = sink.wait_for(1)
    assert wire.is_error and wire.tags["error.kind"] == "ConnectionError"
    t.close_tracer()


def test_baggage_to_inherit_falls_back_to_a_regular_span(sink):
    t = make_manager(sink, "leafy")
    with t.span("caller") as caller:
        caller.set_baggage_item("tenant", "acme")
        leaf = t.start_leaf_span("send with baggage", {})
        assert type(leaf) is Span
        headers: dict[str, str] = {}
        t.inject_span_context(leaf, headers)
        leaf.finish()
    assert headers["uberctx-tenant"] == "acme"
    t.close_tracer()


def test_unsampled_leaf_is_not_exported(sink):
    t = make_manager(sink, "leafy", sampler_type="const", sampler_param=0)
    leaf = t.start_leaf_span("send dropped", {})
    headers: dict[str, str] = {}
    t.inject_span_context(leaf, headers)
    leaf.finish()
    t.flush()
    assert headers["traceparent"].endswith("-00")
    assert sink.wait_for(1, timeout=0.5) == []
    t.close_tracer()
