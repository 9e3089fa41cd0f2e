"""Aggregates over the span store for the web UI: service dependencies and RED metrics.

Pure functions over a read-only SQLite connection to the store's file (``store.path``),
kept apart from :mod:`.store` and :mod:`.api` so they can change without touching the
ingest path.

* :func:`dependencies` is Jaeger's ``/api/dependencies`` in one pass: the spans of the
  window are read once (through the ``(service_id, start_us)`` index), a
  ``(trace, span) -> service`` map is built, and each child is looked up in it. The
  store's self-join ``spans c JOIN spans p ON p.trace_id = c.trace_id AND p.span_id =
  c.parent_id`` only has an index on ``trace_id``, so a 10,000-span trace costs it
  10,000 x 10,000 row visits. Parents that started before the window are looked up
  afterwards, one query per trace that has such spans.
* :func:`red_metrics` is the Monitor page's data: per service and operation, request
  rate, error percentage and latency percentiles (p50/p95/p99), as totals over the
  window and as series over time steps. Errors are read from the packed payload (an
  OTLP ``Span``: status code ERROR, or an ``error`` tag that is true).
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
from collections import OrderedDict
from typing import Any, overload

from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan

STATUS_ERROR = 2
ENTRY_KINDS = ("server", "consumer")
MAX_STEPS = 240


def connect_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the store's SQLite file (WAL readers never block the writer)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
    db.execute("PRAGMA query_only=1")
    db.execute("PRAGMA cache_size=-32768")
    return db


def _service_names(db: sqlite3.Connection) -> dict[int, str]:
    return dict(db.execute("SELECT id, name FROM services"))


def _in_list(ids: Any) -> str:
    return ",".join(str(int(value)) for value in ids) or "NULL"


def dependencies(db: sqlite3.Connection, start_us: int, end_us: int) -> list[tuple[str, str, int]]:
    """``(parent service, child service, call count)`` for children started in the window."""
    names = _service_names(db)
    rows = db.execute(
        "SELECT trace_id, span_id, parent_id, service_id FROM spans "
        f"WHERE service_id IN ({_in_list(names)}) AND start_us >= ? AND start_us <= ?",
        (start_us, end_us),
    ).fetchall()
    owner: dict[tuple[str, str], int] = {(trace, span): service for trace, span, _parent, service in rows}
    counts: dict[tuple[int, int], int] = {}
    missing: dict[str, list[tuple[str, int]]] = {}
    for trace, _span, parent, service in rows:
        if not parent:
            continue
        parent_service = owner.get((trace, parent))
        if parent_service is None:
            missing.setdefault(trace, []).append((parent, service))
        elif parent_service != service:
            key = (parent_service, service)
            counts[key] = counts.get(key, 0) + 1
    for trace, wanted in missing.items():  # parents outside the window (or never received)
        ids = sorted({parent for parent, _service in wanted})
        found: dict[str, int] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                db.execute(
                    f"SELECT span_id, service_id FROM spans WHERE trace_id = ? AND span_id IN ({marks})",
                    (trace, *chunk),
                ).fetchall()
            )
        for parent, service in wanted:
            parent_service = found.get(parent)
            if parent_service is not None and parent_service != service:
                key = (parent_service, service)
                counts[key] = counts.get(key, 0) + 1
    return sorted((names.get(p, "?"), names.get(c, "?"), n) for (p, c), n in counts.items())


def _is_error(payload: bytes) -> bool:
    span = PbSpan.FromString(payload)
    if span.status.code == STATUS_ERROR:
        return True
    for attribute in span.attributes:
        if attribute.key == "error":
            value = attribute.value
            which = value.WhichOneof("value")
            if which == "bool_value":
                return value.bool_value  # type: ignore[no-any-return]  # protobuf fields are untyped here
            if which == "string_value":
                return value.string_value.lower() == "true"  # type: ignore[no-any-return]  # as above
        elif attribute.key == "otel.status_code" and attribute.value.string_value.upper() == "ERROR":
            return True
    return False


def percentile(sorted_values: list[int], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def _summary(durations: list[int], errors: int, seconds: float) -> dict[str, Any]:
    durations.sort()
    n = len(durations)
    return {
        "calls": n,
        "errors": errors,
        "rate": n / seconds if seconds > 0 else 0.0,
        "errorPct": 100.0 * errors / n if n else None,
        "p50": percentile(durations, 0.50),
        "p95": percentile(durations, 0.95),
        "p99": percentile(durations, 0.99),
    }


def red_metrics(
    db: sqlite3.Connection,
    service: str,
    end_us: int,
    lookback_us: int,
    step_us: int | None = None,
    span_kind: str = "entry",
) -> dict[str, Any]:
    """Request rate (/s), error % and p50/p95/p99 latency (µs) of ``service`` per operation.

    ``span_kind`` "entry" counts server and consumer spans plus root spans (what Jaeger's
    Monitor tab shows for spanKind=server); "all" counts every span; any other value is
    one span kind ("client", "internal", ...).
    """
    start_us = end_us - lookback_us
    if not step_us or step_us <= 0:
        step_us = max(1_000_000, lookback_us // 60)
    step_us = max(step_us, -(-lookback_us // MAX_STEPS))
    steps = max(1, -(-lookback_us // step_us))
    row = db.execute("SELECT id FROM services WHERE name = ?", (service,)).fetchone()
    result: dict[str, Any] = {
        "service": service,
        "start": start_us,
        "end": end_us,
        "step": step_us,
        "spanKind": span_kind,
        "timestamps": [start_us + i * step_us for i in range(steps)],
        "operations": [],
        "total": None,
    }
    if row is None:
        result["total"] = _series_entry("", [], steps, step_us, lookback_us)
        return result
    operations = {
        oid: (name, kind)
        for oid, name, kind in db.execute(
            "SELECT id, name, kind FROM operations WHERE service_id = ?", (row[0],)
        )
    }
    grouped: dict[str, list[tuple[int, int, bool]]] = {}
    everything: list[tuple[int, int, bool]] = []
    # Only the wanted kinds' rows are read (each payload is parsed for its error status).
    if span_kind == "entry":
        entry_ids = [oid for oid, (_name, kind) in operations.items() if kind in ENTRY_KINDS]
        kind_filter = f" AND (operation_id IN ({_in_list(entry_ids)}) OR parent_id = '')"
    elif span_kind == "all":
        kind_filter = ""
    else:
        kind_filter = (
            f" AND operation_id IN ({_in_list(o for o, (_n, k) in operations.items() if k == span_kind)})"
        )
    for operation_id, parent_id, start, duration, payload in db.execute(
        "SELECT operation_id, parent_id, start_us, duration_us, payload FROM spans "
        "WHERE service_id = ? AND start_us >= ? AND start_us < ?" + kind_filter,
        (row[0], start_us, end_us),
    ):
        name, kind = operations.get(operation_id, ("", ""))
        if span_kind == "entry":
            if kind not in ENTRY_KINDS and parent_id:
                continue
        elif span_kind != "all" and kind != span_kind:
            continue
        sample = ((start - start_us) // step_us, duration, _is_error(payload))
        grouped.setdefault(name, []).append(sample)
        everything.append(sample)
    result["operations"] = sorted(
        (_series_entry(name, samples, steps, step_us, lookback_us) for name, samples in grouped.items()),
        key=lambda entry: (-entry["calls"], entry["name"]),
    )
    result["total"] = _series_entry("", everything, steps, step_us, lookback_us)
    return result


def _series_entry(
    name: str, samples: list[tuple[int, int, bool]], steps: int, step_us: int, lookback_us: int
) -> dict[str, Any]:
    buckets: list[list[int]] = [[] for _ in range(steps)]
    bucket_errors = [0] * steps
    errors = 0
    durations: list[int] = []
    for index, duration, error in samples:
        index = min(steps - 1, max(0, index))
        buckets[index].append(duration)
        durations.append(duration)
        if error:
            bucket_errors[index] += 1
            errors += 1
    entry = {"name": name, **_summary(durations, errors, lookback_us / 1e6)}
    series: dict[str, list[float | None]] = {"rate": [], "errorPct": [], "p50": [], "p95": [], "p99": []}
    for values, errs in zip(buckets, bucket_errors, strict=True):
        point = _summary(values, errs, step_us / 1e6)
        for key in series:
            series[key].append(point[key])
    entry["series"] = series
    return entry


_POOL_PATHS = 4
_pool: OrderedDict[str, list[sqlite3.Connection]] = OrderedDict()  # keyed by path and inode
_pool_lock = threading.Lock()


def with_read_only(path: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(db, ...)`` on a pooled read-only connection to ``path``.

    Connections are kept (their page cache stays warm: a fresh one reads every page of
    a 100k-span window again) for the last few store paths; older ones are closed.
    """
    try:  # a file deleted and created again under the same name is another store
        key = f"{path}\0{os.stat(path).st_ino}"
    except OSError:
        key = path
    with _pool_lock:
        idle = _pool.get(key)
        db = idle.pop() if idle else None
    if db is None:
        db = connect_read_only(path)
    try:
        result = fn(db, *args, **kwargs)
    except BaseException:
        db.close()
        raise
    evicted: list[sqlite3.Connection] = []
    with _pool_lock:
        _pool.setdefault(key, []).append(db)
        _pool.move_to_end(key)
        while len(_pool) > _POOL_PATHS:
            evicted.extend(_pool.popitem(last=False)[1])
    for old in evicted:
        with contextlib.suppress(sqlite3.Error):
            old.close()
    return result


