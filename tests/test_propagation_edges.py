"""propagation.py at its edges: exact header bytes, limits, odd carriers and the debug log.

Written against the mutants ``make mutate`` left alive: each test pins what a peer reads
on the wire, or what an operator reads in the log when a header is thrown away.
"""

from __future__ import annotations

import logging
import types

import pytest
from opentelemetry import trace
from opentelemetry.trace import TraceState

from aiecs_tracing import SpanContext, TracingManager
from aiecs_tracing.core.propagation import (
    MAX_BAGGAGE_ITEMS,
    MAX_HEADER_LENGTH,
    context_of,
    extract_headers,
    inject_fields,
    inject_headers,
)

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SPAN = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE:032x}-{SPAN:016x}-01"
LOGGER = "aiecs_tracing.propagation"


def injected(context: SpanContext, formats: tuple[str, ...] = ("tracecontext", "baggage", "jaeger")) -> dict[str, str]:
    carrier: dict[str, str] = {}
    inject_headers(context, carrier, formats)
    return carrier


def test_inject_writes_debug_flags_trace_state_and_only_the_asked_formats():
    state = TraceState([("vendor", "v1")])
    debug = injected(SpanContext(TRACE, SPAN, True, True, {}, state))
    assert debug == {
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=v1",
        "uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:3",
    }  # no baggage: no empty baggage header either
    assert injected(SpanContext(TRACE, SPAN, False, True))["uber-trace-id"].endswith(":0")  # debug needs sampled
    assert injected(SpanContext(TRACE, SPAN), ("tracecontext",)) == {"traceparent": TRACEPARENT}
    assert injected(SpanContext(TRACE, SPAN, baggage={"k": "v"}), ("jaeger",)) == {
        "uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:1",
        "uberctx-k": "v",
    }


def test_inject_without_a_whole_identity_writes_nothing():
    for trace_id, span_id in ((0, SPAN), (TRACE, 0), (0, 0)):
        carrier: dict[str, str] = {}
        inject_fields(trace_id, span_id, True, False, {"k": "v"}, None, carrier)
        assert carrier == {}, (trace_id, span_id)


def test_baggage_keys_and_values_are_percent_encoded_slashes_included():
    carrier = injected(SpanContext(TRACE, SPAN, baggage={"a/b": "c/d e", "user": "x/y"}))
    assert carrier["baggage"] == "a%2Fb=c%2Fd%20e,user=x%2Fy"
    assert carrier["uberctx-user"] == "x%2Fy"
    assert "uberctx-a/b" not in carrier  # not a header-name token
    assert extract_headers(carrier).baggage == {"user": "x/y"}  # "a%2Fb" decodes to a non-token, dropped


def test_a_baggage_header_of_exactly_the_limit_is_sent_and_read_one_more_byte_is_not():
    exact = {"k": "v" * (MAX_HEADER_LENGTH - 2)}
    carrier = injected(SpanContext(TRACE, SPAN, baggage=exact), ("tracecontext", "baggage"))
    assert len(carrier["baggage"]) == MAX_HEADER_LENGTH
    assert extract_headers(carrier).baggage == exact
    over = injected(SpanContext(TRACE, SPAN, baggage={"k": "v" * (MAX_HEADER_LENGTH - 1)}), ("tracecontext", "baggage"))
    assert "baggage" not in over
    too_long = {"traceparent": TRACEPARENT, "baggage": "k=" + "v" * (MAX_HEADER_LENGTH - 1)}
    assert extract_headers(too_long).baggage == {}


def test_baggage_header_members_properties_junk_and_equals_signs():
    header = "junk,k=v;prop1=a;prop2=b, eq = a=b ,,=nokey,last=1"
    context = extract_headers({"traceparent": TRACEPARENT, "baggage": header})
    assert context.baggage == {"k": "v", "eq": "a=b", "last": "1"}


def test_at_most_max_baggage_items_from_either_format():
    many = ",".join(f"k{i}=v" for i in range(MAX_BAGGAGE_ITEMS + 20))
    assert len(extract_headers({"traceparent": TRACEPARENT, "baggage": many}).baggage) == MAX_BAGGAGE_ITEMS
    jaeger = {"uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:1"}
    jaeger.update({f"uberctx-k{i}": "v" for i in range(MAX_BAGGAGE_ITEMS + 20)})
    assert len(extract_headers(jaeger).baggage) == MAX_BAGGAGE_ITEMS


def test_traceparent_versions_and_flags():
    assert extract_headers({"traceparent": TRACEPARENT + "-more"}) is None  # version 00 has exactly 4 fields
    future = extract_headers({"traceparent": "01" + TRACEPARENT[2:] + "-more"})
    assert (future.trace_id, future.span_id) == (TRACE, SPAN)  # a later version may add fields
    assert extract_headers({"traceparent": TRACEPARENT[:-2] + "ff"}).sampled is True  # hex flags, bit 0
    assert extract_headers({"traceparent": TRACEPARENT[:-2] + "fe"}).sampled is False


