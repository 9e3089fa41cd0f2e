"""The jaeger-client style Span API at its edges, as the exported span shows it.

Code written against jaeger-client renames spans, tags them after the fact, finishes them
twice, records exceptions that cannot even print themselves; each of these must give the
span Jaeger would have shown, and never raise into the caller.
"""

from __future__ import annotations

import pytest

from aiecs_tracing import NoopSpan, SpanContext, TracingManager
from tests.wire import make_manager, settled


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


@pytest.fixture
def tracing(sink) -> TracingManager:
    return make_manager(sink, "span-api")  # closed after the test by tests/conftest.py


def test_rename_then_finish_twice_exports_one_span_under_the_new_name(sink, tracing) -> None:
    span = tracing.start_span("draft")
    assert span.tracer is tracing and span.is_recording()
    span.set_operation_name("checkout")
    span.set_tags(None)  # nothing to add
    span.set_tags({"cart.items": 3})
    span.finish()
    assert not span.is_recording()
    span.set_tag("late", "ignored")  # after finish: dropped, as jaeger-client did
    span.record_exception(ValueError("too late"))
    span.set_status_error("too late")
    span.finish()
    (exported,) = settled(sink, tracing)
    assert exported.operation == "checkout" and exported.tags["cart.items"] == 3
    assert "late" not in exported.tags and not exported.is_error


def test_error_and_kind_tags_in_the_opentracing_way(sink, tracing) -> None:
    with tracing.span("call billing") as span:
        span.set_tag("span.kind", "client")
        span.set_tag("error", "true")  # a string, as OpenTracing code often sets it
    (exported,) = settled(sink, tracing)
    assert exported.tags["error"] in (True, "true")  # what Jaeger UI reads as an error
    assert exported.tags["span.kind"] == "client"


def test_an_exception_that_cannot_print_itself_is_still_recorded(sink, tracing) -> None:
    span = tracing.start_span("parse")
    span.record_exception(Unprintable())
    span.finish()
    (exported,) = settled(sink, tracing)
    assert exported.is_error and exported.tags["error.kind"] == "Unprintable"
    assert any("<unprintable Unprintable>" in str(log) for log in exported.logs)


def test_set_status_error_without_a_description(sink, tracing) -> None:
    span = tracing.start_span("job")
    span.set_status_error(None)
    span.finish()
    (exported,) = settled(sink, tracing)
    assert exported.is_error


def test_a_disabled_manager_hands_out_noop_spans_that_accept_everything(sink) -> None:
    off = TracingManager("off", enable_tracing=False, set_global_provider=False, set_default_manager=False)
    with off.span("anything") as span:
        assert isinstance(span, NoopSpan)
        span.set_tag("k", "v").log_kv({"event": "x"}).set_baggage_item("b", "1")
        span.record_exception(ValueError("ignored"))
    span.finish()
    assert span.finished and not span.is_recording()
    assert sink.spans == []


def test_span_context_flags_as_jaeger_client_read_them() -> None:
    debug = SpanContext(1, 2, sampled=True, debug=True)
    assert debug.is_sampled() and debug.is_debug() and debug.flags == 3
    dropped = SpanContext(1, 2, sampled=False)
    assert not dropped.is_sampled() and not dropped.is_debug() and dropped.flags == 0


def test_a_span_finished_after_close_is_counted_as_dropped_not_sent(sink, tracing) -> None:
    """A request still running when the service shuts down: its span cannot be sent any more,
    and the count says so (get_tracer_info()["spans_dropped"])."""
    straggler = tracing.start_span("slow request")
    tracing.close_tracer()
    dropped_at_close = tracing.get_tracer_info()["spans_dropped"]
    straggler.finish()
    info = tracing.get_tracer_info()
    assert info["spans_dropped"] == dropped_at_close + 1 and info["spans_finished"] == 1
    assert info["spans_exported"] == 0 and sink.spans == []
