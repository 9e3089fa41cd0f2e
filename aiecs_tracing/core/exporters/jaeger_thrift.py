"""Pure encoder: OpenTelemetry spans -> Jaeger thrift (compact protocol) ``Agent.emitBatch`` datagrams.

Why it exists: ``opentelemetry-exporter-jaeger-thrift`` no longer imports with SDK >= 1.40, and the
Jaeger agent's UDP port (6831) only speaks ``TCompactProtocol`` + the oneway ``emitBatch`` message that
jaeger-client sent. We write the bytes ourselves; no thrift runtime needed at all.

The layout is split so the UDP sender can size packets without re-encoding anything:

* :func:`encode_process` -> the serialized ``Process`` struct (cache it per resource),
* :func:`encode_span` -> the serialized ``Span`` struct,
* :func:`encode_emit_batch` -> message header + ``emitBatch_args{1: Batch{1: process, 2: spans}}``,
  a plain concatenation of the pre-encoded pieces.

Compact protocol cheat sheet (what the byte constants below mean): a field header is one byte
``(field_id_delta << 4) | compact_type``; compact types are BOOL_TRUE=1, BOOL_FALSE=2, I32=5, I64=6,
DOUBLE=7, BINARY=8, LIST=9, STRUCT=12; integers are zigzag varints, doubles 8 bytes little-endian,
strings a varint length + UTF-8 bytes, a list header ``(size << 4) | elem_type`` (size < 15) or
``0xF0 | elem_type`` + varint size; every struct ends with a STOP byte 0. Field ids restart per struct.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from ..light import LightSpan

__all__ = [
    "MESSAGE_OVERHEAD_MAX",
    "TruncationPolicy",
    "encode_emit_batch",
    "encode_process",
    "encode_span",
    "encode_span_truncated",
]

# --- primitive writers -----------------------------------------------------------------------------

_ONE_BYTE = tuple(bytes((i,)) for i in range(256))
_pack_double = struct.Struct("<d").pack
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_U64 = 1 << 64


# Varints of 64-bit ids and µs timestamps are 8-10 bytes; emitting them 14 bits per table lookup
# halves their cost versus a 7-bit loop (this table is ~0.6 MB, built once at import).
_VARINT_14BIT_GROUPS = tuple(bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(1 << 14))


def _varint(n: int) -> bytes:
    """Unsigned LEB128 varint (``n`` must be >= 0).

    Unrolled by size: ids (64 bits) and µs timestamps (52 bits) take four or five 14-bit table
    lookups and no loop.
    """
    if n < 0x80:
        return _ONE_BYTE[n]
    if n < 0x4000:
        return _ONE_BYTE[(n & 0x7F) | 0x80] + _ONE_BYTE[n >> 7]
    groups = _VARINT_14BIT_GROUPS
    if n < 0x10000000:  # 15-28 bits
        high = n >> 14
        if high < 0x80:
            return groups[n & 0x3FFF] + _ONE_BYTE[high]
        return groups[n & 0x3FFF] + _ONE_BYTE[(high & 0x7F) | 0x80] + _ONE_BYTE[high >> 7]
    low = groups[n & 0x3FFF] + groups[(n >> 14) & 0x3FFF]
    high = n >> 28
    if high < 0x4000:  # 29-42 bits
        if high < 0x80:
            return low + _ONE_BYTE[high]
        return low + _ONE_BYTE[(high & 0x7F) | 0x80] + _ONE_BYTE[high >> 7]
    return low + groups[high & 0x3FFF] + _varint(high >> 14)  # 43 bits and up


# A µs timestamp's bits above the lowest 28 change every ~4.5 minutes: their bytes are memoised.
_TIME_HIGH_CACHE: dict[int, bytes] = {}


def _time_varint(n: int) -> bytes:
    """Varint of a (zigzagged, so doubled) µs timestamp: two table lookups and a memo hit."""
    if n < 0x10000000:
        return _varint(n)
    high = n >> 28
    tail = _TIME_HIGH_CACHE.get(high)
    if tail is None:
        if len(_TIME_HIGH_CACHE) >= 64:
            _TIME_HIGH_CACHE.clear()
        tail = _TIME_HIGH_CACHE[high] = _varint(high)
    groups = _VARINT_14BIT_GROUPS
    return groups[n & 0x3FFF] + groups[(n >> 14) & 0x3FFF] + tail


# The last byte(s) of a 57-64 bit varint: the value's top 8 bits.
_TOP_BYTE_TAILS = tuple(_varint(i) for i in range(256))


def _unsigned_id_varint(unsigned_64: int) -> bytes:
    """Zigzag varint of an unsigned 64-bit id reinterpreted as the signed i64 thrift wants."""
    n = (((unsigned_64 - _U64) << 1) ^ -1) if unsigned_64 > _I64_MAX else unsigned_64 << 1
    if n >= 0x100000000000000:  # 57-64 bits: 127 random ids in 128
        groups = _VARINT_14BIT_GROUPS  # (+ on five short pieces beats a join's tuple and buffers)
        return (
            groups[n & 0x3FFF]
            + groups[(n >> 14) & 0x3FFF]
            + groups[(n >> 28) & 0x3FFF]
            + groups[(n >> 42) & 0x3FFF]
            + _TOP_BYTE_TAILS[n >> 56]
        )
    return _varint(n)


# Ids repeat within a batch: every span of a trace shares the trace id, and a parent's span id is
# encoded once as a child's parentSpanId and again as its own spanId. Small bounded memo tables.
_ID_CACHE_MAX = 4096
_trace_id_cache: dict[int, bytes] = {}
_span_id_cache: dict[int, bytes] = {}


def _trace_id_fields(trace_id: int) -> bytes:
    """``0x16 traceIdLow 0x16 traceIdHigh`` (the same bytes serve Span fields 1-2 and SpanRef 2-3)."""
    cached = _trace_id_cache.get(trace_id)
    if cached is None:
        cached = (
            b"\x16"
            + _unsigned_id_varint(trace_id & 0xFFFFFFFFFFFFFFFF)
            + b"\x16"
            + _unsigned_id_varint(trace_id >> 64)
        )
        if len(_trace_id_cache) >= _ID_CACHE_MAX:
            _trace_id_cache.clear()
        _trace_id_cache[trace_id] = cached
    return cached


def _span_id_varint(span_id: int) -> bytes:
    cached = _span_id_cache.get(span_id)
    if cached is None:
        cached = _unsigned_id_varint(span_id)
        if len(_span_id_cache) >= _ID_CACHE_MAX:
            _span_id_cache.clear()
        _span_id_cache[span_id] = cached
    return cached


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep the rest of the text readable
        return text.encode("utf-8", "replace")


def _string(data: bytes) -> bytes:
    """Compact binary/string body: varint length + bytes."""
    n = len(data)
    return (_ONE_BYTE[n] if n < 0x80 else _varint(n)) + data


def _list_header(size: int, elem_type: int) -> bytes:
    if size < 15:
        return _ONE_BYTE[(size << 4) | elem_type]
    return _ONE_BYTE[0xF0 | elem_type] + _varint(size)


_CT_STRUCT = 0x0C
_STOP = b"\x00"

# Tag struct pieces. Field 1 key (0x18 = delta 1, BINARY), field 2 vType (0x15 = delta 1, I32) holding
# zigzag(vType), then the value field whose header delta depends on which field it is.
_TAG_STRING = b"\x15\x00\x18"  # vType STRING(0), field 3 vStr
_TAG_DOUBLE = b"\x15\x02\x27"  # vType DOUBLE(1), field 4 vDouble (delta 2)
_TAG_BOOL_TRUE = b"\x15\x04\x31\x00"  # vType BOOL(2), field 5 vBool=true (delta 3) + STOP
_TAG_BOOL_FALSE = b"\x15\x04\x32\x00"
_TAG_LONG = b"\x15\x06\x46"  # vType LONG(3), field 6 vLong (delta 4)
_TAG_BINARY = b"\x15\x08\x58"  # vType BINARY(4), field 7 vBinary (delta 5)

# Tag keys repeat endlessly (http.method, celery.task_name, ...): cache "0x18 + len + utf8(key)".
_KEY_CACHE: dict[str, bytes] = {}
_KEY_CACHE_MAX = 8192


def _key_bytes(key: str) -> bytes:
    cached = _KEY_CACHE.get(key)
    if cached is None:
        cached = b"\x18" + _string(_utf8(key))
        if len(_KEY_CACHE) < _KEY_CACHE_MAX:
            _KEY_CACHE[key] = cached
    return cached


def _json_default(value: Any) -> str:
    return str(value)


def _sequence_to_text(value: Sequence[Any]) -> str:
    """Jaeger has no array tag type; JSON keeps sequences readable and machine-parseable."""
    try:
        return json.dumps(list(value), ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):  # circular or otherwise odd content
        return str(value)


def _cut(text: str, max_len: int | None) -> str:
    if max_len is None or len(text) <= max_len:
        return text
    return text[:max_len] + "...[truncated]"


def _tag(key: str, value: Any, max_str: int | None = None) -> bytes:
    """One serialized Tag struct, typed by the Python value (bool before int: bool is an int).

    This is the hot loop of the exporter, hence the inlined key cache and string encoding.
    """
    kind = type(value)
    if max_str is None and (kind is bool or kind is int or (kind is str and len(value) <= _PAIR_MAX_STR)):
        # Most tags repeat exactly (method, scheme, host, route, status, component): reuse bytes.
        pair = (key, kind, value)
        cached = _PAIR_CACHE.get(pair)
        if cached is None:
            cached = _tag_uncached(key, value, kind)
            if len(_PAIR_CACHE) >= _PAIR_CACHE_MAX:
                _PAIR_CACHE.clear()  # high-cardinality values: start over rather than grow
            _PAIR_CACHE[pair] = cached
        return cached
    return _tag_uncached(key, value, kind, max_str)


_PAIR_CACHE: dict[tuple[str, type, Any], bytes] = {}
_PAIR_CACHE_MAX = 4096
_PAIR_MAX_STR = 128


def _tag_uncached(key: str, value: Any, kind: type, max_str: int | None = None) -> bytes:
    key_bytes = _KEY_CACHE.get(key) or _key_bytes(key)
    if kind is str:
        if max_str is not None and len(value) > max_str:
            value = _cut(value, max_str)
        try:
            data: bytes = value.encode()
        except UnicodeEncodeError:  # lone surrogates
            data = value.encode("utf-8", "replace")
        size = len(data)
        return key_bytes + _TAG_STRING + (_ONE_BYTE[size] if size < 0x80 else _varint(size)) + data + _STOP
    if kind is bool:
        return key_bytes + (_TAG_BOOL_TRUE if value else _TAG_BOOL_FALSE)
    if kind is int:
        if _I64_MIN <= value <= _I64_MAX:
            return key_bytes + _TAG_LONG + _varint((value << 1) ^ (value >> 63)) + _STOP
        return key_bytes + _TAG_STRING + _string(str(value).encode()) + _STOP
    if kind is float:
        return key_bytes + _TAG_DOUBLE + _pack_double(value) + _STOP
    return _tag_slow(key, value, max_str)


def _tag_slow(key: str, value: Any, max_str: int | None) -> bytes:
    """Subclasses (enums, numpy scalars...), bytes and sequences: normalise then encode."""
    if isinstance(value, bool):
        return _tag(key, bool(value))
    if isinstance(value, int):
        return _tag(key, int(value))
    if isinstance(value, float):
        return _tag(key, float(value))
    if isinstance(value, str):
        return _tag(key, str(value), max_str)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if max_str is not None and len(data) > max_str:
            data = data[:max_str]
        return _key_bytes(key) + _TAG_BINARY + _string(data) + _STOP
    if isinstance(value, (list, tuple)):
        return _tag(key, _sequence_to_text(value), max_str)
    return _tag(key, str(value), max_str)


def _tag_list(tags: Sequence[bytes]) -> bytes:
    return _list_header(len(tags), _CT_STRUCT) + b"".join(tags)


# --- process ---------------------------------------------------------------------------------------

def encode_process(service_name: str, tags: Mapping[str, Any], *, max_str: int | None = None) -> bytes:
    """Serialized ``Process{1: serviceName, 2: tags}`` struct (ends with STOP). Cache the result."""
    encoded_tags = [_tag(k, v, max_str) for k, v in tags.items() if v is not None]
    return b"\x18" + _string(_utf8(_cut(service_name, max_str))) + b"\x19" + _tag_list(encoded_tags) + _STOP


# --- spans -----------------------------------------------------------------------------------------

_KIND_TAGS = {
    SpanKind.SERVER: _tag("span.kind", "server"),
    SpanKind.CLIENT: _tag("span.kind", "client"),
    SpanKind.PRODUCER: _tag("span.kind", "producer"),
    SpanKind.CONSUMER: _tag("span.kind", "consumer"),
}
_ERROR_TAG = _tag("error", True)
_STATUS_ERROR_TAG = _tag("otel.status_code", "ERROR")
_STATUS_OK_TAG = _tag("otel.status_code", "OK")
_EVENT_KEY = "event"

# SpanRef struct: refType (0x15, I32), traceIdLow (0x16), traceIdHigh (0x16), spanId (0x16), STOP.
_REF_CHILD_OF = b"\x15\x00\x16"
_REF_FOLLOWS_FROM = b"\x15\x02\x16"


class TruncationPolicy:
    """How hard to squeeze one span that would not fit in a datagram on its own."""

    __slots__ = ("max_str", "drop_logs", "max_tags")

    def __init__(self, max_str: int | None = None, drop_logs: bool = False, max_tags: int | None = None):
        self.max_str = max_str
        self.drop_logs = drop_logs
        self.max_tags = max_tags


def encode_span(span: Any) -> bytes:
    """Serialized Jaeger ``Span`` struct for an OpenTelemetry ``ReadableSpan`` (ends with STOP)."""
    if type(span) in _FIELD_TYPES and not span._links and not span._events:
        return _encode_plain_span(span)
    return _encode_span(span, None)


def encode_span_truncated(span: Any, limit: int) -> bytes:
    """Like :func:`encode_span`, but cut strings, then drop logs, then tags until it is <= ``limit``.

    A span that big is almost always one giant attribute or a runaway loop of events; a truncated span
    (with ``aiecs.truncated`` saying so) is far more useful than a span silently lost to EMSGSIZE.
    The final attempt may still exceed ``limit`` only if ``limit`` is absurdly small; callers check.
    """
    encoded = _encode_span(span, None)
    if len(encoded) <= limit:
        return encoded
    for policy in (
        TruncationPolicy(max_str=4096),
        TruncationPolicy(max_str=1024),
        TruncationPolicy(max_str=1024, drop_logs=True),
        TruncationPolicy(max_str=256, drop_logs=True),
    ):
        encoded = _encode_span(span, policy)
        if len(encoded) <= limit:
            return encoded
    max_tags = len(span.attributes or ())
    while True:
        max_tags //= 2
        encoded = _encode_span(span, TruncationPolicy(max_str=64, drop_logs=True, max_tags=max_tags))
        if len(encoded) <= limit or max_tags == 0:
            return encoded


def _plain_attributes(mapping: Any) -> Mapping[str, Any]:
    """The plain dict behind an SDK ``BoundedAttributes`` when there is one.

    ``BoundedAttributes`` inherits ``MutableMapping``'s generic ``items()``/``__contains__`` which cost
    several times a dict's; the exporter reads finished (immutable) spans, so reading the backing dict
    is safe. Anything else (plain dicts, foreign mappings) is used as-is.
    """
    backing = getattr(mapping, "_dict", None)
    return backing if type(backing) is dict else mapping


def _span_attributes(span: Any) -> Mapping[str, Any]:
    # ReadableSpan.attributes wraps its BoundedAttributes in a fresh MappingProxyType per access.
    raw = getattr(span, "_attributes", None)
    if raw is None:
        raw = span.attributes
    return _plain_attributes(raw) if raw else _EMPTY


_EMPTY: Mapping[str, Any] = {}
# Operation names repeat (``GET /tasks/{task_id}``): their encoded bytes are memoised.
_NAME_CACHE: dict[str, bytes] = {}
_NAME_CACHE_MAX = 4096
# Types whose ``_field``s are exactly what their properties return (properties cost a call each).
_FIELD_TYPES = frozenset({ReadableSpan, LightSpan})
_last_scope: tuple[Any, tuple[bytes, ...]] = (None, ())
_scope_tags_cache: dict[tuple[str, str | None], tuple[bytes, ...]] = {}


def _scope_tags(scope: Any) -> tuple[bytes, ...]:
    """``otel.scope.name``/``otel.scope.version`` tags, memoised (a handful of scopes per process)."""
    key = (scope.name, scope.version)
    cached = _scope_tags_cache.get(key)
    if cached is None:
        tags = []
        if scope.name:
            tags.append(_tag("otel.scope.name", scope.name, 256))
        if scope.version:
            tags.append(_tag("otel.scope.version", scope.version, 256))
        cached = tuple(tags)
        if len(_scope_tags_cache) < 256:
            _scope_tags_cache[key] = cached
    return cached


def _encode_span(span: Any, policy: TruncationPolicy | None) -> bytes:
    """One pass over the span appending ready-made byte pieces; joined once at the end."""
    if type(span) in _FIELD_TYPES:  # the SDK's ReadableSpan (or the light span): its fields, no properties
        context, parent, name, links = span._context, span._parent, span._name, span._links
        start_ns, end_ns, kind, status = span._start_time, span._end_time, span._kind, span._status
        events, scope = span._events, span._instrumentation_scope
    else:
        context, parent, name, links = span.context, span.parent, span.name, span.links
        start_ns, end_ns, kind, status = span.start_time, span.end_time, span.kind, span.status
        events, scope = span.events, span.instrumentation_scope
    trace_fields = _trace_id_fields(context.trace_id)
    max_str = policy.max_str if policy is not None else None

    span_id = context.span_id
    own_id = _span_id_cache.get(span_id) or _span_id_varint(span_id)
    parent_id = None
    if parent is not None and parent.span_id:
        parent_span_id = parent.span_id
        parent_id = _span_id_cache.get(parent_span_id) or _span_id_varint(parent_span_id)
        parts = [trace_fields, b"\x16", own_id, b"\x16", parent_id, b"\x18"]
    else:
        parts = [trace_fields, b"\x16", own_id, b"\x16\x00", b"\x18"]
    if max_str is None:
        name_bytes = _NAME_CACHE.get(name)
        if name_bytes is None:
            name_bytes = _string(_utf8(name or ""))
            if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
                _NAME_CACHE.clear()  # high-cardinality names: start over rather than grow
            _NAME_CACHE[name] = name_bytes
        parts.append(name_bytes)
    else:
        parts.append(_string(_utf8(_cut(name or "", max_str))))

    if parent_id is not None or links:
        # SpanRef structs: CHILD_OF the parent, FOLLOWS_FROM each link
        parts.append(b"\x19")
        parts.append(_list_header(len(links) + (parent_id is not None), _CT_STRUCT))
        if parent_id is not None:
            parts.append(_REF_CHILD_OF)
            parts.append(trace_fields[1:])
            parts.append(b"\x16")
            parts.append(parent_id)
            parts.append(_STOP)
        for link in links:
            link_context = link.context
            parts.append(_REF_FOLLOWS_FROM)
            parts.append(_trace_id_fields(link_context.trace_id)[1:])
            parts.append(b"\x16")
            parts.append(_span_id_varint(link_context.span_id))
            parts.append(_STOP)
        parts.append(b"\x15")  # flags: delta 1 from field 6
    else:
        parts.append(b"\x25")  # flags: delta 2 from field 5
    parts.append(b"\x02" if context.trace_flags & 1 else b"\x00")  # zigzag(1) / zigzag(0)

    start_ns = start_ns or 0
    end_ns = end_ns or start_ns
    start_us = start_ns // 1000
    duration_us = end_ns // 1000 - start_us
    parts.append(b"\x16")
    parts.append(_time_varint(start_us << 1))  # non-negative: zigzag is just << 1
    parts.append(b"\x16")
    parts.append(_varint(duration_us << 1) if duration_us > 0 else b"\x00")

    parts.append(b"\x19")
    tags_at = len(parts)
    parts.append(b"")  # list header placeholder, filled once the count is known
    attributes = span._attributes if type(span) is LightSpan else _span_attributes(span)  # a plain dict
    if policy is None:
        parts += _attribute_tags(attributes)
    else:
        max_tags = policy.max_tags
        for index, (key, value) in enumerate(attributes.items()):
            if max_tags is not None and index >= max_tags:
                break
            parts.append(_tag(key, value, max_str))

    kind_tag = _KIND_TAGS.get(kind)
    if kind_tag is not None and "span.kind" not in attributes:
        parts.append(kind_tag)
    status_code = status.status_code
    if status_code is StatusCode.ERROR:
        if "error" not in attributes:
            parts.append(_ERROR_TAG)
        parts.append(_STATUS_ERROR_TAG)
        if status.description:
            parts.append(_tag("otel.status_description", status.description, max_str))
    elif status_code is StatusCode.OK:
        parts.append(_STATUS_OK_TAG)
    if scope is not None:
        global _last_scope
        last = _last_scope  # (scope, tags), swapped whole: safe with several exporting threads
        if last[0] is not scope:  # nearly always one scope: skip even the memo lookup
            last = _last_scope = (scope, _scope_tags(scope))
        parts.extend(last[1])

    if policy is not None:
        parts.extend(_truncation_note(policy, attributes, events))
    tag_count = len(parts) - tags_at - 1
    parts[tags_at] = _ONE_BYTE[(tag_count << 4) | _CT_STRUCT] if tag_count < 15 else _list_header(tag_count, _CT_STRUCT)

    if events and (policy is None or not policy.drop_logs):
        parts.append(b"\x19")
        parts.append(_list_header(len(events), _CT_STRUCT))
        for event in events:
            parts.append(_encode_log(event, max_str))
    parts.append(_STOP)
    return b"".join(parts)


def _attribute_tags(attributes: Mapping[str, Any]) -> list[bytes]:
    """Encoded Tag structs of ``attributes``, in order.

    Most (key, value) pairs repeat (method, scheme, host, route, status...): every pair is looked
    up in :func:`_tag`'s cache at C speed (map/zip), and only the misses take a Python call. A
    per-tag Python loop was half of the span encoder's bytecode.
    """
    values = attributes.values()
    try:
        tags = list(map(_PAIR_CACHE.get, zip(attributes, map(type, values), values, strict=True)))
    except TypeError:  # an unhashable value in a foreign mapping
        tags = [None] * len(attributes)
    if None in tags:
        for index, (key, value) in enumerate(attributes.items()):
            if tags[index] is None:
                tags[index] = _tag(key, value)
    return tags  # type: ignore[return-value]


def _context_is_indexable() -> bool:
    """``SpanContext`` is the tuple ``(trace_id, span_id, is_remote, trace_flags, ...)`` (checked once)."""
    try:
        probe = SpanContext(0xABC, 0xDEF, False, TraceFlags(1))
        return (probe[0], probe[1], probe[3]) == (0xABC, 0xDEF, 1) and probe[3] is probe.trace_flags
    except Exception:  # noqa: BLE001 - then the properties are used
        return False


_CONTEXT_INDEXABLE = _context_is_indexable()
# list<Tag> headers by count; a server span has ~16 tags, past the one-byte form's 14
_TAG_LIST_HEADERS = tuple(_list_header(count, _CT_STRUCT) for count in range(128))
# SpanKind members by identity: Enum.__hash__ is a Python-level call
_KIND_TAGS_BY_ID = {id(kind): tag for kind, tag in _KIND_TAGS.items()}
_UNSET = StatusCode.UNSET
_ERROR = StatusCode.ERROR


def _encode_plain_span(span: Any) -> bytes:
    """:func:`_encode_span` for a span without links or events (the hot case), in fewer steps.

    The same bytes (tests compare the two), assembled from one list instead of ~30 appends, with
    the ids read by tuple index; a third of the work per span in the exporter.
    """
    context = span._context
    if _CONTEXT_INDEXABLE:
        trace_id, span_id, flags = context[0], context[1], context[3]
    else:
        trace_id, span_id, flags = context.trace_id, context.span_id, context.trace_flags
    trace_fields = _trace_id_cache.get(trace_id) or _trace_id_fields(trace_id)
    own_id = _span_id_cache.get(span_id) or _span_id_varint(span_id)
    name = span._name
    name_bytes = _NAME_CACHE.get(name)
    if name_bytes is None:
        name_bytes = _string(_utf8(name or ""))
        if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
            _NAME_CACHE.clear()
        _NAME_CACHE[name] = name_bytes
    parent = span._parent
    parent_span_id = parent.span_id if parent is not None else 0
    if parent_span_id:
        parent_id = _span_id_cache.get(parent_span_id) or _span_id_varint(parent_span_id)
        # spanId, parentSpanId, operationName, references=[CHILD_OF parent], flags header
        parts = [
            trace_fields, b"\x16", own_id, b"\x16", parent_id, b"\x18", name_bytes,
            b"\x19\x1c", _REF_CHILD_OF, trace_fields[1:], b"\x16", parent_id, b"\x00\x15",
        ]  # fmt: skip
    else:
        parts = [trace_fields, b"\x16", own_id, b"\x16\x00\x18", name_bytes, b"\x25"]
    start_ns = span._start_time or 0
    start_us = start_ns // 1000
    duration_us = (span._end_time or start_ns) // 1000 - start_us
    parts += (
        b"\x02\x16" if flags & 1 else b"\x00\x16",
        _time_varint(start_us << 1),
        b"\x16",
        _varint(duration_us << 1) if duration_us > 0 else b"\x00",
        b"\x19",
    )

    attributes = span._attributes if type(span) is LightSpan else _span_attributes(span)
    tags = _attribute_tags(attributes)
    kind_tag = _KIND_TAGS_BY_ID.get(id(span._kind))
    if kind_tag is not None and "span.kind" not in attributes:
        tags.append(kind_tag)
    status = span._status
    status_code = status.status_code
    if status_code is not _UNSET:
        if status_code is _ERROR:
            if "error" not in attributes:
                tags.append(_ERROR_TAG)
            tags.append(_STATUS_ERROR_TAG)
            if status.description:
                tags.append(_tag("otel.status_description", status.description))
        else:
            tags.append(_STATUS_OK_TAG)
    scope = span._instrumentation_scope
    if scope is not None:
        global _last_scope
        last = _last_scope
        if last[0] is not scope:
            last = _last_scope = (scope, _scope_tags(scope))
        tags += last[1]
    count = len(tags)
    parts.append(_TAG_LIST_HEADERS[count] if count < 128 else _list_header(count, _CT_STRUCT))
    parts += tags
    parts.append(_STOP)
    return b"".join(parts)


def _encode_log(event: Any, max_str: int | None) -> bytes:
    """Log{1: timestamp µs, 2: fields=[event=name, *attributes]}.

    As with ``span.kind`` and ``error`` on spans, an explicit ``event`` attribute wins over the
    generated field: Jaeger would otherwise show two ``event`` rows.
    """
    attributes = _plain_attributes(event.attributes) if event.attributes else _EMPTY
    fields = [] if _EVENT_KEY in attributes else [_tag(_EVENT_KEY, event.name or "", max_str)]
    for key, value in attributes.items():
        fields.append(_tag(key, value, max_str))
    return b"\x16" + _time_varint(((event.timestamp or 0) // 1000) << 1) + b"\x19" + _tag_list(fields) + _STOP


def _truncation_note(
    policy: TruncationPolicy, attributes: Mapping[str, Any], events: Sequence[Any]
) -> list[bytes]:
    """Tags telling the reader of the trace what was cut, so truncation is never silent."""
    note = [_tag("aiecs.truncated", f"string values cut to {policy.max_str} chars")]
    if policy.drop_logs and events:
        note.append(_tag("aiecs.dropped_logs", len(events)))
    if policy.max_tags is not None and len(attributes) > policy.max_tags:
        note.append(_tag("aiecs.dropped_tags", len(attributes) - policy.max_tags))
    return note


# --- message ---------------------------------------------------------------------------------------

# 0x82 = compact protocol id; 0x81 = version 1 | (ONEWAY=4 << 5); then varint seqid and the name.
_MESSAGE_PREFIX = b"\x82\x81"
_EMIT_BATCH_NAME = _string(b"emitBatch")
# emitBatch_args field 1 (STRUCT) -> Batch field 1 (STRUCT) = Process
_ARGS_BATCH_PROCESS = b"\x1c\x1c"
_BATCH_SPANS_FIELD = b"\x19"  # Batch field 2: list<Span>
_BATCH_AND_ARGS_STOP = b"\x00\x00"
_SEQ_MASK = 0x7FFFFFFF

#: Upper bound of the bytes a datagram holds besides the process and span structs
#: (prefix 2 + seqid varint 5 + name 10 + 2 + spans field 1 + list header 1+5 + 2 stops).
MESSAGE_OVERHEAD_MAX = 2 + 5 + len(_EMIT_BATCH_NAME) + 2 + 1 + 6 + 2


def encode_emit_batch(
    process_bytes: bytes, span_bytes_list: Sequence[bytes] | Iterable[bytes], seq_id: int
) -> bytes:
    """The complete UDP payload: oneway ``emitBatch`` message carrying one ``Batch``."""
    spans = span_bytes_list if isinstance(span_bytes_list, (list, tuple)) else list(span_bytes_list)
    return b"".join(
        (
            _MESSAGE_PREFIX,
            _varint(seq_id & _SEQ_MASK),
            _EMIT_BATCH_NAME,
            _ARGS_BATCH_PROCESS,
            process_bytes,
            _BATCH_SPANS_FIELD,
            _list_header(len(spans), _CT_STRUCT),
            *spans,
            _BATCH_AND_ARGS_STOP,
        )
    )
