"""The query API's parameters: Jaeger's names, syntax and defaults, checked into a TraceQuery.

Pure functions (no sockets), so every refusal can be tested directly. Every number a
client sends is range-checked here: a value SQLite or a timestamp cannot hold is a 400
naming the parameter, never an overflow deep in a query (a 500).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .store import DEFAULT_QUERY_LIMIT, TraceQuery

MAX_QUERY_LIMIT = 1_000_000
# Timestamps and durations in µs (and ms) must stay far inside SQLite's signed 64 bits,
# including after adding a lookback to them: +-2**62 µs is +-146,000 years.
MAX_US = 1 << 62
DEFAULT_TRACE_LOOKBACK_US = 2 * 24 * 3600 * 1_000_000  # Jaeger's default for /api/traces
DEFAULT_DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000


class ApiError(Exception):
    """A request the API refuses; rendered as Jaeger's error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- parameter parsing

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_LOOKBACK_UNITS_US = {**_DURATION_UNITS_US, "d": 86_400_000_000, "w": 7 * 86_400_000_000}
_LOOKBACK = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h|d|w)")


def parse_duration_us(text: str) -> int:
    """Go's ``time.ParseDuration`` syntax ("1.2s", "100ms", "1h30m", "500us") to µs."""
    text = text.strip()
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS_US[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"invalid duration {text!r}")
    if not total < MAX_US:  # also inf
        raise ValueError(f"duration {text!r} is out of range")
    return sign * int(round(total))


def parse_lookback_us(text: str) -> int:
    """The UI's lookback values ("1h", "2d", "7d") to µs; also any Go duration."""
    match = _LOOKBACK.fullmatch(text.strip())
    if match:
        value = float(match.group(1)) * _LOOKBACK_UNITS_US[match.group(2)]
        if not value < MAX_US:  # also inf
            raise ValueError(f"lookback {text!r} is out of range")
        return int(value)
    return parse_duration_us(text)


_LOGFMT_PAIR = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(text: str) -> dict[str, str]:
    """``error=true http.status_code=500 msg="a b"`` to a dict (what the Jaeger UI accepts)."""
    result: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LOGFMT_PAIR.match(text, position)
        if not match:
            raise ValueError(f"cannot parse tags {text!r}")
        key, value = match.group(1), match.group(2)
        if value.startswith('"'):
            value = json.loads(value)
        result[key] = value
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return result


def parse_tags(simple_tags: list[str], json_tags: list[str]) -> dict[str, str]:
    """``tag=key:value`` params plus ``tags=`` JSON objects (or logfmt text), merged."""
    tags: dict[str, str] = {}
    for tag in simple_tags:
        key, sep, value = tag.partition(":")
        if not sep:
            raise ApiError(400, f"malformed 'tag' parameter, expecting key:value, received: {tag}")
        tags[key] = value
    for text in json_tags:
        if not text.strip():
            continue
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            tags.update({str(k): _search_text(v) for k, v in parsed.items()})
            continue
        try:
            tags.update(parse_logfmt(text))
        except ValueError as exc:
            raise ApiError(400, f"malformed 'tags' parameter: {exc}") from None
    return tags


def _search_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def first_param(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _int_param(params: dict[str, list[str]], name: str, bound: int = MAX_US) -> int | None:
    """An integer parameter within +-bound (400 otherwise), or None when absent."""
    text = first_param(params, name).strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"unable to parse param '{name}': {text[:40]!r} is not an integer") from None
    if not -bound <= value <= bound:
        raise ApiError(400, f"param '{name}' is out of range: {text[:40]} (at most {bound} in absolute value)")
    return value


def int_param(params: dict[str, list[str]], name: str, bound: int = MAX_US) -> int | None:
    return _int_param(params, name, bound)


def parse_trace_query(params: dict[str, list[str]], now_us: int) -> TraceQuery:
    """``/api/traces`` parameters (Jaeger's names and defaults) to a TraceQuery."""
    end = _int_param(params, "end")
    end_us = end if end is not None else now_us
    start = _int_param(params, "start")
    if start is None:
        lookback = first_param(params, "lookback").strip()
        lookback_us = DEFAULT_TRACE_LOOKBACK_US
        if lookback and lookback != "custom":
            try:
                lookback_us = parse_lookback_us(lookback)
            except ValueError as exc:
                raise ApiError(400, f"unable to parse param 'lookback': {exc}") from None
        start = end_us - lookback_us
    durations: dict[str, int | None] = {}
    for name in ("minDuration", "maxDuration"):
        text = first_param(params, name).strip()
        try:
            durations[name] = parse_duration_us(text) if text else None
        except ValueError as exc:
            raise ApiError(400, f"unable to parse param '{name}': {exc}") from None
    low, high = durations["minDuration"], durations["maxDuration"]
    if low and high and high < low:
        raise ApiError(400, "'maxDuration' should be greater than 'minDuration'")
    limit = _int_param(params, "limit")
    if limit is not None and limit > MAX_QUERY_LIMIT:
        limit = MAX_QUERY_LIMIT  # more traces than any store holds: "all of them"
    return TraceQuery(
        service=first_param(params, "service") or None,
        operation=first_param(params, "operation") or None,
        tags=parse_tags(params.get("tag", []), params.get("tags", [])),
        start_min_us=start,
        start_max_us=end_us,
        duration_min_us=low or None,
        duration_max_us=high or None,
        limit=limit if limit and limit > 0 else DEFAULT_QUERY_LIMIT,
    )


def envelope(data: Any, total: int | None = None, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Jaeger's structuredResponse."""
    if total is None:
        total = len(data) if isinstance(data, list) else 0
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def error_envelope(status: int, message: str) -> dict[str, Any]:
    return envelope(None, 0, [{"code": status, "msg": message}])

