"""Light spans (the integrations' hot-path span): same wire result as a regular span."""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from aiecs_tracing.core.light import LightSpan
from tests.wire import make_manager


def test_light_span_is_a_child_with_headers_and_kind(sink):
    t = make_manager(sink, "leafy")
    with t.span("caller") as caller:
        leaf = t.start_light_span("send task.x", {"messaging.system": "celery", "n": 3}, SpanKind.PRODUCER)
        assert isinstance(leaf.otel_span, LightSpan)
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


def test_light_failure_records_the_exception(sink):
    t = make_manager(sink, "leafy")
    leaf = t.start_light_span("send broken", {}, SpanKind.PRODUCER)
    leaf.record_exception(ConnectionError("broker down"))
    leaf.finish()
    t.flush()
    (wire,) = sink.wait_for(1)
    assert wire.is_error and wire.tags["error.kind"] == "ConnectionError"
    t.close_tracer()


def test_light_span_inherits_baggage(sink):
    t = make_manager(sink, "leafy")
    with t.span("caller") as caller:
        caller.set_baggage_item("tenant", "acme")
        leaf = t.start_light_span("send with baggage", {})
        headers: dict[str, str] = {}
        t.inject_span_context(leaf, headers)
        leaf.finish()
    assert headers["uberctx-tenant"] == "acme"
    t.close_tracer()


def test_unsampled_light_span_is_not_exported(sink):
    t = make_manager(sink, "leafy", sampler_type="const", sampler_param=0)
    leaf = t.start_light_span("send dropped", {})
    headers: dict[str, str] = {}
    t.inject_span_context(leaf, headers)
    leaf.finish()
    t.flush()
    assert headers["traceparent"].endswith("-00")
    assert sink.wait_for(1, timeout=0.5) == []
    t.close_tracer()


def test_light_span_can_be_current_and_parent_regular_spans(sink):
    t = make_manager(sink, "light")
    parent_ctx = t.extract_span_context({"uber-trace-id": "abc:def:0:1"})
    server = t.start_light_span("GET /x", {"http.request.method": "GET"}, SpanKind.SERVER, parent_ctx)
    with t.activate(server):
        with t.span("inside") as inside:
            t.get_active_span().set_tag("k", "v")
        t.get_active_span().set_tag("handler.tag", 1)
    server.set_tag("late", True)
    server.finish()
    t.flush()
    spans = {s.operation: s for s in sink.wait_for(2)}
    assert spans["GET /x"].trace_id == 0xABC and spans["GET /x"].parent_id == 0xDEF
    assert spans["GET /x"].kind == "server" and spans["GET /x"].tags["handler.tag"] == 1
    assert spans["inside"].parent_id == spans["GET /x"].span_id and spans["inside"].tags["k"] == "v"
    assert inside.context.trace_id == 0xABC
    t.close_tracer()


def test_light_span_context_equals_the_real_constructors(sink):
    """The light path builds SpanContext without its range checks: the result must be identical."""
    from opentelemetry.trace import SpanContext

    t = make_manager(sink, "light-context")
    root = t.start_light_span("root", {}, SpanKind.SERVER)
    child = t.start_light_span("child", {}, SpanKind.CLIENT, root)
    for span in (root, child):
        ctx = span._otel.get_span_context()
        assert type(ctx) is SpanContext
        assert ctx == SpanContext(ctx.trace_id, ctx.span_id, False, ctx.trace_flags, ctx.trace_state)
        assert ctx.is_valid and not ctx.is_remote and ctx.trace_flags.sampled
    assert child._otel.get_span_context().trace_id == root._otel.get_span_context().trace_id
    t.close_tracer()
