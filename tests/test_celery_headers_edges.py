"""Celery's trace headers (integrations/celery_headers.py): which keys are read, where, and
which a retry must not carry over.

Pure functions over the dicts Celery hands the signal handlers, so no broker or worker is
needed; each test pins a header a worker would read or a publisher would send.
"""

from __future__ import annotations

import types

from aiecs_tracing.integrations.celery_headers import (
    TRACE_KEYS,
    UBERCTX_PREFIX,
    header_carrier,
    is_trace_key,
    message_carrier,
    parent_from_carrier,
    request_carrier,
    strip_trace_headers,
    write_trace_headers,
)
from tests.wire import make_manager

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
UBER = f"{TRACE_ID:x}:{PARENT_ID:x}:0:1"


def test_the_trace_keys_are_w3c_and_jaeger():
    assert TRACE_KEYS == ("traceparent", "tracestate", "baggage", "uber-trace-id")
    assert UBERCTX_PREFIX == "uberctx-"


def test_header_carrier_takes_only_trace_keys_and_needs_a_context():
    message = {"id": "t1", "task": "x", "traceparent": TRACEPARENT, "tracestate": "a=1", "baggage": "k=v",
               "uberctx-k": "jaeger", "retries": 2}
    assert header_carrier(message) == {"traceparent": TRACEPARENT, "tracestate": "a=1", "baggage": "k=v"}
    assert header_carrier({"uber-trace-id": UBER, "uberctx-k": "v", 7: "x", "other": 1}) == {
        "uber-trace-id": UBER,
        "uberctx-k": "v",
    }  # Jaeger baggage only when there is no W3C baggage
    assert header_carrier({"tracestate": "a=1", "baggage": "k=v", "uberctx-k": "v"}) is None  # no parent named
    assert header_carrier([("traceparent", TRACEPARENT)]) is None
    assert header_carrier(None) is None


def test_message_and_request_carriers_read_protocol_2_top_level_then_protocol_1_headers():
    top = {"traceparent": TRACEPARENT, "headers": {"traceparent": "other"}}
    assert message_carrier(top) == {"traceparent": TRACEPARENT}
    nested = {"id": "t1", "headers": {"uber-trace-id": UBER}}
    assert message_carrier(nested) == {"uber-trace-id": UBER}
    assert message_carrier({"id": "t1"}) is None
    assert message_carrier("not a dict") is None
    protocol_1 = types.SimpleNamespace(id="t1", headers={"traceparent": TRACEPARENT})
    assert request_carrier(protocol_1) == {"traceparent": TRACEPARENT}
    protocol_2 = types.SimpleNamespace(id="t1", traceparent=TRACEPARENT, headers=None)
    assert request_carrier(protocol_2) == {"traceparent": TRACEPARENT}
    assert request_carrier(object()) is None  # no __dict__: no carrier, no exception


def test_trace_keys_are_recognised_exactly():
    for key in ("traceparent", "tracestate", "baggage", "uber-trace-id", "uberctx-user"):
        assert is_trace_key(key), key
    for key in ("id", "task", "Traceparent", "x-uberctx-user", b"traceparent", None, 1):
        assert not is_trace_key(key), key


def test_strip_removes_every_trace_key_and_keeps_the_rest():
    headers = {"id": "t1", "traceparent": TRACEPARENT, "tracestate": "a=1", "baggage": "k=v",
               "uber-trace-id": UBER, "uberctx-a": "1", "uberctx-b": "2", "retries": 1, 5: "five"}
    strip_trace_headers(headers)
    assert headers == {"id": "t1", "retries": 1, 5: "five"}


def test_write_replaces_a_copied_context_even_when_no_span_is_recorded(sink):
    tracing = make_manager(sink, "headers")
    stale = {"id": "t2", "traceparent": TRACEPARENT, "uber-trace-id": UBER, "uberctx-attempt": "first",
             "tracestate": "old=1"}
    with tracing.span("publish") as span:
        write_trace_headers(tracing, span, stale)
    context = span.context
    assert stale["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    assert stale["uber-trace-id"] == f"{context.trace_id:x}:{context.span_id:x}:0:1"
    assert "uberctx-attempt" not in stale and "tracestate" not in stale and stale["id"] == "t2"
    w3c_only = {"traceparent": TRACEPARENT, "tracestate": "old=1", "baggage": "attempt=first"}
    write_trace_headers(tracing, None, w3c_only)  # no span: the stale context still goes
    assert w3c_only == {}
    jaeger_only = {"uber-trace-id": UBER, "baggage": "attempt=first"}
    write_trace_headers(tracing, None, jaeger_only)
    assert jaeger_only == {}
    no_context = {"id": "t3", "baggage": "user=kept"}  # not a copied trace context: left as it is
    write_trace_headers(tracing, None, no_context)
    assert no_context == {"id": "t3", "baggage": "user=kept"}
    tracing.close_tracer()


def test_parent_from_carrier(sink):
    tracing = make_manager(sink, "parent")
    parent = parent_from_carrier(tracing, {"traceparent": TRACEPARENT})
    assert (parent.trace_id, parent.span_id) == (TRACE_ID, PARENT_ID)
    assert parent_from_carrier(tracing, None) is None
    tracing.close_tracer()
