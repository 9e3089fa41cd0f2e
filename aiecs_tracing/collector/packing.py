"""How a span is packed into one storage row, and unpacked back into a SpanRecord.

The payload of a row is an OTLP ``Span`` protobuf holding only what no column holds:
attributes (tags), events (logs), links (extra references), flags, kind, status and
trace state. Why OTLP's own message: the OTLP/HTTP receiver already holds every span
as exactly that message, so its fast path (:func:`aiecs_tracing.collector.otlp.pack_protobuf`)
clears the fields that went into columns and serialises the rest in C, with no
per-attribute Python work; that is what makes 50k spans/s possible on two cores.
The tags Jaeger derives from OTLP fields (``span.kind``, ``otel.status_code``,
``error``, ``otel.scope.*``...) are derived on the way out by :func:`unpack`.

Spans that arrive any other way (OTLP JSON, Jaeger thrift) are first a
:class:`SpanRecord` with every tag explicit; :func:`pack_record` writes those tags as
attributes and leaves kind/status unset, so nothing is derived twice.

A "process key" ``(service, process_tags_json, shared_span_tags_json)`` identifies the
emitting process; the shared span tags are tags every span of one OTLP scope carries
(the instrumentation scope), stored once per process instead of once per span.
"""

from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

from .model import (
    BINARY,
    BOOL,
    CHILD_OF,
    FLOAT64,
    FOLLOWS_FROM,
    INT64,
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    KIND_UNSPECIFIED,
    STRING,
    Log,
    Process,
    Reference,
    SpanRecord,
    Tag,
    clamp_us,
    float_tag,
)

KIND_BY_NUMBER = (KIND_UNSPECIFIED, KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER)
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
SAMPLED_FLAG = 1
# A link carrying this attribute is a CHILD_OF reference (a Jaeger span with several parents);
# every other link is FOLLOWS_FROM.
CHILD_OF_MARKER = "\x00jaeger.ref_type.child_of"

compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode

ProcessKey = tuple[str, str, str]
"""``(service, process_tags_json, shared_span_tags_json)``."""


class PackedSpan(NamedTuple):
    """A span ready for the writer: indexed values plus the packed payload."""

    trace_id: str
    span_id: str
    parent_id: str
    service: str
    operation: str
    kind: str
    process: ProcessKey
    start_us: int
    duration_us: int
    payload: bytes


# --------------------------------------------------------------------------- packing


def process_key(process: Process, shared_span_tags: list[Tag] | None = None) -> ProcessKey:
    return (process.service, compact_json(process.tags), compact_json(shared_span_tags or []))


def pack_record(record: SpanRecord, key: ProcessKey | None = None) -> PackedSpan:
    """Pack a fully explicit SpanRecord (every tag already present)."""
    span = PbSpan()
    span.flags = record.flags & 0xFFFFFFFF
    attributes = span.attributes
    for tag in record.tags:
        set_attribute(attributes.add(), tag)
    for timestamp_us, fields in record.logs:
        event = span.events.add()
        event.time_unix_nano = clamp_us(timestamp_us) * 1000
        for tag in fields:
            set_attribute(event.attributes.add(), tag)
    parent = record.parent_span_id
    for position, (ref_type, trace_id, span_id) in enumerate(record.references):
        if position == 0 and parent and ref_type == CHILD_OF and trace_id == record.trace_id and span_id == parent:
            continue  # implied by parent_id
        link = span.links.add()
        link.trace_id = bytes.fromhex(trace_id)
        link.span_id = bytes.fromhex(span_id)
        if ref_type == CHILD_OF:
            marker = link.attributes.add()
            marker.key = CHILD_OF_MARKER
            marker.value.bool_value = True
    return PackedSpan(
        record.trace_id,
        record.span_id,
        parent,
        record.process.service,
        record.operation,
        record.kind,
        key or process_key(record.process),
        record.start_us,
        record.duration_us,
        span.SerializeToString(),
    )


def set_attribute(kv: KeyValue, tag: Tag) -> None:
    key, type_code, value = tag
    kv.key = key
    if type_code == STRING:
        kv.value.string_value = value
    elif type_code == BOOL:
        kv.value.bool_value = value
    elif type_code == INT64:
        kv.value.int_value = value
    elif type_code == FLOAT64:
        kv.value.double_value = value
    elif type_code == BINARY:
        kv.value.bytes_value = base64.b64decode(value)
    else:
        kv.value.string_value = str(value)


