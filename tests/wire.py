"""Test-side receivers: spans as a Jaeger agent would see them on the wire.

Decoding uses jaeger-client's own generated thrift code (an independent decoder, not
ours), so a test passing here means a real Jaeger agent would read the same bytes.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jaeger_client.thrift_gen.agent import Agent
from jaeger_client.thrift_gen.jaeger import ttypes
from thrift.protocol import TCompactProtocol
from thrift.transport import TTransport


class _CaptureTransport(TTransport.TMemoryBuffer):
    """What jaeger-client's Agent.Client flushes is exactly one UDP datagram."""

    def __init__(self) -> None:
        super().__init__()
        self.datagrams: list[bytes] = []
        self.io_loop = types.SimpleNamespace(spawn_callback=lambda _callback: None)

    def flush(self) -> None:
        self.datagrams.append(self.getvalue())
        self._buffer = io.BytesIO()


def encode_with_jaeger_client(batch: Any) -> bytes:
    """Encode a ``jaeger.Batch`` with jaeger-client's generated code: the bytes its UDP reporter sends."""
    transport = _CaptureTransport()
    Agent.Client(transport, TCompactProtocol.TCompactProtocolFactory()).emitBatch(batch)
    (datagram,) = transport.datagrams
    return datagram


def _tag_value(tag: Any) -> Any:
    t = tag.vType
    if t == ttypes.TagType.STRING:
        return tag.vStr
    if t == ttypes.TagType.BOOL:
        return tag.vBool
    if t == ttypes.TagType.LONG:
        return tag.vLong
    if t == ttypes.TagType.DOUBLE:
        return tag.vDouble
    return tag.vBinary


def _to_u64(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF


@dataclass
class WireSpan:
    service: str
    operation: str
    trace_id: int
    span_id: int
    parent_id: int
    flags: int
    start_us: int
    duration_us: int
    tags: dict[str, Any]
    logs: list[dict[str, Any]]
    references: list[tuple[str, int, int]]
    process_tags: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return self.tags.get("span.kind")

    @property
    def is_error(self) -> bool:
        return self.tags.get("error") is True

    def __repr__(self) -> str:
        return f"<WireSpan {self.service}:{self.operation} {self.trace_id:032x}/{self.span_id:016x}<-{self.parent_id:016x}>"


def decode_datagram(data: bytes) -> list[WireSpan]:
    transport = TTransport.TMemoryBuffer(data)
    protocol = TCompactProtocol.TCompactProtocol(transport)
    protocol.readMessageBegin()
    args = Agent.emitBatch_args()
    args.read(protocol)
    protocol.readMessageEnd()
    batch = args.batch
    process_tags = {t.key: _tag_value(t) for t in (batch.process.tags or [])}
    out = []
    for s in batch.spans:
        refs = []
        for r in s.references or []:
            kind = "CHILD_OF" if r.refType == ttypes.SpanRefType.CHILD_OF else "FOLLOWS_FROM"
            refs.append((kind, (_to_u64(r.traceIdHigh) << 64) | _to_u64(r.traceIdLow), _to_u64(r.spanId)))
        out.append(
            WireSpan(
                service=batch.process.serviceName,
                operation=s.operationName,
                trace_id=(_to_u64(s.traceIdHigh) << 64) | _to_u64(s.traceIdLow),
                span_id=_to_u64(s.spanId),
                parent_id=_to_u64(s.parentSpanId),
                flags=s.flags,
                start_us=s.startTime,
                duration_us=s.duration,
                tags={t.key: _tag_value(t) for t in (s.tags or [])},
                logs=[{f.key: _tag_value(f) for f in (log.fields or [])} for log in (s.logs or [])],
                references=refs,
                process_tags=process_tags,
            )
        )
    return out


class JaegerUDPSink:
    """A fake Jaeger agent: a real UDP socket on 127.0.0.1 collecting decoded spans."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._spans: list[WireSpan] = []
        self.errors: list[Exception] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(70000)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                spans = decode_datagram(data)
            except Exception as exc:  # surfaced by tests through .errors
                self.errors.append(exc)
                continue
            with self._lock:
                self.packets.append(data)
                self._spans.extend(spans)

    @property
    def spans(self) -> list[WireSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, count: int = 1, timeout: float = 10.0, where: Callable[[WireSpan], bool] | None = None
    ) -> list[WireSpan]:
        """Spans received (matching ``where``) once at least ``count`` arrived, or at the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            spans = [s for s in self.spans if where is None or where(s)]
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.02)

    def named(self, operation: str) -> list[WireSpan]:
        return [s for s in self.spans if s.operation == operation]

    def one(self, operation: str) -> WireSpan:
        found = self.named(operation)
        assert len(found) == 1, f"expected one span {operation!r}, got {found} among {self.spans}"
        return found[0]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self.packets.clear()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


_held: list[socket.socket] = []  # reserved ports' sockets, open until the process exits


def refused_tcp_port() -> int:
    """A 127.0.0.1 TCP port that refuses connections, reserved for the rest of the test process.

    Bound and never listening: connecting gets ECONNREFUSED, and no other process can take the
    port meanwhile (a port bound, released and used later may be someone else's by then).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    _held.append(sock)
    return sock.getsockname()[1]


def unreceived_udp_port() -> int:
    """A 127.0.0.1 UDP port no one receives on, reserved for the rest of the test process.

    Bound and connected to the discard port: the kernel delivers it nothing from anyone else
    (they get ICMP port unreachable, as from a closed port), and no other process can take it.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", 9))
    _held.append(sock)
    return sock.getsockname()[1]


def make_manager(sink: JaegerUDPSink, service: str = "test-service", **options: Any):
    """A manager exporting over real UDP to ``sink``, isolated from process defaults."""
    from aiecs_tracing import TracingManager

    options.setdefault("set_global_provider", False)
    options.setdefault("set_default_manager", False)
    options.setdefault("set_global_opentracing", False)
    options.setdefault("schedule_delay_millis", 50)
    return TracingManager(service, jaeger_host="127.0.0.1", jaeger_port=sink.port, enable_tracing=True, **options)


def settled(sink: JaegerUDPSink, *managers: Any, timeout: float = 10.0) -> list[WireSpan]:
    """All that ``managers`` exported, once it is at ``sink``: a flush, then their own count.

    Use it where a test must know that nothing more will arrive, instead of sleeping "long
    enough": after the flush no span is queued or in flight, and the sink must hold exactly
    what the processors counted as exported (a span sent twice, or lost, fails here).
    """
    for manager in managers:
        assert manager.flush(timeout), f"{manager!r} did not flush within {timeout}s"
    expected = sum(manager.get_tracer_info()["spans_exported"] for manager in managers)
    spans = sink.wait_for(expected, timeout=timeout)
    assert len(spans) == expected, f"exporters counted {expected} span(s) sent, the sink has {spans}"
    return spans
