"""Rendering SpanRecords as Jaeger's HTTP JSON model (what jaeger-ui consumes).

Field names and types follow Jaeger's ``model/json``: a trace is
``{traceID, spans, processes, warnings}``; spans point at processes by a per-trace id
(``p1``, ``p2``...), so a process's tags are sent once per trace, not once per span.

The details follow what Jaeger v2's query API answers for the same spans (pinned by
``tests/integration/test_real_jaeger.py``): tags sorted by key (then type, then value),
log fields sorted with ``event`` first, integers beyond JavaScript's safe range as
strings, no ``flags`` field (v2 keeps none), and 64-bit trace ids (jaeger-client's
default) in 16 hex digits, as Jaeger's ``TraceID.String()`` writes them.
"""

from __future__ import annotations

import json
from typing import Any

from .adjusters import span_warnings
from .model import BINARY, BOOL, FLOAT64, INT64, JAEGER_TYPE_NAMES, STRING, Process, SpanRecord, Tag

JS_MAX_SAFE_INTEGER = (1 << 53) - 1
_TYPE_RANK = {STRING: 0, BOOL: 1, INT64: 2, FLOAT64: 3, BINARY: 4}  # Jaeger's ValueType order


def display_trace_id(trace_id: str) -> str:
    """Jaeger's spelling of a stored 32-digit id: 16 digits when the high half is zero."""
    return trace_id[16:] if trace_id.startswith("0000000000000000") else trace_id


def _tag_order(tag: Tag) -> tuple[Any, ...]:
    return (tag[0], _TYPE_RANK.get(tag[1], 0), tag[2])


def sorted_tags(tags: list[Tag]) -> list[Tag]:
    """Jaeger's ``KeyValues.Sort``: by key, then type, then value."""
    try:
        return sorted(tags, key=_tag_order)
    except TypeError:  # values of one key and type that do not compare (a damaged row)
        return sorted(tags, key=lambda tag: (tag[0], _TYPE_RANK.get(tag[1], 0)))


def sorted_log_fields(fields: list[Tag]) -> list[Tag]:
    """Jaeger's log order: the string ``event`` field first, the rest sorted."""
    for index, tag in enumerate(fields):
        if tag[0] == "event" and tag[1] == STRING:
            return [tag, *sorted_tags(fields[:index] + fields[index + 1 :])]
    return sorted_tags(fields)


def _json_value(type_code: str, value: Any) -> Any:
    if type_code == INT64 and isinstance(value, int) and not -JS_MAX_SAFE_INTEGER <= value <= JS_MAX_SAFE_INTEGER:
        return str(value)
    return value


def jaeger_tags(tags: list[Tag], *, log: bool = False) -> list[dict[str, Any]]:
    names = JAEGER_TYPE_NAMES
    ordered = sorted_log_fields(tags) if log else sorted_tags(tags)
    return [
        {"key": key, "type": names.get(type_code, "string"), "value": _json_value(type_code, value)}
        for key, type_code, value in ordered
    ]


def jaeger_span(record: SpanRecord, process_id: str, warnings: list[str] | None = None) -> dict[str, Any]:
    return {
        "traceID": display_trace_id(record.trace_id),
        "spanID": record.span_id,
        "operationName": record.operation,
        "references": [
            {"refType": ref_type, "traceID": display_trace_id(trace_id), "spanID": span_id}
            for ref_type, trace_id, span_id in record.references
        ],
        "startTime": record.start_us,
        "duration": record.duration_us,
        "tags": jaeger_tags(record.tags),
        "logs": [{"timestamp": timestamp, "fields": jaeger_tags(fields, log=True)} for timestamp, fields in record.logs],
        "processID": process_id,
        "warnings": warnings,
    }


def jaeger_traces(records: list[SpanRecord]) -> list[dict[str, Any]]:
    """Group records by trace (keeping their order) into Jaeger trace objects."""
    result = []
    for trace_id, spans in _by_trace(records).items():
        trace: dict[str, Any] = {"traceID": display_trace_id(trace_id), "spans": [], "processes": {}, "warnings": None}
        known: dict[tuple[str, int], str] = {}
        for record, warnings in zip(spans, span_warnings(spans), strict=True):
            process = record.process
            identity = (process.service, id(process))
            process_id = known.get(identity)
            if process_id is None:
                process_id = _matching_process_id(trace["processes"], process)
                if process_id is None:
                    process_id = f"p{len(trace['processes']) + 1}"
                    trace["processes"][process_id] = {"serviceName": process.service, "tags": jaeger_tags(process.tags)}
                known[identity] = process_id
            trace["spans"].append(jaeger_span(record, process_id, warnings))
        result.append(trace)
    return result


