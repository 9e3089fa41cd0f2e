"""TracingManager: the seed's whole API on an OpenTelemetry TracerProvider of its own.

Each manager owns its provider, resource, sampler, processor and exporter, so two managers
in one process keep their own ``service.name`` (the original silently traced nothing for
the second one). The first enabled manager becomes the process default used by the
integrations and, unless another is set, the OpenTelemetry global provider, so spans
from any other OpenTelemetry instrumentation join the same traces.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from . import guard, lifecycle
from .attributes import sanitize_tags
from .config import TracingConfig, resolve_config
from .decorators import Decorator, database_operation, external_call, tool_execution, traced
from .engine import SCOPE, SpanEngine
from .log_correlation import TraceIdFilter, install_record_factory
from .pipeline import build_pipeline
from .processor import BoundedBatchProcessor
from .propagation import context_of, extract_headers, inject_fields, inject_headers
from .redaction import register_secret_keys
from .sampling import close_sampler, describe_sampler, sampling_info
from .span import NoopSpan, Span, SpanContext, to_span_kind

logger = logging.getLogger("aiecs_tracing")

_default_lock = threading.Lock()
_default_manager: TracingManager | None = None


def get_tracing_manager() -> TracingManager | None:
    """The process default manager (the first enabled one), used by integrations."""
    return _default_manager


def set_tracing_manager(manager: TracingManager | None) -> None:
    """Make ``manager`` the process default (``None`` clears it)."""
    global _default_manager
    with _default_lock:
        _default_manager = manager


class TracingManager(SpanEngine):
    """Distributed tracing for one service: spans, decorators, propagation, export."""

    def __init__(
        self,
        service_name: str | None = None,
        jaeger_host: str | None = None,
        jaeger_port: int | str | None = None,
        enable_tracing: bool | str | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        # Any OpenTelemetry SpanExporter instance may replace the configured one.
        self._custom_exporter = options.pop("span_exporter", None)
        self.config: TracingConfig = resolve_config(service_name, jaeger_host, jaeger_port, enable_tracing, **options)
        cfg = self.config
        self.service_name = cfg.service_name
        self.jaeger_host = cfg.jaeger_host
        self.jaeger_port = cfg.jaeger_port
        self._closed = False
        self.enable_tracing = cfg.enabled
        self.processor: BoundedBatchProcessor | None = None
        self.exporter: Any = None
        self.endpoint = "none"
        self.init_error: str | None = cfg.error
        self._formats = cfg.propagators
        self._log_filter: logging.Filter | None = None
        self._opentracing_tracer: Any = None  # tracing.opentracing_tracer, made on first use
        if cfg.error:
            logger.warning("Failed to initialize Jaeger tracer: %s; tracing is disabled", cfg.error)
        elif cfg.enabled:
            self._init_tracer()
        if self._active:
            register_secret_keys(cfg.secret_keys)  # headers and queries in the integrations too
            lifecycle.track(self)
            if cfg.set_default_manager:
                global _default_manager
                with _default_lock:
                    if _default_manager is None:
                        _default_manager = self
            if cfg.set_global_provider and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(self.provider)  # type: ignore[arg-type]
            if cfg.set_global_opentracing:
                lifecycle.install_opentracing_global(self)

    # --- set-up -----------------------------------------------------------------------
    def _init_tracer(self) -> None:
        try:
            self.provider, self.processor, self.exporter, self.endpoint = build_pipeline(self.config, self._custom_exporter)
            self.tracer = self.provider.get_tracer(SCOPE.name, SCOPE.version)  # the light spans' scope too
            self._active = self._enable_flag
        except Exception as exc:
            self.init_error = f"{type(exc).__name__}: {exc}"
            self.enable_tracing = False
            self.tracer = None
            logger.warning("Failed to initialize Jaeger tracer: %s; tracing is disabled", self.init_error)

    def _light_spans_possible(self) -> bool:
        return self.config.sampler_type == "const" and bool(self.config.sampler_param)

    @property
    def closed(self) -> bool:
        """True once :meth:`close_tracer` has run."""
        return self._closed

    @property
    def opentracing_tracer(self) -> Any:
        """An OpenTracing ``Tracer`` on this manager's spans (needs the ``opentracing`` package).

        See :mod:`aiecs_tracing.compat.opentracing`; the first enabled manager also installs it
        as ``opentracing.tracer`` unless one is set (``set_global_opentracing=False`` opts out).
        """
        tracer = self._opentracing_tracer
        if tracer is None:
            support = lifecycle.opentracing_support
            if support is None:
                raise ImportError("tracing.opentracing_tracer needs opentracing: pip install 'aiecs-tracing[opentracing]'")
            tracer = self._opentracing_tracer = support.tracer_for(self)
        return tracer

    @property
    def enable_tracing(self) -> bool:
        """The seed's switch; setting it to False stops tracing at once (True resumes it)."""
        return self._enable_flag

    @enable_tracing.setter
    def enable_tracing(self, value: bool) -> None:
        self._enable_flag = bool(value)
        self._active = self._enable_flag and self.tracer is not None and not self._closed

    # --- spans --------------------------------------------------------------------
    def start_span(
        self,
        operation_name: str,
        parent_span: Any = None,
        tags: dict[str, Any] | None = None,
        *,
        kind: SpanKind | str | None = None,
        start_time: float | None = None,
        child_of: Any = None,
        links: Any = None,
    ) -> Span | None:
        """Start a span under ``parent_span`` (ours, extracted, OpenTelemetry), else the current one.

        Returns ``None`` when tracing is disabled, as the seed does. The span is not made
        current; use :meth:`span` (a context manager) or :meth:`activate` for that.
        """
        if not self._active:
            return None
        try:
            attributes = sanitize_tags(tags, self.config.max_tag_value_length, self.config.secret_keys)
            if kind is None and "span.kind" in attributes:
                kind = attributes.pop("span.kind")
            parent = parent_span if parent_span is not None else child_of
            if start_time is None and not links:  # the one fast path every span can take
                return self.start_fast(operation_name, attributes, to_span_kind(kind), parent)
            return self.start_sdk(
                operation_name,
                attributes,
                to_span_kind(kind),
                parent,
                int(start_time * 1e9) if start_time is not None else None,
                links,
            )
        except Exception as exc:
            guard.report_error("start_span", exc)
            return None

    def create_child_span(
        self, parent_span: Any, operation_name: str, tags: dict[str, Any] | None = None
    ) -> Span | None:
        """The original's helper: a span under ``parent_span``."""
        return self.start_span(operation_name, parent_span=parent_span, tags=tags)

    def finish_span(
        self,
        span: Span | None,
        tags: dict[str, Any] | None = None,
        logs: dict[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Finish ``span`` with extra tags/logs; ``error`` marks it failed (stack trace kept)."""
        if span is None:
            return
        try:
            if not isinstance(span, Span):
                if isinstance(span, trace.Span):
                    span = Span(span, self, "")
                else:
                    return
            if span.finished:
                return
            if tags:
                span.set_tags(tags)
            if logs:
                span.log_kv(logs)
            if error is not None:
                span.record_exception(error)
            span.finish()
        except Exception as exc:
            guard.report_error("finish_span", exc)

    @contextmanager
    def span(
        self,
        operation_name: str,
        tags: dict[str, Any] | None = None,
        *,
        parent_span: Any = None,
        kind: SpanKind | str | None = None,
    ) -> Iterator[Span]:
        """``with tracing.span("op") as span:`` - current inside, finished on exit, errors recorded."""
        span = self.start_span(operation_name, parent_span, tags, kind=kind)
        if span is None:
            yield NoopSpan(operation_name)
            return
        token = self.attach(span)
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            self.detach(token)
            span.finish()

    # --- decorators -------------------------------------------------------------------
    def with_tracing(
        self, operation_name: str | None = None, tags: dict[str, Any] | None = None
    ) -> Callable[..., Any]:
        """Trace every call of the decorated function (sync, async, generator, async generator).

        ``@tracing.with_tracing("name")``; bare ``@tracing.with_tracing`` names the span
        after the function.
        """
        if callable(operation_name) and not isinstance(operation_name, str):
            return traced(self, None, tags)(operation_name)
        return traced(self, operation_name, tags)

    def trace_database_operation(
        self,
        operation: str,
        table: str | None = None,
        query: str | None = None,
        *,
        db_system: str | None = None,
    ) -> Decorator:
        """A CLIENT span for a database call, with the seed's tags and OpenTelemetry's."""
        return database_operation(self, operation, table, query, db_system or self.config.db_system)

    def trace_external_call(
        self, service_name: str, endpoint: str | None = None, *, method: str | None = None
    ) -> Decorator:
        """A CLIENT span for a call to another service; the status comes from the real response."""
        return external_call(self, service_name, endpoint, method)

    def trace_tool_execution(self, tool_name: str, operation: str) -> Decorator:
        """A span per tool run: ``tool.name``, ``tool.operation``, ``tool.success``, ``tool.result_size``."""
        return tool_execution(self, tool_name, operation)

    # --- propagation ------------------------------------------------------------------
    def inject_span_context(self, span: Any, carrier: MutableMapping[str, str]) -> None:
        """Write ``span``'s context into ``carrier``: W3C traceparent/baggage and Jaeger uber-trace-id."""
        if not self._active or span is None:
            return
        try:
            if type(span) is Span:  # the hot path: no intermediate SpanContext
                sc = span.otel_span.get_span_context()
                inject_fields(
                    sc.trace_id, sc.span_id, sc.trace_flags & 1 == 1, span.debug, span.baggage,
                    sc.trace_state, carrier, self._formats,
                )
                return
            context = context_of(span)
            if context is None:
                logger.debug("inject_span_context: %s is not a span", type(span).__name__)
                return
            inject_headers(context, carrier, self._formats)
        except Exception as exc:
            guard.report_error("inject_span_context", exc)

    def inject_current_context(self, carrier: MutableMapping[str, str]) -> None:
        """Inject the current span (if any) into ``carrier``: what integrations call."""
        if self._active:
            self.inject_span_context(self.get_active_span(), carrier)

    def extract_span_context(self, carrier: Any) -> SpanContext | None:
        """The remote parent in ``carrier`` (W3C first, then Jaeger), or ``None``; never raises."""
        if not self._active:
            return None
        try:
            return extract_headers(carrier, self._formats)
        except Exception as exc:
            logger.debug("extract_span_context failed: %s", exc)
            return None

    # --- lifecycle & info -------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Export every finished span now; True when all were handed to the exporter."""
        if self.processor is None or self._closed:
            return True
        try:
            return self.processor.force_flush(int(float(timeout) * 1000))
        except Exception as exc:
            guard.report_error("flush", exc)
            return False

    def close_tracer(self, timeout: float | None = None) -> None:
        """Flush and shut down; afterwards the manager is a harmless no-op (idempotent).

        Returns within ``timeout`` seconds (default: the ``shutdown_timeout`` setting, 2 s)
        plus a few milliseconds, even when the backend hangs; spans not sent by then are
        counted in ``get_tracer_info()["spans_dropped"]``.
        """
        try:
            seconds = self.config.shutdown_timeout if timeout is None else max(0.0, float(timeout))
        except (TypeError, ValueError):
            seconds = self.config.shutdown_timeout
        self.close_by(time.monotonic() + seconds)

    def close_by(self, deadline: float) -> None:
        """:meth:`close_tracer` against an absolute ``time.monotonic()`` deadline."""
        global _default_manager
        if self._closed:
            return
        self._closed = True
        self._active = False
        try:
            if self.processor is not None:
                self.processor.shutdown_until(deadline)
        except Exception as exc:
            guard.report_error("close_tracer", exc)
        if self.provider is not None:
            close_sampler(self.provider.sampler)  # stops remote sampling's poller
        with _default_lock:
            if _default_manager is self:
                _default_manager = None
        self.uninstall_log_correlation()
        if self._opentracing_tracer is not None:
            lifecycle.restore_opentracing_global(self)

    def get_tracer_info(self) -> dict[str, Any]:
        cfg = self.config
        stats = self.processor.stats() if self.processor is not None else {}
        return {
            "enabled": self.enable_tracing and not self._closed,
            "service_name": self.service_name,
            "jaeger_host": self.jaeger_host,
            "jaeger_port": self.jaeger_port,
            "tracer_initialized": self.tracer is not None and not self._closed,
            "exporter": cfg.exporter if self._active or self._closed else None,
            "endpoint": self.endpoint,
            "sampler": describe_sampler(cfg.sampler_type, cfg.sampler_param),
            "sampling": sampling_info(self.provider.sampler if self.provider is not None else None),
            "propagators": list(self._formats),
            "spans_started": self._spans_started,
            "spans_finished": self._spans_finished,
            "spans_exported": stats.get("exported", 0),
            "spans_dropped": stats.get("dropped", 0),
            "spans_queued": stats.get("queued", 0),
            "error": self.init_error,
            "last_error": guard.last_error(),
            "closed": self._closed,
        }

    # --- log correlation --------------------------------------------------------------
    def install_log_correlation(self, logger: logging.Logger | None = None) -> None:
        """Put ``trace_id``/``span_id`` (hex, empty outside a span) on log records.

        With no logger, every record in the process gets them (a record factory), so
        format strings like ``%(trace_id)s`` work for any logger.
        """
        if logger is None:
            install_record_factory()
            return
        if self._log_filter is None:
            self._log_filter = TraceIdFilter()
        if self._log_filter not in logger.filters:
            logger.addFilter(self._log_filter)

    def uninstall_log_correlation(self, logger: logging.Logger | None = None) -> None:
        if logger is not None and self._log_filter is not None:
            logger.removeFilter(self._log_filter)

    def __repr__(self) -> str:
        state = "enabled" if self._active else "disabled"
        return f"<TracingManager {self.service_name!r} {state} exporter={self.endpoint}>"
