"""The collector's one internal span record, shared by every receiver and the store.

Receivers (OTLP protobuf, OTLP JSON, Jaeger thrift-compact) translate into
:class:`SpanRecord`; the store only ever sees records, and the query API only ever
renders Jaeger's JSON model from what the store gives back. Keeping one shape in the
middle is what lets a span sent over UDP by an old Jaeger client sit in the same trace
as one sent over OTLP by the OpenTelemetry SDK.

Tags are plain tuples ``(key, type_code, value)`` rather than objects: a busy ingest
path creates millions of them and the store serialises them straight to JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# One-letter type codes keep stored payloads small; JAEGER_TYPE_NAMES maps them to
# the names Jaeger's JSON model uses.
STRING = "s"
BOOL = "b"
INT64 = "i"
FLOAT64 = "f"
BINARY = "x"  # value held as base64 text, which is also how Jaeger's JSON renders bytes

JAEGER_TYPE_NAMES = {STRING: "string", BOOL: "bool", INT64: "int64", FLOAT64: "float64", BINARY: "binary"}

CHILD_OF = "CHILD_OF"
FOLLOWS_FROM = "FOLLOWS_FROM"

# Span kinds, spelled the way Jaeger's `span.kind` tag and `/api/operations` spell them.
KIND_UNSPECIFIED = ""
KIND_INTERNAL = "internal"
KIND_SERVER = "server"
KIND_CLIENT = "client"
KIND_PRODUCER = "producer"
KIND_CONSUMER = "consumer"
KNOWN_KINDS = (KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER)

Tag = tuple[str, str, Any]
"""``(key, type_code, value)`` with type_code one of STRING, BOOL, INT64, FLOAT64, BINARY."""

Log = tuple[int, list[Tag]]
"""``(timestamp_us, fields)``."""

Reference = tuple[str, str, str]
"""``(ref_type, trace_id_hex, span_id_hex)``."""

MAX_TIME_US = (2**64 - 1) // 1000  # the largest µs value whose ns form still fits OTLP's uint64


@dataclass(slots=True)
class Process:
    """The emitting process: service name plus resource/process tags.

    One Process is shared by every span of a batch, so its storage key is computed once.
    """

    service: str
    tags: list[Tag] = field(default_factory=list)


@dataclass(slots=True)
class SpanRecord:
    """One span in the collector's own terms (ids are lowercase hex, times are µs)."""

    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str  # 16 hex chars, "" for a root span
    operation: str
    process: Process
    start_us: int
    duration_us: int
    tags: list[Tag] = field(default_factory=list)
    logs: list[Log] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    kind: str = KIND_UNSPECIFIED
    error: bool = False
    flags: int = 0

    @property
    def service(self) -> str:
        return self.process.service

    @property
    def process_tags(self) -> list[Tag]:
        return self.process.tags


def float_tag(key: str, value: float) -> Tag:
    """NaN and infinities are not JSON; keep them readable as strings instead."""
    if math.isfinite(value):
        return (key, FLOAT64, value)
    return (key, STRING, repr(value))


def clamp_us(value: int) -> int:
    """Times and durations from the wire, forced into what storage and OTLP can hold."""
    return 0 if value < 0 else min(value, MAX_TIME_US)


def trace_id_hex(high: int, low: int) -> str:
    """Two signed or unsigned 64-bit halves (Jaeger thrift) to 32 hex chars."""
    return f"{high & 0xFFFFFFFFFFFFFFFF:016x}{low & 0xFFFFFFFFFFFFFFFF:016x}"


def span_id_hex(value: int) -> str:
    return f"{value & 0xFFFFFFFFFFFFFFFF:016x}"


def normalize_trace_id(text: str) -> str | None:
    """Accept Jaeger's short form (leading zeros dropped) as well as 32-char ids."""
    text = text.strip().lower()
    if not text or len(text) > 32:
        return None
    try:
        int(text, 16)
    except ValueError:
        return None
    return text.rjust(32, "0")


def tag_value_text(tag: Tag) -> str:
    """How a tag value compares against a search string (Jaeger compares as text)."""
    _, type_code, value = tag
    if type_code == BOOL:
        return "true" if value else "false"
    if type_code == FLOAT64:
        return _float_text(value)
    return str(value)


def _float_text(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
