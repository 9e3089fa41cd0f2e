"""JaegerUDPExporter end to end: real SDK spans -> real UDP datagrams -> jaeger-client's own decoder.

The decoder is jaeger-client's generated thrift code (``Agent.emitBatch_args``) over thrift's
``TCompactProtocol`` -- independent of our encoder, so what decodes here is what a Jaeger agent reads.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger.ttypes import SpanRefType, TagType
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from thrift.protocol import TCompactProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TTransport

from aiecs_tracing.core import guard
from aiecs_tracing.core.exporters.jaeger_thrift import (
    encode_emit_batch,
    encode_process,
    encode_span,
)
from aiecs_tracing.core.exporters.jaeger_udp import JaegerUDPExporter
from aiecs_tracing.core.resources import jaeger_process_tags
from tests.wire import unreceived_udp_port

WAIT_SECONDS = 15.0  # upper bound for datagrams already sent to arrive; never a timing assertion


# --- helpers ---------------------------------------------------------------------------------------


def decode_datagram(data: bytes) -> Any:
    """``Batch`` from one datagram, checking it is a oneway ``emitBatch`` call."""
    protocol = TCompactProtocol.TCompactProtocol(TTransport.TMemoryBuffer(data))
    name, message_type, _seq_id = protocol.readMessageBegin()
    assert name == "emitBatch"
    assert message_type == TMessageType.ONEWAY
    args = Agent.emitBatch_args()
    args.read(protocol)
    protocol.readMessageEnd()
    return args.batch


def u64(signed: int) -> int:
    return signed & 0xFFFFFFFFFFFFFFFF


def wire_trace_id(span: Any) -> int:
    return (u64(span.traceIdHigh) << 64) | u64(span.traceIdLow)


def tag_map(tags: list[Any] | None) -> dict[str, Any]:
    """key -> Tag, failing on duplicate keys (Jaeger shows duplicates as two rows)."""
    result: dict[str, Any] = {}
    for tag in tags or []:
        assert tag.key not in result, f"duplicate tag {tag.key}"
        result[tag.key] = tag
    return result


def tag_value(tag: Any) -> Any:
    return {
        TagType.STRING: tag.vStr,
        TagType.BOOL: tag.vBool,
        TagType.LONG: tag.vLong,
        TagType.DOUBLE: tag.vDouble,
        TagType.BINARY: tag.vBinary,
    }[tag.vType]


class AgentSocket:
    """A UDP socket standing in for the Jaeger agent; a thread drains it so no datagram is dropped."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: list[tuple[bytes, Any]] = []
        self._batches: list[Any] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop:
            try:
                data, sender = self.sock.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.datagrams.append((data, sender))
                self._cond.notify_all()

    def batches(self) -> list[Any]:
        """Decoded batches of everything received so far (each datagram is decoded once)."""
        with self._cond:
            fresh = [data for data, _ in self.datagrams[len(self._batches) :]]
        self._batches.extend(decode_datagram(data) for data in fresh)
        return list(self._batches)

    def spans(self) -> list[Any]:
        return [span for batch in self.batches() for span in batch.spans]

    def wait_for_spans(self, count: int) -> list[Any]:
        """All spans received once at least ``count`` arrived (or the generous deadline passed)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            with self._cond:
                seen = len(self.datagrams)
            spans = self.spans()
            remaining = deadline - time.monotonic()
            if len(spans) >= count or remaining <= 0:
                return spans
            with self._cond:
                if len(self.datagrams) == seen:
                    self._cond.wait(remaining)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def agent() -> Iterator[AgentSocket]:
    receiver = AgentSocket()
    yield receiver
    receiver.close()


def make_provider(processor_exporter: Any, service: str = "checkout", **resource: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
    provider.add_span_processor(SimpleSpanProcessor(processor_exporter))
    return provider


@pytest.fixture
def traced(agent: AgentSocket) -> Iterator[tuple[Any, JaegerUDPExporter]]:
    """A tracer whose spans go through SimpleSpanProcessor(JaegerUDPExporter) to ``agent``."""
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)
    provider = make_provider(exporter, **{"deployment.environment": "test"})
    yield provider.get_tracer("tests.jaeger", "9.9"), exporter
    provider.shutdown()


def by_name(spans: list[Any]) -> dict[str, Any]:
    return {span.operationName: span for span in spans}


# --- wire content ----------------------------------------------------------------------------------


def test_process_carries_service_name_resource_and_host_tags(agent: AgentSocket) -> None:
    exporter = JaegerUDPExporter("127.0.0.1", agent.port, extra_process_tags={"region": "eu-1"})
    provider = make_provider(exporter, service="payments", **{"deployment.environment": "staging"})
    with provider.get_tracer("t").start_as_current_span("charge"):
        pass
    provider.shutdown()

    agent.wait_for_spans(1)
    (batch,) = agent.batches()
    assert batch.process.serviceName == "payments"
    tags = {key: tag_value(tag) for key, tag in tag_map(batch.process.tags).items()}
    assert tags["hostname"] == socket.gethostname()
    assert tags["deployment.environment"] == "staging"
    assert tags["region"] == "eu-1"
    assert tags["jaeger.version"].startswith("Python-aiecs-tracing-")
    assert socket.inet_aton(tags["ip"])  # a dotted IPv4
    assert "service.name" not in tags
    assert exporter.host == "127.0.0.1" and exporter.port == agent.port


def test_trace_ids_parent_and_child_of_reference(agent: AgentSocket, traced: Any) -> None:
    tracer, exporter = traced
    with tracer.start_as_current_span("parent") as parent:
        with tracer.start_as_current_span("child") as child:
            pass

    spans = by_name(agent.wait_for_spans(2))
    wire_parent, wire_child = spans["parent"], spans["child"]
    trace_id = parent.get_span_context().trace_id
    assert wire_trace_id(wire_parent) == trace_id == wire_trace_id(wire_child)
    assert u64(wire_parent.spanId) == parent.get_span_context().span_id
    assert u64(wire_child.spanId) == child.get_span_context().span_id
    assert wire_parent.parentSpanId == 0 and not wire_parent.references
    assert u64(wire_child.parentSpanId) == parent.get_span_context().span_id
    (reference,) = wire_child.references
    assert reference.refType == SpanRefType.CHILD_OF
    assert u64(reference.spanId) == parent.get_span_context().span_id
    assert wire_trace_id(reference) == trace_id
    assert wire_child.flags == 1  # sampled
    assert exporter.spans_sent == 2 and exporter.packets_sent == 2


def test_times_are_microseconds(agent: AgentSocket) -> None:
    memory = InMemorySpanExporter()
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)
    provider = make_provider(memory)
    tracer = provider.get_tracer("t")
    span = tracer.start_span("timed", start_time=1_700_000_000_123_456_789)
    span.end(end_time=1_700_000_000_123_456_789 + 2_500_000)  # 2.5 ms later
    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS

    (wire,) = agent.wait_for_spans(1)
    assert wire.startTime == 1_700_000_000_123_456
    assert wire.duration == 2_500


def test_link_becomes_follows_from(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("producer-side") as earlier:
        pass
    with tracer.start_as_current_span("batch-job", links=[Link(earlier.get_span_context())]):
        pass

    job = by_name(agent.wait_for_spans(2))["batch-job"]
    (reference,) = job.references  # a root span: the link is its only reference
    assert reference.refType == SpanRefType.FOLLOWS_FROM
    assert u64(reference.spanId) == earlier.get_span_context().span_id
    assert wire_trace_id(reference) == earlier.get_span_context().trace_id


def test_attribute_types_land_in_matching_thrift_fields(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("typed") as span:
        span.set_attribute("s", "héllo ✓")
        span.set_attribute("b_true", True)
        span.set_attribute("b_false", False)
        span.set_attribute("i", -42)
        span.set_attribute("big", 2**63 - 1)
        span.set_attribute("f", 2.5)
        span.set_attribute("seq", ["a", "b"])
        span.set_attribute("ints", [1, 2, 3])

    tags = tag_map(agent.wait_for_spans(1)[0].tags)
    assert (tags["s"].vType, tags["s"].vStr) == (TagType.STRING, "héllo ✓")
    assert (tags["b_true"].vType, tags["b_true"].vBool) == (TagType.BOOL, True)
    assert (tags["b_false"].vType, tags["b_false"].vBool) == (TagType.BOOL, False)
    assert (tags["i"].vType, tags["i"].vLong) == (TagType.LONG, -42)
    assert (tags["big"].vType, tags["big"].vLong) == (TagType.LONG, 2**63 - 1)
    assert (tags["f"].vType, tags["f"].vDouble) == (TagType.DOUBLE, 2.5)
    assert tags["seq"].vType == TagType.STRING and json.loads(tags["seq"].vStr) == ["a", "b"]
    assert json.loads(tags["ints"].vStr) == [1, 2, 3]
    assert tags["otel.scope.name"].vStr == "tests.jaeger"
    assert tags["otel.scope.version"].vStr == "9.9"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (SpanKind.SERVER, "server"),
        (SpanKind.CLIENT, "client"),
        (SpanKind.PRODUCER, "producer"),
        (SpanKind.CONSUMER, "consumer"),
        (SpanKind.INTERNAL, None),
    ],
)
def test_span_kind_tag(agent: AgentSocket, traced: Any, kind: SpanKind, expected: str | None) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("op", kind=kind):
        pass
    tags = tag_map(agent.wait_for_spans(1)[0].tags)
    assert (tags["span.kind"].vStr if "span.kind" in tags else None) == expected


def test_explicit_span_kind_attribute_is_not_duplicated(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("op", kind=SpanKind.SERVER, attributes={"span.kind": "custom"}):
        pass
    tags = tag_map(agent.wait_for_spans(1)[0].tags)  # tag_map fails on duplicates
    assert tags["span.kind"].vStr == "custom"


def test_error_status_sets_error_tag_and_description(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("fails") as span:
        span.set_status(Status(StatusCode.ERROR, "card declined"))
    with tracer.start_as_current_span("fine") as span:
        span.set_status(Status(StatusCode.OK))
    with tracer.start_as_current_span("plain"):
        pass
    with tracer.start_as_current_span("own-error-attr", attributes={"error": "custom"}) as span:
        span.set_status(Status(StatusCode.ERROR))

    spans = by_name(agent.wait_for_spans(4))
    fails = tag_map(spans["fails"].tags)
    assert (fails["error"].vType, fails["error"].vBool) == (TagType.BOOL, True)
    assert fails["otel.status_code"].vStr == "ERROR"
    assert fails["otel.status_description"].vStr == "card declined"
    fine = tag_map(spans["fine"].tags)
    assert "error" not in fine and fine["otel.status_code"].vStr == "OK"
    plain = tag_map(spans["plain"].tags)
    assert "error" not in plain and "otel.status_code" not in plain
    own = tag_map(spans["own-error-attr"].tags)
    assert own["error"].vStr == "custom"
    assert "otel.status_description" not in own


def test_events_become_logs_with_typed_fields(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("with-events") as span:
        span.add_event(
            "cache.miss",
            {"key": "user:1", "attempt": 2, "cold": True, "ratio": 0.5},
            timestamp=1_700_000_001_000_999,
        )
        span.add_event("bare")
        span.record_exception(ValueError("nope"))

    (wire,) = agent.wait_for_spans(1)
    assert len(wire.logs) == 3
    first = wire.logs[0]
    assert first.timestamp == 1_700_000_001_000
    fields = {key: tag_value(tag) for key, tag in tag_map(first.fields).items()}
    assert fields == {"event": "cache.miss", "key": "user:1", "attempt": 2, "cold": True, "ratio": 0.5}
    assert tag_map(first.fields)["attempt"].vType == TagType.LONG
    assert {key: tag_value(tag) for key, tag in tag_map(wire.logs[1].fields).items()} == {"event": "bare"}
    exception_fields = {key: tag_value(tag) for key, tag in tag_map(wire.logs[2].fields).items()}
    assert exception_fields["event"] == "exception"
    assert exception_fields["exception.type"] == "ValueError"
    assert exception_fields["exception.message"] == "nope"


# --- packet sizing ---------------------------------------------------------------------------------


def _finished_spans(count: int, big_every: int, big_size: int) -> list[Any]:
    memory = InMemorySpanExporter()
    provider = make_provider(memory)
    tracer = provider.get_tracer("bulk")
    with tracer.start_as_current_span("root"):
        for index in range(count):
            with tracer.start_as_current_span(f"work-{index}") as span:
                span.set_attribute("index", index)
                span.set_attribute("payload", "x" * (big_size if index % big_every == 0 else 20))
    return list(memory.get_finished_spans())


def test_many_spans_split_into_packets_within_limit(agent: AgentSocket) -> None:
    spans = _finished_spans(2000, big_every=10, big_size=4000)
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)

    assert exporter.export(spans) is SpanExportResult.SUCCESS
    received = agent.wait_for_spans(len(spans))

    sizes = [len(data) for data, _ in agent.datagrams]
    assert len(sizes) > 5
    assert max(sizes) <= 65000
    assert sorted(u64(span.spanId) for span in received) == sorted(s.context.span_id for s in spans)
    assert exporter.packets_sent == len(sizes)
    assert exporter.spans_sent == len(spans)


def test_custom_max_packet_size_is_respected(agent: AgentSocket) -> None:
    spans = _finished_spans(300, big_every=7, big_size=1500)
    exporter = JaegerUDPExporter("127.0.0.1", agent.port, max_packet_size=4096)

    assert exporter.export(spans) is SpanExportResult.SUCCESS
    received = agent.wait_for_spans(len(spans))

    assert max(len(data) for data, _ in agent.datagrams) <= 4096
    assert len(received) == len(spans)


def test_oversized_span_arrives_truncated_in_one_packet(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("huge") as span:
        span.set_attribute("blob", "y" * 200_000)
        span.set_attribute("request.id", "r-123")
        for index in range(300):  # the SDK keeps the last 128: still ~80 KB of logs
            span.add_event("step", {"index": index, "detail": "z" * 600})

    (wire,) = agent.wait_for_spans(1)
    ((data, _),) = agent.datagrams
    assert len(data) <= 65000
    tags = tag_map(wire.tags)
    assert tags["request.id"].vStr == "r-123"
    assert tags["blob"].vStr.startswith("yyyy") and len(tags["blob"].vStr) < 200_000
    assert "cut to" in tags["aiecs.truncated"].vStr
    # the kept events alone exceed the datagram, so they were dropped and counted
    assert not wire.logs
    assert tags["aiecs.dropped_logs"].vLong == len(span.events) == 128


def test_big_attribute_alone_is_cut_but_logs_are_kept(agent: AgentSocket, traced: Any) -> None:
    tracer, _ = traced
    with tracer.start_as_current_span("big-attr") as span:
        span.set_attribute("blob", "q" * 100_000)
        span.add_event("checkpoint", {"n": 1})

    (wire,) = agent.wait_for_spans(1)
    tags = tag_map(wire.tags)
    assert len(tags["blob"].vStr) < 100_000
    assert [tag_value(tag_map(log.fields)["event"]) for log in wire.logs] == ["checkpoint"]


def test_spans_of_two_services_in_one_export_become_two_processes(agent: AgentSocket) -> None:
    memory = InMemorySpanExporter()
    for service in ("orders", "billing"):
        with make_provider(memory, service=service).get_tracer("t").start_as_current_span(f"{service}-op"):
            pass
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)

    assert exporter.export(memory.get_finished_spans()) is SpanExportResult.SUCCESS
    agent.wait_for_spans(2)
    services = {
        batch.process.serviceName: [s.operationName for s in batch.spans] for batch in agent.batches()
    }
    assert services == {"orders": ["orders-op"], "billing": ["billing-op"]}


def test_huge_resource_attribute_is_cut_so_spans_still_fit(agent: AgentSocket) -> None:
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)
    provider = make_provider(exporter, **{"k8s.pod.annotations": "a" * 100_000})
    with provider.get_tracer("t").start_as_current_span("still-here"):
        pass
    provider.shutdown()

    (wire,) = agent.wait_for_spans(1)
    ((data, _),) = agent.datagrams
    assert wire.operationName == "still-here"
    assert len(data) <= 65000
    (batch,) = agent.batches()
    assert batch.process.serviceName == "checkout"
    assert len(tag_map(batch.process.tags)["k8s.pod.annotations"].vStr) < 100_000


# --- failures never raise --------------------------------------------------------------------------


def test_unresolvable_host_fails_without_raising() -> None:
    guard._reset_for_tests()
    exporter = JaegerUDPExporter("nonexistent.invalid", 6831)
    provider = make_provider(exporter)
    with provider.get_tracer("t").start_as_current_span("lost"):
        pass  # SimpleSpanProcessor exports on end: must not raise into this block

    spans = _finished_spans(3, big_every=2, big_size=10)
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.packets_sent == 0
    assert guard.error_counts().get("jaeger-udp export", 0) >= 2
    provider.shutdown()


def test_closed_port_does_not_raise() -> None:
    exporter = JaegerUDPExporter("127.0.0.1", unreceived_udp_port())
    spans = _finished_spans(5, big_every=2, big_size=10)
    # The socket is connected, so the ICMP port unreachable a datagram draws is reported on a
    # later call: what was sent is written off as refused (or the send itself fails), and
    # nothing raises. Every span ends up counted as one or the other.
    results = [exporter.export(spans) for _ in range(3)]
    assert results[0] is SpanExportResult.SUCCESS  # nothing can be known yet
    failed = sum(len(spans) for result in results if result is SpanExportResult.FAILURE)
    deadline = time.monotonic() + 5
    while exporter.confirm() + failed < 3 * len(spans) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.spans_refused + failed == 3 * len(spans)
    assert exporter.spans_sent == exporter.spans_refused  # sent, then refused: none delivered
    exporter.shutdown()


def test_shutdown_closes_and_later_exports_fail(agent: AgentSocket) -> None:
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)
    spans = _finished_spans(2, big_every=2, big_size=10)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert exporter.force_flush() is True
    exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert len(agent.wait_for_spans(len(spans))) == len(spans)
    assert exporter.packets_sent == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_exports_through_inherited_exporter(agent: AgentSocket) -> None:
    exporter = JaegerUDPExporter("127.0.0.1", agent.port)
    provider = make_provider(exporter)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("in-parent"):
        pass  # the parent's socket now exists and is inherited by the child
    agent.wait_for_spans(1)

    pid = os.fork()
    if pid == 0:  # child: report success through the exit code only, never return into pytest
        code = 1
        try:
            with tracer.start_as_current_span("in-child"):
                pass
            code = 0 if exporter.packets_sent == 2 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

    agent.wait_for_spans(2)
    sender_of = {
        batch.spans[0].operationName: sender
        for batch, (_, sender) in zip(agent.batches(), agent.datagrams, strict=True)
    }
    assert set(sender_of) == {"in-parent", "in-child"}
    assert sender_of["in-parent"] != sender_of["in-child"]  # the child made its own socket
    provider.shutdown()


# --- property: anything the SDK accepts encodes and decodes ----------------------------------------

_property_memory = InMemorySpanExporter()
_property_provider = TracerProvider(resource=Resource.create({"service.name": "prop ✓"}))
_property_provider.add_span_processor(SimpleSpanProcessor(_property_memory))
_property_tracer = _property_provider.get_tracer("prop")

_scalars = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
_values = st.one_of(
    _scalars,
    st.lists(st.text(max_size=10), max_size=5),
    st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=5),
    st.lists(st.floats(allow_nan=True), max_size=5),
    st.lists(st.booleans(), max_size=5),
)
_attributes = st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=8)


def _same(decoded: Any, original: Any) -> bool:
    if isinstance(original, float) and math.isnan(original):
        return isinstance(decoded, float) and math.isnan(decoded)
    if isinstance(original, (list, tuple)):
        return len(decoded) == len(original) and all(map(_same, decoded, original))
    return decoded == original and type(decoded) is type(original)


def _assert_tag_matches(tag: Any, value: Any) -> None:
    if isinstance(value, bool):
        assert (tag.vType, tag.vBool) == (TagType.BOOL, value)
    elif isinstance(value, int) and -(2**63) <= value < 2**63:
        assert (tag.vType, tag.vLong) == (TagType.LONG, value)
    elif isinstance(value, int):
        assert (tag.vType, tag.vStr) == (TagType.STRING, str(value))
    elif isinstance(value, float):
        assert tag.vType == TagType.DOUBLE and _same(tag.vDouble, value)
    elif isinstance(value, str):
        assert (tag.vType, tag.vStr) == (TagType.STRING, value)
    else:
        assert tag.vType == TagType.STRING and _same(json.loads(tag.vStr), list(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=_attributes,
    event_attributes=_attributes,
    name=st.text(max_size=30),
    seq_id=st.integers(0, 2**40),
)
def test_arbitrary_attribute_values_encode_and_decode(
    attributes: dict[str, Any], event_attributes: dict[str, Any], name: str, seq_id: int
) -> None:
    _property_memory.clear()
    with _property_tracer.start_as_current_span(name, attributes=attributes) as span:
        span.add_event("evt", event_attributes)
    (finished,) = _property_memory.get_finished_spans()

    service, process_tags = jaeger_process_tags(dict(finished.resource.attributes), {"extra": attributes})
    payload = encode_emit_batch(encode_process(service, process_tags), [encode_span(finished)] * 2, seq_id)
    batch = decode_datagram(payload)
    _, _, decoded_seq_id = TCompactProtocol.TCompactProtocol(
        TTransport.TMemoryBuffer(payload)
    ).readMessageBegin()
    assert decoded_seq_id == seq_id & 0x7FFFFFFF

    assert batch.process.serviceName == "prop ✓"
    assert len(batch.spans) == 2
    wire = batch.spans[0]
    assert wire.operationName == name
    tags = tag_map(wire.tags)
    for key, value in (finished.attributes or {}).items():
        _assert_tag_matches(tags[key], value)
    (log,) = wire.logs
    fields = tag_map(log.fields)  # an explicit "event" attribute replaces the generated name field
    kept_event_attributes = dict(finished.events[0].attributes or {})
    if "event" not in kept_event_attributes:
        assert fields.pop("event").vStr == "evt"
    assert set(fields) == set(kept_event_attributes)
    for key, value in kept_event_attributes.items():
        _assert_tag_matches(fields[key], value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=_attributes,
    name=st.text(max_size=30),
    kind=st.sampled_from(list(SpanKind)),
    status=st.sampled_from([None, StatusCode.OK, StatusCode.ERROR]),
    description=st.text(max_size=10),
    as_child=st.booleans(),
)
def test_plain_span_fast_path_writes_the_general_encoders_bytes(
    attributes: dict[str, Any], name: str, kind: SpanKind, status: Any, description: str, as_child: bool
) -> None:
    """Spans without links or events take a shorter encoder: its bytes must be the general one's."""
    from opentelemetry.context import Context

    from aiecs_tracing.core.exporters.jaeger_thrift import _encode_span

    _property_memory.clear()
    with _property_tracer.start_as_current_span("parent"):
        root = None if as_child else Context()  # an empty context: a new trace, no parent
        span = _property_tracer.start_span(name, context=root, kind=kind, attributes=attributes)
        if status is not None:
            span.set_status(Status(status, description if status is StatusCode.ERROR else None))
        span.end()
    spans = _property_memory.get_finished_spans()
    assert len(spans) == 2 and (spans[0].parent is not None) == as_child
    for finished in spans:
        fast = encode_span(finished)
        assert fast == _encode_span(finished, None)
        (wire,) = decode_datagram(encode_emit_batch(encode_process("svc", {}), [fast], 1)).spans
        assert wire.operationName == finished.name
        assert len(wire.tags) >= len(finished.attributes or {})
