"""W3C Trace Context + W3C Baggage + Jaeger (``uber-trace-id``/``uberctx-*``), both ways.

Why not OpenTelemetry's ``JaegerPropagator``: it writes flags ``3`` (sampled + debug) for
every sampled span, which makes jaeger-client peers force-sample and mark every span as
debug. Here the debug bit is only written when the incoming context was debug.

Pure functions over plain mappings: ``inject_headers`` writes, ``extract_headers`` reads
and returns ``None`` (with a debug log) for anything malformed, never raising.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, unquote

from opentelemetry import trace
from opentelemetry.trace import TraceState

from .span import Span, SpanContext

logger = logging.getLogger("aiecs_tracing.propagation")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
BAGGAGE = "baggage"
UBER_TRACE_ID = "uber-trace-id"
UBERCTX_PREFIX = "uberctx-"
JAEGER_BAGGAGE = "jaeger-baggage"
ALL_FORMATS = ("tracecontext", "baggage", "jaeger")

MAX_HEADER_LENGTH = 8192
MAX_BAGGAGE_ITEMS = 180  # the W3C baggage limit

_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_HEX_RE = re.compile(r"^[0-9a-f]{1,32}$")
_BAGGAGE_KEY_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def inject_headers(
    context: SpanContext,
    carrier: MutableMapping[str, str],
    formats: Iterable[str] = ALL_FORMATS,
) -> None:
    """Write ``context`` into ``carrier`` in every requested format."""
    inject_fields(
        context.trace_id,
        context.span_id,
        context.sampled,
        context.debug,
        context.baggage,
        context.trace_state,
        carrier,
        formats,
    )


def inject_fields(
    trace_id: int,
    span_id: int,
    sampled: bool,
    debug: bool,
    baggage: Mapping[str, str],
    trace_state: TraceState | None,
    carrier: MutableMapping[str, str],
    formats: Iterable[str] = ALL_FORMATS,
) -> None:
    """:func:`inject_headers` from plain fields: the hot path of every integration."""
    if not trace_id or not span_id:
        return
    if "tracecontext" in formats:
        carrier[TRACEPARENT] = f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"
        if trace_state:
            carrier[TRACESTATE] = trace_state.to_header()
    if baggage and "baggage" in formats:
        header = ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in baggage.items())
        if len(header) <= MAX_HEADER_LENGTH:
            carrier[BAGGAGE] = header
    if "jaeger" in formats:
        flags = (1 if sampled else 0) | (2 if debug and sampled else 0)
        carrier[UBER_TRACE_ID] = f"{trace_id:x}:{span_id:x}:0:{flags:x}"
        for key, value in baggage.items():
            if _BAGGAGE_KEY_RE.match(key):  # a header name must stay a token (no spaces, no CR/LF)
                carrier[UBERCTX_PREFIX + key] = quote(value, safe="")


def context_of(span: Any) -> SpanContext | None:
    """The context to inject for ``span``: a facade span, a :class:`SpanContext`, an OpenTelemetry span."""
    if isinstance(span, Span):
        return span.context
    if isinstance(span, SpanContext):
        return span
    if isinstance(span, trace.Span):
        sc = span.get_span_context()
        return SpanContext(sc.trace_id, sc.span_id, bool(sc.trace_flags & 1), False, {}, sc.trace_state)
    return None


def _lowercase_view(carrier: Mapping[str, Any]) -> dict[str, str]:
    """Case-insensitive, first-value view of a header mapping (lists, bytes tolerated)."""
    view: dict[str, str] = {}
    for key, value in carrier.items():
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str):
            continue
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str):
            continue
        view.setdefault(key.lower(), value)
    return view


def _is_lowercase_str_dict(carrier: Any) -> bool:
    """A plain dict of lower-case str keys to str values (what the integrations build) needs no view."""
    if type(carrier) is not dict:
        return False
    for key, value in carrier.items():
        if type(key) is not str or type(value) is not str or not key.islower():
            return False
    return True


def _parse_traceparent(value: str) -> tuple[int, int, bool] | None:
    value = value.strip()
    match = _TRACEPARENT_RE.match(value)
    if not match:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(int(flags_hex, 16) & 1)


def _parse_uber_trace_id(value: str) -> tuple[int, int, bool, bool] | None:
    value = unquote(value.strip()).lower()
    parts = value.split(":")
    if len(parts) != 4:
        return None
    trace_hex, span_hex, _parent_hex, flags_hex = parts
    if not _HEX_RE.match(trace_hex) or not _HEX_RE.match(span_hex) or len(span_hex) > 16:
        return None
    if not re.match(r"^[0-9a-f]{1,2}$", flags_hex):
        return None
    trace_id, span_id, flags = int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, bool(flags & 1), bool(flags & 2)


def _parse_baggage_header(value: str, into: dict[str, str]) -> None:
    if len(value) > MAX_HEADER_LENGTH:
        logger.debug("baggage header over %d bytes ignored", MAX_HEADER_LENGTH)
        return
    for member in value.split(","):
        if len(into) >= MAX_BAGGAGE_ITEMS:
            break
        item = member.split(";", 1)[0].strip()  # drop W3C properties
        if not item or "=" not in item:
            continue
        key, _, val = item.partition("=")
        key = key.strip()
        if _BAGGAGE_KEY_RE.match(key):
            key = unquote(key)
            if _BAGGAGE_KEY_RE.match(key):  # still a token once decoded ("a%20b" is not)
                into[key] = unquote(val.strip())


def extract_headers(carrier: Any, formats: Iterable[str] = ALL_FORMATS) -> SpanContext | None:
    """The remote parent in ``carrier``: W3C first, then Jaeger; ``None`` if there is none."""
    if not isinstance(carrier, Mapping):
        logger.debug("extract: carrier of type %s is not a mapping", type(carrier).__name__)
        return None
    try:
        headers = carrier if _is_lowercase_str_dict(carrier) else _lowercase_view(carrier)
    except Exception as exc:  # a hostile mapping
        logger.debug("extract: carrier could not be read: %s", exc)
        return None
    if type(formats) is not tuple:
        formats = tuple(formats)
    result: SpanContext | None = None
    if "tracecontext" in formats and TRACEPARENT in headers:
        parsed = _parse_traceparent(headers[TRACEPARENT])
        if parsed is None:
            logger.debug("extract: malformed traceparent %.100r", headers[TRACEPARENT])
        else:
            trace_state = None
            if TRACESTATE in headers:
                try:
                    trace_state = TraceState.from_header([headers[TRACESTATE]])
                except Exception:
                    trace_state = None
            result = SpanContext(parsed[0], parsed[1], parsed[2], False, {}, trace_state)
    if "jaeger" in formats and UBER_TRACE_ID in headers:
        parsed_j = _parse_uber_trace_id(headers[UBER_TRACE_ID])
        if parsed_j is None:
            logger.debug("extract: malformed uber-trace-id %.100r", headers[UBER_TRACE_ID])
        elif result is None:
            result = SpanContext(parsed_j[0], parsed_j[1], parsed_j[2], parsed_j[3], {})
        elif (result.trace_id, result.span_id) == parsed_j[:2]:
            result.debug = parsed_j[3]  # the same parent: keep Jaeger's debug bit
    if result is None:
        return None
    baggage: dict[str, str] = {}
    if "baggage" in formats and BAGGAGE in headers:
        _parse_baggage_header(headers[BAGGAGE], baggage)
    if "jaeger" in formats:
        for key, value in headers.items():
            if key.startswith(UBERCTX_PREFIX) and len(baggage) < MAX_BAGGAGE_ITEMS:
                name = key[len(UBERCTX_PREFIX) :]
                if _BAGGAGE_KEY_RE.match(name):
                    baggage.setdefault(name, unquote(value))
    result.baggage = baggage
    return result
