"""TracingManager.inject_span_context with what else callers hold: a SpanContext, an OpenTelemetry span.

A service that only kept ``span.context`` (or got one from ``extract_span_context``), or one
that uses OpenTelemetry's API directly, must be able to propagate it: the headers written
are the ones a downstream ``extract_span_context`` turns back into the same trace and span.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, TraceFlags, TraceState
from opentelemetry.trace import SpanContext as OTelSpanContext

from aiecs_tracing import SpanContext, TracingManager

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7


def memory_manager(service: str) -> TracingManager:
    """A manager of the test's own (closed after the test by tests/conftest.py)."""
    return TracingManager(service, exporter="memory", set_global_provider=False, set_default_manager=False)


@pytest.fixture
def tracing() -> TracingManager:
    return memory_manager("inject")


def test_a_span_context_is_injected_in_both_formats_with_its_baggage(tracing: TracingManager) -> None:
    context = SpanContext(TRACE, SPAN, sampled=True, baggage={"tenant": "acme corp"})
    carrier: dict[str, str] = {}
    tracing.inject_span_context(context, carrier)
    assert carrier["traceparent"] == f"00-{TRACE:032x}-{SPAN:016x}-01"
    assert carrier["uber-trace-id"] == f"{TRACE:x}:{SPAN:x}:0:1"
    assert carrier["uberctx-tenant"] == "acme%20corp"
    back = tracing.extract_span_context(carrier)
    assert (back.trace_id, back.span_id, back.sampled) == (TRACE, SPAN, True)
    assert back.baggage == {"tenant": "acme corp"}


def test_an_extracted_context_is_forwarded_unchanged(tracing: TracingManager) -> None:
    """A proxy that does not trace itself passes its caller's context on, debug flag included."""
    incoming = tracing.extract_span_context({"uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:3"})
    assert incoming is not None and incoming.debug
    outgoing: dict[str, str] = {}
    tracing.inject_span_context(incoming, outgoing)
    assert outgoing["uber-trace-id"] == f"{TRACE:x}:{SPAN:x}:0:3"
    assert outgoing["traceparent"] == f"00-{TRACE:032x}-{SPAN:016x}-01"


def test_an_unsampled_span_context_says_so_downstream(tracing: TracingManager) -> None:
    carrier: dict[str, str] = {}
    tracing.inject_span_context(SpanContext(TRACE, SPAN, sampled=False), carrier)
    assert carrier["traceparent"].endswith("-00")
    assert carrier["uber-trace-id"].endswith(":0")
    assert tracing.extract_span_context(carrier).sampled is False


def test_an_opentelemetry_span_is_injected_with_its_trace_state(tracing: TracingManager) -> None:
    otel = NonRecordingSpan(
        OTelSpanContext(
            TRACE, SPAN, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED),
            trace_state=TraceState([("vendor", "v1")]),
        )
    )
    carrier: dict[str, str] = {}
    tracing.inject_span_context(otel, carrier)
    assert carrier["traceparent"] == f"00-{TRACE:032x}-{SPAN:016x}-01"
    assert carrier["tracestate"] == "vendor=v1"
    assert carrier["uber-trace-id"] == f"{TRACE:x}:{SPAN:x}:0:1"


def test_a_span_started_through_the_opentelemetry_api_continues_in_the_next_service(tracing: TracingManager) -> None:
    """The manager's tracer used directly (tracing.tracer): its span's ids travel as they are."""
    otel_tracer = tracing.tracer
    with otel_tracer.start_as_current_span("otel-api work") as otel_span:
        carrier: dict[str, str] = {}
        tracing.inject_span_context(otel_span, carrier)
        ids = otel_span.get_span_context()
    assert isinstance(otel_span, trace.Span)
    downstream = memory_manager("downstream")
    parent = downstream.extract_span_context(carrier)
    child = downstream.start_span("handle", parent_span=parent)
    assert child.context.trace_id == ids.trace_id
    child.finish()
    assert (parent.trace_id, parent.span_id) == (ids.trace_id, ids.span_id)


def test_what_is_not_a_span_leaves_the_carrier_alone(tracing: TracingManager) -> None:
    for not_a_span in (None, "00-abc-def-01", {"traceparent": "x"}, 42):
        carrier: dict[str, str] = {"x-request-id": "r1"}
        tracing.inject_span_context(not_a_span, carrier)
        assert carrier == {"x-request-id": "r1"}
