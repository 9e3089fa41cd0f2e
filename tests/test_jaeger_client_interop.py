"""Interop with the real jaeger-client package, both ways: a service still on
jaeger-client and a service on aiecs-tracing join the same trace."""

from __future__ import annotations

import asyncio

import pytest
from jaeger_client import Tracer
from jaeger_client.reporter import InMemoryReporter
from jaeger_client.sampler import ConstSampler
from opentracing.propagation import Format

from aiecs_tracing import TracingManager


@pytest.fixture
def tracing():
    t = TracingManager("modern", exporter="memory", set_global_provider=False, set_default_manager=False)
    yield t
    t.close_tracer()


@pytest.fixture(params=[False, True], ids=["64bit", "128bit"])
def legacy(request):
    # jaeger-client's Tracer asks tornado for the current IOLoop; earlier asyncio.run()
    # calls leave the thread without an event loop.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    reporter = InMemoryReporter()
    tracer = Tracer("legacy", reporter=reporter, sampler=ConstSampler(True),
                    generate_128bit_trace_id=request.param)
    yield tracer, reporter
    tracer.close()
    asyncio.set_event_loop(None)
    loop.close()


def test_jaeger_client_to_us(tracing, legacy):
    tracer, _ = legacy
    legacy_span = tracer.start_span("legacy-call")
    legacy_span.set_baggage_item("tenant", "acme corp")
    headers: dict[str, str] = {}
    tracer.inject(legacy_span.context, Format.HTTP_HEADERS, headers)
    assert "uber-trace-id" in headers

    parent = tracing.extract_span_context(headers)
    child = tracing.start_span("modern-handler", parent_span=parent)
    assert child.context.trace_id == legacy_span.context.trace_id
    assert child.get_baggage_item("tenant") == "acme corp"
    child.finish()
    tracing.flush()
    (span,) = tracing.exporter.get_finished_spans()
    assert span.parent.span_id == legacy_span.context.span_id
    assert span.context.trace_id == legacy_span.context.trace_id
    legacy_span.finish()


def test_us_to_jaeger_client(tracing, legacy):
    tracer, reporter = legacy
    ours = tracing.start_span("modern-call")
    ours.set_baggage_item("request-id", "r-42")
    headers: dict[str, str] = {}
    tracing.inject_span_context(ours, headers)

    ctx = tracer.extract(Format.HTTP_HEADERS, headers)
    assert ctx.trace_id == ours.context.trace_id
    assert ctx.span_id == ours.context.span_id
    assert ctx.flags == 1  # sampled, not forced into debug (OpenTelemetry's own propagator writes 3)
    legacy_child = tracer.start_span("legacy-handler", child_of=ctx)
    assert legacy_child.get_baggage_item("request-id") == "r-42"
    legacy_child.finish()
    (reported,) = reporter.get_spans()
    assert reported.trace_id == ours.context.trace_id and reported.parent_id == ours.context.span_id
    assert not reported.is_debug()


def test_jaeger_client_context_object_as_parent(tracing, legacy):
    tracer, _ = legacy
    legacy_span = tracer.start_span("legacy-root")
    child = tracing.start_span("child-of-legacy-object", parent_span=legacy_span.context)
    assert child.context.trace_id == legacy_span.context.trace_id
    child.finish()
    tracing.flush()
    assert tracing.exporter.get_finished_spans()[0].parent.span_id == legacy_span.context.span_id


def test_round_trip_legacy_us_legacy(tracing, legacy):
    tracer, reporter = legacy
    root = tracer.start_span("legacy-root")
    h1: dict[str, str] = {}
    tracer.inject(root.context, Format.HTTP_HEADERS, h1)
    middle = tracing.start_span("middle", parent_span=tracing.extract_span_context(h1))
    h2: dict[str, str] = {}
    tracing.inject_span_context(middle, h2)
    leaf = tracer.start_span("legacy-leaf", child_of=tracer.extract(Format.HTTP_HEADERS, h2))
    leaf.finish()
    middle.finish()
    root.finish()
    spans = {s.operation_name: s for s in reporter.get_spans()}
    assert spans["legacy-leaf"].trace_id == spans["legacy-root"].trace_id
    assert spans["legacy-leaf"].parent_id == middle.context.span_id
