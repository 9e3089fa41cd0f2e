"""The one module of core that leans on OpenTelemetry private names, each checked at import.

Two shortcuts are worth their speed on the per-span path; everything else in core uses
OpenTelemetry's public API only.

- **The current context.** OpenTelemetry's default runtime context is one ``ContextVar``
  (``_RUNTIME_CONTEXT._current_context``). Making a span current sets that variable directly
  with a ``Context`` built by one dict copy (the span under the API's ``_SPAN_KEY``, our
  facade span beside it), instead of two ``set_value`` copies and two Python layers per
  attach and per detach.
- **SpanContext as the tuple it is.** ``SpanContext.__new__`` checks each id in Python; ids
  from the SDK's random generator are always valid, so a light span builds the tuple directly,
  and the Jaeger encoder reads ids by index.

Each shortcut is verified once, at import, against the public API doing the same thing. On
any difference (a renamed field, another runtime context chosen with
``OTEL_PYTHON_CONTEXT``, a new tuple layout) the public API is used instead, and
:data:`FAST_CONTEXT` / :data:`FAST_SPAN_CONTEXT` say which path is in use.
``tests/test_engine_fallback.py`` runs the fallbacks on purpose.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import propagation as _trace_propagation

#: Where the manager's facade span sits in a ``Context``, beside the OpenTelemetry span.
WRAPPER_KEY = otel_context.create_key("aiecs-tracing-span")

_span_key: object = getattr(_trace_propagation, "_SPAN_KEY", None)
_SPAN_KEY: str = _span_key if isinstance(_span_key, str) else ""
_runtime: Any = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_var: Any = getattr(_runtime, "_current_context", None)


def _fast_context_works() -> bool:
    """The shortcut gives what the public API gives: current span, our value, and restore."""
    if type(_runtime).__name__ != "ContextVarsRuntimeContext" or not isinstance(_var, contextvars.ContextVar):
        return False
    if not _SPAN_KEY:
        return False
    try:
        probe = trace.NonRecordingSpan(trace.SpanContext(0x1F, 0x2F, False))
        marker = object()
        before = otel_context.get_current()
        new = Context(before)
        dict.__setitem__(new, _SPAN_KEY, probe)
        dict.__setitem__(new, WRAPPER_KEY, marker)
        token = _var.set(new)
        try:
            seen = trace.get_current_span() is probe and otel_context.get_value(WRAPPER_KEY) is marker
        finally:
            _var.reset(token)
        return seen and otel_context.get_current() is before
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        return False


#: True when the current context is set through the runtime context's ContextVar directly.
FAST_CONTEXT = _fast_context_works()


def context_with_span(base: Context, otel_span: trace.Span, wrapper: object, extra_key: str | None = None,
                      extra: object = None) -> Context:
    """``base`` plus ``otel_span`` as the current span, ``wrapper`` under :data:`WRAPPER_KEY`
    and, if given, ``extra`` under ``extra_key`` (the OpenTracing shim's scope)."""
    if FAST_CONTEXT:
        new = Context(base)
        dict.__setitem__(new, _SPAN_KEY, otel_span)
        dict.__setitem__(new, WRAPPER_KEY, wrapper)
        if extra_key is not None:
            dict.__setitem__(new, extra_key, extra)
        return new
    new = otel_context.set_value(WRAPPER_KEY, wrapper, trace.set_span_in_context(otel_span, base))
    if extra_key is not None:
        new = otel_context.set_value(extra_key, extra, new)
    return new


def context_with_value(base: Context, key: str, value: object) -> Context:
    """``base`` plus one value (one dict copy on the fast path)."""
    if FAST_CONTEXT:
        new = Context(base)
        dict.__setitem__(new, key, value)
        return new
    return otel_context.set_value(key, value, base)


def current_context() -> Context:
    """The current ``Context``."""
    return otel_context.get_current()


def set_current(ctx: Context) -> object:
    """Make ``ctx`` current; the token undoes it (:func:`reset_current`)."""
    return otel_context.attach(ctx)


def reset_current(token: object) -> None:
    """Undo :func:`set_current`. Raises on a token from another context; callers decide."""
    _runtime_detach(token)


def attach_span(otel_span: trace.Span, wrapper: object) -> object:
    """Make ``otel_span`` current with ``wrapper`` beside it; the token undoes it (:func:`reset_current`)."""
    return set_current(context_with_span(current_context(), otel_span, wrapper))


def _fast_attach_span(otel_span: trace.Span, wrapper: object) -> object:
    new = Context(_var.get())
    dict.__setitem__(new, _SPAN_KEY, otel_span)
    dict.__setitem__(new, WRAPPER_KEY, wrapper)
    return _var.set(new)


if FAST_CONTEXT:  # the ContextVar's own (C) methods, no Python layer per call
    current_context = _var.get
    set_current = _var.set
    reset_current = _var.reset
    attach_span = _fast_attach_span


def _public_detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]  # logs instead of raising on a foreign token


# The runtime context's own detach raises instead of logging; the API's logs an error per call.
_runtime_detach: Callable[[object], None] = getattr(_runtime, "detach", None) or _public_detach


def _checked_span_context(trace_id: int, span_id: int, flags: trace.TraceFlags, state: Any) -> trace.SpanContext:
    return trace.SpanContext(trace_id, span_id, False, flags, state)


def _span_context_builder() -> Callable[[int, int, trace.TraceFlags, Any], trace.SpanContext]:
    """``SpanContext`` as a plain tuple ``(trace_id, span_id, is_remote, flags, state, is_valid)``,
    when that layout is verified against the real constructor; else the real constructor."""
    try:
        flags = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        state = trace.TraceState([("k", "v")])
        real = trace.SpanContext(0xABC, 0xDEF, False, flags, state)
        fast = tuple.__new__(trace.SpanContext, (0xABC, 0xDEF, False, flags, state, True))
        if (
            tuple(real) == tuple(fast)
            and (fast.trace_id, fast.span_id, fast.is_remote, fast.is_valid) == (0xABC, 0xDEF, False, True)
            and fast.trace_flags is flags
            and fast.trace_state is state
        ):
            return lambda trace_id, span_id, flags, state: tuple.__new__(
                trace.SpanContext, (trace_id, span_id, False, flags, state, True)
            )
    except Exception:  # noqa: BLE001 - any surprise means: use the real constructor
        pass
    return _checked_span_context


#: ``new_valid_span_context(trace_id, span_id, flags, state)`` for ids known to be valid.
new_valid_span_context = _span_context_builder()
#: True when :data:`new_valid_span_context` skips the constructor's range check.
FAST_SPAN_CONTEXT = new_valid_span_context is not _checked_span_context
#: True when a ``SpanContext`` may be read by index: ``(trace_id, span_id, is_remote, trace_flags,
#: trace_state, is_valid)``, the layout verified above (the Jaeger encoder reads ids this way).
SPAN_CONTEXT_IS_TUPLE = FAST_SPAN_CONTEXT


def new_span_context(trace_id: int, span_id: int, flags: trace.TraceFlags, state: Any) -> trace.SpanContext:
    """A local ``SpanContext`` through the public constructor (ids of unknown origin)."""
    return trace.SpanContext(trace_id, span_id, False, flags, state)
