"""Jaeger ``Tag`` structs (thrift compact) for attribute values, and the caches that make them cheap.

Why a module of its own: tags are most of a span's bytes and most of the encoder's work, and they
repeat endlessly (``http.method=GET``, ``component=fastapi``): whole ``(key, value)`` pairs and keys
are memoised here, so :mod:`.jaeger_thrift` only assembles ready-made pieces. A Tag is
``{1: key, 2: vType, 3..7: the value field}``; the value's Python type picks the Jaeger type (bool
before int: bool is an int), sequences become JSON text (Jaeger has no array tag).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from opentelemetry.trace import SpanKind

from .thrift_compact import (
    CT_STRUCT,
    I64_MAX,
    I64_MIN,
    ONE_BYTE,
    STOP,
    list_header,
    pack_double,
    string_bytes,
    utf8,
    varint,
)

__all__ = [
    "DICT_VALUES",
    "ERROR_TAG",
    "SPAN_KIND_TAGS",
    "STATUS_ERROR_TAG",
    "STATUS_OK_TAG",
    "attribute_tags",
    "attributes_copy",
    "cached_tag",
    "cut",
    "fill_missing_tags",
    "plain_attributes",
    "scope_tags",
    "tag",
    "tag_list",
]

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

# Whole tags of short, hashable values, keyed by (key, type, value): most pairs repeat exactly.
_PAIR_CACHE: dict[tuple[str, type, Any], bytes] = {}
_PAIR_CACHE_MAX = 4096
_PAIR_MAX_STR = 128


def _key_bytes(key: str) -> bytes:
    cached = _KEY_CACHE.get(key)
    if cached is None:
        cached = b"\x18" + string_bytes(utf8(key))
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


def cut(text: str, max_len: int | None) -> str:
    """``text`` cut to ``max_len`` characters, marked so that a reader knows it was cut."""
    if max_len is None or len(text) <= max_len:
        return text
    return text[:max_len] + "...[truncated]"


def tag(key: str, value: Any, max_str: int | None = None) -> bytes:
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


def _tag_uncached(key: str, value: Any, kind: type, max_str: int | None = None) -> bytes:
    key_bytes = _KEY_CACHE.get(key) or _key_bytes(key)
    if kind is str:
        if max_str is not None and len(value) > max_str:
            value = cut(value, max_str)
        try:
            data: bytes = value.encode()
        except UnicodeEncodeError:  # lone surrogates
            data = value.encode("utf-8", "replace")
        size = len(data)
        return key_bytes + _TAG_STRING + (ONE_BYTE[size] if size < 0x80 else varint(size)) + data + STOP
    if kind is bool:
        return key_bytes + (_TAG_BOOL_TRUE if value else _TAG_BOOL_FALSE)
    if kind is int:
        if I64_MIN <= value <= I64_MAX:
            return key_bytes + _TAG_LONG + varint((value << 1) ^ (value >> 63)) + STOP
        return key_bytes + _TAG_STRING + string_bytes(str(value).encode()) + STOP
    if kind is float:
        return key_bytes + _TAG_DOUBLE + pack_double(value) + STOP
    return _tag_slow(key, value, max_str)


def _tag_slow(key: str, value: Any, max_str: int | None) -> bytes:
    """Subclasses (enums, numpy scalars...), bytes and sequences: normalise then encode."""
    if isinstance(value, bool):
        return tag(key, bool(value))
    if isinstance(value, int):
        return tag(key, int(value))
    if isinstance(value, float):
        return tag(key, float(value))
    if isinstance(value, str):
        return tag(key, str(value), max_str)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if max_str is not None and len(data) > max_str:
            data = data[:max_str]
        return _key_bytes(key) + _TAG_BINARY + string_bytes(data) + STOP
    if isinstance(value, (list, tuple)):
        return tag(key, _sequence_to_text(value), max_str)
    return tag(key, str(value), max_str)


def tag_list(tags: Sequence[bytes]) -> bytes:
    """A ``list<Tag>`` field body: header + the encoded structs."""
    return list_header(len(tags), CT_STRUCT) + b"".join(tags)


#: The type of a dict's ``values()``: a mapping whose ``values()`` is one reads at C speed.
DICT_VALUES: type = type({}.values())


def plain_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``attributes`` where reading is C-speed: a dict, or a read-only view of one, as given.

    ``ReadableSpan.attributes`` is a view of the span's own mapping; the SDK's ``BoundedAttributes``
    reads through Python methods (several times a dict's cost per key and per ``in``), so such a
    mapping is copied once (:func:`attributes_copy`). A finished span's attributes no longer change.
    """
    if type(attributes) is dict:
        return attributes
    if type(attributes) is MappingProxyType and type(attributes.values()) is DICT_VALUES:
        return attributes
    return attributes_copy(attributes)