@overload
def _int(params: dict[str, list[str]], name: str, default: int) -> int: ...
@overload
def _int(params: dict[str, list[str]], name: str, default: None) -> int | None: ...
def _int(params: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = params.get(name) or [""]
    text = values[0].strip()
    if not text:
        return default
    try:
        return int(float(text))
    except ValueError:
        raise ValueError(f"unable to parse param '{name}': {text!r} is not a number") from None


def query(path: str, name: str, params: dict[str, list[str]], now_s: float) -> Any:
    """The data of ``/api/dependencies`` (Jaeger's parameters, ms) or ``/api/monitor``.

    ``/api/monitor?service=S&endTs=ms&lookback=ms&step=ms&spanKind=entry|all|server|...``
    """
    end_ms = _int(params, "endTs", int(now_s * 1000))
    if name == "dependencies":
        lookback_ms = _int(params, "lookback", 24 * 3600 * 1000)
        links = with_read_only(path, dependencies, (end_ms - lookback_ms) * 1000, end_ms * 1000)
        return [{"parent": p, "child": c, "callCount": n} for p, c, n in links]
    service = (params.get("service") or [""])[0]
    if not service:
        raise ValueError("parameter 'service' is required")
    lookback_ms = _int(params, "lookback", 3600 * 1000)
    if lookback_ms <= 0:
        raise ValueError("parameter 'lookback' must be positive")
    step_ms = _int(params, "step", None)
    kind = (params.get("spanKind") or ["entry"])[0] or "entry"
    return with_read_only(
        path,
        red_metrics,
        service,
        end_ms * 1000,
        lookback_ms * 1000,
        step_ms * 1000 if step_ms else None,
        kind,
    )