def _by_trace(records: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    grouped: dict[str, list[SpanRecord]] = {}
    for record in records:
        grouped.setdefault(record.trace_id, []).append(record)
    return grouped


def _matching_process_id(processes: dict[str, dict[str, Any]], process: Process) -> str | None:
    """Equal processes share one id even when they are distinct objects."""
    rendered_tags = jaeger_tags(process.tags)
    for process_id, rendered in processes.items():
        if rendered["serviceName"] == process.service and rendered["tags"] == rendered_tags:
            return process_id
    return None


# --------------------------------------------------------------------------- direct JSON text
#
# The same documents as above, written straight to JSON text. A 1,000-span trace is
# ~1 MB of JSON made of ~15,000 small objects; building them as dicts first and then
# encoding costs twice the work and wakes the garbage collector. These functions are
# checked against the dict renderers above (they must parse back to the same value).

_quote = json.encoder.encode_basestring  # C-accelerated "…" with JSON escapes, no ASCII-only
_float_text = float.__repr__
_TYPE_NAMES = {code: f'"{name}"' for code, name in JAEGER_TYPE_NAMES.items()}
_STRING_NAME = '"string"'


def _value_json(type_code: str, value: Any) -> str:
    if type_code == "s" or type_code == "x":
        return _quote(value)
    if type_code == "b":
        return "true" if value else "false"
    if type_code == "i":
        return str(value) if -JS_MAX_SAFE_INTEGER <= value <= JS_MAX_SAFE_INTEGER else f'"{value}"'
    if type_code == "f":
        return _float_text(value)
    return _quote(str(value))


def tags_json(tags: list[Tag], *, log: bool = False) -> str:
    quote = _quote
    names = _TYPE_NAMES
    parts = []
    for key, type_code, value in sorted_log_fields(tags) if log else sorted_tags(tags):
        rendered = quote(value) if type_code == "s" else _value_json(type_code, value)
        type_name = names.get(type_code, _STRING_NAME)
        parts.append(f'{{"key":{quote(key)},"type":{type_name},"value":{rendered}}}')
    return "[" + ",".join(parts) + "]"


def span_json(record: SpanRecord, process_id: str, warnings: list[str] | None = None) -> str:
    references = ",".join(
        f'{{"refType":"{ref_type}","traceID":"{display_trace_id(trace_id)}","spanID":"{span_id}"}}'
        for ref_type, trace_id, span_id in record.references
    )
    logs = ",".join(f'{{"timestamp":{timestamp},"fields":{tags_json(fields, log=True)}}}' for timestamp, fields in record.logs)
    return (
        f'{{"traceID":"{display_trace_id(record.trace_id)}","spanID":"{record.span_id}",'
        f'"operationName":{_quote(record.operation)},"references":[{references}],'
        f'"startTime":{record.start_us},"duration":{record.duration_us},"tags":{tags_json(record.tags)},'
        f'"logs":[{logs}],"processID":"{process_id}","warnings":{_warnings_json(warnings)}}}'
    )


def _warnings_json(warnings: list[str] | None) -> str:
    return "null" if warnings is None else "[" + ",".join(map(_quote, warnings)) + "]"


def traces_json(records: list[SpanRecord]) -> dict[str, str]:
    """Like :func:`jaeger_traces`, but each trace as JSON text, keyed by trace id."""
    rendered: dict[str, str] = {}
    for trace_id, spans in _by_trace(records).items():
        processes: dict[str, Process] = {}
        process_ids: dict[int, str] = {}
        parts = []
        for record, warnings in zip(spans, span_warnings(spans), strict=True):
            process = record.process
            process_id = process_ids.get(id(process))
            if process_id is None:
                process_id = next(
                    (pid for pid, known in processes.items() if known.service == process.service and known.tags == process.tags),
                    None,
                )
                if process_id is None:
                    process_id = f"p{len(processes) + 1}"
                    processes[process_id] = process
                process_ids[id(process)] = process_id
            parts.append(span_json(record, process_id, warnings))
        process_text = ",".join(
            f'"{pid}":{{"serviceName":{_quote(process.service)},"tags":{tags_json(process.tags)}}}'
            for pid, process in processes.items()
        )
        rendered[trace_id] = (
            f'{{"traceID":"{display_trace_id(trace_id)}","spans":[{",".join(parts)}],"processes":{{{process_text}}},"warnings":null}}'
        )
    return rendered
