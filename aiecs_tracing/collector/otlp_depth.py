"""Deeply nested OTLP attribute values: truncated on the wire instead of refusing the request.

The protobuf runtime refuses a message nested deeper than its recursion limit (100
levels); an ``AnyValue`` kvlist costs three levels per nesting (AnyValue, KeyValueList,
KeyValue), so a map nested ~32 deep made the whole request undecodable. When a request
fails to parse, :func:`truncate_deep_values` walks the serialised bytes with the OTLP
schema and replaces every ``AnyValue`` nested more than ``MAX_VALUE_DEPTH`` levels down
with the string ``TRUNCATED``; the request is then parsed again, and every span kept.
"""

from __future__ import annotations

MAX_VALUE_DEPTH = 16
TRUNCATED = f"[truncated: nested deeper than {MAX_VALUE_DEPTH} levels]"

# message -> {field number: message type of that length-delimited field}
_REQUEST, _RESOURCE_SPANS, _RESOURCE, _SCOPE_SPANS, _SCOPE, _SPAN = "req", "rs", "res", "ss", "scope", "span"
_EVENT, _LINK, _KEY_VALUE, _ANY, _ARRAY, _KVLIST = "event", "link", "kv", "any", "array", "kvlist"
_SCHEMA: dict[str, dict[int, str]] = {
    _REQUEST: {1: _RESOURCE_SPANS},
    _RESOURCE_SPANS: {1: _RESOURCE, 2: _SCOPE_SPANS},
    _RESOURCE: {1: _KEY_VALUE},
    _SCOPE_SPANS: {1: _SCOPE, 2: _SPAN},
    _SCOPE: {3: _KEY_VALUE},
    _SPAN: {9: _KEY_VALUE, 11: _EVENT, 13: _LINK},
    _EVENT: {3: _KEY_VALUE},
    _LINK: {5: _KEY_VALUE},
    _KEY_VALUE: {2: _ANY},
    _ANY: {5: _ARRAY, 6: _KVLIST},
    _ARRAY: {1: _ANY},
    _KVLIST: {1: _KEY_VALUE},
}


class WireError(ValueError):
    """Bytes that are not protobuf wire format."""


def truncate_deep_values(body: bytes) -> tuple[bytes, int]:
    """``body`` with AnyValues deeper than MAX_VALUE_DEPTH replaced; and how many were replaced."""
    counter = [0]
    return _rewrite(memoryview(body), _REQUEST, 0, counter), counter[0]


def _rewrite(data: memoryview, message: str, depth: int, counter: list[int]) -> bytes:
    if message == _ANY:
        depth += 1
        if depth > MAX_VALUE_DEPTH:
            counter[0] += 1
            text = TRUNCATED.encode()
            return b"\x0a" + varint(len(text)) + text  # AnyValue.string_value
    children = _SCHEMA[message]
    out = bytearray()
    position = 0
    end = len(data)
    while position < end:
        start = position
        key, position = _read_varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _read_varint(data, position)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == 2:
            length, position = _read_varint(data, position)
            value_end = position + length
            if value_end > end:
                raise WireError("truncated length-delimited field")
            child = children.get(field)
            if child is not None:
                rewritten = _rewrite(data[position:value_end], child, depth, counter)
                out += data[start : start + _varint_size(key)]
                out += varint(len(rewritten))
                out += rewritten
                position = value_end
                continue
            position = value_end
        else:
            raise WireError(f"unsupported wire type {wire}")
        if position > end:
            raise WireError("truncated field")
        out += data[start:position]
    return bytes(out)


def _read_varint(data: memoryview, position: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise WireError("bad varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_size(value: int) -> int:
    return len(varint(value))