# --------------------------------------------------------------------------- unpacking


def unpack(
    packed_payload: bytes,
    *,
    trace_id: str,
    span_id: str,
    parent_id: str,
    operation: str,
    kind: str,
    process: Process,
    shared_span_tags: list[Tag],
    start_us: int,
    duration_us: int,
) -> SpanRecord:
    """Rebuild the SpanRecord, deriving Jaeger's OTLP tags from kind/status fields."""
    span = PbSpan.FromString(packed_payload)
    tags = pb_attributes(span.attributes) if span.attributes else []
    derived_kind = KIND_BY_NUMBER[span.kind] if 0 <= span.kind < len(KIND_BY_NUMBER) else KIND_UNSPECIFIED
    status = span.status
    error = add_standard_tags(tags, derived_kind, status.code, status.message, span.trace_state, shared_span_tags)
    if not error:
        error = any(tag[0] == "error" and tag[2] in (True, "true") for tag in tags)
    logs: list[Log] = []
    for event in span.events:
        fields = event_fields(event.name, pb_attributes(event.attributes) if event.attributes else [])
        logs.append((event.time_unix_nano // 1000, fields))
    references: list[Reference] = [(CHILD_OF, trace_id, parent_id)] if parent_id else []
    for link in span.links:
        ref_type = FOLLOWS_FROM
        if link.attributes and any(kv.key == CHILD_OF_MARKER for kv in link.attributes):
            ref_type = CHILD_OF
        references.append((ref_type, link.trace_id.hex(), link.span_id.hex()))
    return SpanRecord(
        trace_id,
        span_id,
        parent_id,
        operation,
        process,
        start_us,
        duration_us,
        tags,
        logs,
        references,
        kind or derived_kind,
        error,
        (span.flags & 0xFF) or SAMPLED_FLAG,
    )


def pb_attributes(attributes: Any) -> list[Tag]:
    """OTLP KeyValues to typed tags; arrays and maps become JSON text, as in Jaeger."""
    tags: list[Tag] = []
    append = tags.append
    for kv in attributes:
        value = kv.value
        which = value.WhichOneof("value")
        if which == "string_value":
            append((kv.key, STRING, value.string_value))
        elif which == "int_value":
            append((kv.key, INT64, value.int_value))
        elif which == "bool_value":
            append((kv.key, BOOL, value.bool_value))
        elif which == "double_value":
            append(float_tag(kv.key, value.double_value))
        elif which == "bytes_value":
            append((kv.key, BINARY, base64.b64encode(value.bytes_value).decode("ascii")))
        elif which is None:
            append((kv.key, STRING, ""))
        else:
            append((kv.key, STRING, compact_json(_pb_any_value(value))))
    return tags


def _pb_any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_pb_any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if which is None:
        return None
    return getattr(value, which)


def scope_tags(name: str, version: str) -> list[Tag]:
    tags: list[Tag] = []
    if name:
        tags.append(("otel.scope.name", STRING, name))
    if version:
        tags.append(("otel.scope.version", STRING, version))
    return tags


def add_standard_tags(
    tags: list[Tag], kind: str, status_code: int, status_message: str, trace_state: str, shared_tags: list[Tag]
) -> bool:
    """Append the tags Jaeger derives from OTLP span fields; return whether the span is an error."""
    if kind:
        tags.append(("span.kind", STRING, kind))
    if shared_tags:
        tags.extend(shared_tags)
    error = status_code == STATUS_ERROR
    if status_code == STATUS_OK:
        tags.append(("otel.status_code", STRING, "OK"))
    elif error:
        tags.append(("otel.status_code", STRING, "ERROR"))
        tags.append(("error", BOOL, True))
    if status_message:
        tags.append(("otel.status_description", STRING, status_message))
    if trace_state:
        tags.append(("w3c.tracestate", STRING, trace_state))
    return error


def event_fields(name: str, attributes: list[Tag]) -> list[Tag]:
    """An OTLP event as a Jaeger log: its name as ``event``, unless an attribute is already called so.

    That is the rule of Jaeger's OTLP translator; adding the name anyway gave two ``event``
    fields (``exception`` and ``error``) for every recorded exception.
    """
    if name and not any(tag[0] == "event" for tag in attributes):
        return [("event", STRING, name), *attributes]
    return attributes


def tags_from_json(text: str) -> list[Tag]:
    """Tags as stored in the processes table (JSON arrays) back to tuples."""
    return [(key, type_code, value) for key, type_code, value in json.loads(text)]
