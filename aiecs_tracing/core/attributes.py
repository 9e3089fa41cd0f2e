"""Argument capture, redaction and truncation: pure functions that never raise.

Decorated functions receive whatever the host app passes them: passwords, megabyte
payloads, objects whose ``__repr__`` hits the database or raises. What reaches a span is
bounded and safe: scalars as values, dicts and lists as size-limited JSON, any other
object by its type name (its ``__repr__`` is never called), secrets as ``[REDACTED]``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REDACTED = "[REDACTED]"
MAX_DEPTH = 4
MAX_ITEMS = 50
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def truncate(text: str, limit: int) -> str:
    if limit and len(text) > limit:
        return text[: max(limit - 3, 0)] + "..."
    return text


@functools.lru_cache(maxsize=4096)
def _is_secret_cached(key: str, secret_keys: tuple[str, ...]) -> bool:
    return _is_secret(key, secret_keys)


def is_secret_key(key: str, secret_keys: Iterable[str]) -> bool:
    """Whether ``key`` names a secret (cached: argument names repeat on every call)."""
    if type(key) is str and type(secret_keys) is tuple and len(key) <= 200:
        return _is_secret_cached(key, secret_keys)
    return _is_secret(key, tuple(secret_keys))


def _is_secret(key: str, secret_keys: tuple[str, ...]) -> bool:
    """Whether ``key`` names a secret: ``password``, ``db_password``, ``accessToken``, ``X-Api-Key``.

    A secret word followed by more letters (``tokenizer``) is not a secret, except the
    suffixes ``id`` (``sessionid``) and a plural ``s`` (``credentials``); ``tokens`` is a
    count in LLM APIs (``max_tokens``), not a secret.
    """
    lowered = key.lower().replace("-", "_")
    compact = lowered.replace("_", "")
    for word in secret_keys:
        for text, needle in ((lowered, word), (compact, word.replace("_", ""))):
            start = text.find(needle)
            while start != -1:
                end = start + len(needle)
                rest = text[end:]
                if not rest or not rest[0].isalpha() or rest.startswith("id"):
                    return True
                if rest[0] == "s" and (len(rest) == 1 or not rest[1].isalpha()) and needle != "token":
                    return True
                start = text.find(needle, start + 1)
    return False


_USERINFO_RE = re.compile(r"(\w[\w+.-]*://[^/\s:@]*:)[^/\s@]*@")


def redact_text(text: str) -> str:
    """Hide the password of URLs/DSNs inside ``text`` (``postgresql://admin:[REDACTED]@db``)."""
    if "://" in text and "@" in text:
        return _USERINFO_RE.sub(r"\1" + REDACTED + "@", text)
    return text


def _jsonable(value: Any, secret_keys: tuple[str, ...], depth: int) -> Any:
    """A JSON-safe, bounded copy of ``value`` with secrets redacted; no ``__repr__`` calls."""
    kind = type(value)
    if kind is str:
        return redact_text(value)
    if value is None or kind is bool:
        return value
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if kind is float:
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return f"<{kind.__name__} len={_safe_len(value)}>"
        out: dict[str, Any] = {}
        for index, (k, v) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["..."] = f"{_safe_len(value) - MAX_ITEMS} more"
                break
            key = k if type(k) is str else _scalar_key(k)
            out[key] = REDACTED if is_secret_key(key, secret_keys) else _jsonable(v, secret_keys, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        if depth >= MAX_DEPTH:
            return f"<{kind.__name__} len={_safe_len(value)}>"
        if (
            kind in (tuple, list)
            and len(value) == 2
            and type(value[0]) is str
            and is_secret_key(value[0], secret_keys)
        ):
            return [value[0], REDACTED]  # a (name, value) pair: headers as ASGI/httpx list them
        items = []
        for index, item in enumerate(value):
            if index >= MAX_ITEMS:
                items.append(f"... {_safe_len(value) - MAX_ITEMS} more")
                break
            items.append(_jsonable(item, secret_keys, depth + 1))
        return items
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{kind.__name__} len={_safe_len(value)}>"
    if isinstance(value, (str, int, float)):  # subclasses: enums, numpy-like scalars
        return _jsonable(_builtin_scalar(value), secret_keys, depth)
    return f"<{kind.__name__}>"


def _builtin_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    return float.__float__(value)


def _scalar_key(key: Any) -> str:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return str(_builtin_scalar(key)) if key is not None else "None"
    return f"<{type(key).__name__}>"


def _safe_len(value: Any) -> int | str:
    try:
        return len(value)
    except Exception:
        return "?"


def to_attribute_value(value: Any, max_length: int = 1024, secret_keys: tuple[str, ...] = ()) -> Any:
    """Turn any value into something an OpenTelemetry attribute (and a Jaeger tag) can hold."""
    try:
        kind = type(value)
        if kind is str:
            return truncate(redact_text(value), max_length)
        if kind is bool or kind is float:
            return value
        if kind is int:
            return value if _INT64_MIN <= value <= _INT64_MAX else truncate(str(value), max_length)
        if value is None:
            return truncate("None", max_length)
        data = _jsonable(value, secret_keys, 0)
        if type(data) is str:
            return truncate(data, max_length)
        if type(data) in (bool, int, float):
            return data
        return truncate(json.dumps(data, ensure_ascii=False, separators=(",", ":")), max_length)
    except Exception:
        return f"<{type(value).__name__}>"


def capture_arguments(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    skip_first: bool = False,
    max_length: int = 1024,
    max_args: int = 32,
    secret_keys: tuple[str, ...] = (),
    positional_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Tags for a call's arguments: ``arg_{i}`` for positionals, keywords by name.

    ``skip_first`` drops ``self``/``cls``. A positional whose parameter name looks secret
    (``login(user, password)``) is redacted too.
    """
    tags: dict[str, Any] = {}
    try:
        start = 1 if skip_first and args else 0
        count = 0
        for index in range(start, len(args)):
            if count >= max_args:
                tags["args.truncated"] = True
                return tags
            param = positional_names[index] if index < len(positional_names) else ""
            key = f"arg_{index - start}"
            if param and is_secret_key(param, secret_keys):
                tags[key] = REDACTED
            else:
                tags[key] = to_attribute_value(args[index], max_length, secret_keys)
            count += 1
        for name, value in kwargs.items():
            if count >= max_args:
                tags["args.truncated"] = True
                return tags
            key = name if name not in RESERVED_TAGS else f"kwarg_{name}"
            tags[key] = REDACTED if is_secret_key(name, secret_keys) else to_attribute_value(
                value, max_length, secret_keys
            )
            count += 1
    except Exception:
        tags["args.capture_failed"] = True
    return tags


# Keyword arguments that would otherwise overwrite a tag the decorator itself sets.
RESERVED_TAGS = frozenset(
    {
        "error",
        "success",
        "component",
        "span.kind",
        "peer.service",
        "tool.name",
        "tool.operation",
        "tool.success",
        "tool.result_size",
        "db.statement",
        "db.table",
        "db.statement.type",
        "http.url",
    }
)


def sanitize_tags(tags: Mapping[str, Any] | None, max_length: int) -> dict[str, Any]:
    """User-supplied tags as attributes (values converted, ``None`` values dropped)."""
    if not tags:
        return {}
    out: dict[str, Any] = {}
    try:
        for key, value in tags.items():
            if value is None:
                continue
            out[str(key)] = value if type(value) in (str, bool, int, float) and (
                type(value) is not int or _INT64_MIN <= value <= _INT64_MAX
            ) else to_attribute_value(value, max_length)
    except Exception:
        pass
    return out


def result_size(result: Any) -> int | None:
    """``len(result)`` for built-in containers (the seed's ``tool.result_size``), else None.

    Only built-ins: ``len()`` on a lazy ORM query set would run the query.
    """
    if isinstance(result, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return len(result)
    return None
