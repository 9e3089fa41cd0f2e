"""Pure encoder: OpenTelemetry spans -> Jaeger thrift (compact protocol) ``Agent.emitBatch`` datagrams.

Why: ``opentelemetry-exporter-jaeger-thrift`` no longer imports with SDK >= 1.40, and the agent's UDP
port (6831) only speaks ``TCompactProtocol`` + the oneway ``emitBatch`` message of jaeger-client.
Spans are read only through ``ReadableSpan``'s public properties, whatever their type, all in one C
call (``attrgetter``). Split so that the UDP sender sizes packets without re-encoding anything:
:func:`encode_process` (cache it per resource), :func:`encode_span`, and :func:`encode_emit_batch`
(``emitBatch_args{1: Batch{1: process, 2: spans}}``, a concatenation of the encoded pieces).

Byte constants: a field header is ``(field_id_delta << 4) | compact_type``; compact types are
BOOL_TRUE=1, BOOL_FALSE=2, I32=5, I64=6, DOUBLE=7, BINARY=8, LIST=9, STRUCT=12; field ids restart
per struct. Tags are :mod:`.jaeger_tags`' business, varints :mod:`.thrift_compact`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

from opentelemetry.trace import SpanContext, StatusCode

from ..sdk_internals import SPAN_CONTEXT_IS_TUPLE
from .jaeger_tags import (
    DICT_VALUES,
    ERROR_TAG,
    SPAN_KIND_TAGS,
    STATUS_ERROR_TAG,
    STATUS_OK_TAG,
    attribute_tags,
    attributes_copy,
    cached_tag,
    cut,
    fill_missing_tags,
    plain_attributes,
    scope_tags,
    tag,
    tag_list,
)
from .thrift_compact import (
    CT_STRUCT,
    STOP,
    list_header,
    string_bytes,
    time_varint,
    unsigned_id_varint,
    utf8,
    varint,
)

__all__ = [
    "MESSAGE_OVERHEAD_MAX",
    "TruncationPolicy",
    "encode_emit_batch",
    "encode_process",
    "encode_span",
    "encode_span_truncated",
]

# Ids repeat within a batch: every span of a trace shares the trace id, and a parent's span id is
# encoded once as a child's parentSpanId and again as its own spanId. Small bounded memo tables.
_ID_CACHE_MAX = 4096
_trace_id_cache: dict[int, bytes] = {}
_span_id_cache: dict[int, bytes] = {}


def _trace_id_fields(trace_id: int) -> bytes:
    """``0x16 traceIdLow 0x16 traceIdHigh`` (the same bytes serve Span fields 1-2 and SpanRef 2-3)."""
    cached = _trace_id_cache.get(trace_id)
    if cached is None:
        low, high = unsigned_id_varint(trace_id & 0xFFFFFFFFFFFFFFFF), unsigned_id_varint(trace_id >> 64)
        cached = b"\x16" + low + b"\x16" + high
        if len(_trace_id_cache) >= _ID_CACHE_MAX:
            _trace_id_cache.clear()
        _trace_id_cache[trace_id] = cached
    return cached


def _span_id_varint(span_id: int) -> bytes:
    cached = _span_id_cache.get(span_id)
    if cached is None:
        cached = unsigned_id_varint(span_id)
        if len(_span_id_cache) >= _ID_CACHE_MAX:
            _span_id_cache.clear()
        _span_id_cache[span_id] = cached
    return cached


# --- process ---------------------------------------------------------------------------------------

def encode_process(service_name: str, tags: Mapping[str, Any], *, max_str: int | None = None) -> bytes:
    """Serialized ``Process{1: serviceName, 2: tags}`` struct (ends with STOP). Cache the result."""
    encoded_tags = [tag(k, v, max_str) for k, v in tags.items() if v is not None]
    return b"\x18" + string_bytes(utf8(cut(service_name, max_str))) + b"\x19" + tag_list(encoded_tags) + STOP


# --- spans -----------------------------------------------------------------------------------------

_EVENT_KEY = "event"
# SpanRef struct: refType (0x15, I32), traceIdLow (0x16), traceIdHigh (0x16), spanId (0x16), STOP.
_REF_CHILD_OF = b"\x15\x00\x16"
_REF_FOLLOWS_FROM = b"\x15\x02\x16"

#: Everything the encoder reads of a span, in one C call: ``ReadableSpan``'s public properties.
_READ_SPAN = attrgetter(
    "context", "parent", "name", "start_time", "end_time", "kind", "status",
    "attributes", "instrumentation_scope", "events", "links",
)  # fmt: skip
_SpanFields = tuple[Any, ...]


class TruncationPolicy:
    """How hard to squeeze one span that would not fit in a datagram on its own."""

    __slots__ = ("max_str", "drop_logs", "max_tags")

    def __init__(self, max_str: int | None = None, drop_logs: bool = False, max_tags: int | None = None):
        self.max_str = max_str
        self.drop_logs = drop_logs
        self.max_tags = max_tags


def encode_span_truncated(span: Any, limit: int) -> bytes:
    """Like :func:`encode_span`, but cut strings, then drop logs, then tags until it is <= ``limit``.

    A span that big is almost always one giant attribute or a runaway loop of events; a truncated span
    (with ``aiecs.truncated`` saying so) is far more useful than a span silently lost to EMSGSIZE.
    The final attempt may still exceed ``limit`` only if ``limit`` is absurdly small; callers check.
    """
    fields = _READ_SPAN(span)
    encoded = _encode_fields(fields, None)
    if len(encoded) <= limit:
        return encoded
    for policy in (
        TruncationPolicy(max_str=4096),
        TruncationPolicy(max_str=1024),
        TruncationPolicy(max_str=1024, drop_logs=True),
        TruncationPolicy(max_str=256, drop_logs=True),
    ):
        encoded = _encode_fields(fields, policy)
        if len(encoded) <= limit:
            return encoded
    max_tags = len(fields[7] or ())
    while True:
        max_tags //= 2
        encoded = _encode_fields(fields, TruncationPolicy(max_str=64, drop_logs=True, max_tags=max_tags))
        if len(encoded) <= limit or max_tags == 0:
            return encoded


# Operation names repeat (``GET /tasks/{task_id}``): their encoded bytes are memoised.
_NAME_CACHE: dict[str | None, bytes] = {}
_NAME_CACHE_MAX = 4096
# The last scope seen and its tags, swapped whole (safe with several exporting threads): a process
# nearly always has one scope, so even the memo lookup is skipped.
_last_scope: tuple[Any, tuple[bytes, ...]] = (None, ())
# The last ``Status`` object seen to be UNSET: the light span shares one, so its properties are
# read once rather than once per span.
_last_unset_status: Any = None


def _name_bytes(name: str | None) -> bytes:
    encoded = _NAME_CACHE.get(name)
    if encoded is None:
        encoded = string_bytes(utf8(name or ""))
        if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
            _NAME_CACHE.clear()  # high-cardinality names: start over rather than grow
        _NAME_CACHE[name] = encoded
    return encoded


def _status_and_scope_tags(
    tags: list[bytes], status: Any, scope: Any, attributes: Mapping[str, Any], max_str: int | None
) -> None:
    """Append ``error``/``otel.status_*`` and ``otel.scope.*`` tags (an explicit ``error`` attribute wins)."""
    global _last_unset_status, _last_scope
    if status is not _last_unset_status:
        status_code = status.status_code
        if status_code is _ERROR:
            if "error" not in attributes:
                tags.append(ERROR_TAG)
            tags.append(STATUS_ERROR_TAG)
            if status.description:
                tags.append(tag("otel.status_description", status.description, max_str))
        elif status_code is _OK:
            tags.append(STATUS_OK_TAG)
        elif status_code is _UNSET:
            _last_unset_status = status
    if scope is not None:
        last = _last_scope
        if last[0] is not scope:
            last = _last_scope = (scope, scope_tags(scope))
        tags += last[1]


# SpanContext when its ids can be read by tuple index (a foreign context type uses the properties)
_INDEXABLE_CONTEXT: Any = SpanContext if SPAN_CONTEXT_IS_TUPLE else None
# list<Tag> headers by count; a server span has ~16 tags, past the one-byte form's 14
_TAG_LIST_HEADERS = tuple(list_header(count, CT_STRUCT) for count in range(128))
_UNSET = StatusCode.UNSET
_OK = StatusCode.OK
_ERROR = StatusCode.ERROR


def encode_span(span: Any) -> bytes:
    """Serialized Jaeger ``Span`` struct for an OpenTelemetry ``ReadableSpan`` (ends with STOP).

    A span without links or events (the hot case) is assembled here from one list, with the ids
    read by tuple index; the same bytes as the general :func:`_encode_fields` (tests compare them).
    """
    context, parent, name, start_ns, end_ns, kind, status, attributes, scope, events, links = _READ_SPAN(span)
    if events or links:
        fields = (context, parent, name, start_ns, end_ns, kind, status, attributes, scope, events, links)
        return _encode_fields(fields, None)
    if type(context) is _INDEXABLE_CONTEXT:
        trace_id, span_id, flags = context[0], context[1], context[3]
    else:
        trace_id, span_id, flags = context.trace_id, context.span_id, context.trace_flags
    trace_fields = _trace_id_cache.get(trace_id) or _trace_id_fields(trace_id)
    own_id = _span_id_cache.get(span_id) or _span_id_varint(span_id)
    name_bytes = _NAME_CACHE.get(name) or _name_bytes(name)
    if type(parent) is _INDEXABLE_CONTEXT:
        parent_span_id = parent[1]
    else:
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
    start_ns = start_ns or 0
    start_us = start_ns // 1000
    duration_us = (end_ns or start_ns) // 1000 - start_us
    parts += (
        b"\x02\x16" if flags & 1 else b"\x00\x16",
        time_varint(start_us << 1),
        b"\x16",
        varint(duration_us << 1) if duration_us > 0 else b"\x00",
        b"\x19",
    )
    values: Any = attributes.values() if attributes is not None else None
    if type(values) is not DICT_VALUES:  # not a dict's view (BoundedAttributes, None...): copied
        attributes = attributes_copy(attributes)
        values = attributes.values()
    try:  # attribute_tags(), inlined: a call per span less
        found = list(map(cached_tag, zip(attributes, map(type, values), values)))  # noqa: B905 - as in attribute_tags()
    except TypeError:  # an unhashable value in a foreign mapping
        found = [None] * len(attributes)
    tags: list[bytes] = found if all(found) else fill_missing_tags(found, attributes)  # type: ignore[assignment]
    kind_tag = SPAN_KIND_TAGS.get(id(kind))
    if kind_tag is not None and "span.kind" not in attributes:
        tags.append(kind_tag)
    last_scope = _last_scope  # read once: another thread may swap it
    if status is not _last_unset_status or scope is not last_scope[0]:
        _status_and_scope_tags(tags, status, scope, attributes, None)
    elif scope is not None:
        tags += last_scope[1]
    count = len(tags)
    parts.append(_TAG_LIST_HEADERS[count] if count < 128 else list_header(count, CT_STRUCT))
    parts += tags
    parts.append(STOP)
    return b"".join(parts)


def _encode_span(span: Any, policy: TruncationPolicy | None) -> bytes:
    """The general encoder for ``span`` (links, events, truncation), by ``policy``."""
    return _encode_fields(_READ_SPAN(span), policy)


def _encode_fields(fields: _SpanFields, policy: TruncationPolicy | None) -> bytes:
    """One pass over a span's properties appending ready-made byte pieces; joined once at the end."""
    context, parent, name, start_ns, end_ns, kind, status, attributes, scope, events, links = fields
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
        parts.append(_name_bytes(name))
    else:
        parts.append(string_bytes(utf8(cut(name or "", max_str))))

    if parent_id is not None or links:
        # SpanRef structs: CHILD_OF the parent, FOLLOWS_FROM each link
        parts.append(b"\x19")
        parts.append(list_header(len(links) + (parent_id is not None), CT_STRUCT))
        if parent_id is not None:
            parts += (_REF_CHILD_OF, trace_fields[1:], b"\x16", parent_id, STOP)
        for link in links:
            link_context = link.context
            link_trace = _trace_id_fields(link_context.trace_id)[1:]
            parts += (_REF_FOLLOWS_FROM, link_trace, b"\x16", _span_id_varint(link_context.span_id), STOP)
        parts.append(b"\x15")  # flags: delta 1 from field 6
    else:
        parts.append(b"\x25")  # flags: delta 2 from field 5
    parts.append(b"\x02" if context.trace_flags & 1 else b"\x00")  # zigzag(1) / zigzag(0)

    start_ns = start_ns or 0
    end_ns = end_ns or start_ns
    start_us = start_ns // 1000
    duration_us = end_ns // 1000 - start_us
    parts += (b"\x16", time_varint(start_us << 1), b"\x16")  # non-negative: zigzag is just << 1
    parts.append(varint(duration_us << 1) if duration_us > 0 else b"\x00")

    attributes = plain_attributes(attributes)
    if policy is None:
        tags = attribute_tags(attributes)
    else:
        max_tags = policy.max_tags
        tags = []
        for index, (key, value) in enumerate(attributes.items()):
            if max_tags is not None and index >= max_tags:
                break
            tags.append(tag(key, value, max_str))
    kind_tag = SPAN_KIND_TAGS.get(id(kind))
    if kind_tag is not None and "span.kind" not in attributes:
        tags.append(kind_tag)
    _status_and_scope_tags(tags, status, scope, attributes, max_str)
    if policy is not None:
        tags += _truncation_note(policy, attributes, events)
    parts.append(b"\x19")
    parts.append(tag_list(tags))

    if events and (policy is None or not policy.drop_logs):
        parts.append(b"\x19")
        parts.append(list_header(len(events), CT_STRUCT))
        for event in events:
            parts.append(_encode_log(event, max_str))
    parts.append(STOP)
    return b"".join(parts)


