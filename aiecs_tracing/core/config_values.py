"""One setting's value, parsed: each parser names the setting in the ConfigError it raises.

Split from ``config.py`` (which re-exports the public names): that module decides which
source a setting comes from (argument, environment, default); this one only checks
and converts a single value, wherever it came from.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"true", "1", "yes", "on", "y", "t"}
_FALSE = {"false", "0", "no", "off", "n", "f"}


class ConfigError(ValueError):
    """A setting whose value cannot be used; the message names it."""


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a boolean (true/false/1/0/yes/no)")


def parse_port(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a port number")
    try:
        port = int(str(value).strip())  # an int too: str() of an int (or IntEnum) is its digits
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name}={value!r} is out of range 0-65535")
    return port


def parse_float(name: str, value: Any) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None


def parse_seconds(name: str, value: Any) -> float:
    """A finite, non-negative number of seconds."""
    seconds = parse_float(name, value) if not isinstance(value, bool) else math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{name}={value!r} is not a number of seconds >= 0")
    return seconds


def parse_duration_seconds(name: str, value: Any) -> float:
    """Seconds, from a number or a Go duration (``500ms``, ``1m``, ``1h30m``); must be > 0."""
    if isinstance(value, bool):
        raise ConfigError(f"{name}={value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _GO_DURATION.findall(text)
            if not parts or "".join(number + unit for number, unit in parts) != text:
                raise ConfigError(f"{name}={value!r} is not a duration (seconds, or like 500ms, 1m)") from None
            seconds = sum(float(number) * _GO_UNITS[unit] for number, unit in parts)
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{name}={value!r} must be a positive duration")
    return seconds


def parse_key_values(name: str, value: str, *, sep: str = ",") -> dict[str, str]:
    """``k=v,k2=v2`` as OTEL_RESOURCE_ATTRIBUTES and JAEGER_TAGS write it.

    jaeger-client allowed ``k=${ENV_VAR:default}``; that form is expanded here too.
    """
    result: dict[str, str] = {}
    for item in value.split(sep):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise ConfigError(f"{name}: {item!r} is not key=value")
        key, _, val = item.partition("=")
        val = val.strip()
        if val.startswith("${") and val.endswith("}"):
            env_name, _, default = val[2:-1].partition(":")
            val = os.environ.get(env_name, default)
        result[key.strip()] = val
    return result


def parse_string_mapping(name: str, value: Any) -> dict[str, str]:
    """A mapping given as a dict or as ``k=v,k2=v2``, keys and values as strings."""
    if isinstance(value, str):
        return parse_key_values(name, value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}={value!r} is not a mapping (or k=v,k2=v2)")
    return {str(k): str(v) for k, v in value.items()}


def parse_key_list(name: str, value: Any) -> tuple[str, ...]:
    """A list of key names, lower-cased; a lone string is one name (not its letters)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{name}={value!r} is not a list of names")
    return tuple(k.lower() for k in value)


def parse_http_url(name: str, value: Any) -> str:
    """An http(s) URL with a host (a sampling endpoint), stripped of surrounding blanks."""
    text = str(value).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}={value!r} is not an http(s) URL")
    return text
