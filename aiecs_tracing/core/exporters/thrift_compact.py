"""Thrift compact-protocol primitives: varints, strings and list headers, written by table lookup.

Why hand-written: the Jaeger encoders (:mod:`.jaeger_tags`, :mod:`.jaeger_thrift`) build every
datagram from these pieces, and a thrift runtime would cost a Python call per field. Integers are
zigzag varints, strings a varint length + UTF-8 bytes, a list header ``(size << 4) | elem_type``
(size < 15) or ``0xF0 | elem_type`` + varint size; every struct ends with :data:`STOP`.
"""

from __future__ import annotations

import struct

__all__ = [
    "CT_STRUCT",
    "I64_MAX",
    "I64_MIN",
    "ONE_BYTE",
    "STOP",
    "list_header",
    "pack_double",
    "string_bytes",
    "time_varint",
    "unsigned_id_varint",
    "utf8",
    "varint",
]

#: ``bytes((i,))`` for every byte value: one tuple index instead of building a bytes object.
ONE_BYTE = tuple(bytes((i,)) for i in range(256))
#: Compact type of a struct (list elements, field headers).
CT_STRUCT = 0x0C
#: The byte that ends every struct.
STOP = b"\x00"
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
_U64 = 1 << 64

#: An IEEE double, 8 bytes little-endian (the compact protocol's byte order for doubles).
pack_double = struct.Struct("<d").pack

# Varints of 64-bit ids and µs timestamps are 8-10 bytes; emitting them 14 bits per table lookup
# halves their cost versus a 7-bit loop (this table is ~0.6 MB, built once at import).
_VARINT_14BIT_GROUPS = tuple(bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(1 << 14))


def varint(n: int) -> bytes:
    """Unsigned LEB128 varint (``n`` must be >= 0).

    Unrolled by size: ids (64 bits) and µs timestamps (52 bits) take four or five 14-bit table
    lookups and no loop.
    """
    if n < 0x80:
        return ONE_BYTE[n]
    if n < 0x4000:
        return ONE_BYTE[(n & 0x7F) | 0x80] + ONE_BYTE[n >> 7]
    groups = _VARINT_14BIT_GROUPS
    if n < 0x10000000:  # 15-28 bits
        high = n >> 14
        if high < 0x80:
            return groups[n & 0x3FFF] + ONE_BYTE[high]
        return groups[n & 0x3FFF] + ONE_BYTE[(high & 0x7F) | 0x80] + ONE_BYTE[high >> 7]
    low = groups[n & 0x3FFF] + groups[(n >> 14) & 0x3FFF]
    high = n >> 28
    if high < 0x4000:  # 29-42 bits
        if high < 0x80:
            return low + ONE_BYTE[high]
        return low + ONE_BYTE[(high & 0x7F) | 0x80] + ONE_BYTE[high >> 7]
    return low + groups[high & 0x3FFF] + varint(high >> 14)  # 43 bits and up


# A µs timestamp's bits above the lowest 14 change every ~8 ms (spans of a batch share them):
# the bytes of those upper bits are memoised, bounded.
_TIME_UPPER_CACHE: dict[int, bytes] = {}
_TIME_UPPER_CACHE_MAX = 4096


def time_varint(n: int) -> bytes:
    """Varint of a (zigzagged, so doubled) µs timestamp: one table lookup and a memo hit."""
    if n < 0x10000000:
        return varint(n)
    upper = n >> 14
    upper_bytes = _TIME_UPPER_CACHE.get(upper)
    if upper_bytes is None:
        if len(_TIME_UPPER_CACHE) >= _TIME_UPPER_CACHE_MAX:
            _TIME_UPPER_CACHE.clear()
        upper_bytes = _TIME_UPPER_CACHE[upper] = _VARINT_14BIT_GROUPS[upper & 0x3FFF] + varint(upper >> 14)
    return _VARINT_14BIT_GROUPS[n & 0x3FFF] + upper_bytes


# The last byte(s) of a 57-64 bit varint: the value's top 8 bits.
_TOP_BYTE_TAILS = tuple(varint(i) for i in range(256))


def unsigned_id_varint(unsigned_64: int) -> bytes:
    """Zigzag varint of an unsigned 64-bit id reinterpreted as the signed i64 thrift wants."""
    n = (((unsigned_64 - _U64) << 1) ^ -1) if unsigned_64 > I64_MAX else unsigned_64 << 1
    if n >= 0x100000000000000:  # 57-64 bits: 127 random ids in 128
        groups = _VARINT_14BIT_GROUPS  # (+ on five short pieces beats a join's tuple and buffers)
        return (
            groups[n & 0x3FFF]
            + groups[(n >> 14) & 0x3FFF]
            + groups[(n >> 28) & 0x3FFF]
            + groups[(n >> 42) & 0x3FFF]
            + _TOP_BYTE_TAILS[n >> 56]
        )
    return varint(n)


def utf8(text: str) -> bytes:
    """UTF-8 of ``text``; lone surrogates become U+FFFD so the rest of the text stays readable."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def string_bytes(data: bytes) -> bytes:
    """Compact binary/string body: varint length + bytes."""
    n = len(data)
    return (ONE_BYTE[n] if n < 0x80 else varint(n)) + data


def list_header(size: int, elem_type: int) -> bytes:
    """Header of a list of ``size`` elements of compact type ``elem_type``."""
    if size < 15:
        return ONE_BYTE[(size << 4) | elem_type]
    return ONE_BYTE[0xF0 | elem_type] + varint(size)
