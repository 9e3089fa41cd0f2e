"""The span warnings Jaeger's query service adds to a trace, computed the same way.

Jaeger v2 runs its clock-skew adjuster on every trace it returns. With adjustment
disabled (``max_clock_skew_adjust: 0s``, Jaeger's default) it moves no timestamp, but it
still warns, and jaeger-ui shows those warnings on the span:

- ``duplicate span IDs; skipping clock skew adjustment`` on a second span with the same id;
- ``invalid parent span IDs=<id>; skipping clock skew adjustment`` when the parent is not in
  the trace (a caller whose spans never arrived);
- ``clock skew adjustment disabled; not applying calculated delta of <Go duration>`` when a
  span from another host (or with no ``ip`` process tag) does not fit inside its parent;
- and, added when it stores a span, ``Negative duration detected, ...`` for a span that does
  not end after it starts (a Jaeger thrift span shorter than its 1 µs resolution).

Mirrors ``cmd/query/app/querysvc/internal/adjuster/clockskew.go`` (pinned against a real
Jaeger by ``tests/integration/test_real_jaeger.py``).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from datetime import datetime, timezone

from .model import BINARY, CHILD_OF, FOLLOWS_FROM, INT64, STRING, SpanRecord

DUPLICATE_SPAN_ID = "duplicate span IDs; skipping clock skew adjustment"
INVALID_PARENT = "invalid parent span IDs={}; skipping clock skew adjustment"
SKEW_ADJUST_DISABLED = "clock skew adjustment disabled; not applying calculated delta of {}"
_NO_PARENT = "0000000000000000"


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``750ns``, ``1.5µs``, ``12.5ms``, ``1m2.5s``."""
    if nanoseconds == 0:
        return "0s"
    sign, value = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 1_000)}µs"
    if value < 1_000_000_000:
        return f"{sign}{_fraction(value, 1_000_000)}ms"
    hours, rest = divmod(value, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fraction(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    digits = str(part).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


NEGATIVE_DURATION = "Negative duration detected, sanitizing end timestamp. Original end timestamp: {}, adjusted to: {}"


def go_utc_time(nanoseconds: int) -> str:
    """Go's ``time.Time.String()`` of a UTC instant: ``2026-12-02 14:12:04.37012 +0000 UTC``."""
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0")
    return f"{text}.{digits} +0000 UTC" if digits else f"{text} +0000 UTC"


def _from_jaeger_thrift(record: SpanRecord) -> bool:
    """Spans that came as Jaeger thrift (their times are whole microseconds)."""
    return any(
        key == "opencensus.exporterversion" and isinstance(value, str) and value.startswith("Jaeger-")
        for key, _type, value in record.process.tags
    )


def _duration_warning(record: SpanRecord) -> str | None:
    """Jaeger v2 gives a span that does not end after it starts 1 ns, and says so.

    Only spans that came as Jaeger thrift are known to have ended exactly at their start:
    an OTLP span shorter than a microsecond is stored as 0 µs here but was not 0 ns there.
    """
    if record.duration_us > 0 or not _from_jaeger_thrift(record):
        return None
    start_ns = record.start_us * 1000
    end_ns = start_ns + record.duration_us * 1000
    return NEGATIVE_DURATION.format(go_utc_time(end_ns), go_utc_time(start_ns + 1))


def parent_span_id(record: SpanRecord) -> str | None:
    """Jaeger's ``ParentSpanID()``: the first CHILD_OF in the trace, else the first FOLLOWS_FROM."""
    follows = None
    for ref_type, trace_id, span_id in record.references:
        if trace_id != record.trace_id:
            continue
        if ref_type == CHILD_OF:
            return None if span_id == _NO_PARENT else span_id
        if follows is None and ref_type == FOLLOWS_FROM:
            follows = span_id
    return None if follows in (None, _NO_PARENT) else follows


def host_key(record: SpanRecord) -> str:
    """The process's ``ip`` tag as text, or "" (then every child counts as another host)."""
    for key, type_code, value in record.process.tags:
        if key != "ip":
            continue
        try:
            if type_code == STRING:
                return str(value)
            if type_code == INT64:
                return str(ipaddress.IPv4Address(int(value) & 0xFFFFFFFF))
            if type_code == BINARY:
                raw = base64.b64decode(value)
                return str(ipaddress.ip_address(raw)) if len(raw) in (4, 16) else ""
        except (ValueError, TypeError):
            return ""
        return ""
    return ""


def _skew_ns(child: SpanRecord, parent: SpanRecord) -> int:
    """clockskew.go's calculateSkew, in nanoseconds (records keep µs)."""
    child_start, parent_start = child.start_us * 1000, parent.start_us * 1000
    child_duration, parent_duration = child.duration_us * 1000, parent.duration_us * 1000
    if child_duration > parent_duration:
        return parent_start - child_start if child_start < parent_start else 0
    if child_start >= parent_start and child_start + child_duration <= parent_start + parent_duration:
        return 0
    latency = (parent_duration - child_duration) // 2
    return parent_start + latency - child_start


def span_warnings(spans: Sequence[SpanRecord]) -> list[list[str] | None]:
    """Jaeger's warnings for each span of one trace (None where it has none)."""
    warnings: list[list[str] | None] = [None] * len(spans)

    def warn(index: int, text: str) -> None:
        found = warnings[index]
        if found is None:
            warnings[index] = [text]
        else:
            found.append(text)

    for index, record in enumerate(spans):  # added when Jaeger stores the span: first
        sanitized = _duration_warning(record)
        if sanitized is not None:
            warn(index, sanitized)
    nodes: dict[str, int] = {}
    for index, record in enumerate(spans):
        if record.span_id in nodes:
            warn(index, DUPLICATE_SPAN_ID)
        else:
            nodes[record.span_id] = index
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for index in nodes.values():
        parent = parent_span_id(spans[index])
        if parent is None:
            roots.append(index)
        elif parent in nodes:
            children.setdefault(nodes[parent], []).append(index)
        else:
            warn(index, INVALID_PARENT.format(parent))
            roots.append(index)
    hosts = [host_key(record) for record in spans]
    # (span, its parent, the host the skew was measured for, the skew) - iterative: traces can be deep
    stack: list[tuple[int, int | None, str, int]] = [(root, None, hosts[root], 0) for root in roots]
    while stack:
        index, parent_index, skew_host, delta = stack.pop()
        host = hosts[index]
        if parent_index is not None and (host != skew_host or host == ""):
            skew_host, delta = host, _skew_ns(spans[index], spans[parent_index])
        if delta:
            warn(index, SKEW_ADJUST_DISABLED.format(go_duration(delta)))
        stack.extend((child, index, skew_host, delta) for child in children.get(index, ()))
    return warnings
