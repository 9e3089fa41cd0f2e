"""W3C and Jaeger headers, both ways, and never an exception on bad input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiecs_tracing import SpanContext, TracingManager
from aiecs_tracing.core.propagation import extract_headers, inject_headers

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7


@pytest.fixture
def tracing():
    t = TracingManager("prop", exporter="memory", set_global_provider=False, set_default_manager=False)
    yield t
    t.close_tracer()


def test_inject_writes_both_formats_with_jaeger_flags_1(tracing):
    span = tracing.start_span("root")
    span.set_baggage_item("user", "a b/c")
    carrier: dict[str, str] = {}
    tracing.inject_span_context(span, carrier)
    ctx = span.context
    assert carrier["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
    assert carrier["uber-trace-id"] == f"{ctx.trace_id:x}:{ctx.span_id:x}:0:1"
    assert carrier["baggage"] == "user=a%20b%2Fc"
    assert carrier["uberctx-user"] == "a%20b%2Fc"


def test_unsampled_context_writes_flags_0():
    t = TracingManager("p0", exporter="memory", sampler_type="const", sampler_param=0,
                       set_global_provider=False, set_default_manager=False)
    span = t.start_span("dropped")
    carrier: dict[str, str] = {}
    t.inject_span_context(span, carrier)
    assert carrier["traceparent"].endswith("-00")
    assert carrier["uber-trace-id"].endswith(":0")
    t.close_tracer()


def test_debug_bit_only_propagated_when_incoming_was_debug(tracing):
    parent = tracing.extract_span_context({"uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:3"})
    assert parent.debug and parent.sampled
    child = tracing.start_span("child", parent_span=parent)
    carrier: dict[str, str] = {}
    tracing.inject_span_context(child, carrier)
    assert carrier["uber-trace-id"].endswith(":3")
    plain = tracing.start_span("plain")
    out: dict[str, str] = {}
    tracing.inject_span_context(plain, out)
    assert out["uber-trace-id"].endswith(":1")


def test_extract_w3c_first_case_insensitive(tracing):
    ctx = tracing.extract_span_context(
        {
            "TraceParent": f"00-{TRACE:032x}-{SPAN:016x}-01",
            "Uber-Trace-Id": "1:2:0:1",
            "Baggage": "a=1,b=two;prop=x",
            "UberCtx-c": "3",
        }
    )
    assert (ctx.trace_id, ctx.span_id, ctx.sampled) == (TRACE, SPAN, True)
    assert ctx.baggage == {"a": "1", "b": "two", "c": "3"}


def test_extract_jaeger_short_ids_and_url_encoded(tracing):
    ctx = tracing.extract_span_context({"uber-trace-id": "abc%3A1f%3A0%3A1"})
    assert (ctx.trace_id, ctx.span_id, ctx.sampled, ctx.debug) == (0xABC, 0x1F, True, False)


def test_child_of_extracted_context_continues_trace(tracing):
    parent = tracing.extract_span_context({"traceparent": f"00-{TRACE:032x}-{SPAN:016x}-01", "baggage": "k=v"})
    child = tracing.start_span("child", parent_span=parent)
    assert child.context.trace_id == TRACE
    assert child.get_baggage_item("k") == "v"
    child.finish()
    tracing.flush()
    span = tracing.exporter.get_finished_spans()[0]
    assert span.parent.span_id == SPAN and span.parent.is_remote


def test_unsampled_upstream_decision_is_honoured(tracing):
    parent = tracing.extract_span_context({"traceparent": f"00-{TRACE:032x}-{SPAN:016x}-00"})
    child = tracing.start_span("child", parent_span=parent)
    assert child.context.sampled is False
    child.finish()
    tracing.flush()
    assert tracing.exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "garbage"},
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},
        {"traceparent": f"ff-{TRACE:032x}-{SPAN:016x}-01"},
        {"traceparent": f"00-{TRACE:032x}-0000000000000000-01"},
        {"uber-trace-id": "0:1:0:1"},
        {"uber-trace-id": "xyz:1:0:1"},
        {"uber-trace-id": "1:2:3"},
        {"uber-trace-id": "1:" + "f" * 40 + ":0:1"},
        {},
        None,
        "traceparent",
        ["traceparent"],
        {1: 2, None: "x"},
        {"traceparent": 12345},
    ],
)
def test_malformed_carriers_yield_none(tracing, carrier):
    assert tracing.extract_span_context(carrier) is None


def test_bytes_and_list_values_are_read(tracing):
    ctx = tracing.extract_span_context({b"traceparent": [f"00-{TRACE:032x}-{SPAN:016x}-01".encode()]})
    assert ctx.trace_id == TRACE


def test_round_trip_through_plain_functions():
    ctx = SpanContext(TRACE, SPAN, True, False, {"x": "y=z,w"})
    carrier: dict[str, str] = {}
    inject_headers(ctx, carrier)
    back = extract_headers(carrier)
    assert (back.trace_id, back.span_id, back.sampled, back.baggage) == (TRACE, SPAN, True, {"x": "y=z,w"})


header_values = st.one_of(st.text(max_size=200), st.binary(max_size=50), st.integers(), st.none(),
                          st.lists(st.text(max_size=20), max_size=3))
header_names = st.sampled_from(["traceparent", "TRACEPARENT", "tracestate", "baggage", "uber-trace-id",
                                "uberctx-x", "x-other"]) | st.text(max_size=20)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(header_names, header_values, max_size=6))
def test_extract_never_raises(carrier):
    t = _shared()
    result = t.extract_span_context(carrier)
    assert result is None or (result.trace_id > 0 and result.span_id > 0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=2**128 - 1),
    st.integers(min_value=1, max_value=2**64 - 1),
    st.booleans(),
    st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_0123456789", min_size=1, max_size=10),
                    st.text(max_size=30), max_size=4),
)
def test_inject_extract_round_trip_property(trace_id, span_id, sampled, baggage):
    carrier: dict[str, str] = {}
    inject_headers(SpanContext(trace_id, span_id, sampled, False, baggage), carrier)
    back = extract_headers(carrier)
    assert (back.trace_id, back.span_id, back.sampled) == (trace_id, span_id, sampled)
    assert back.baggage == baggage
    jaeger_only = extract_headers({k: v for k, v in carrier.items() if not k.startswith(("traceparent", "baggage"))})
    assert (jaeger_only.trace_id, jaeger_only.span_id, jaeger_only.sampled) == (trace_id, span_id, sampled)
    assert jaeger_only.baggage == baggage


_manager = None


def _shared():
    global _manager
    if _manager is None:
        _manager = TracingManager("prop-h", exporter="none", set_global_provider=False, set_default_manager=False)
    return _manager


def test_propagators_option_limits_formats():
    t = TracingManager("w3c-only", exporter="memory", propagators="tracecontext,baggage",
                       set_global_provider=False, set_default_manager=False)
    span = t.start_span("x")
    carrier: dict[str, str] = {}
    t.inject_span_context(span, carrier)
    assert "traceparent" in carrier and "uber-trace-id" not in carrier
    assert t.extract_span_context({"uber-trace-id": "1:2:0:1"}) is None
    t.close_tracer()


def test_hostile_baggage_keys_never_become_header_names(tracing):
    ctx = tracing.extract_span_context(
        {"traceparent": f"00-{TRACE:032x}-{SPAN:016x}-01", "baggage": "a%20b=1,c%0D%0AX-Evil=2,ok=3"}
    )
    assert ctx.baggage == {"ok": "3"}
    span = tracing.start_span("child", parent_span=ctx)
    span.set_baggage_item("bad key\r\nX-Injected", "v")
    carrier: dict[str, str] = {}
    tracing.inject_span_context(span, carrier)
    assert all(" " not in k and "\r" not in k and "\n" not in k for k in carrier)
    assert carrier["uberctx-ok"] == "3"
