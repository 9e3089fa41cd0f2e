"""OpenTracing spans and scopes over the manager's spans (see :mod:`aiecs_tracing.compat.opentracing`).

``OpenTracingSpan`` is the manager's :class:`~aiecs_tracing.core.span.Span` facade with
OpenTracing's signatures and jaeger-client's tag/log semantics; ``ContextVarsScopeManager``
keeps scopes in OpenTelemetry's context, so the current OpenTelemetry span and the active
OpenTracing scope are one and the same.
"""

from __future__ import annotations

import logging
import traceback
import types
from collections.abc import Mapping
from typing import Any

import opentracing
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from ..core import guard
from ..core.manager import TracingManager, get_tracing_manager
from ..core.sdk_internals import (
    WRAPPER_KEY,
    context_with_span,
    context_with_value,
    reset_current,
    set_current,
)
from ..core.span import Span

logger = logging.getLogger("aiecs_tracing.opentracing")


class OpenTracingSpan(Span, opentracing.Span):
    """The manager's span facade as an OpenTracing span (``span.tracer`` is the OpenTracing tracer).

    No ``__slots__``: OpenTracing code (its harness included) may set attributes on a span.
    """

    @property
    def tracer(self) -> Any:
        manager = self.owner
        return manager.opentracing_tracer if manager is not None else opentracing.global_tracer()

    def set_tag(self, key: str, value: Any) -> OpenTracingSpan:
        if key == "sampling.priority":
            mark_priority(self, value)
        elif type(value) is str and self.owner is not None and len(value) > self.owner.config.max_tag_value_length:
            value = value[: self.owner.config.max_tag_value_length]  # jaeger-client's max_tag_value_length
        Span.set_tag(self, key, value)
        return self

    def log_kv(self, key_values: dict[str, Any], timestamp: float | None = None) -> OpenTracingSpan:
        """As jaeger-client: ``error.object`` is the exception's text, ``error.kind`` a name, ``stack`` text."""
        try:
            if isinstance(key_values, Mapping) and (
                "error.object" in key_values or "stack" in key_values or "error.kind" in key_values
            ):
                key_values = _error_fields(key_values)
        except Exception as exc:
            guard.report_error("span.log_kv", exc)
        Span.log_kv(self, key_values, timestamp)
        return self

    # OpenTracing's signatures (ours take a dict): ``log_event(event, payload)``, ``log(**kwargs)``.
    log_event = opentracing.Span.log_event
    log = opentracing.Span.log


class NoopOpenTracingSpan(OpenTracingSpan):
    """What a disabled (or closed) manager's OpenTracing tracer returns: valid, records nothing."""

    def finish(self, finish_time: float | None = None) -> None:
        self.finished = True


def truncated_tags(tags: dict[str, Any], limit: int) -> dict[str, Any]:
    """String tags cut at ``max_tag_value_length``, as jaeger-client did (the manager keeps them whole)."""
    for value in tags.values():
        if type(value) is str and len(value) > limit:
            return {k: v[:limit] if type(v) is str else v for k, v in tags.items()}
    return tags


def mark_priority(span: Span, value: Any) -> None:
    try:
        if float(value) > 0:
            span.debug = True
    except (TypeError, ValueError):
        pass


def _error_fields(key_values: Mapping[str, Any]) -> dict[str, Any]:
    fields = dict(key_values)
    error = fields.get("error.object")
    if isinstance(error, BaseException):
        try:
            fields["error.object"] = str(error)
        except Exception:
            fields["error.object"] = f"<unprintable {type(error).__name__}>"
    kind = fields.get("error.kind")
    if isinstance(kind, type):
        fields["error.kind"] = kind.__name__
    stack = fields.get("stack")
    if isinstance(stack, types.TracebackType):
        fields["stack"] = "".join(traceback.format_tb(stack))
    return fields


class _Scope(opentracing.Scope):
    """One activation; closing it restores what was current before (only the active one closes)."""

    def __init__(self, manager: ContextVarsScopeManager, span: Any, finish_on_close: bool) -> None:
        self.owner = manager
        self._span = span
        self._finish_on_close = finish_on_close
        self._token: Any = None
        self._previous: Context | None = None
        self._otel: Any = None  # the OpenTelemetry span current while this scope is the active one

    def close(self) -> None:
        token = self._token
        if token is None:  # a view of a span made current elsewhere, or closed already
            return
        if otel_context.get_current().get(self.owner._key) is not self:
            logger.debug("Scope.close(): not the active scope, ignored (close scopes in reverse order)")
            return
        self._token = None
        try:
            reset_current(token)
        except Exception:  # closed in another context (asyncio task, thread): restore the previous one
            otel_context.attach(self._previous)  # type: ignore[arg-type]
        self._previous = None
        if self._finish_on_close:
            self._span.finish()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        span = self._span
        if exc_val is not None and span is not None and self._token is not None:
            if isinstance(span, Span):
                span.record_exception(exc_val)
            else:
                opentracing.Span._on_error(span, exc_type, exc_val, exc_tb)
        self.close()


class ContextVarsScopeManager(opentracing.ScopeManager):
    """Scopes in OpenTelemetry's context (a ContextVar): per thread and per asyncio task.

    Activating one of our spans makes it the current OpenTelemetry span; any other span
    (a jaeger-client span, a mock) only becomes ``active``.
    """

    def __init__(self, manager: TracingManager | None = None) -> None:
        self._tracing = manager
        # Each scope manager its own key (as each ThreadLocalScopeManager had its own storage);
        # the current OpenTelemetry span is shared by all.
        self._key = otel_context.create_key("aiecs-tracing-opentracing-scope")

    def activate(self, span: Any, finish_on_close: bool) -> _Scope:
        scope = _Scope(self, span, finish_on_close)
        current = otel_context.get_current()
        if isinstance(span, Span):
            otel: Any = span.otel_span
            new = context_with_span(current, otel, span, self._key, scope)
        else:
            otel = trace.get_current_span(current)
            new = context_with_value(current, self._key, scope)
        scope._otel = otel
        scope._previous = current
        scope._token = set_current(new)
        return scope

    @property
    def active(self) -> _Scope | None:
        ctx = otel_context.get_current()
        scope: _Scope | None = ctx.get(self._key)  # type: ignore[assignment]  # set by activate()
        otel: Any = trace.get_current_span(ctx)
        if scope is not None and scope._otel is otel:
            return scope
        if not otel.get_span_context().is_valid:
            return None
        # A span made current by OpenTelemetry code or the integrations: seen, not owned.
        wrapper: Span | None = ctx.get(WRAPPER_KEY)  # type: ignore[assignment]  # the manager's Span
        manager = self._tracing if self._tracing is not None else get_tracing_manager()
        if wrapper is not None and wrapper.otel_span is otel:
            if isinstance(wrapper, OpenTracingSpan):
                span = wrapper
            else:
                span = OpenTracingSpan(otel, wrapper.owner or manager, wrapper.operation_name,
                                       wrapper.baggage, wrapper.debug)
        else:
            span = OpenTracingSpan(otel, manager, getattr(otel, "name", ""))
        return _Scope(self, span, False)
