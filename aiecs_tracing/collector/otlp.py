"""OTLP/HTTP trace payloads (protobuf and JSON) to :class:`SpanRecord`.

The translation follows what Jaeger itself does with OTLP, so the UI sees the same
tags it would see behind a real Jaeger: resource attributes become process tags,
``span.kind`` / ``otel.status_code`` / ``error`` / ``otel.scope.*`` tags are added,
events become logs with an ``event`` field, links become FOLLOWS_FROM references.

The decoders are pure: bytes in, ``(records or packed rows, rejected_count,
first_rejection_reason)`` out. Anything structurally wrong raises :class:`OtlpDecodeError`;
a span with an invalid id is only rejected (counted), like a partial success in OTLP.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .model import KIND_UNSPECIFIED, STRING, Process, Tag
from .otlp_depth import WireError, truncate_deep_values
from .otlp_json import decode_json
from .otlp_model import INVALID_ID_REASON, NO_SERVICE_NAME, ZERO_SPAN_ID, ZERO_TRACE_ID, DecodeResult
from .otlp_model import KIND_BY_NAME as KIND_BY_NAME  # defined there, importable from here as before
from .otlp_model import STATUS_BY_NAME as STATUS_BY_NAME
from .otlp_model import OtlpDecodeError as OtlpDecodeError
from .packing import (
    KIND_BY_NUMBER,
    PackedSpan,
    ProcessKey,
    pb_attributes,
    process_key,
    scope_tags,
    tags_from_json,
    unpack,
)

__all__ = ["OtlpDecodeError", "decode_json", "decode_protobuf", "pack_protobuf"]


# --------------------------------------------------------------------------- protobuf


def pack_protobuf(body: bytes) -> tuple[list[PackedSpan], int, str]:
    """The ingest fast path: an ``application/x-protobuf`` request straight to storage rows.

    Only the indexed values are read in Python; each span's remaining fields are
    re-serialised in C as its payload (see :mod:`.packing`).
    """
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError, TypeError) as exc:
        request = _parse_truncating_deep_values(body, exc)
    rows: list[PackedSpan] = []
    append = rows.append
    rejected = 0
    reason = ""
    kinds = KIND_BY_NUMBER
    for resource_spans in request.resource_spans:
        process = _pb_process(resource_spans.resource.attributes)
        service = process.service
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            key = process_key(process, scope_tags(scope.name, scope.version))
            for span in scope_spans.spans:
                trace_id = span.trace_id.hex()
                span_id = span.span_id.hex()
                if len(trace_id) != 32 or len(span_id) != 16 or trace_id == ZERO_TRACE_ID or span_id == ZERO_SPAN_ID:
                    rejected += 1
                    reason = reason or INVALID_ID_REASON
                    continue
                parent = span.parent_span_id.hex()
                if len(parent) != 16 or parent == ZERO_SPAN_ID:
                    parent = ""
                kind_number = span.kind
                start_ns = span.start_time_unix_nano
                end_ns = span.end_time_unix_nano
                name = span.name
                for field_name in _COLUMN_FIELDS:
                    span.ClearField(field_name)
                append(
                    PackedSpan(
                        trace_id,
                        span_id,
                        parent,
                        service,
                        name,
                        kinds[kind_number] if 0 <= kind_number < 6 else KIND_UNSPECIFIED,
                        key,
                        start_ns // 1000,
                        max(0, end_ns - start_ns) // 1000,
                        span.SerializeToString(),
                    )
                )
    return rows, rejected, reason


def _parse_truncating_deep_values(body: bytes, error: Exception) -> Any:
    """Parse again with over-deep attribute values truncated (see :mod:`.otlp_depth`), or refuse."""
    try:
        shallow, replaced = truncate_deep_values(body)
        if replaced:
            return ExportTraceServiceRequest.FromString(shallow)
    except (WireError, DecodeError, ValueError, TypeError):
        pass
    raise OtlpDecodeError(f"invalid protobuf ExportTraceServiceRequest: {error}") from error


_COLUMN_FIELDS = ("trace_id", "span_id", "parent_span_id", "name", "start_time_unix_nano", "end_time_unix_nano")


def decode_protobuf(body: bytes) -> DecodeResult:
    """Decode an ``application/x-protobuf`` ExportTraceServiceRequest into SpanRecords.

    Defined as the fast path followed by :func:`unpack`, so what is stored and what
    this returns can never disagree.
    """
    rows, rejected, reason = pack_protobuf(body)
    processes: dict[ProcessKey, tuple[Process, list[Tag]]] = {}
    records = []
    for row in rows:
        found = processes.get(row.process)
        if found is None:
            found = processes[row.process] = (
                Process(row.service, tags_from_json(row.process[1])),
                tags_from_json(row.process[2]),
            )
        records.append(
            unpack(
                row.payload,
                trace_id=row.trace_id,
                span_id=row.span_id,
                parent_id=row.parent_id,
                operation=row.operation,
                kind=row.kind,
                process=found[0],
                shared_span_tags=found[1],
                start_us=row.start_us,
                duration_us=row.duration_us,
            )
        )
    return records, rejected, reason


def _pb_process(attributes: Any) -> Process:
    service = NO_SERVICE_NAME
    tags = []
    for tag in pb_attributes(attributes):
        if tag[0] == "service.name" and tag[1] == STRING:
            service = tag[2]
        else:
            tags.append(tag)
    return Process(service, tags)


# --------------------------------------------------------------------------- responses


def encode_response_protobuf(rejected: int = 0, message: str = "") -> bytes:
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    data: bytes = response.SerializeToString()
    return data


def encode_response_json(rejected: int = 0, message: str = "") -> bytes:
    if not (rejected or message):
        return b"{}"
    body = {"partialSuccess": {"rejectedSpans": str(rejected), "errorMessage": message}}
    return json.dumps(body).encode()


def encode_status_protobuf(code: int, message: str) -> bytes:
    """A google.rpc.Status (code=1, message=2) encoded by hand: OTLP's error body."""
    encoded_message = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(encoded_message)) + encoded_message


def encode_status_json(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)

