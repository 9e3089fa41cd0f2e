"""Rendering SpanRecords as Jaeger's HTTP JSON model (what jaeger-ui consumes).

Field names and types follow Jaeger's ``model/json``: a trace is
``{traceID, spans, processes, warnings}``; spans point at processes by a per-trace id
(``p1``, ``p2``...), so a process's tags are sent once per trace, not once per span.
"""

from __future__ import annotations

from typing import Any

from .model import JAEGER_TYPE_NAMES, Process, SpanRecord, Tag


def jaeger_tags(tags: list[Tag]) -> list[dict[str, Any]]:
    names = JAEGER_TYPE_NAMES
    return [{"key": key, "type": names.get(type_code, "string"), "value": value} for key, type_code, value in tags]


def jaeger_span(record: SpanRecord, process_id: str) -> dict[str, Any]:
    return {
        "traceID": record.trace_id,
        "spanID": record.span_id,
        "flags": record.flags,
        "operationName": record.operation,
        "references": [
            {"refType": ref_type, "traceID": trace_id, "spanID": span_id}
            for ref_type, trace_id, span_id in record.references
        ],
        "startTime": record.start_us,
        "duration": record.duration_us,
        "tags": jaeger_tags(record.tags),
        "logs": [{"timestamp": timestamp, "fields": jaeger_tags(fields)} for timestamp, fields in record.logs],
        "processID": process_id,
        "warnings": None,
    }


def jaeger_traces(records: list[SpanRecord]) -> list[dict[str, Any]]:
    """Group records by trace (keeping their order) into Jaeger trace objects."""
    traces: dict[str, dict[str, Any]] = {}
    process_ids: dict[str, dict[tuple[str, int], str]] = {}
    for record in records:
        trace = traces.get(record.trace_id)
        if trace is None:
            trace = traces[record.trace_id] = {
                "traceID": record.trace_id,
                "spans": [],
                "processes": {},
                "warnings": None,
            }
            process_ids[record.trace_id] = {}
        known = process_ids[record.trace_id]
        process = record.process
        identity = (process.service, id(process))
        process_id = known.get(identity)
        if process_id is None:
            process_id = _matching_process_id(trace["processes"], process)
            if process_id is None:
                process_id = f"p{len(trace['processes']) + 1}"
                trace["processes"][process_id] = {"serviceName": process.service, "tags": jaeger_tags(process.tags)}
            known[identity] = process_id
        trace["spans"].append(jaeger_span(record, process_id))
    return list(traces.values())


def _matching_process_id(processes: dict[str, dict[str, Any]], process: Process) -> str | None:
    """Equal processes share one id even when they are distinct objects."""
    rendered_tags = jaeger_tags(process.tags)
    for process_id, rendered in processes.items():
        if rendered["serviceName"] == process.service and rendered["tags"] == rendered_tags:
            return process_id
    return None
