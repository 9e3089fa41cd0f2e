"""The collector's limits on what it is sent and what it keeps, over real sockets.

* every query parameter out of range is a 400 with a message (the six overflow cases);
* ``max_db_bytes`` keeps the database's used size under the limit, newest spans kept;
* a span dated far in the future is stored at arrival time, the original start in a tag,
  so age retention applies to it;
* an attribute nested 50 deep keeps its span (the value is truncated, the request kept).
"""

from __future__ import annotations

import json
import time

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from aiecs_tracing.collector.otlp_depth import MAX_VALUE_DEPTH, TRUNCATED, varint
from aiecs_tracing.collector.server import Collector
from tests.integration.test_collector import api_get, otlp_batch, request, tag_map, traces_query

pytestmark = pytest.mark.slow

PROTOBUF = {"Content-Type": "application/x-protobuf"}
HUGE = "9" * 30


@pytest.mark.parametrize(
    "path",
    [
        f"/api/traces?service=s&limit={HUGE}",
        f"/api/traces?service=s&lookback={HUGE}h",
        f"/api/traces?service=s&start={HUGE}",
        f"/api/traces?service=s&end={HUGE}",
        f"/api/traces?service=s&minDuration={HUGE}s",
        f"/api/dependencies?endTs={HUGE}",
        f"/api/dependencies?lookback={HUGE}",
        "/api/dependencies?endTs=9223372036854775&lookback=9223372036854775",
        "/api/traces?service=s&start=-9223372036854775808",
        f"/api/traces?service=s&maxDuration={HUGE}h",
        "/api/traces?service=s&limit=12x",
    ],
)
def test_out_of_range_query_parameters_are_400_with_a_message(path):
    with Collector(otlp_port=None, udp_port=None, ui_port=0) as c:
        status, _headers, body = request(c.ui_port, "GET", path)
        assert status == 400, (path, status, body[:200])
        (error,) = json.loads(body)["errors"]
        assert error["code"] == 400 and error["msg"]


def test_retention_by_bytes_keeps_the_used_size_under_the_limit(tmp_path):
    limit = 2 * 1024 * 1024
    with Collector(otlp_port=0, udp_port=None, ui_port=0, db_path=tmp_path / "b.sqlite3", max_db_bytes=limit) as c:
        now = time.time_ns()
        for batch in range(30):  # ~7 MiB of spans in all
            body = ExportTraceServiceRequest.FromString(otlp_batch(f"svc-{batch}", 200, now + batch * 10**6))
            for span in body.resource_spans[0].scope_spans[0].spans:
                attribute = span.attributes.add()
                attribute.key, attribute.value.string_value = "blob", "x" * 1000
            status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", body.SerializeToString(), PROTOBUF)
            assert status == 200
        assert c.flush(10)
        c.store._apply_retention()  # the writer thread would do so after its next write
        stats = api_get(c, "/api/stats")
        assert c.store.used_bytes() <= limit
        assert 0 < stats["store"]["spans"] < 30 * 200
        assert stats["store"]["max_db_bytes"] == limit
        assert len(traces_query(c, service="svc-29", limit=1000)) == 200  # the newest are kept
        assert traces_query(c, service="svc-0") == []
        assert (tmp_path / "b.sqlite3").stat().st_size <= limit + 1024 * 1024  # pages given back


def test_spans_from_the_far_future_are_stored_now_with_their_original_start():
    hundred_years_ns = 100 * 365 * 24 * 3600 * 10**9
    with Collector(otlp_port=0, udp_port=None, ui_port=0, max_age_seconds=3600) as c:
        future_ns = time.time_ns() + hundred_years_ns
        status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", otlp_batch("time-traveller", 1, future_ns), PROTOBUF)
        assert status == 200
        soon_ns = time.time_ns() + 3600 * 10**9  # an hour ahead: clock skew, kept as sent
        status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", otlp_batch("skewed", 1, soon_ns), PROTOBUF)
        assert status == 200
        (trace,) = traces_query(c, service="time-traveller")
        (span,) = trace["spans"]
        assert abs(span["startTime"] - time.time() * 1_000_000) < 60 * 1_000_000
        assert tag_map(span["tags"])["aiecs.original_start_us"] == ("int64", future_ns // 1000)
        (trace,) = traces_query(c, service="skewed", end=str(soon_ns // 1000 + 10))
        assert trace["spans"][0]["startTime"] == soon_ns // 1000
        assert api_get(c, "/api/stats")["store"]["clamped_future"] == 1


def deep_request(depth: int) -> bytes:
    """One span whose 'deep' attribute is a kvlist nested ``depth`` times (built on the wire:
    the protobuf runtime itself refuses to build or parse it)."""
    value = AnyValue(string_value="leaf").SerializeToString()
    for level in range(depth):
        key = f"k{level}".encode()
        key_value = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(value)) + value
        kvlist = b"\x0a" + varint(len(key_value)) + key_value
        value = b"\x32" + varint(len(kvlist)) + kvlist
    request_pb = ExportTraceServiceRequest.FromString(otlp_batch("deep", 1, time.time_ns()))
    span = request_pb.resource_spans[0].scope_spans[0].spans[0]
    attribute = span.attributes.add()
    attribute.key, attribute.value.int_value = "shallow", 7
    deep = b"\x0a\x04deep\x12" + varint(len(value)) + value
    span_bytes = span.SerializeToString() + b"\x4a" + varint(len(deep)) + deep
    del request_pb.resource_spans[0].scope_spans[0].spans[:]
    scope = request_pb.resource_spans[0].scope_spans[0].SerializeToString() + b"\x12" + varint(len(span_bytes)) + span_bytes
    resource_spans = request_pb.resource_spans[0]
    resource_spans.ClearField("scope_spans")
    resource = resource_spans.SerializeToString() + b"\x12" + varint(len(scope)) + scope
    return b"\x0a" + varint(len(resource)) + resource


def test_an_attribute_nested_50_deep_keeps_its_span():
    body = deep_request(50)
    with pytest.raises(DecodeError):  # what used to refuse the whole request
        ExportTraceServiceRequest.FromString(body)
    with Collector(otlp_port=0, udp_port=None, ui_port=0) as c:
        status, _headers, response = request(c.otlp_port, "POST", "/v1/traces", body, PROTOBUF)
        assert status == 200, response
        (trace,) = traces_query(c, service="deep")
        tags = tag_map(trace["spans"][0]["tags"])
        assert tags["shallow"] == ("int64", 7)
        text = tags["deep"][1]
        assert TRUNCATED in text and text.count("{") == MAX_VALUE_DEPTH
        # The same depth in OTLP JSON is no trouble: kept whole.
        value: dict = {"stringValue": "leaf"}
        for level in range(50):
            value = {"kvlistValue": {"values": [{"key": f"k{level}", "value": value}]}}
        span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "deep-json", "attributes": [{"key": "deep", "value": value}]}
        document = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
        status, _headers, response = request(
            c.otlp_port, "POST", "/v1/traces", json.dumps(document).encode(), {"Content-Type": "application/json"}
        )
        assert status == 200, response
