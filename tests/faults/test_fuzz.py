"""Fuzzing, bounded in time: hostile bytes at every place a trace header or a span is parsed.

- OTLP/HTTP bodies (protobuf and JSON), random and mutated from real ones: the decoder raises
  only its own ``OtlpDecodeError`` (a 400), never anything else (a 500);
- a live collector fed garbage over HTTP and UDP keeps answering, never with a 5xx;
- the ASGI middleware under hostile header bytes (``traceparent``, ``uber-trace-id``,
  ``baggage``, ``uberctx-*``) always lets the request through and always traces it.

The Jaeger thrift decoder and the header extractor have their own fuzz tests in
tests/test_collector_decoders.py and tests/test_propagation.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aiecs_tracing.collector.otlp import OtlpDecodeError, decode_json, decode_protobuf

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def real_otlp_request() -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "fuzzed"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.parent_span_id = b"\x01" * 16, b"\x02" * 8, b"\x03" * 8
    span.name, span.kind = "op", 2
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_500_000_000
    tag = span.attributes.add()
    tag.key, tag.value.string_value = "k", "v"
    event = span.events.add()
    event.name, event.time_unix_nano = "e", 1_700_000_000_100_000_000
    return request


@FAST
@given(st.binary(max_size=400))
def test_otlp_protobuf_decoder_raises_only_its_own_error_on_garbage(body: bytes) -> None:
    try:
        decode_protobuf(body)
    except OtlpDecodeError:
        pass


@FAST
@given(st.data())
def test_otlp_protobuf_decoder_survives_mutated_real_bodies(data: st.DataObject) -> None:
    body = bytearray(real_otlp_request().SerializeToString())
    for _ in range(data.draw(st.integers(1, 6))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode_protobuf(bytes(body))
    except OtlpDecodeError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)
otlp_keys = st.sampled_from(
    ["resourceSpans", "scopeSpans", "spans", "resource", "attributes", "traceId", "spanId", "parentSpanId",
     "name", "kind", "startTimeUnixNano", "endTimeUnixNano", "events", "links", "status", "code", "key",
     "value", "stringValue", "intValue", "arrayValue", "kvlistValue", "values"]
)  # fmt: skip
otlp_shaped = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(otlp_keys, children, max_size=5),
    max_leaves=40,
)


@FAST
@given(otlp_shaped)
def test_otlp_json_decoder_raises_only_its_own_error_on_any_json(document: Any) -> None:
    try:
        body = json.dumps(document).encode()
    except ValueError:  # NaN etc. are still sent by some clients: raw bytes below
        body = repr(document).encode()
    try:
        decode_json(body)
    except OtlpDecodeError:
        pass


# --------------------------------------------------------------------- a live collector
@pytest.fixture(scope="module")
def live_collector():
    from aiecs_tracing.collector.server import Collector

    collector = Collector(host="127.0.0.1", otlp_port=0, udp_port=0, ui_port=0, db_path=":memory:").start()
    try:
        yield collector
    finally:
        collector.stop()


content_types = st.sampled_from(["application/x-protobuf", "application/json", "text/plain", ""])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2000), content_type=content_types, datagram=st.binary(min_size=1, max_size=1500))
def test_live_collector_answers_garbage_without_5xx(live_collector: Any, body: bytes, content_type: str,
                                                    datagram: bytes) -> None:  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(datagram, ("127.0.0.1", live_collector.udp_port))
    response = httpx.post(live_collector.otlp_endpoint, content=body, headers={"Content-Type": content_type},
                          timeout=10)  # fmt: skip
    assert response.status_code < 500, (response.status_code, response.text[:200])
    assert httpx.get(f"http://127.0.0.1:{live_collector.ui_port}/api/services", timeout=10).status_code == 200


# --------------------------------------------------------------------- the ASGI middleware
header_names = st.sampled_from([b"traceparent", b"tracestate", b"baggage", b"uber-trace-id", b"uberctx-tenant",
                                b"jaeger-debug-id", b"jaeger-baggage", b"x-anything"])  # fmt: skip
header_values = st.binary(max_size=300) | st.sampled_from(
    [b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01", b"ffff:ffff:0:1", b"a" * 10_000, b"%zz=%00,\xff\xfe", b":::"]
)


@pytest.fixture(scope="module")
def middleware_app():
    from aiecs_tracing import TracingManager
    from aiecs_tracing.integrations.asgi import TracingMiddleware

    tracing = TracingManager("fuzz-asgi", exporter="memory", set_global_provider=False, set_default_manager=False)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    try:
        yield TracingMiddleware(app, tracing=tracing), tracing
    finally:
        tracing.close_tracer()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=st.lists(st.tuples(header_names, header_values), max_size=6), path=st.text(max_size=40))
def test_middleware_passes_every_request_with_hostile_trace_headers(middleware_app: Any, headers: list,
                                                                    path: str) -> None:  # fmt: skip
    app, tracing = middleware_app
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/" + path, "raw_path": ("/" + path).encode("utf-8", "surrogatepass"), "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}  # fmt: skip
    before = tracing.get_tracer_info()["spans_finished"]
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"ok"
    assert tracing.get_tracer_info()["spans_finished"] == before + 1  # traced, malformed context or not