def attributes_copy(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A dict of ``attributes``, in order (a comprehension: a third cheaper than ``dict()`` on a view)."""
    return {key: attributes[key] for key in attributes} if attributes else {}


#: ``cached_tag((key, type(value), value))``: the encoded Tag of a pair :func:`tag` has cached, else
#: None. Mapped over a span's attributes (``zip`` of keys, types, values) it runs at C speed.
cached_tag = _PAIR_CACHE.get


def fill_missing_tags(tags: list[bytes | None], attributes: Mapping[str, Any]) -> list[bytes]:
    """``tags`` (one per attribute, None where :data:`cached_tag` missed) completed by :func:`tag`."""
    for index, (key, value) in enumerate(attributes.items()):
        if tags[index] is None:
            tags[index] = tag(key, value)
    return tags  # type: ignore[return-value]


def attribute_tags(attributes: Mapping[str, Any]) -> list[bytes]:
    """Encoded Tag structs of ``attributes`` (see :func:`plain_attributes`), in order.

    Most (key, value) pairs repeat (method, scheme, host, route, status...): every pair is looked
    up in :func:`tag`'s cache at C speed (map/zip), and only the misses take a Python call. A
    per-tag Python loop was half of the span encoder's bytecode.
    """
    values = attributes.values()
    # zip without strict= (a keyword costs zip a dict, a tenth of this line): keys and values match
    try:
        tags = list(map(cached_tag, zip(attributes, map(type, values), values)))  # noqa: B905
    except TypeError:  # an unhashable value in a foreign mapping
        tags = [None] * len(attributes)
    # all(): cheaper than ``None in tags`` (no rich comparison); an encoded Tag is never empty
    return tags if all(tags) else fill_missing_tags(tags, attributes)  # type: ignore[return-value]


_SCOPE_TAGS_CACHE: dict[tuple[str, str | None], tuple[bytes, ...]] = {}


def scope_tags(scope: Any) -> tuple[bytes, ...]:
    """``otel.scope.name``/``otel.scope.version`` tags, memoised (a handful of scopes per process)."""
    key = (scope.name, scope.version)
    cached = _SCOPE_TAGS_CACHE.get(key)
    if cached is None:
        tags = []
        if scope.name:
            tags.append(tag("otel.scope.name", scope.name, 256))
        if scope.version:
            tags.append(tag("otel.scope.version", scope.version, 256))
        cached = tuple(tags)
        if len(_SCOPE_TAGS_CACHE) < 256:
            _SCOPE_TAGS_CACHE[key] = cached
    return cached


#: ``span.kind`` tags by ``id(SpanKind member)`` (``Enum.__hash__`` is a Python-level call);
#: INTERNAL has none, as in jaeger-client.
SPAN_KIND_TAGS = {
    id(SpanKind.SERVER): tag("span.kind", "server"),
    id(SpanKind.CLIENT): tag("span.kind", "client"),
    id(SpanKind.PRODUCER): tag("span.kind", "producer"),
    id(SpanKind.CONSUMER): tag("span.kind", "consumer"),
}
#: ``error=true``: what the Jaeger UI marks a span red by.
ERROR_TAG = tag("error", True)
STATUS_ERROR_TAG = tag("otel.status_code", "ERROR")
STATUS_OK_TAG = tag("otel.status_code", "OK")
