"""Argument capture, redaction and truncation: pure functions that never raise.

Decorated functions receive whatever the host app passes them: passwords, megabyte
payloads, objects whose ``__repr__`` hits the database or raises. What reaches a span is
bounded and safe: scalars as values, dicts and lists as size-limited JSON, any other
object by its type name (its ``__repr__`` is never called), secrets as ``[REDACTED]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .config import DEFAULT_SECRET_KEYS
from .redaction import (
    REDACTED,
    is_secret_key,
    is_secret_pair,
    redact_text,
    scrub_text,
    secret_named_entry,
)

__all__ = [
    "REDACTED",
    "is_secret_key",
    "redact_text",
    "truncate",
    "to_attribute_value",
    "capture_arguments",
    "sanitize_tags",
    "result_size",
]
MAX_DEPTH = 4
MAX_ITEMS = 50
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def truncate(text: str, limit: int) -> str:
    if limit and len(text) > limit:
        return text[: max(limit - 3, 0)] + "..."
    return text


def _jsonable(value: Any, secret_keys: tuple[str, ...], depth: int) -> Any:
    """A JSON-safe, bounded copy of ``value`` with secrets redacted; no ``__repr__`` calls."""
    kind = type(value)
    if kind is str:
        return scrub_text(value, secret_keys)
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
        name_field = secret_named_entry(value, secret_keys)  # {"name": "Authorization", "value": S}
        for index, (k, v) in enumerate(value.items()):
            if index >= MAX_ITEMS:
                out["..."] = _more(value)
                break
            key = k if type(k) is str else _scalar_key(k)
            if is_secret_key(key, secret_keys) or (name_field is not None and k != name_field):
                out[key] = REDACTED
            else:
                out[key] = _jsonable(v, secret_keys, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        if depth >= MAX_DEPTH:
            return f"<{kind.__name__} len={_safe_len(value)}>"
        if is_secret_pair(value, secret_keys):  # (name, value[, ...]): headers as ASGI/httpx/WSGI list them
            return [value[0], *(REDACTED for _ in value[1:])]
        items = []
        for index, item in enumerate(value):
            if index >= MAX_ITEMS:
                items.append(f"... {_more(value)}")
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


def _more(value: Any) -> str:
    """``"N more"`` past the first MAX_ITEMS items; ``"more"`` when ``len()`` itself fails."""
    length = _safe_len(value)
    return f"{length - MAX_ITEMS} more" if isinstance(length, int) else "more"


def _safe_len(value: Any) -> int | str:
    try:
        return len(value)
    except Exception:
        return "?"


def to_attribute_value(value: Any, max_length: int = 1024, secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS) -> Any:
    """Turn any value into something an OpenTelemetry attribute (and a Jaeger tag) can hold, secrets redacted."""
    try:
        kind = type(value)
        if kind is str:
            return truncate(redact_text(value, secret_keys, max_length), max_length)
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
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS,
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


def sanitize_tags(
    tags: Mapping[str, Any] | None, max_length: int, secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
) -> dict[str, Any]:
    """User-supplied tags as attributes (values converted and redacted, ``None`` values dropped)."""
    if not tags:
        return {}
    out: dict[str, Any] = {}
    try:
        for key, value in tags.items():
            if value is None:
                continue
            out[str(key)] = attribute_for(key, value, max_length, secret_keys)
    except Exception:
        pass
    return out


def attribute_for(key: Any, value: Any, max_length: int, secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS) -> Any:
    """A tag's value as an attribute: ``[REDACTED]`` under a secret name, scrubbed otherwise.

    Plain values take the short way (a cached name check, a precheck of strings).
    """
    if is_secret_key(key, secret_keys):
        return REDACTED
    kind = type(value)
    if kind is str:
        return scrub_text(value, secret_keys)  # kept whole, as before: only scrubbed
    if kind is bool or kind is float or (kind is int and _INT64_MIN <= value <= _INT64_MAX):
        return value
    return to_attribute_value(value, max_length, secret_keys)


def result_size(result: Any) -> int | None:
    """``len(result)`` for built-in containers (the seed's ``tool.result_size``), else None.

    Only built-ins: ``len()`` on a lazy ORM query set would run the query.
    """
    if isinstance(result, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        return len(result)
    return None