def test_uber_trace_id_flags_are_hex_and_ids_are_checked():
    both = extract_headers({"uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:1F"})
    assert (both.sampled, both.debug) == (True, True)
    neither = extract_headers({"uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:10"})  # 0x10: neither bit
    assert (neither.sampled, neither.debug) == (False, False)
    assert extract_headers({"uber-trace-id": f"{TRACE:x}:1{'0' * 16}:0:1"}) is None  # a span id over 64 bits
    assert extract_headers({"uber-trace-id": f"{TRACE:x}:{'f' * 16}:0:1"}).span_id == 2**64 - 1
    assert extract_headers({"uber-trace-id": f"xyz:{SPAN:x}:0:1"}) is None
    assert extract_headers({"uber-trace-id": f"{TRACE:x}:xyz:0:1"}) is None


def test_trace_state_is_carried_from_tracestate_and_none_without_it():
    with_state = extract_headers({"traceparent": TRACEPARENT, "tracestate": "vendor=v1,other=2"})
    assert with_state.trace_state.to_header() == "vendor=v1,other=2"
    assert injected(with_state)["tracestate"] == "vendor=v1,other=2"  # and it travels on
    assert extract_headers({"traceparent": TRACEPARENT}).trace_state is None


def test_carriers_with_odd_keys_lists_bytes_and_read_only_mappings():
    odd = {None: "x", 7: "y", "X-Empty": [], "X-None": None, "Traceparent": [TRACEPARENT], b"baggage": b"k=v"}
    assert (extract_headers(odd).span_id, extract_headers(odd).baggage) == (SPAN, {"k": "v"})
    listed = {"traceparent": [TRACEPARENT], "uberctx-k": ["v"]}  # lower-case keys, list values
    assert extract_headers(listed).baggage == {"k": "v"}
    proxy = types.MappingProxyType({"Traceparent": TRACEPARENT})  # not a dict, capitalised
    assert extract_headers(proxy).span_id == SPAN


def test_formats_may_be_any_iterable_even_a_generator():
    jaeger_only = {"uber-trace-id": f"{TRACE:x}:{SPAN:x}:0:1"}
    assert extract_headers(jaeger_only, ["tracecontext", "jaeger"]).span_id == SPAN
    assert extract_headers(jaeger_only, (f for f in ["jaeger", "tracecontext", "baggage"])).span_id == SPAN
    assert extract_headers(jaeger_only, ["tracecontext"]) is None


class _Unreadable(dict):
    def items(self):
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("carrier", "message"),
    [
        (["traceparent"], "extract: carrier of type list is not a mapping"),
        (_Unreadable(), "extract: carrier could not be read: boom"),
        ({"traceparent": "00-zz"}, "extract: malformed traceparent '00-zz'"),
        ({"uber-trace-id": "1:2:3"}, "extract: malformed uber-trace-id '1:2:3'"),
        (
            {"traceparent": TRACEPARENT, "baggage": "k=" + "v" * MAX_HEADER_LENGTH},
            f"baggage header over {MAX_HEADER_LENGTH} bytes ignored",
        ),
    ],
)
def test_what_is_thrown_away_is_named_in_the_debug_log(caplog, carrier, message):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        extract_headers(carrier)
    assert message in caplog.messages


def test_what_can_be_injected_a_facade_span_a_span_context_or_an_opentelemetry_span():
    tracing = TracingManager("ctx", exporter="memory", set_global_provider=False, set_default_manager=False)
    try:
        facade = tracing.start_span("facade")
        own = context_of(facade)
        assert (own.trace_id, own.span_id, own.sampled) == (facade.context.trace_id, facade.context.span_id, True)
        remote = SpanContext(TRACE, SPAN, True, True, {"k": "v"})
        assert context_of(remote) is remote
        carrier: dict[str, str] = {}
        tracing.inject_span_context(remote, carrier)  # a SpanContext goes out as it is, debug and baggage
        assert (carrier["uber-trace-id"], carrier["uberctx-k"]) == (f"{TRACE:x}:{SPAN:x}:0:3", "v")
        otel_tracer = trace.get_tracer("foreign", tracer_provider=tracing.provider)
        with otel_tracer.start_as_current_span("foreign") as foreign:
            sc = foreign.get_span_context()
            context = context_of(foreign)
        assert (context.trace_id, context.span_id, context.sampled, context.debug, context.baggage) == (
            sc.trace_id, sc.span_id, True, False, {})
        assert context.trace_state is sc.trace_state
        for flags, sampled in ((0x00, False), (0x01, True), (0x02, False), (0x03, True)):  # 0x02: W3C "random"
            remote_otel = trace.NonRecordingSpan(trace.SpanContext(TRACE, SPAN, True, trace.TraceFlags(flags)))
            assert context_of(remote_otel).sampled is sampled, flags
        assert context_of("not a span") is None and context_of(None) is None
        facade.finish()
    finally:
        tracing.close_tracer()
