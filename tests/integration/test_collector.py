"""The embedded collector over real sockets: what a user of Jaeger's ports and API would see.

Spans go in through independent encoders: the OpenTelemetry SDK's own OTLP/HTTP
exporter, and jaeger-client's generated thrift code (compact protocol, Agent.emitBatch)
over UDP. Everything is read back through the Jaeger-compatible HTTP JSON API.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from jaeger_client.thrift_gen.jaeger import ttypes as jaeger
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from aiecs_tracing.collector import api
from aiecs_tracing.collector.server import Collector
from aiecs_tracing.collector.store import default_db_path
from aiecs_tracing.collector.store_open import StoreOpenError
from tests.wire import encode_with_jaeger_client

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "aiecs_tracing" / "collector" / "ui"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def collector():
    with Collector(host="127.0.0.1", otlp_port=0, udp_port=0, ui_port=0, db_path=":memory:") as c:
        yield c


def request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def api_get(c: Collector, path: str, expect: int = 200) -> Any:
    status, headers, body = request(c.ui_port, "GET", path)
    assert status == expect, (path, status, body[:300])
    assert headers["content-type"].startswith("application/json")
    return json.loads(body)


def traces_query(c: Collector, **params: Any) -> list[dict[str, Any]]:
    return api_get(c, "/api/traces?" + urllib.parse.urlencode(params, doseq=True))["data"]


def tag_map(tags: list[dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    return {tag["key"]: (tag["type"], tag["value"]) for tag in tags}


def provider_for(c: Collector, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=c.otlp_endpoint)))
    return provider


def hex_trace_id(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


def hex_span_id(span: Any) -> str:
    return format(span.get_span_context().span_id, "016x")




def send_udp(port: int, datagram: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(datagram, ("127.0.0.1", port))


def wait_until(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


# --------------------------------------------------------------------------- OTLP via the real SDK exporter


def emit_shop_trace(c: Collector) -> dict[str, Any]:
    """frontend GET /checkout -> frontend client call -> payments charge (error + event)."""
    frontend = provider_for(c, "frontend")
    payments = provider_for(c, "payments")
    tracer = frontend.get_tracer("shop.web", "2.1")
    with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 200)
        root.set_attribute("http.method", "GET")
        root.set_attribute("cart.total", 12.5)
        root.set_attribute("user.vip", True)
        root.set_attribute("cart.items", ["apple", "pear"])
        with tracer.start_as_current_span("POST payments", kind=SpanKind.CLIENT) as call:
            context = otel_trace.set_span_in_context(call)
            charge = payments.get_tracer("payments.api").start_span("charge", context=context, kind=SpanKind.SERVER)
            charge.add_event("card declined", {"attempt": 2, "reason": "insufficient funds"})
            charge.set_status(Status(StatusCode.ERROR, "declined"))
            charge.end()
    frontend.shutdown()
    payments.shutdown()
    assert c.wait_for_spans(3, timeout=10) == 3
    return {
        "trace_id": hex_trace_id(root),
        "root": hex_span_id(root),
        "call": hex_span_id(call),
        "charge": hex_span_id(charge),
    }


def test_sdk_exporter_trace_comes_back_as_jaeger_json(collector):
    ids = emit_shop_trace(collector)

    body = api_get(collector, f"/api/traces/{ids['trace_id']}")
    assert body["errors"] is None and body["total"] == 1
    (trace,) = body["data"]
    assert trace["traceID"] == ids["trace_id"]
    assert trace["warnings"] is None
    spans = {span["operationName"]: span for span in trace["spans"]}
    assert set(spans) == {"GET /checkout", "POST payments", "charge"}

    root, call, charge = spans["GET /checkout"], spans["POST payments"], spans["charge"]
    assert root["spanID"] == ids["root"] and root["references"] == []
    assert call["references"] == [{"refType": "CHILD_OF", "traceID": ids["trace_id"], "spanID": ids["root"]}]
    assert charge["references"] == [{"refType": "CHILD_OF", "traceID": ids["trace_id"], "spanID": ids["call"]}]

    services = {pid: process["serviceName"] for pid, process in trace["processes"].items()}
    assert services[root["processID"]] == "frontend"
    assert services[call["processID"]] == "frontend"
    assert services[charge["processID"]] == "payments"
    process_tags = tag_map(trace["processes"][root["processID"]]["tags"])
    assert process_tags["deployment.environment"] == ("string", "test")
    assert process_tags["telemetry.sdk.language"] == ("string", "python")
    assert "service.name" not in process_tags

    tags = tag_map(root["tags"])
    assert tags["http.status_code"] == ("int64", 200)
    assert tags["cart.total"] == ("float64", 12.5)
    assert tags["user.vip"] == ("bool", True)
    assert tags["http.method"] == ("string", "GET")
    assert json.loads(tags["cart.items"][1]) == ["apple", "pear"]
    assert tags["span.kind"] == ("string", "server")
    assert tags["otel.scope.name"] == ("string", "shop.web")
    assert tags["otel.scope.version"] == ("string", "2.1")
    assert "error" not in tags

    charge_tags = tag_map(charge["tags"])
    assert charge_tags["error"] == ("bool", True)
    assert charge_tags["otel.status_code"] == ("string", "ERROR")
    assert charge_tags["otel.status_description"] == ("string", "declined")
    (log,) = charge["logs"]
    assert tag_map(log["fields"]) == {
        "event": ("string", "card declined"),
        "attempt": ("int64", 2),
        "reason": ("string", "insufficient funds"),
    }
    assert charge["startTime"] <= log["timestamp"] <= charge["startTime"] + charge["duration"]

    for span in trace["spans"]:
        assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
        assert span["startTime"] > 1_500_000_000_000_000  # µs since the epoch, not ns or ms
        assert span["traceID"] == ids["trace_id"] and len(span["spanID"]) == 16
        assert "flags" not in span and span["warnings"] is None  # as Jaeger v2 answers
    assert root["startTime"] <= call["startTime"] <= charge["startTime"]
    assert call["duration"] <= root["duration"]


def test_services_operations_and_dependencies(collector):
    emit_shop_trace(collector)

    assert api_get(collector, "/api/services")["data"] == ["frontend", "payments"]
    assert api_get(collector, "/api/services/frontend/operations")["data"] == ["GET /checkout", "POST payments"]
    operations = api_get(collector, "/api/operations?service=frontend")["data"]
    assert operations == [{"name": "GET /checkout", "spanKind": "server"}, {"name": "POST payments", "spanKind": "client"}]
    assert api_get(collector, "/api/operations?service=frontend&spanKind=client")["data"] == [
        {"name": "POST payments", "spanKind": "client"}
    ]
    assert api_get(collector, "/api/services/nobody/operations")["data"] == []

    now_ms = int(time.time() * 1000)
    deps = api_get(collector, f"/api/dependencies?endTs={now_ms + 60_000}&lookback=3600000")["data"]
    assert deps == [{"parent": "frontend", "child": "payments", "callCount": 1}]
    # A window that ends before the trace started has no edges.
    assert api_get(collector, f"/api/dependencies?endTs={now_ms - 3_600_000}&lookback=60000")["data"] == []


def emit_timed_spans(c: Collector) -> dict[str, str]:
    """Three single-span traces with known durations, tags and ages."""
    provider = provider_for(c, "timed")
    tracer = provider.get_tracer("timing")
    now = time.time_ns()
    made = {}
    for name, duration_ms, age_hours, attributes in (
        ("fast", 2, 0, {"tier": "gold", "http.status_code": 200}),
        ("slow", 1500, 0, {"tier": "silver", "http.status_code": 500, "note": "a b"}),
        ("old", 50, 5, {"tier": "gold"}),
    ):
        start = now - age_hours * 3_600_000_000_000 - duration_ms * 1_000_000
        span = tracer.start_span(name, start_time=start, attributes=attributes)
        span.end(end_time=start + duration_ms * 1_000_000)
        made[name] = hex_trace_id(span)
    provider.shutdown()
    assert c.wait_for_spans(3, timeout=10) == 3
    return made


def test_search_by_service_operation_tags_duration_and_time(collector):
    made = emit_timed_spans(collector)

    def found(**params: Any) -> set[str]:
        return {made_name for made_name, tid in made.items() for t in traces_query(collector, **params) if t["traceID"] == tid}

    assert found(service="timed", lookback="1d") == {"fast", "slow", "old"}
    assert found(service="timed") == {"fast", "slow", "old"}  # Jaeger's default window is two days
    assert found(service="timed", lookback="1h") == {"fast", "slow"}
    assert found(service="timed", operation="slow") == {"slow"}
    assert found(service="timed", operation="missing") == set()
    assert found(service="nobody") == set()
    assert found(service="timed", minDuration="1s") == {"slow"}
    assert found(service="timed", minDuration="40ms", maxDuration="1.2s") == {"old"}
    assert found(service="timed", maxDuration="10ms") == {"fast"}
    assert found(service="timed", minDuration="1500000us") == {"slow"}
    assert found(service="timed", tags=json.dumps({"tier": "gold"})) == {"fast", "old"}
    assert found(service="timed", tags=json.dumps({"tier": "gold", "http.status_code": "200"})) == {"fast"}
    assert found(service="timed", tags='http.status_code=500 note="a b"') == {"slow"}  # logfmt, as typed in the UI
    assert found(service="timed", tag="tier:silver") == {"slow"}
    assert found(service="timed", tags=json.dumps({"tier": "bronze"})) == set()
    # Resource attributes (process tags) are searchable too.
    assert found(service="timed", tags=json.dumps({"deployment.environment": "test"})) == {"fast", "slow", "old"}

    now_us = int(time.time() * 1_000_000)
    assert found(service="timed", start=now_us - 6 * 3_600_000_000, end=now_us - 3_600_000_000) == {"old"}

    limited = traces_query(collector, service="timed", lookback="1d", limit=1)
    assert [t["traceID"] for t in limited] == [made["fast"]]  # most recent first

    by_ids = traces_query(collector, traceID=[made["old"], made["slow"]])
    assert {t["traceID"] for t in by_ids} == {made["old"], made["slow"]}


def test_search_parameter_errors_use_jaeger_envelope(collector):
    for query in ("service=x&minDuration=fast", "service=x&limit=ten", "service=x&minDuration=2s&maxDuration=1s"):
        body = api_get(collector, f"/api/traces?{query}", expect=400)
        assert body["data"] is None and body["errors"][0]["code"] == 400 and body["errors"][0]["msg"]
    assert api_get(collector, "/api/operations", expect=400)["errors"][0]["code"] == 400
    assert api_get(collector, "/api/nothing-here", expect=404)["errors"][0]["code"] == 404


def test_unknown_trace_is_404_with_jaeger_error_envelope(collector):
    body = api_get(collector, "/api/traces/" + "ab" * 16, expect=404)
    assert body == {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": 404, "msg": "trace not found"}]}
    assert api_get(collector, "/api/traces/not-hex", expect=400)["errors"][0]["code"] == 400


# --------------------------------------------------------------------------- Jaeger UDP via jaeger-client's encoder


def legacy_batch(now_us: int) -> jaeger.Batch:
    tag = jaeger.Tag
    root = jaeger.Span(
        traceIdLow=0x1234,
        traceIdHigh=0,  # a 64-bit trace id, as old Jaeger clients send
        spanId=0x10,
        parentSpanId=0,
        operationName="legacy-root",
        flags=1,
        startTime=now_us,
        duration=5_000,
        tags=[
            tag(key="span.kind", vType=jaeger.TagType.STRING, vStr="server"),
            tag(key="retries", vType=jaeger.TagType.LONG, vLong=-3),
            tag(key="ratio", vType=jaeger.TagType.DOUBLE, vDouble=0.25),
            tag(key="cached", vType=jaeger.TagType.BOOL, vBool=False),
            tag(key="blob", vType=jaeger.TagType.BINARY, vBinary="raw"),
        ],
        logs=[jaeger.Log(timestamp=now_us + 100, fields=[tag(key="event", vType=jaeger.TagType.STRING, vStr="hit")])],
    )
    child = jaeger.Span(
        traceIdLow=0x1234,
        traceIdHigh=0,
        spanId=-2,  # span ids are signed i64 on the wire
        parentSpanId=0x10,
        operationName="legacy-child",
        flags=1,
        startTime=now_us + 1_000,
        duration=2_000,
        references=[jaeger.SpanRef(refType=jaeger.SpanRefType.FOLLOWS_FROM, traceIdLow=7, traceIdHigh=0, spanId=9)],
        tags=[tag(key="error", vType=jaeger.TagType.BOOL, vBool=True)],
    )
    process = jaeger.Process(
        serviceName="legacy-svc", tags=[tag(key="hostname", vType=jaeger.TagType.STRING, vStr="box-1")]
    )
    return jaeger.Batch(process=process, spans=[root, child])


def test_jaeger_client_udp_batch_is_stored_and_queryable(collector):
    send_udp(collector.udp_port, encode_with_jaeger_client(legacy_batch(int(time.time() * 1_000_000))))
    assert collector.wait_for_spans(2, timeout=10) == 2

    trace_id = "0" * 12 + "1234"  # a 64-bit id in 16 digits, as Jaeger writes it
    # Every form finds the trace: 32 digits, 16, or without leading zeros.
    for lookup in ("0" * 28 + "1234", trace_id, "1234"):
        (trace,) = api_get(collector, f"/api/traces/{lookup}")["data"]
        assert trace["traceID"] == trace_id
    spans = {span["operationName"]: span for span in trace["spans"]}
    root, child = spans["legacy-root"], spans["legacy-child"]
    assert root["spanID"] == "0000000000000010"
    assert child["spanID"] == "fffffffffffffffe"
    assert child["references"] == [
        {"refType": "CHILD_OF", "traceID": trace_id, "spanID": "0000000000000010"},
        {"refType": "FOLLOWS_FROM", "traceID": "0" * 15 + "7", "spanID": "0000000000000009"},
    ]
    assert tag_map(root["tags"]) == {
        "span.kind": ("string", "server"),
        "retries": ("int64", -3),
        "ratio": ("float64", 0.25),
        "cached": ("bool", False),
        "blob": ("binary", "cmF3"),  # base64 of b"raw", as Jaeger renders bytes
    }
    assert tag_map(child["tags"]) == {"error": ("bool", True)}
    assert [tag_map(log["fields"]) for log in root["logs"]] == [{"event": ("string", "hit")}]
    process = trace["processes"][root["processID"]]
    assert process == {"serviceName": "legacy-svc", "tags": [{"key": "hostname", "type": "string", "value": "box-1"}]}
    assert api_get(collector, "/api/operations?service=legacy-svc")["data"] == [
        {"name": "legacy-child", "spanKind": ""},
        {"name": "legacy-root", "spanKind": "server"},
    ]
    found = traces_query(collector, service="legacy-svc", tags=json.dumps({"error": "true"}))
    assert [t["traceID"] for t in found] == [trace_id]
    assert api_get(collector, "/api/stats")["received"]["jaeger_udp"] == 2


def test_udp_garbage_is_counted_as_rejected_and_dropped(collector):
    valid = encode_with_jaeger_client(legacy_batch(int(time.time() * 1_000_000)))
    garbage = [
        b"",
        b"hello, collector",
        os.urandom(512),
        valid[: len(valid) // 2],  # truncated
        valid.replace(b"emitBatch", b"emitBatcX"),  # unknown method
        b"\x82\x21\x00\x09emitBatch\x19\xfc\xff\xff\xff\x0f",  # list claiming 4 billion elements
        b"\x82\x81\x01\x09emitBatch" + b"\x1c" * 5000,  # nesting bomb
    ]
    for datagram in garbage:
        send_udp(collector.udp_port, datagram)
    send_udp(collector.udp_port, valid)
    assert collector.wait_for_spans(2, timeout=10) == 2

    stats = wait_until(
        lambda: (s := api_get(collector, "/api/stats"))["rejected"]["jaeger_udp"] >= len(garbage) - 1 and s
    )
    # An empty datagram may not even be delivered; everything else is rejected, one each.
    assert stats["rejected_payloads"]["jaeger_udp"] in (len(garbage) - 1, len(garbage))
    assert stats["received"]["jaeger_udp"] == 2
    assert stats["stored"] == 2
    assert api_get(collector, "/api/services")["data"] == ["legacy-svc"]


# --------------------------------------------------------------------------- OTLP JSON, gzip, bad input


def otlp_json_request(trace_id: str, now_ns: int) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "handmade"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "00000000000000a1",
                                "name": "json-root",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": str(now_ns),
                                "endTimeUnixNano": str(now_ns + 3_000_000),
                                "attributes": [
                                    {"key": "count", "value": {"intValue": "41"}},
                                    {"key": "ok", "value": {"boolValue": True}},
                                    {"key": "pi", "value": {"doubleValue": 3.25}},
                                ],
                                "events": [{"timeUnixNano": str(now_ns + 1000), "name": "started"}],
                                "status": {"code": 1},
                            },
                            {
                                "traceId": trace_id,
                                "spanId": "00000000000000a2",
                                "parentSpanId": "00000000000000a1",
                                "name": "json-child",
                                "kind": 3,
                                "startTimeUnixNano": now_ns + 1_000_000,
                                "endTimeUnixNano": now_ns + 2_000_000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "nope"},
                            },
                            {"traceId": "zz", "spanId": "00000000000000a3", "name": "bad-id"},
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_with_gzip(collector):
    trace_id = "5b8efff798038103d269b633813fc60c"
    body = gzip.compress(json.dumps(otlp_json_request(trace_id, time.time_ns())).encode())
    status, headers, response = request(
        collector.otlp_port, "POST", "/v1/traces", body, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert status == 200 and headers["content-type"] == "application/json"
    partial = json.loads(response)["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1 and partial["errorMessage"]
    assert collector.wait_for_spans(2, timeout=10) == 2

    (trace,) = api_get(collector, f"/api/traces/{trace_id}")["data"]
    spans = {span["operationName"]: span for span in trace["spans"]}
    root, child = spans["json-root"], spans["json-child"]
    assert tag_map(root["tags"]) == {
        "count": ("int64", 41),
        "ok": ("bool", True),
        "pi": ("float64", 3.25),
        "span.kind": ("string", "server"),
        "otel.scope.name": ("string", "handmade"),
        "otel.status_code": ("string", "OK"),
    }
    assert root["duration"] == 3000
    assert [tag_map(log["fields"]) for log in root["logs"]] == [{"event": ("string", "started")}]
    assert child["references"] == [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": "00000000000000a1"}]
    assert tag_map(child["tags"])["error"] == ("bool", True)
    assert tag_map(child["tags"])["span.kind"] == ("string", "client")
    stats = api_get(collector, "/api/stats")
    assert stats["received"]["otlp_http"] == 2
    assert stats["rejected_spans"]["otlp_http"] == 1  # the "zz" trace id
    assert stats["rejected_payloads"]["otlp_http"] == 0


def test_otlp_protobuf_response_and_plain_json_response(collector):
    request_pb = ExportTraceServiceRequest()
    span = request_pb.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes(range(1, 17))
    span.span_id = bytes(range(1, 9))
    span.name = "bare"
    span.start_time_unix_nano = time.time_ns()
    span.end_time_unix_nano = span.start_time_unix_nano + 1000
    status, headers, body = request(
        collector.otlp_port, "POST", "/v1/traces", request_pb.SerializeToString(), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 200 and headers["content-type"] == "application/x-protobuf"
    assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    assert collector.wait_for_spans(1, timeout=10) == 1
    # A resource without service.name gets Jaeger's placeholder service.
    assert api_get(collector, "/api/services")["data"] == ["OTLPResourceNoServiceName"]

    status, headers, body = request(
        collector.otlp_port, "POST", "/v1/traces", b'{"resourceSpans": []}', {"Content-Type": "application/json"}
    )
    assert (status, json.loads(body)) == (200, {})


def test_malformed_and_oversized_bodies_are_refused_and_server_keeps_serving():
    with Collector(otlp_port=0, udp_port=None, ui_port=0, max_body_bytes=64 * 1024) as c:
        port = c.otlp_port
        protobuf = {"Content-Type": "application/x-protobuf"}
        json_type = {"Content-Type": "application/json"}
        bad_kind = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "x", "kind": "SPAN_KIND_NOPE"}
        refused = [
            (b"\xff\xff\xff\xff\x0f garbage", protobuf, 400),
            (b"{not json", json_type, 400),
            (b'{"resourceSpans": 5}', json_type, 400),
            (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [bad_kind]}]}]}).encode(), json_type, 400),
            (b"[]", json_type, 400),
            (b"not gzip at all", {**protobuf, "Content-Encoding": "gzip"}, 400),
            (gzip.compress(b"\x00" * (1024 * 1024)), {**protobuf, "Content-Encoding": "gzip"}, 413),  # gzip bomb
            (b"x" * (65 * 1024), protobuf, 413),
            (b"hello", {"Content-Type": "text/plain"}, 415),
        ]
        for body, headers, expected in refused:
            status, response_headers, response = request(port, "POST", "/v1/traces", body, headers)
            assert status == expected, (body[:30], status, response)
            if response_headers["content-type"] == "application/json":
                assert json.loads(response)["message"]
            else:
                assert response_headers["content-type"] == "application/x-protobuf"
                assert response.startswith(b"\x08")  # google.rpc.Status with a code

        # A client that announces 1 GiB gets 413 at once: the body is never waited for or read.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                b"Content-Length: 1073741824\r\n\r\n"
            )
            head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 413")

        # Negative sizes would mean "read until the client closes": refused before reading.
        for framing in (b"Content-Length: -1\r\n\r\n", b"Transfer-Encoding: chunked\r\n\r\n-1\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n" + framing
                )
                sock.sendall(b"x" * (16 * 1024))  # a body that is never read
                head = sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 400"), head[:40]

        assert request(port, "POST", "/v2/traces", b"{}", json_type)[0] == 404
        assert request(port, "GET", "/v1/traces")[0] == 405

        provider = provider_for(c, "survivor")
        provider.get_tracer("t").start_span("after the storm").end()
        provider.shutdown()
        assert c.wait_for_spans(1, timeout=10) == 1
        stats = api_get(c, "/api/stats")
        assert stats["rejected_payloads"]["otlp_http"] == len(refused) + 3
        assert stats["received"]["otlp_http"] == 1
        assert api_get(c, "/api/services")["data"] == ["survivor"]


def test_stats_report_counts_and_store_size(collector):
    emit_shop_trace(collector)
    send_udp(collector.udp_port, encode_with_jaeger_client(legacy_batch(int(time.time() * 1_000_000))))
    send_udp(collector.udp_port, b"junk")
    assert collector.wait_for_spans(5, timeout=10) == 5
    stats = wait_until(lambda: (s := api_get(collector, "/api/stats"))["rejected"]["jaeger_udp"] == 1 and s)
    assert stats["received"] == {"otlp_http": 3, "jaeger_udp": 2}
    assert stats["rejected"] == {"otlp_http": 0, "jaeger_udp": 1}
    assert stats["stored"] == 5 and stats["queued"] == 0
    assert stats["store"]["spans"] == 5 and stats["store"]["bytes"] > 0
    assert stats["store"]["path"] == ":memory:"
    assert stats["ports"] == {"otlp_http": collector.otlp_port, "jaeger_udp": collector.udp_port, "query": collector.ui_port}


# --------------------------------------------------------------------------- storage


def test_file_database_survives_a_restart(tmp_path):
    db = tmp_path / "nested" / "traces.sqlite3"
    with pytest.raises(StoreOpenError, match="does not exist"):  # an explicit path's directory is not created
        Collector(otlp_port=0, udp_port=0, ui_port=0, db_path=db).start()
    assert not db.parent.exists()
    db.parent.mkdir()
    with Collector(otlp_port=0, udp_port=0, ui_port=0, db_path=db) as first:
        ids = emit_shop_trace(first)
    assert db.exists()
    with Collector(otlp_port=0, udp_port=0, ui_port=0, db_path=str(db)) as second:
        (trace,) = api_get(second, f"/api/traces/{ids['trace_id']}")["data"]
        assert len(trace["spans"]) == 3
        assert api_get(second, "/api/services")["data"] == ["frontend", "payments"]
        emit_shop_trace(second)  # new spans interleave with old interned services/operations
        assert api_get(second, "/api/stats")["store"]["spans"] == 6


def test_memory_database_leaves_nothing_behind():
    c = Collector(otlp_port=0, udp_port=None, ui_port=None).start()
    path = c.store.path
    assert os.path.exists(path)
    c.stop()
    assert not os.path.exists(path)


def test_default_db_path_honors_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "aiecs-tracing" / "traces.sqlite3"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_db_path() == Path.home() / ".local" / "share" / "aiecs-tracing" / "traces.sqlite3"


def otlp_batch(service: str, count: int, start_ns: int) -> bytes:
    request_pb = ExportTraceServiceRequest()
    resource_spans = request_pb.resource_spans.add()
    attribute = resource_spans.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service
    spans = resource_spans.scope_spans.add().spans
    for index in range(count):
        span = spans.add()
        span.trace_id = os.urandom(16)
        span.span_id = os.urandom(8)
        span.name = f"op-{index}"
        span.start_time_unix_nano = start_ns + index * 1000
        span.end_time_unix_nano = span.start_time_unix_nano + 500
    return request_pb.SerializeToString()


def post_protobuf(c: Collector, body: bytes) -> None:
    status, _headers, response = request(c.otlp_port, "POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
    assert status == 200, response


def test_retention_by_span_count_keeps_the_newest():
    with Collector(otlp_port=0, udp_port=None, ui_port=0, max_spans=50) as c:
        now = time.time_ns()
        for batch in range(4):
            post_protobuf(c, otlp_batch(f"svc-{batch}", 30, now - (4 - batch) * 10**9))
            c.wait_for_spans(30 * (batch + 1), timeout=10)
        kept = wait_until(lambda: (n := api_get(c, "/api/stats")["store"]["spans"]) <= 50 and n)
        assert kept == 50
        assert len(traces_query(c, service="svc-3")) == 30
        assert traces_query(c, service="svc-0") == []


def test_retention_by_age_drops_old_spans():
    with Collector(otlp_port=0, udp_port=None, ui_port=0, max_age_seconds=3600) as c:
        post_protobuf(c, otlp_batch("ancient", 5, time.time_ns() - 3 * 3600 * 10**9))
        post_protobuf(c, otlp_batch("recent", 7, time.time_ns()))
        c.wait_for_spans(12, timeout=10)
        kept = wait_until(lambda: (n := api_get(c, "/api/stats")["store"]["spans"]) == 7 and n)
        assert kept == 7
        assert traces_query(c, service="ancient", lookback="1d") == []
        assert len(traces_query(c, service="recent")) == 7


# --------------------------------------------------------------------------- UI serving


def test_ui_index_static_files_and_client_routes(collector):
    index = (UI_DIR / "index.html").read_bytes()
    for path in ("/", "/search", "/trace/abc123", "/dependencies"):
        status, headers, body = request(collector.ui_port, "GET", path)
        assert (status, body) == (200, index), path
        assert headers["content-type"] == "text/html; charset=utf-8"
    expected_types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    for file in sorted(UI_DIR.iterdir()):
        if file.suffix in expected_types:
            status, headers, body = request(collector.ui_port, "GET", f"/static/{file.name}")
            assert (status, body) == (200, file.read_bytes())
            assert headers["content-type"] == expected_types[file.suffix]
    for sneaky in (
        "/static/../api.py",
        "/static/%2e%2e/api.py",
        "/static/..%2Fserver.py",
        "/static/%2Fetc%2Fpasswd",
        "/static/",
        "/static/missing.js",
        "/favicon.ico",
    ):
        status, _headers, body = request(collector.ui_port, "GET", sneaky)
        assert status == 404, sneaky
        assert b"import" not in body and b"root:" not in body


def test_placeholder_page_when_ui_files_are_missing(collector, monkeypatch, tmp_path):
    monkeypatch.setattr(api, "UI_DIR", tmp_path / "no-ui")
    status, headers, body = request(collector.ui_port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"/api/services" in body
    assert request(collector.ui_port, "GET", "/static/app.js")[0] == 404


def test_keep_alive_connection_serves_many_requests(collector):
    connection = http.client.HTTPConnection("127.0.0.1", collector.ui_port, timeout=10)
    for _ in range(5):
        connection.request("GET", "/api/services")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["data"] == []
    connection.close()


# --------------------------------------------------------------------------- Python API and CLI


def test_collector_reports_bound_ports_and_urls():
    with Collector(otlp_port=0, udp_port=0, ui_port=0) as c:
        assert all(isinstance(p, int) and p > 0 for p in (c.otlp_port, c.udp_port, c.ui_port))
        assert c.query_url == f"http://127.0.0.1:{c.ui_port}"
        assert c.otlp_endpoint == f"http://127.0.0.1:{c.otlp_port}/v1/traces"
        assert c.wait_for_spans(1, timeout=0.05) == 0
    with pytest.raises(OSError):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            Collector(otlp_port=holder.getsockname()[1], udp_port=None, ui_port=None).start()


def test_cli_serve_prints_urls_serves_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "aiecs_tracing", "serve", "--otlp-port", "0", "--udp-port", "0"]
    command += ["--ui-port", "0", "--db", str(tmp_path / "cli.sqlite3"), "--max-age", "7d", "--sampling-port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = process.stdout.readline()
            assert line, banner + process.stderr.read()
            banner += line
        ui_port = int(re.search(r"UI \+ API\s+http://127\.0\.0\.1:(\d+)", banner).group(1))
        assert re.search(r"OTLP/HTTP\s+http://127\.0\.0\.1:\d+/v1/traces", banner)
        assert re.search(r"Jaeger UDP\s+127\.0\.0\.1:\d+", banner)
        sampling_port = int(re.search(r"sampling\s+http://127\.0\.0\.1:(\d+)/sampling", banner).group(1))
        status, _headers, body = request(sampling_port, "GET", "/sampling?service=any")
        assert status == 200 and json.loads(body)["probabilisticSampling"] == {"samplingRate": 1.0}
        assert str(tmp_path / "cli.sqlite3") in banner
        status, _headers, body = request(ui_port, "GET", "/api/services")
        assert status == 200 and json.loads(body)["data"] == []
        process.send_signal(signal.SIGTERM)
        output, _errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "stopped" in output


def test_cli_demo_passes_its_arguments_through(monkeypatch):
    from aiecs_tracing import cli

    seen = []
    fake = types.ModuleType("aiecs_tracing.demo.run")
    fake.main = lambda args: seen.append(list(args)) or 3
    monkeypatch.setitem(sys.modules, "aiecs_tracing.demo.run", fake)
    import aiecs_tracing.demo as demo_package

    monkeypatch.setattr(demo_package, "run", fake, raising=False)
    assert cli.main(["demo", "--no-browser", "--requests", "5", "extra"]) == 3
    assert cli.main(["demo", "--help"]) == 3
    assert seen == [["--no-browser", "--requests", "5", "extra"], ["--help"]]


def test_cli_rejects_unknown_arguments_and_bad_ages(capsys):
    from aiecs_tracing import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--bogus"])
    assert exit_info.value.code == 2
    assert cli.main(["serve", "--max-age", "forever", "--otlp-port", "0"]) == 2
    assert "--max-age" in capsys.readouterr().err


def test_stop_closes_idle_keep_alive_connections():
    c = Collector(otlp_port=0, udp_port=None, ui_port=0).start()
    connection = http.client.HTTPConnection("127.0.0.1", c.ui_port, timeout=10)
    connection.request("GET", "/api/services")
    assert connection.getresponse().read()
    c.stop()
    # The server side hung up: the next request on the kept-alive socket fails instead of hanging.
    with pytest.raises((http.client.HTTPException, OSError)):
        connection.request("GET", "/api/services")
        connection.getresponse()
    connection.close()


def test_sdk_exporter_with_gzip_compression(collector):
    from opentelemetry.exporter.otlp.proto.http import Compression

    provider = TracerProvider(resource=Resource.create({"service.name": "zipped"}))
    exporter = OTLPSpanExporter(endpoint=collector.otlp_endpoint, compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("z").start_as_current_span("outer"):
        with provider.get_tracer("z").start_as_current_span("inner") as inner:
            inner.set_attribute("payload", "x" * 10_000)
    provider.shutdown()
    assert collector.wait_for_spans(2, timeout=10) == 2
    (trace,) = api_get(collector, f"/api/traces/{hex_trace_id(inner)}")["data"]
    inner_span = next(s for s in trace["spans"] if s["operationName"] == "inner")
    assert tag_map(inner_span["tags"])["payload"] == ("string", "x" * 10_000)


def test_full_backlog_answers_503_retry_later_and_counts_the_spans(collector):
    collector.store.max_pending_spans = 5  # as if the writer had fallen far behind
    status, headers, body = request(
        collector.otlp_port, "POST", "/v1/traces", otlp_batch("flood", 8, time.time_ns()), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 503 and headers["retry-after"] == "1"
    assert body.startswith(b"\x08\x0e")  # google.rpc.Status code 14, UNAVAILABLE
    post_protobuf(collector, otlp_batch("trickle", 3, time.time_ns()))
    assert collector.wait_for_spans(3, timeout=10) == 3
    stats = api_get(collector, "/api/stats")
    assert stats["rejected_spans"]["otlp_http"] == 8 and stats["dropped"] == 8
    assert stats["received"]["otlp_http"] == 3
    assert api_get(collector, "/api/services")["data"] == ["trickle"]
