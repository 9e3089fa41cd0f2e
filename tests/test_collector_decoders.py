"""Collector decoders and parsers, without sockets.

Property tests pit our decoders against independent encoders: jaeger-client's generated
thrift code for the UDP path, and protobuf's own JSON mapping for OTLP JSON vs protobuf.
"""

from __future__ import annotations

import base64
import json
import math

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaeger_client.thrift_gen.jaeger import ttypes as jaeger
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aiecs_tracing.collector.api import (
    ApiError,
    parse_duration_us,
    parse_logfmt,
    parse_lookback_us,
    parse_tags,
    parse_trace_query,
    resolve_static,
)
from aiecs_tracing.collector.model import (
    BINARY,
    BOOL,
    CHILD_OF,
    FLOAT64,
    FOLLOWS_FROM,
    INT64,
    MAX_TIME_US,
    STRING,
    Process,
    SpanRecord,
    normalize_trace_id,
)
from aiecs_tracing.collector.otlp import OtlpDecodeError, decode_json, decode_protobuf, pack_protobuf
from aiecs_tracing.collector.packing import pack_record, unpack
from aiecs_tracing.collector.thrift_compact import ThriftDecodeError, decode_emit_batch, decode_message
from tests.wire import encode_with_jaeger_client

i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
nonzero_i64 = i64.filter(bool)
text = st.text(max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- thrift compact vs jaeger-client




ascii_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12)


@st.composite
def jaeger_tags(draw: st.DrawFn) -> jaeger.Tag:
    key = draw(text)
    kind = draw(st.sampled_from(["str", "double", "bool", "long", "binary"]))
    if kind == "str":
        return jaeger.Tag(key=key, vType=jaeger.TagType.STRING, vStr=draw(text))
    if kind == "double":
        return jaeger.Tag(key=key, vType=jaeger.TagType.DOUBLE, vDouble=draw(finite))
    if kind == "bool":
        return jaeger.Tag(key=key, vType=jaeger.TagType.BOOL, vBool=draw(st.booleans()))
    if kind == "long":
        return jaeger.Tag(key=key, vType=jaeger.TagType.LONG, vLong=draw(i64))
    # jaeger-client's generated code writes "binary" with writeString, so it takes text.
    return jaeger.Tag(key=key, vType=jaeger.TagType.BINARY, vBinary=draw(ascii_text))


@st.composite
def jaeger_spans(draw: st.DrawFn) -> jaeger.Span:
    references = draw(
        st.lists(
            st.builds(
                jaeger.SpanRef,
                refType=st.sampled_from([jaeger.SpanRefType.CHILD_OF, jaeger.SpanRefType.FOLLOWS_FROM]),
                traceIdLow=i64,
                traceIdHigh=i64,
                spanId=nonzero_i64,
            ),
            max_size=2,
        )
    )
    return jaeger.Span(
        traceIdLow=draw(i64),
        traceIdHigh=draw(i64),
        spanId=draw(nonzero_i64),
        parentSpanId=draw(st.one_of(st.just(0), nonzero_i64)),
        operationName=draw(text),
        references=references or None,
        flags=draw(st.integers(min_value=0, max_value=3)),
        startTime=draw(st.integers(min_value=0, max_value=MAX_TIME_US)),
        duration=draw(st.integers(min_value=0, max_value=2**40)),
        tags=draw(st.lists(jaeger_tags(), max_size=6)) or None,
        logs=draw(
            st.lists(
                st.builds(jaeger.Log, timestamp=st.integers(min_value=0, max_value=MAX_TIME_US), fields=st.lists(jaeger_tags(), max_size=3)),
                max_size=3,
            )
        )
        or None,
    )


def expected_tag(tag: jaeger.Tag) -> tuple:
    if tag.vType == jaeger.TagType.STRING:
        return (tag.key, STRING, tag.vStr)
    if tag.vType == jaeger.TagType.DOUBLE:
        return (tag.key, FLOAT64, tag.vDouble)
    if tag.vType == jaeger.TagType.BOOL:
        return (tag.key, BOOL, tag.vBool)
    if tag.vType == jaeger.TagType.LONG:
        return (tag.key, INT64, tag.vLong)
    return (tag.key, BINARY, base64.b64encode(tag.vBinary.encode()).decode())


