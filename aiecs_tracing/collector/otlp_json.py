"""OTLP/HTTP JSON payloads (``application/json``) to :class:`SpanRecord`; see :mod:`.otlp`.

Per the OTLP spec's JSON mapping ids are hex (not base64), enums may be numbers or names,
64-bit integers may be strings; lowerCamelCase keys are canonical, snake_case accepted.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from .model import (
    BINARY,
    BOOL,
    CHILD_OF,
    FOLLOWS_FROM,
    INT64,
    KIND_UNSPECIFIED,
    STRING,
    Process,
    SpanRecord,
    Tag,
    clamp_us,
    float_tag,
)
from .otlp_model import (
    INVALID_ID_REASON,
    KIND_BY_NAME,
    NO_SERVICE_NAME,
    STATUS_BY_NAME,
    ZERO_SPAN_ID,
    ZERO_TRACE_ID,
    DecodeResult,
    OtlpDecodeError,
)
from .packing import (
    KIND_BY_NUMBER,
    SAMPLED_FLAG,
    STATUS_UNSET,
    add_standard_tags,
    compact_json,
    event_fields,
    scope_tags,
)


def decode_json(body: bytes) -> DecodeResult:
    """Decode an ``application/json`` ExportTraceServiceRequest (OTLP JSON mapping).

    Per the spec ids are hex (not base64), enums may be ints or names, 64-bit ints may
    be strings; lowerCamelCase keys are canonical but snake_case is accepted too.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OtlpDecodeError(f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpDecodeError("ExportTraceServiceRequest must be a JSON object")
    if _SURROGATE_ESCAPE.search(body) and not _all_text_encodable(document):
        raise OtlpDecodeError("invalid JSON: string with an unpaired UTF-16 surrogate")
    records: list[SpanRecord] = []
    rejected = 0
    reason = ""
    try:
        for resource_spans in _list(document, "resourceSpans", "resource_spans"):
            resource = _obj(resource_spans, "resource")
            process = _json_process(_list(resource, "attributes"))
            scopes = _list(resource_spans, "scopeSpans", "scope_spans") or _list(
                resource_spans, "instrumentationLibrarySpans", "instrumentation_library_spans"
            )
            for scope_spans in scopes:
                scope = _obj(scope_spans, "scope") or _obj(
                    scope_spans, "instrumentationLibrary", "instrumentation_library"
                )
                shared_tags = scope_tags(_str(scope, "name"), _str(scope, "version"))
                for span in _list(scope_spans, "spans"):
                    record = _json_span(span, process, shared_tags)
                    if record is None:
                        rejected += 1
                        reason = reason or INVALID_ID_REASON
                    else:
                        records.append(record)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise OtlpDecodeError(f"malformed ExportTraceServiceRequest: {exc}") from exc
    return records, rejected, reason


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _all_text_encodable(node: Any) -> bool:
    """JSON may escape lone surrogates, which no UTF-8 store can hold; only checked when present."""
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(node, dict):
        return all(_all_text_encodable(key) and _all_text_encodable(value) for key, value in node.items())
    if isinstance(node, list):
        return all(_all_text_encodable(item) for item in node)
    return True


def _json_span(span: dict[str, Any], process: Process, shared_tags: list[Tag]) -> SpanRecord | None:
    if not isinstance(span, dict):
        raise TypeError("span must be an object")
    trace_id = _hex_id(_get(span, "traceId", "trace_id"), 32)
    span_id = _hex_id(_get(span, "spanId", "span_id"), 16)
    if not trace_id or not span_id or trace_id == ZERO_TRACE_ID or span_id == ZERO_SPAN_ID:
        return None
    parent = _hex_id(_get(span, "parentSpanId", "parent_span_id"), 16)
    if parent == ZERO_SPAN_ID:
        parent = ""
    tags = _json_attributes(_list(span, "attributes"))
    kind = _json_kind(_get(span, "kind"))
    status = _obj(span, "status")
    status_code = _json_status_code(_get(status, "code"))
    error = add_standard_tags(
        tags, kind, status_code, _str(status, "message"), _str(span, "traceState", "trace_state"), shared_tags
    )
    references: list[tuple[str, str, str]] = [(CHILD_OF, trace_id, parent)] if parent else []
    for link in _list(span, "links"):
        link_trace = _hex_id(_get(link, "traceId", "trace_id"), 32)
        link_span = _hex_id(_get(link, "spanId", "span_id"), 16)
        if link_trace and link_span:
            references.append((FOLLOWS_FROM, link_trace, link_span))
    logs = []
    for event in _list(span, "events"):
        name = _str(event, "name")
        attributes = _json_attributes(_list(event, "attributes"))
        fields = event_fields(name, attributes)
        logs.append((clamp_us(_int(_get(event, "timeUnixNano", "time_unix_nano")) // 1000), fields))
    start_ns = _int(_get(span, "startTimeUnixNano", "start_time_unix_nano"))
    end_ns = _int(_get(span, "endTimeUnixNano", "end_time_unix_nano"))
    return SpanRecord(
        trace_id,
        span_id,
        parent,
        _str(span, "name"),
        process,
        clamp_us(start_ns // 1000),
        clamp_us((end_ns - start_ns) // 1000),
        tags,
        logs,
        references,
        kind,
        error,
        (_int(_get(span, "flags")) & 0xFF) or SAMPLED_FLAG,
    )


def _json_process(attributes: list[Any]) -> Process:
    service = NO_SERVICE_NAME
    tags = []
    for tag in _json_attributes(attributes):
        if tag[0] == "service.name" and tag[1] == STRING:
            service = tag[2]
        else:
            tags.append(tag)
    return Process(service, tags)


def _json_attributes(attributes: list[Any]) -> list[Tag]:
    tags: list[Tag] = []
    for kv in attributes:
        key = _str(kv, "key")
        value = _obj(kv, "value")
        if "stringValue" in value or "string_value" in value:
            tags.append((key, STRING, str(_get(value, "stringValue", "string_value"))))
        elif "intValue" in value or "int_value" in value:
            number = _int(_get(value, "intValue", "int_value"))
            if not -(2**63) <= number < 2**63:
                raise ValueError(f"intValue {number} does not fit int64")
            tags.append((key, INT64, number))
        elif "boolValue" in value or "bool_value" in value:
            tags.append((key, BOOL, _bool(_get(value, "boolValue", "bool_value"))))
        elif "doubleValue" in value or "double_value" in value:
            tags.append(float_tag(key, float(_get(value, "doubleValue", "double_value"))))
        elif "bytesValue" in value or "bytes_value" in value:
            raw = base64.b64decode(_get(value, "bytesValue", "bytes_value") or "", validate=True)
            tags.append((key, BINARY, base64.b64encode(raw).decode("ascii")))
        elif not value:
            tags.append((key, STRING, ""))
        else:
            tags.append((key, STRING, compact_json(_json_any_value(value))))
    return tags


def _json_any_value(value: dict[str, Any]) -> Any:
    if "arrayValue" in value or "array_value" in value:
        return [_json_any_value(item) for item in _list(_obj(value, "arrayValue", "array_value"), "values")]
    if "kvlistValue" in value or "kvlist_value" in value:
        pairs = _list(_obj(value, "kvlistValue", "kvlist_value"), "values")
        return {_str(kv, "key"): _json_any_value(_obj(kv, "value")) for kv in pairs}
    if "intValue" in value or "int_value" in value:
        return _int(_get(value, "intValue", "int_value"))
    for key in ("stringValue", "boolValue", "doubleValue", "bytesValue", "string_value", "bool_value"):
        if key in value:
            return value[key]
    return None


def _json_kind(raw: Any) -> str:
    if raw is None:
        return KIND_UNSPECIFIED
    if isinstance(raw, str) and not raw.isdigit():
        if raw not in KIND_BY_NAME:
            raise ValueError(f"unknown span kind {raw!r}")
        return KIND_BY_NAME[raw]
    number = int(raw)
    return KIND_BY_NUMBER[number] if 0 <= number < len(KIND_BY_NUMBER) else KIND_UNSPECIFIED


def _json_status_code(raw: Any) -> int:
    if raw is None:
        return STATUS_UNSET
    if isinstance(raw, str) and not raw.isdigit():
        if raw not in STATUS_BY_NAME:
            raise ValueError(f"unknown status code {raw!r}")
        return STATUS_BY_NAME[raw]
    return int(raw)


def _hex_id(raw: Any, length: int) -> str:
    """OTLP JSON ids are hex; an empty or absent id reads as ""."""
    if raw is None or raw == "":
        return ""
    if not isinstance(raw, str):
        raise TypeError("ids must be hex strings")
    text = raw.lower()
    if len(text) != length:
        return ""
    try:
        int(text, 16)
    except ValueError:
        return ""  # an unusable id rejects the span, not the whole request
    return text


def _get(obj: Any, *names: str) -> Any:
    if not isinstance(obj, dict):
        raise TypeError("expected a JSON object")
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _obj(obj: Any, *names: str) -> dict[str, Any]:
    value = _get(obj, *names)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{names[0]} must be an object")
    return value


def _list(obj: Any, *names: str) -> list[Any]:
    value = _get(obj, *names)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{names[0]} must be an array")
    return value


def _str(obj: Any, *names: str) -> str:
    value = _get(obj, *names)
    return "" if value is None else str(value)


def _int(raw: Any) -> int:
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool):
        raise TypeError("expected an integer")
    return int(raw)


def _bool(raw: Any) -> bool:
    if isinstance(raw, str):
        return raw.lower() == "true"
    return bool(raw)


