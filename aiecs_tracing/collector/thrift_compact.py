"""A small, pure decoder for Thrift's compact protocol, and Jaeger's ``emitBatch`` on top.

Jaeger clients (jaeger-client-python/-go/-java, and OpenTelemetry's old Jaeger exporter)
send each batch as one UDP datagram holding a compact-protocol ``Agent.emitBatch``
message. Decoding is split in two so each half stays simple:

* :func:`decode_message` turns bytes into plain Python values: a struct is a
  ``{field_id: value}`` dict, a list is a list, binary stays bytes. It knows nothing of
  Jaeger and is defensive: lengths are checked against the bytes actually left,
  nesting is bounded, and any inconsistency raises :class:`ThriftDecodeError`.
* :func:`batch_to_records` maps the ``jaeger.thrift`` field ids onto SpanRecords.

No dependency on the ``thrift`` package: the collector must run on the stdlib alone.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from .model import (
    BINARY,
    BOOL,
    CHILD_OF,
    FOLLOWS_FROM,
    INT64,
    KNOWN_KINDS,
    STRING,
    Process,
    Reference,
    SpanRecord,
    Tag,
    clamp_us,
    float_tag,
    span_id_hex,
    trace_id_hex,
)

PROTOCOL_ID = 0x82
VERSION = 1
CALL, REPLY, EXCEPTION, ONEWAY = 1, 2, 3, 4
MAX_DEPTH = 32

# Compact-protocol type ids.
STOP, BOOL_TRUE, BOOL_FALSE, BYTE, I16, I32, I64, DOUBLE, BINARY_T, LIST, SET, MAP, STRUCT = range(13)

_DOUBLE = struct.Struct("<d")


class ThriftDecodeError(ValueError):
    """The bytes are not a well-formed compact-protocol message of the expected shape."""


class _Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def byte(self) -> int:
        if self.pos >= self.end:
            raise ThriftDecodeError("truncated message")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        result = 0
        shift = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if result >= 1 << 64:
                    raise ThriftDecodeError("varint exceeds 64 bits")
                return result
            shift += 7
            if shift > 63:
                raise ThriftDecodeError("varint too long")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def binary(self) -> bytes:
        length = self.varint()
        if length > self.end - self.pos:
            raise ThriftDecodeError("binary length exceeds message")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return value

    def double(self) -> float:
        if self.end - self.pos < 8:
            raise ThriftDecodeError("truncated double")
        value: float
        (value,) = _DOUBLE.unpack_from(self.data, self.pos)
        self.pos += 8
        return value

    def value(self, type_id: int, depth: int) -> Any:
        if type_id == BOOL_TRUE:
            return True
        if type_id == BOOL_FALSE:
            return False
        if type_id == BYTE:
            byte = self.byte()
            return byte - 256 if byte > 127 else byte
        if type_id in (I16, I32, I64):
            return self.zigzag()
        if type_id == DOUBLE:
            return self.double()
        if type_id == BINARY_T:
            return self.binary()
        if depth >= MAX_DEPTH:
            raise ThriftDecodeError("nesting too deep")
        if type_id in (LIST, SET):
            return self.list(depth + 1)
        if type_id == MAP:
            return self.map(depth + 1)
        if type_id == STRUCT:
            return self.struct(depth + 1)
        raise ThriftDecodeError(f"unknown compact type {type_id}")

    def element(self, type_id: int, depth: int) -> Any:
        """Collection elements write booleans as a whole byte (1 is true)."""
        if type_id in (BOOL_TRUE, BOOL_FALSE):
            return self.byte() == BOOL_TRUE
        return self.value(type_id, depth)

    def list(self, depth: int) -> list[Any]:
        header = self.byte()
        size = header >> 4
        element_type = header & 0x0F
        if size == 15:
            size = self.varint()
        if size > self.end - self.pos:  # every element takes at least one byte
            raise ThriftDecodeError("list size exceeds message")
        return [self.element(element_type, depth) for _ in range(size)]

    def map(self, depth: int) -> dict[Any, Any]:
        size = self.varint()
        if size == 0:
            return {}
        if size * 2 > self.end - self.pos:
            raise ThriftDecodeError("map size exceeds message")
        types = self.byte()
        key_type, value_type = types >> 4, types & 0x0F
        result: dict[Any, Any] = {}
        for _ in range(size):
            key = self.element(key_type, depth)
            if isinstance(key, (list, dict)):
                raise ThriftDecodeError("unhashable map key")
            result[key] = self.element(value_type, depth)
        return result

    def struct(self, depth: int) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        last_id = 0
        while True:
            header = self.byte()
            if header == STOP:
                return fields
            delta = header >> 4
            type_id = header & 0x0F
            field_id = last_id + delta if delta else self.zigzag()
            fields[field_id] = self.value(type_id, depth)
            last_id = field_id


def decode_message(data: bytes) -> tuple[str, int, int, dict[int, Any]]:
    """``(method name, message type, sequence id, argument struct)`` of one message."""
    reader = _Reader(bytes(data))
    if reader.byte() != PROTOCOL_ID:
        raise ThriftDecodeError("not a thrift compact-protocol message")
    version_and_type = reader.byte()
    if version_and_type & 0x1F != VERSION:
        raise ThriftDecodeError("unsupported compact-protocol version")
    message_type = (version_and_type >> 5) & 0x07
    sequence_id = reader.varint()
    try:
        name = reader.binary().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ThriftDecodeError("method name is not UTF-8") from exc
    arguments = reader.struct(0)
    return name, message_type, sequence_id, arguments


# --------------------------------------------------------------------------- jaeger.thrift

TAG_STRING, TAG_DOUBLE, TAG_BOOL, TAG_LONG, TAG_BINARY = range(5)
REF_CHILD_OF, REF_FOLLOWS_FROM = 0, 1


def decode_emit_batch(data: bytes) -> list[SpanRecord]:
    """Spans of one ``Agent.emitBatch`` datagram; ThriftDecodeError for anything else."""
    name, message_type, _sequence_id, arguments = decode_message(data)
    if name != "emitBatch" or message_type not in (CALL, ONEWAY):
        raise ThriftDecodeError(f"unsupported agent method {name!r}")
    batch = arguments.get(1)
    if not isinstance(batch, dict):
        raise ThriftDecodeError("emitBatch without a batch")
    return batch_to_records(batch)


def batch_to_records(batch: dict[int, Any]) -> list[SpanRecord]:
    """Map a decoded ``jaeger.Batch`` struct onto SpanRecords."""
    try:
        process_struct = _struct(batch.get(1))
        process = Process(_text(process_struct.get(1)) or "unknown", _process_tags(_tags(process_struct.get(2))))
        spans = batch.get(2) or []
        if not isinstance(spans, list):
            raise ThriftDecodeError("batch spans must be a list")
        return [_span(_struct(span), process) for span in spans]
    except (TypeError, AttributeError) as exc:
        raise ThriftDecodeError(f"malformed jaeger batch: {exc}") from exc


def _process_tags(tags: list[Tag]) -> list[Tag]:
    """As Jaeger v2 stores a thrift process: ``jaeger.version`` becomes ``opencensus.exporterversion``.

    Jaeger v2 turns every Jaeger batch into OTLP on the way in; its translator keeps the
    client's version under OpenCensus's key, prefixed ``Jaeger-``, and that is what its
    query API then shows. Answering the same keeps the two backends interchangeable.
    """
    return [
        ("opencensus.exporterversion", STRING, f"Jaeger-{value}") if key == "jaeger.version" else (key, type_code, value)
        for key, type_code, value in tags
    ]


def _span(span: dict[int, Any], process: Process) -> SpanRecord:
    trace_id = trace_id_hex(_int(span.get(2)), _int(span.get(1)))
    span_id = span_id_hex(_int(span.get(3)))
    parent_number = _int(span.get(4))
    references: list[Reference] = []
    for ref in span.get(6) or []:
        ref = _struct(ref)
        ref_type = FOLLOWS_FROM if _int(ref.get(1)) == REF_FOLLOWS_FROM else CHILD_OF
        references.append((ref_type, trace_id_hex(_int(ref.get(3)), _int(ref.get(2))), span_id_hex(_int(ref.get(4)))))
    parent = span_id_hex(parent_number) if parent_number else ""
    if not parent:
        parent = next((sid for kind, tid, sid in references if kind == CHILD_OF and tid == trace_id), "")
    if parent:
        parent_ref = (CHILD_OF, trace_id, parent)
        references = [parent_ref] + [ref for ref in references if ref != parent_ref]
    tags = _tags(span.get(10))
    kind = ""
    error = False
    for key, type_code, value in tags:
        if key == "span.kind" and type_code == STRING and value in KNOWN_KINDS:
            kind = value
        elif key == "error" and value in (True, "true"):
            error = True
    logs = [(clamp_us(_int(log.get(1))), _tags(log.get(2))) for log in map(_struct, span.get(11) or [])]
    return SpanRecord(
        trace_id,
        span_id,
        parent,
        _text(span.get(5)),
        process,
        clamp_us(_int(span.get(8))),
        clamp_us(_int(span.get(9))),
        tags,
        logs,
        references,
        kind,
        error,
        _int(span.get(7)) & 0xFFFFFFFF,
    )


def _tags(raw: Any) -> list[Tag]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ThriftDecodeError("tags must be a list")
    return [_tag(_struct(item)) for item in raw]


def _tag(tag: dict[int, Any]) -> Tag:
    key = _text(tag.get(1))
    value_type = _int(tag.get(2))
    if value_type == TAG_DOUBLE:
        value = tag.get(4)
        return float_tag(key, float(value) if isinstance(value, (int, float)) else 0.0)
    if value_type == TAG_BOOL:
        return (key, BOOL, bool(tag.get(5)))
    if value_type == TAG_LONG:
        return (key, INT64, _int(tag.get(6)))
    if value_type == TAG_BINARY:
        raw = tag.get(7)
        return (key, BINARY, base64.b64encode(raw if isinstance(raw, bytes) else b"").decode("ascii"))
    return (key, STRING, _text(tag.get(3)))


def _struct(value: Any) -> dict[int, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ThriftDecodeError("expected a struct")
    return value


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ThriftDecodeError("expected an integer")
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise ThriftDecodeError("expected a string")