def u64_hex(value: int, width: int = 16) -> str:
    return format(value & (2**64 - 1), f"0{width}x")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    service=text,
    process_tags=st.lists(jaeger_tags(), max_size=3),
    spans=st.lists(jaeger_spans(), min_size=1, max_size=4),
)
def test_thrift_decoder_reads_what_jaeger_client_encodes(service, process_tags, spans):
    datagram = encode_with_jaeger_client(
        jaeger.Batch(process=jaeger.Process(serviceName=service, tags=process_tags), spans=spans)
    )
    records = decode_emit_batch(datagram)
    assert len(records) == len(spans)
    for record, span in zip(records, spans, strict=True):
        trace_id = u64_hex(span.traceIdHigh) + u64_hex(span.traceIdLow)
        assert record.trace_id == trace_id
        assert record.span_id == u64_hex(span.spanId)
        assert record.operation == span.operationName
        assert record.service == (service or "unknown")
        assert record.process_tags == [expected_tag(t) for t in process_tags]
        assert (record.start_us, record.duration_us, record.flags) == (span.startTime, span.duration, span.flags)
        assert record.tags == [expected_tag(t) for t in span.tags or []]
        assert record.logs == [(log.timestamp, [expected_tag(t) for t in log.fields]) for log in span.logs or []]
        refs = [
            (CHILD_OF if r.refType == jaeger.SpanRefType.CHILD_OF else FOLLOWS_FROM, u64_hex(r.traceIdHigh) + u64_hex(r.traceIdLow), u64_hex(r.spanId))
            for r in span.references or []
        ]
        if span.parentSpanId:
            parent_ref = (CHILD_OF, trace_id, u64_hex(span.parentSpanId))
            assert record.parent_span_id == u64_hex(span.parentSpanId)
            assert record.references == [parent_ref] + [r for r in refs if r != parent_ref]
        else:
            assert sorted(record.references) == sorted(refs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_thrift_decoder_only_ever_raises_its_own_error_on_garbage(data):
    try:
        decode_emit_batch(data)
    except ThriftDecodeError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_thrift_decoder_survives_corrupted_real_datagrams(data):
    span = jaeger.Span(traceIdLow=1, traceIdHigh=2, spanId=3, parentSpanId=0, operationName="op", flags=1, startTime=5, duration=6, tags=[jaeger.Tag(key="k", vType=0, vStr="v")])
    datagram = bytearray(encode_with_jaeger_client(jaeger.Batch(process=jaeger.Process(serviceName="s"), spans=[span])))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(datagram) - 1))
        datagram[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decode_emit_batch(bytes(datagram))
    except ThriftDecodeError:
        pass


def test_thrift_message_header_and_limits():
    datagram = encode_with_jaeger_client(jaeger.Batch(process=jaeger.Process(serviceName="s"), spans=[]))
    name, message_type, sequence_id, arguments = decode_message(datagram)
    assert (name, message_type, sequence_id) == ("emitBatch", 4, 1)
    assert arguments[1][1][1] == b"s"
    with pytest.raises(ThriftDecodeError):
        decode_message(b"\x80\x01\x00\x01")  # binary protocol, not compact
    with pytest.raises(ThriftDecodeError, match="list size"):
        decode_message(b"\x82\x81\x01\x09emitBatch\x19\xfc\xff\xff\xff\x0f")
    with pytest.raises(ThriftDecodeError, match="too deep"):
        decode_message(b"\x82\x81\x01\x09emitBatch" + b"\x1c" * 100)


# --------------------------------------------------------------------------- OTLP JSON vs protobuf

any_scalar = st.one_of(
    text.map(lambda v: ("string_value", v)),
    st.booleans().map(lambda v: ("bool_value", v)),
    i64.map(lambda v: ("int_value", v)),
    finite.map(lambda v: ("double_value", v)),
    st.binary(max_size=8).map(lambda v: ("bytes_value", v)),
)
attributes = st.lists(st.tuples(text, st.one_of(any_scalar, st.lists(any_scalar, max_size=3).map(lambda v: ("array", v)))), max_size=5)


def fill_attributes(target, pairs) -> None:
    for key, (kind, value) in pairs:
        kv = target.add()
        kv.key = key
        if kind == "array":
            for item_kind, item_value in value:
                setattr(kv.value.array_value.values.add(), item_kind, item_value)
        else:
            setattr(kv.value, kind, value)


@st.composite
def export_requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        resource_spans = request.resource_spans.add()
        fill_attributes(resource_spans.resource.attributes, draw(attributes))
        if draw(st.booleans()):
            kv = resource_spans.resource.attributes.add()
            kv.key, kv.value.string_value = "service.name", draw(text)
        for _ in range(draw(st.integers(min_value=1, max_value=2))):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = draw(text)
            scope_spans.scope.version = draw(text)
            for _ in range(draw(st.integers(min_value=0, max_value=3))):
                span = scope_spans.spans.add()
                span.trace_id = draw(st.binary(min_size=16, max_size=16))
                span.span_id = draw(st.binary(min_size=8, max_size=8))
                if draw(st.booleans()):
                    span.parent_span_id = draw(st.binary(min_size=8, max_size=8))
                span.name = draw(text)
                span.kind = draw(st.integers(min_value=0, max_value=5))
                span.start_time_unix_nano = draw(st.integers(min_value=0, max_value=2**62))
                span.end_time_unix_nano = span.start_time_unix_nano + draw(st.integers(min_value=0, max_value=2**40))
                span.flags = draw(st.integers(min_value=0, max_value=0x301))
                span.trace_state = draw(st.sampled_from(["", "vendor=1"]))
                fill_attributes(span.attributes, draw(attributes))
                for _ in range(draw(st.integers(min_value=0, max_value=2))):
                    event = span.events.add()
                    event.name = draw(text)
                    event.time_unix_nano = draw(st.integers(min_value=0, max_value=2**62))
                    fill_attributes(event.attributes, draw(attributes))
                for _ in range(draw(st.integers(min_value=0, max_value=2))):
                    link = span.links.add()
                    link.trace_id = draw(st.binary(min_size=16, max_size=16))
                    link.span_id = draw(st.binary(min_size=8, max_size=8))
                span.status.code = draw(st.integers(min_value=0, max_value=2))
                span.status.message = draw(st.sampled_from(["", "went wrong"]))
    return request


def to_otlp_json(request: ExportTraceServiceRequest, integer_enums: bool) -> bytes:
    """protobuf's JSON mapping, then the OTLP deviation: ids are hex, not base64."""
    document = MessageToDict(request, use_integers_for_enums=integer_enums)

    def hexify(node):
        if isinstance(node, dict):
            return {
                key: base64.b64decode(value).hex() if key in ("traceId", "spanId", "parentSpanId") else hexify(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [hexify(item) for item in node]
        return node

    return json.dumps(hexify(document)).encode()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=export_requests(), integer_enums=st.booleans())
def test_otlp_json_and_protobuf_decode_to_the_same_records(request, integer_enums):
    from_protobuf = decode_protobuf(request.SerializeToString())
    from_json = decode_json(to_otlp_json(request, integer_enums))
    assert from_json == from_protobuf


def test_otlp_protobuf_decode_maps_ids_kinds_and_status():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.parent_span_id = b"\x01" * 16, b"\x02" * 8, b"\x03" * 8
    span.kind, span.name = 4, "publish"
    span.start_time_unix_nano, span.end_time_unix_nano = 5_000_999, 7_000_000
    span.status.code = 2
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id, bad.span_id = b"\x00" * 16, b"\x02" * 8
    (record,), rejected, reason = decode_protobuf(request.SerializeToString())
    assert (rejected, bool(reason)) == (1, True)
    assert record.trace_id == "01" * 16 and record.span_id == "02" * 8 and record.parent_span_id == "03" * 8
    assert record.references == [(CHILD_OF, "01" * 16, "03" * 8)]
    assert (record.kind, record.error, record.start_us, record.duration_us) == ("producer", True, 5000, 1999)
    assert ("span.kind", STRING, "producer") in record.tags and ("error", BOOL, True) in record.tags
    with pytest.raises(OtlpDecodeError):
        pack_protobuf(b"\x0a\xff\xff\xff")


@settings(max_examples=60, deadline=None)
@given(
    tags=st.lists(
        st.one_of(
            st.tuples(text, st.just(STRING), text),
            st.tuples(text, st.just(BOOL), st.booleans()),
            st.tuples(text, st.just(INT64), i64),
            st.tuples(text, st.just(FLOAT64), finite),
            st.tuples(text, st.just(BINARY), st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode())),
        ),
        max_size=6,
    ),
    logs=st.lists(st.tuples(st.integers(min_value=0, max_value=MAX_TIME_US), st.lists(st.tuples(text, st.just(STRING), text), max_size=2)), max_size=3),
    extra_refs=st.lists(
        st.tuples(st.sampled_from([CHILD_OF, FOLLOWS_FROM]), st.text("0123456789abcdef", min_size=32, max_size=32), st.text("0123456789abcdef", min_size=16, max_size=16)),
        max_size=2,
    ),
    with_parent=st.booleans(),
)
def test_packing_round_trips_explicit_records(tags, logs, extra_refs, with_parent):
    trace_id, parent = "ab" * 16, ("cd" * 8 if with_parent else "")
    references = ([(CHILD_OF, trace_id, parent)] if parent else []) + extra_refs
    record = SpanRecord(trace_id, "ef" * 8, parent, "op", Process("svc", [("host", STRING, "h")]), 10, 20, tags, logs, references, "client", False, 1)
    packed = pack_record(record)
    restored = unpack(
        packed.payload,
        trace_id=packed.trace_id,
        span_id=packed.span_id,
        parent_id=packed.parent_id,
        operation=packed.operation,
        kind=packed.kind,
        process=record.process,
        shared_span_tags=[],
        start_us=packed.start_us,
        duration_us=packed.duration_us,
    )
    record.error = any(key == "error" and value in (True, "true") for key, _type, value in tags)
    assert restored == record


# --------------------------------------------------------------------------- query parameters


@pytest.mark.parametrize(
    ("text", "micros"),
    [("1.2s", 1_200_000), ("100ms", 100_000), ("500us", 500), ("500µs", 500), ("1h30m", 5_400_000_000), ("2500ns", 2), ("0", 0), (".5s", 500_000)],
)
def test_go_durations(text, micros):
    assert parse_duration_us(text) == micros


@pytest.mark.parametrize("text", ["", "5", "fast", "1.2", "1sm", "ms", "1 s"])
def test_bad_go_durations(text):
    with pytest.raises(ValueError):
        parse_duration_us(text)


def test_lookbacks_accept_days_and_weeks():
    assert parse_lookback_us("2d") == 2 * 86_400_000_000
    assert parse_lookback_us("1w") == 7 * 86_400_000_000
    assert parse_lookback_us("1h") == 3_600_000_000
    assert parse_lookback_us("90m") == 5_400_000_000


def test_tags_as_json_logfmt_and_tag_params():
    assert parse_tags([], ['{"error": true, "http.status_code": 500, "a": "b c"}']) == {
        "error": "true",
        "http.status_code": "500",
        "a": "b c",
    }
    assert parse_tags([], ['error=true msg="a \\"quoted\\" b" k=v=w']) == {"error": "true", "msg": 'a "quoted" b', "k": "v=w"}
    assert parse_tags(["db.statement:select 1:2", "x:"], []) == {"db.statement": "select 1:2", "x": ""}
    assert parse_logfmt("") == {}
    with pytest.raises(ApiError):
        parse_tags(["no-colon"], [])
    with pytest.raises(ApiError):
        parse_tags([], ["=novalue"])


def test_trace_query_defaults_follow_jaeger():
    now = 10 * 86_400_000_000
    query = parse_trace_query({"service": ["s"]}, now)
    assert (query.start_min_us, query.start_max_us, query.limit) == (now - 2 * 86_400_000_000, now, 100)
    assert query.duration_min_us is None and query.tags == {}
    query = parse_trace_query({"service": ["s"], "lookback": ["1h"], "limit": ["20"], "minDuration": ["5ms"]}, now)
    assert (query.start_min_us, query.limit, query.duration_min_us) == (now - 3_600_000_000, 20, 5000)
    query = parse_trace_query({"service": ["s"], "start": ["5"], "end": ["9"], "lookback": ["custom"]}, now)
    assert (query.start_min_us, query.start_max_us) == (5, 9)


def test_trace_ids_accept_jaeger_short_form():
    assert normalize_trace_id("1234") == "0" * 28 + "1234"
    assert normalize_trace_id("AB" * 16) == "ab" * 16
    assert normalize_trace_id("xyz") is None
    assert normalize_trace_id("1" * 33) is None


def test_static_files_never_escape_the_ui_directory(tmp_path):
    root = tmp_path / "ui"
    (root / "sub").mkdir(parents=True)
    (root / "app.js").write_text("ok")
    (root / "sub" / "x.css").write_text("ok")
    (tmp_path / "secret.txt").write_text("no")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    assert resolve_static(root, "app.js") == (root / "app.js").resolve()
    assert resolve_static(root, "sub/x.css") == (root / "sub" / "x.css").resolve()
    for sneaky in ("../secret.txt", "sub/../../secret.txt", "/etc/passwd", "link.txt", "", "sub", "a\x00b", "..\\secret.txt"):
        assert resolve_static(root, sneaky) is None, sneaky


def test_non_finite_doubles_become_readable_strings():
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id = b"\x01" * 16, b"\x02" * 8
    kv = span.attributes.add()
    kv.key, kv.value.double_value = "ratio", math.nan
    (record,), _, _ = decode_protobuf(request.SerializeToString())
    assert record.tags[0] == ("ratio", STRING, "nan")


def test_one_unstorable_span_does_not_cost_its_batch(tmp_path):
    from aiecs_tracing.collector.store import SpanStore

    store = SpanStore(tmp_path / "t.sqlite3").start()
    try:
        good = [SpanRecord("ab" * 16, f"{i:016x}", "", "op", Process("svc"), 10, 5) for i in range(1, 4)]
        rows = [pack_record(record) for record in good]
        poison = rows[1]._replace(duration_us=2**70)  # no SQLite integer holds this
        assert store.submit_packed([rows[0], poison, rows[2]])
        assert store.flush(10)
        assert store.counters()["write_errors"] == 1
        assert [r.span_id for r in store.get_records(["ab" * 16])] == [good[0].span_id, good[2].span_id]
    finally:
        store.stop()


def test_json_lone_surrogates_are_a_decode_error_but_pairs_are_fine():
    span = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "NAME"}
    document = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    with pytest.raises(OtlpDecodeError, match="surrogate"):
        decode_json(document.replace("NAME", "\\ud800").encode())
    (record,), _, _ = decode_json(document.replace("NAME", "\\ud83d\\ude00").encode())
    assert record.operation == "\U0001f600"