def _encode_log(event: Any, max_str: int | None) -> bytes:
    """Log{1: timestamp µs, 2: fields=[event=name, *attributes]}.

    As with ``span.kind`` and ``error`` on spans, an explicit ``event`` attribute wins over the
    generated field: Jaeger would otherwise show two ``event`` rows.
    """
    attributes = plain_attributes(event.attributes)
    fields = [] if _EVENT_KEY in attributes else [tag(_EVENT_KEY, event.name or "", max_str)]
    for key, value in attributes.items():
        fields.append(tag(key, value, max_str))
    return b"\x16" + time_varint(((event.timestamp or 0) // 1000) << 1) + b"\x19" + tag_list(fields) + STOP


def _truncation_note(
    policy: TruncationPolicy, attributes: Mapping[str, Any], events: Sequence[Any]
) -> list[bytes]:
    """Tags telling the reader of the trace what was cut, so truncation is never silent."""
    note = [tag("aiecs.truncated", f"string values cut to {policy.max_str} chars")]
    if policy.drop_logs and events:
        note.append(tag("aiecs.dropped_logs", len(events)))
    if policy.max_tags is not None and len(attributes) > policy.max_tags:
        note.append(tag("aiecs.dropped_tags", len(attributes) - policy.max_tags))
    return note


# --- message ---------------------------------------------------------------------------------------

# 0x82 = compact protocol id; 0x81 = version 1 | (ONEWAY=4 << 5); then varint seqid and the name.
_MESSAGE_PREFIX = b"\x82\x81"
_EMIT_BATCH_NAME = string_bytes(b"emitBatch")
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
    header = (_MESSAGE_PREFIX, varint(seq_id & _SEQ_MASK), _EMIT_BATCH_NAME, _ARGS_BATCH_PROCESS, process_bytes)
    return b"".join((*header, _BATCH_SPANS_FIELD, list_header(len(spans), CT_STRUCT), *spans, _BATCH_AND_ARGS_STOP))
