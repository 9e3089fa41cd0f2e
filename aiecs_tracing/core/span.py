"""The OpenTracing-style surface seed code uses, over an OpenTelemetry span.

AIECS code written for jaeger-client calls ``span.set_tag``, ``span.log_kv``,
``span.finished`` and ``span.context.trace_id``; this facade keeps those working while
the span underneath is a plain OpenTelemetry SDK span (so OTLP, other OpenTelemetry
instrumentations and our Jaeger exporter all see the same thing).
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags, TraceState

from .attributes import attribute_for, to_attribute_value
from .config import DEFAULT_SECRET_KEYS
from .guard import report_error
from .redaction import scrub_text


class SpanOwner(Protocol):
    """What a span needs of the manager that started it (the manager is one)."""

    @property
    def config(self) -> Any: ...  # its max_tag_value_length and secret_keys

    def note_finished(self) -> None: ...

KIND_BY_NAME: dict[str, SpanKind] = {
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
    "internal": SpanKind.INTERNAL,
}


def to_span_kind(kind: Any) -> SpanKind:
    if isinstance(kind, SpanKind):
        return kind
    if kind is None:
        return SpanKind.INTERNAL
    return KIND_BY_NAME.get(str(kind).lower(), SpanKind.INTERNAL)


class SpanContext:
    """A span's identity, as jaeger-client exposed it: integer ids, flags and baggage.

    Returned by ``span.context`` and by ``TracingManager.extract_span_context``; pass it
    as ``parent_span=`` to continue a trace.
    """

    __slots__ = ("trace_id", "span_id", "sampled", "debug", "baggage", "trace_state", "parent_id")

    def __init__(
        self,
        trace_id: int,
        span_id: int,
        sampled: bool = True,
        debug: bool = False,
        baggage: dict[str, str] | None = None,
        trace_state: TraceState | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.sampled = sampled
        self.debug = debug
        self.baggage = baggage if baggage is not None else {}
        self.trace_state = trace_state
        self.parent_id = None  # jaeger-client compatibility; deprecated there too

    @property
    def flags(self) -> int:
        return (1 if self.sampled else 0) | (2 if self.debug else 0)

    def is_sampled(self) -> bool:
        return self.sampled

    def is_debug(self) -> bool:
        return self.debug

    @property
    def trace_id_hex(self) -> str:
        return format(self.trace_id, "032x")

    @property
    def span_id_hex(self) -> str:
        return format(self.span_id, "016x")

    def to_otel(self, is_remote: bool = True) -> trace.SpanContext:
        return trace.SpanContext(
            trace_id=self.trace_id,
            span_id=self.span_id,
            is_remote=is_remote,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if self.sampled else TraceFlags.DEFAULT),
            trace_state=self.trace_state,
        )

    def __repr__(self) -> str:
        return f"SpanContext(trace_id={self.trace_id_hex}, span_id={self.span_id_hex}, flags={self.flags})"


class Span:
    """One unit of work. Finishing twice is harmless; every method swallows its own errors."""

    __slots__ = ("_otel", "_manager", "finished", "baggage", "debug", "operation_name", "__weakref__")

    def __init__(
        self,
        otel_span: trace.Span,
        manager: SpanOwner | None,
        operation_name: str,
        baggage: dict[str, str] | None = None,
        debug: bool = False,
    ) -> None:
        self._otel = otel_span
        self._manager = manager
        self.finished = False
        self.operation_name = operation_name
        self.baggage = baggage if baggage is not None else {}
        self.debug = debug

    # --- identity -------------------------------------------------------------------
    @property
    def otel_span(self) -> trace.Span:
        """The OpenTelemetry span underneath, for code that speaks OpenTelemetry."""
        return self._otel

    @property
    def context(self) -> SpanContext:
        sc = self._otel.get_span_context()
        return SpanContext(
            sc.trace_id,
            sc.span_id,
            bool(sc.trace_flags & TraceFlags.SAMPLED),
            self.debug,
            dict(self.baggage),
            sc.trace_state,
        )

    @property
    def tracer(self) -> Any:
        return self._manager

    @property
    def owner(self) -> Any:
        """The manager that started this span (``None`` for a stand-in)."""
        return self._manager

    def is_recording(self) -> bool:
        return self._otel.is_recording()

    # --- OpenTracing surface --------------------------------------------------------
    def set_tag(self, key: str, value: Any) -> Span:
        try:
            if self.finished:
                return self
            if key == "error":
                if value is True or str(value).lower() == "true":
                    self._otel.set_status(Status(StatusCode.ERROR))
            elif key == "span.kind":
                # The kind is fixed at start in OpenTelemetry; keep the tag for Jaeger readers.
                pass
            manager = self._manager
            limit, words = (manager.config.max_tag_value_length, manager.config.secret_keys) if manager else (1024, DEFAULT_SECRET_KEYS)
            value = attribute_for(key, value, limit, words)
            self._otel.set_attribute(key if type(key) is str else str(to_attribute_value(key, 256)), value)
        except Exception as exc:
            report_error("span.set_tag", exc)
        return self

    def set_tags(self, tags: dict[str, Any] | None) -> Span:
        try:
            if tags:
                for key, value in tags.items():
                    self.set_tag(key, value)
        except Exception as exc:
            report_error("span.set_tags", exc)
        return self

    def log_kv(self, key_values: dict[str, Any], timestamp: float | None = None) -> Span:
        """Add an event; ``event`` (as jaeger-client logs named it) becomes its name."""
        try:
            if self.finished or not key_values:
                return self
            manager = self._manager
            limit, words = (manager.config.max_tag_value_length, manager.config.secret_keys) if manager else (1024, DEFAULT_SECRET_KEYS)
            event = key_values.get("event", "log")
            name = scrub_text(event, words) if type(event) is str else str(to_attribute_value(event, 256, words))
            attributes = {str(k): attribute_for(k, v, limit, words) for k, v in key_values.items()}
            ts = int(timestamp * 1e9) if timestamp is not None else None
            self._otel.add_event(name, attributes, ts)
        except Exception as exc:
            report_error("span.log_kv", exc)
        return self

    log_event = log_kv

    def set_baggage_item(self, key: str, value: str) -> Span:
        try:
            self.baggage[str(key)] = str(value)
        except Exception as exc:
            report_error("span.set_baggage_item", exc)
        return self

    def get_baggage_item(self, key: str) -> str | None:
        return self.baggage.get(key)

    def set_operation_name(self, name: str) -> Span:
        try:
            self.operation_name = name
            self._otel.update_name(name)
        except Exception as exc:
            report_error("span.set_operation_name", exc)
        return self

    def record_exception(self, exc: BaseException, escaped: bool = True) -> Span:
        """Mark the span failed: seed tags, an exception event with the stack, status ERROR."""
        try:
            if self.finished:
                return self
            otel = self._otel
            words = self._words()
            message = scrub_text(_safe_str(exc), words)
            otel.set_attribute("error", True)
            otel.set_attribute("error.kind", type(exc).__name__)
            otel.set_attribute("error.type", _qualified_type(exc))
            otel.set_attribute("error.message", message)
            stack = scrub_text("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), words)
            otel.add_event(
                "exception",
                {
                    "event": "error",
                    "exception.type": _qualified_type(exc),
                    "exception.message": message,
                    "exception.stacktrace": stack,
                    "exception.escaped": str(escaped),
                },
            )
            otel.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message}"[:1024]))
        except Exception as err:
            report_error("span.record_exception", err)
        return self

    def set_status_error(self, description: str | None = None) -> Span:
        try:
            if not self.finished:
                self._otel.set_attribute("error", True)
                if type(description) is str:
                    description = scrub_text(description, self._words())
                self._otel.set_status(Status(StatusCode.ERROR, description))
        except Exception as exc:
            report_error("span.set_status", exc)
        return self

    def _words(self) -> tuple[str, ...]:
        return self._manager.config.secret_keys if self._manager is not None else DEFAULT_SECRET_KEYS

    def finish(self, finish_time: float | None = None) -> None:
        """End the span once; later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        try:
            self._otel.end(int(finish_time * 1e9) if finish_time is not None else None)
            if self._manager is not None:
                self._manager.note_finished()
        except Exception as exc:
            report_error("span.finish", exc)

    # OpenTracing spans are context managers that finish on exit and log the error.
    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            self.record_exception(exc)
        self.finish()

    def __repr__(self) -> str:
        sc = self._otel.get_span_context()
        return f"<Span {self.operation_name!r} trace={sc.trace_id:032x} span={sc.span_id:016x}>"


class NoopSpan(Span):
    """Stands in where a span object is required but tracing is off (``tracing.span()``)."""

    __slots__ = ()

    def __init__(self, operation_name: str = "") -> None:
        super().__init__(trace.INVALID_SPAN, None, operation_name)

    def finish(self, finish_time: float | None = None) -> None:
        self.finished = True


def _qualified_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def now() -> float:
    return time.time()