tag_strategy = st.one_of(
    st.tuples(text, st.just(STRING), text),
    st.tuples(text, st.just(BOOL), st.booleans()),
    st.tuples(text, st.just(INT64), i64),
    st.tuples(text, st.just(FLOAT64), finite),
    st.tuples(text, st.just(BINARY), st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode())),
)


@settings(max_examples=60, deadline=None)
@given(
    spans=st.lists(
        st.tuples(
            st.sampled_from(["aa" * 16, "bb" * 16]),
            st.sampled_from([Process("a", []), Process("b", [("h", STRING, "x\\\"y\u00e9")]), Process("a", [])]),
            text,
            st.lists(tag_strategy, max_size=4),
            st.lists(st.tuples(st.integers(min_value=0, max_value=MAX_TIME_US), st.lists(tag_strategy, max_size=2)), max_size=2),
        ),
        max_size=6,
    )
)
def test_json_text_renderer_matches_the_dict_renderer(spans):
    from aiecs_tracing.collector.jaeger_json import jaeger_traces, traces_json

    records = [
        SpanRecord(trace_id, f"{n + 1:016x}", "", operation, process, n, 2 * n, tags, logs, [(FOLLOWS_FROM, trace_id, "cd" * 8)])
        for n, (trace_id, process, operation, tags, logs) in enumerate(spans)
    ]
    as_text = traces_json(records)
    as_dicts = jaeger_traces(records)
    assert list(as_text) == [trace["traceID"] for trace in as_dicts]
    assert [json.loads(text) for text in as_text.values()] == as_dicts


def test_an_open_read_never_blocks_the_writer(tmp_path):
    from aiecs_tracing.collector.store import SpanStore

    store = SpanStore(tmp_path / "t.sqlite3").start()
    try:
        first = [SpanRecord("ab" * 16, f"{i:016x}", "", "op", Process("svc"), i, 1) for i in range(1, 51)]
        assert store.submit(first) and store.flush(10)
        with store._reader() as db:
            cursor = db.execute("SELECT span_id FROM spans")
            cursor.fetchone()  # a read transaction is now open and holds its snapshot
            more = [SpanRecord("cd" * 16, f"{i:016x}", "", "op", Process("svc"), i, 1) for i in range(1, 51)]
            assert store.submit(more)
            assert store.wait_for_stored(100, timeout=10) == 100  # written while the read is open
            assert len(cursor.fetchall()) == 49  # and the reader still sees its own snapshot
        assert len(store.get_records(["cd" * 16])) == 50
    finally:
        store.stop()


def test_a_database_from_a_newer_schema_is_refused(tmp_path):
    import sqlite3

    from aiecs_tracing.collector.store import SpanStore

    path = tmp_path / "future.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        SpanStore(path)
