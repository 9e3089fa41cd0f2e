"""TracingManager: the seed's whole API on an OpenTelemetry TracerProvider of its own.

Each manager owns its provider, resource, sampler, processor and exporter, so two managers
in one process keep their own ``service.name`` (the original silently traced nothing for
the second one). The first enabled manager becomes the process default used by the
integrations and, unless another is set, the OpenTelemetry global provider, so spans
from any other OpenTelemetry instrumentation join the same traces.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanKind
from opentelemetry.trace.propagation import _SPAN_KEY

from .. import __version__
from . import guard
from .attributes import result_size, sanitize_tags
from .config import TracingConfig, resolve_config
from .decorators import traced
from .exporters.factory import build_exporter
from .light import LightSource, start_light
from .processor import BoundedBatchProcessor
from .propagation import extract_headers, inject_fields, inject_headers
from .redaction import register_secret_keys
from .resources import local_hostname
from .sampling import close_sampler, describe_sampler, sampler_for, sampling_info
from .span import NoopSpan, Span, SpanContext, to_span_kind

logger = logging.getLogger("aiecs_tracing")

_WRAPPER_KEY = otel_context.create_key("aiecs-tracing-span")
# The runtime context's own detach raises instead of logging, which is what we want here.
_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_detach_token: Callable[[Any], None] = _runtime.detach if _runtime is not None else otel_context.detach
# OpenTelemetry's default runtime context is one ContextVar: the per-request attach/detach read and
# set it directly (C calls) instead of through two Python layers each way. Tokens are the same
# ContextVar tokens either way; any other runtime context (OTEL_PYTHON_CONTEXT) goes through the API.
_context_var: contextvars.ContextVar[Context] | None = getattr(_runtime, "_current_context", None)
if type(_runtime).__name__ != "ContextVarsRuntimeContext" or not isinstance(_context_var, contextvars.ContextVar):
    _context_var = None
_default_lock = threading.Lock()
_default_manager: TracingManager | None = None
_all_managers: weakref.WeakSet[TracingManager] = weakref.WeakSet()


def get_tracing_manager() -> TracingManager | None:
    """The process default manager (the first enabled one), used by integrations."""
    return _default_manager


def set_tracing_manager(manager: TracingManager | None) -> None:
    """Make ``manager`` the process default (``None`` clears it)."""
    global _default_manager
    with _default_lock:
        _default_manager = manager


class TracingManager:
    """Distributed tracing for one service: spans, decorators, propagation, export."""

    def __init__(
        self,
        service_name: str | None = None,
        jaeger_host: str | None = None,
        jaeger_port: int | str | None = None,
        enable_tracing: bool | str | None = None,
        **options: Any,
    ) -> None:
        # Any OpenTelemetry SpanExporter instance may replace the configured one.
        self._custom_exporter = options.pop("span_exporter", None)
        self.config: TracingConfig = resolve_config(service_name, jaeger_host, jaeger_port, enable_tracing, **options)
        cfg = self.config
        self.service_name = cfg.service_name
        self.jaeger_host = cfg.jaeger_host
        self.jaeger_port = cfg.jaeger_port
        self.tracer: trace.Tracer | None = None
        self._closed = False
        self._active = False
        self.enable_tracing = cfg.enabled
        self.provider: TracerProvider | None = None
        self.processor: BoundedBatchProcessor | None = None
        self.exporter: Any = None
        self.endpoint = "none"
        self.init_error: str | None = cfg.error
        self._spans_started = 0
        self._spans_finished = 0
        self._formats = cfg.propagators
        self._log_filter: logging.Filter | None = None
        self._light_source: LightSource | Literal[False] | None = None
        self._opentracing_tracer: Any = None  # tracing.opentracing_tracer, made on first use
        if cfg.error:
            logger.warning("Failed to initialize Jaeger tracer: %s; tracing is disabled", cfg.error)
        elif cfg.enabled:
            self._init_tracer()
        if self._active:
            register_secret_keys(cfg.secret_keys)  # headers and queries in the integrations too
            _all_managers.add(self)
            _register_fork_flush(self)
            if cfg.set_default_manager:
                global _default_manager
                with _default_lock:
                    if _default_manager is None:
                        _default_manager = self
            if cfg.set_global_provider and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
                trace.set_tracer_provider(self.provider)  # type: ignore[arg-type]
            if cfg.set_global_opentracing:
                _install_global_opentracing(self)

    # --- set-up -----------------------------------------------------------------------
    def _init_tracer(self) -> None:
        cfg = self.config
        try:
            attributes: dict[str, Any] = {**cfg.resource_attributes, **cfg.process_tags}
            attributes["service.name"] = cfg.service_name
            attributes.setdefault("host.name", local_hostname())
            resource = Resource.create(attributes)
            # shutdown_on_exit=False: the SDK's own exit hook would spend its 5 s default in the
            # flush and again in the join, per manager; ours (below) shares one deadline.
            provider = TracerProvider(
                resource=resource,
                sampler=sampler_for(cfg),
                shutdown_on_exit=False,
            )
            if self._custom_exporter is not None:
                exporter, self.endpoint = self._custom_exporter, type(self._custom_exporter).__name__
            else:
                exporter, self.endpoint = build_exporter(cfg)
            if exporter is not None:
                self.processor = BoundedBatchProcessor(
                    exporter,
                    max_queue_size=cfg.max_queue_size,
                    max_export_batch_size=cfg.max_export_batch_size,
                    schedule_delay_millis=cfg.schedule_delay_millis,
                    shutdown_timeout=cfg.shutdown_timeout,
                )
                provider.add_span_processor(self.processor)
            self.exporter = exporter
            self.provider = provider
            self.tracer = provider.get_tracer("aiecs_tracing", __version__)
            self._active = self._enable_flag
        except Exception as exc:
            self.init_error = f"{type(exc).__name__}: {exc}"
            self.enable_tracing = False
            self.tracer = None
            logger.warning("Failed to initialize Jaeger tracer: %s; tracing is disabled", self.init_error)

    @property
    def enabled(self) -> bool:
        return self._active

    @property
    def opentracing_tracer(self) -> Any:
        """An OpenTracing ``Tracer`` on this manager's spans (needs the ``opentracing`` package).

        See :mod:`aiecs_tracing.compat.opentracing`; the first enabled manager also installs it
        as ``opentracing.tracer`` unless one is set (``set_global_opentracing=False`` opts out).
        """
        tracer = self._opentracing_tracer
        if tracer is None:
            from ..compat.opentracing import OpenTracingTracer

            tracer = self._opentracing_tracer = OpenTracingTracer(self)
        return tracer

    @property
    def enable_tracing(self) -> bool:
        """The seed's switch; setting it to False stops tracing at once (True resumes it)."""
        return self._enable_flag

    @enable_tracing.setter
    def enable_tracing(self, value: bool) -> None:
        self._enable_flag = bool(value)
        self._active = self._enable_flag and self.tracer is not None and not self._closed

    # --- spans ------------------------------------------------------------------------
    def _parent_context(self, parent: Any) -> tuple[Context | None, dict[str, str], bool]:
        """(OpenTelemetry context to start in, baggage to inherit, debug flag) for ``parent``."""
        if parent is None:
            current = otel_context.get_current()
            wrapper: Span | None = current.get(_WRAPPER_KEY)  # type: ignore[assignment]  # our Span, set by _attach
            if wrapper is not None:
                return None, dict(wrapper.baggage), wrapper.debug
            return None, {}, False
        if isinstance(parent, Span):
            return trace.set_span_in_context(parent._otel, Context()), dict(parent.baggage), parent.debug
        if isinstance(parent, SpanContext):
            span = NonRecordingSpan(parent.to_otel())
            return trace.set_span_in_context(span, Context()), dict(parent.baggage), parent.debug
        if isinstance(parent, trace.Span):
            return trace.set_span_in_context(parent, Context()), {}, False
        if isinstance(parent, trace.SpanContext):
            return trace.set_span_in_context(NonRecordingSpan(parent), Context()), {}, False
        if isinstance(parent, Context):
            wrapper = parent.get(_WRAPPER_KEY)  # type: ignore[assignment]  # our Span, set by _attach
            return parent, (dict(wrapper.baggage) if wrapper else {}), (wrapper.debug if wrapper else False)
        trace_id, span_id = getattr(parent, "trace_id", None), getattr(parent, "span_id", None)
        if isinstance(trace_id, int) and isinstance(span_id, int) and trace_id and span_id:
            # jaeger-client / OpenTracing span contexts, or spans exposing ``.context``
            flags = getattr(parent, "flags", 1)
            sc = SpanContext(trace_id, span_id, bool(flags & 1), bool(flags & 2), dict(getattr(parent, "baggage", {}) or {}))
            return self._parent_context(sc)
        inner = getattr(parent, "context", None)
        if inner is not None and inner is not parent:
            return self._parent_context(inner)
        logger.debug("start_span: parent of type %s not understood; using the current span", type(parent).__name__)
        return self._parent_context(None)

    def _start(
        self,
        operation_name: str,
        attributes: Mapping[str, Any] | None,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: Any = None,
        start_time: int | None = None,
        links: Any = None,
    ) -> Span:
        """The hot path behind every span: attributes are already attribute-safe."""
        ctx, baggage, debug = self._parent_context(parent)
        otel_span = self.tracer.start_span(  # type: ignore[union-attr]
            operation_name, context=ctx, kind=kind, attributes=attributes, start_time=start_time, links=links
        )
        self._spans_started += 1
        return Span(otel_span, self, operation_name, baggage, debug)

    def start_light_span(
        self,
        operation_name: str,
        attributes: dict[str, Any],
        kind: SpanKind = SpanKind.INTERNAL,
        parent_span: Any = None,
    ) -> Span | None:
        """The integrations' hot-path span: same result as :meth:`start_span`, far cheaper.

        ``attributes`` must hold plain values (str, bool, int, float) and is kept by the
        span. Not made current; see :mod:`aiecs_tracing.core.light` for what differs.
        """
        if not self._active:
            return None
        try:
            return self._start_fast(operation_name, attributes, kind, parent_span)
        except Exception as exc:
            guard.report_error("start_light_span", exc)
            return None

    def _start_fast(
        self, operation_name: str, attributes: dict[str, Any], kind: SpanKind, parent_span: Any = None
    ) -> Span | None:
        """The one fast path of every span (seed API, decorators, integrations); raises on failure.

        A light span when the SDK has the shape :class:`LightSource` checks for, else the SDK's
        own span (``attributes`` is kept by the span: pass a dict of its own).
        """
        source = self._light_source
        if source is None:
            try:
                source = self._light_source = LightSource(self)
            except Exception:  # another SDK shape: regular spans from now on
                source = self._light_source = False
        if source is False:
            return self._start(operation_name, attributes, kind, parent_span)
        ctx, baggage, debug = self._parent_context(parent_span)
        if ctx is None:
            ctx = otel_context.get_current()
        parent = trace.get_current_span(ctx).get_span_context()
        light = start_light(source, operation_name, kind, attributes, ctx, parent if parent.is_valid else None)
        self._spans_started += 1
        return Span(light, self, operation_name, baggage, debug)

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
                return self._start_fast(operation_name, attributes, to_span_kind(kind), parent)
            return self._start(
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

    def get_active_span(self) -> Span | None:
        """The current span as our facade (wrapping a foreign OpenTelemetry span if needed)."""
        if not self._active:
            return None
        current = otel_context.get_current()
        otel_span = trace.get_current_span(current)
        if not otel_span.get_span_context().is_valid:
            return None
        wrapper: Span | None = current.get(_WRAPPER_KEY)  # type: ignore[assignment]  # our Span, set by _attach
        if wrapper is not None and wrapper._otel is otel_span:
            return wrapper
        return Span(otel_span, self, getattr(otel_span, "name", ""))

    # --- current-span management ------------------------------------------------------
    def _attach(self, span: Span) -> object:
        var = _context_var
        new = Context(var.get() if var is not None else otel_context.get_current())
        dict.__setitem__(new, _SPAN_KEY, span._otel)
        dict.__setitem__(new, _WRAPPER_KEY, span)
        return var.set(new) if var is not None else otel_context.attach(new)

    def _detach(self, token: object) -> None:
        try:
            if _context_var is not None:
                _context_var.reset(token)  # type: ignore[arg-type]
            else:
                _detach_token(token)
        except Exception:
            pass  # a token from another context (e.g. a generator finalised elsewhere)

    # Public names for integrations that manage the current span across callbacks.
    def attach(self, span: Span | trace.Span) -> object:
        """Make ``span`` current until :meth:`detach` is called with the returned token."""
        if not isinstance(span, Span):
            span = Span(span, self, getattr(span, "name", ""))
        return self._attach(span)

    def detach(self, token: object) -> None:
        self._detach(token)

    @contextmanager
    def activate(self, span: Span | None) -> Iterator[Span | None]:
        """Make ``span`` current inside the block (it is not finished on exit)."""
        if span is None or not self._active:
            yield span
            return
        token = self.attach(span)
        try:
            yield span
        finally:
            self._detach(token)

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
        token = self._attach(span)
        try:
            yield span
        except BaseException as exc:
            span.record_exception(exc)
            raise
        finally:
            self._detach(token)
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
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A CLIENT span for a database call, with the seed's tags and OpenTelemetry's."""
        system = db_system or self.config.db_system
        tags: dict[str, Any] = {
            "component": "database",
            "db.statement.type": operation,
            "db.operation.name": operation,
        }
        if table:
            tags["db.table"] = table
            tags["db.collection.name"] = table
        if query:
            tags["db.statement"] = query
            tags["db.query.text"] = query
        if system:
            tags["db.system"] = system
            tags["db.system.name"] = system
        name = f"{operation} {table}" if table else f"db.{operation}"
        return traced(self, name, tags, kind=SpanKind.CLIENT)

    def trace_external_call(
        self, service_name: str, endpoint: str | None = None, *, method: str | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A CLIENT span for a call to another service; the status comes from the real response."""
        tags: dict[str, Any] = {"component": "external_call", "peer.service": service_name}
        if endpoint:
            tags["http.url"] = endpoint
            tags["url.path" if endpoint.startswith("/") else "url.full"] = endpoint
        if method:
            tags["http.method"] = method
            tags["http.request.method"] = method
        name = f"{service_name} {endpoint}" if endpoint else f"call {service_name}"
        return traced(self, name, tags, kind=SpanKind.CLIENT, on_result=_record_response_status)

    def trace_tool_execution(self, tool_name: str, operation: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A span per tool run: ``tool.name``, ``tool.operation``, ``tool.success``, ``tool.result_size``."""
        tags = {
            "component": "tool",
            "tool.name": tool_name,
            "tool.operation": operation,
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool_name,
        }
        return traced(self, f"{tool_name}.{operation}", tags, on_result=_record_result_size, success_key="tool.success")

    # --- propagation ------------------------------------------------------------------
    def _context_of(self, span: Any) -> SpanContext | None:
        if isinstance(span, Span):
            return span.context
        if isinstance(span, SpanContext):
            return span
        if isinstance(span, trace.Span):
            sc = span.get_span_context()
            return SpanContext(sc.trace_id, sc.span_id, bool(sc.trace_flags & 1), False, {}, sc.trace_state)
        return None

    def inject_span_context(self, span: Any, carrier: MutableMapping[str, str]) -> None:
        """Write ``span``'s context into ``carrier``: W3C traceparent/baggage and Jaeger uber-trace-id."""
        if not self._active or span is None:
            return
        try:
            if type(span) is Span:  # the hot path: no intermediate SpanContext
                sc = span._otel.get_span_context()
                inject_fields(
                    sc.trace_id, sc.span_id, sc.trace_flags & 1 == 1, span.debug, span.baggage,
                    sc.trace_state, carrier, self._formats,
                )
                return
            context = self._context_of(span)
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
        self._close_until(time.monotonic() + seconds)

    def _close_until(self, deadline: float) -> None:
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
            _restore_global_opentracing(self)

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
            _install_record_factory()
            return
        if self._log_filter is None:
            self._log_filter = _TraceIdFilter()
        if self._log_filter not in logger.filters:
            logger.addFilter(self._log_filter)

    def uninstall_log_correlation(self, logger: logging.Logger | None = None) -> None:
        if logger is not None and self._log_filter is not None:
            logger.removeFilter(self._log_filter)

    def __repr__(self) -> str:
        state = "enabled" if self._active else "disabled"
        return f"<TracingManager {self.service_name!r} {state} exporter={self.endpoint}>"


def _install_global_opentracing(manager: TracingManager) -> None:
    """``opentracing.tracer`` as jaeger-client set it; nothing when opentracing is not installed."""
    try:
        import opentracing  # noqa: F401
    except ImportError:
        return
    try:
        from ..compat.opentracing import install_global

        install_global(manager)
    except Exception as exc:
        guard.report_error("opentracing global tracer", exc)


def _restore_global_opentracing(manager: TracingManager) -> None:
    try:
        from ..compat.opentracing import restore_global

        restore_global(manager)
    except Exception as exc:
        guard.report_error("opentracing global tracer", exc)


def _record_response_status(span: Span, result: Any) -> None:
    """``trace_external_call``'s hook: the real status of the returned response, if any."""
    status = getattr(result, "status_code", None)
    if status is None:
        status = getattr(result, "status", None)
    if isinstance(status, bool) or not isinstance(status, int):
        return
    otel = span._otel
    otel.set_attribute("http.status_code", status)
    otel.set_attribute("http.response.status_code", status)
    if status >= 400:
        otel.set_attribute("success", False)
        span.set_status_error(f"HTTP {status}")
        otel.set_attribute("error.type", str(status))


def _record_result_size(span: Span, result: Any) -> None:
    size = result_size(result)
    if size is not None:
        span._otel.set_attribute("tool.result_size", size)


class _TraceIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


def _stamp(record: logging.LogRecord) -> None:
    sc = trace.get_current_span().get_span_context()
    if sc.is_valid:
        record.trace_id = format(sc.trace_id, "032x")
        record.span_id = format(sc.span_id, "016x")
    else:
        record.trace_id = ""
        record.span_id = ""


_factory_installed = False


def _install_record_factory() -> None:
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            _stamp(record)
        except Exception:
            pass
        return record

    logging.setLogRecordFactory(factory)




def _register_fork_flush(manager: TracingManager) -> None:
    """Flush in ``multiprocessing`` children too: they leave with ``os._exit`` (no atexit).

    A child's ``Process._bootstrap`` clears the finalizers it inherited and then runs the
    after-fork hooks registered here, which is where the exit flush is registered.
    """
    try:
        import multiprocessing.util

        multiprocessing.util.register_after_fork(manager, _register_child_finalizer)
    except Exception as exc:
        guard.report_error("after fork", exc)


def _register_child_finalizer(manager: TracingManager) -> None:
    try:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _flush_ref, args=(weakref.ref(manager),), exitpriority=10)
    except Exception as exc:
        guard.report_error("after fork", exc)


def _flush_ref(ref: weakref.ref[TracingManager]) -> None:
    manager = ref()
    if manager is not None and manager._active:
        manager.flush(timeout=manager.config.shutdown_timeout)


@atexit.register
def _close_all_at_exit() -> None:
    """One exit hook for every manager: all flushed in parallel against one deadline.

    The deadline is the longest ``shutdown_timeout`` among open managers (2 s by default),
    counted once for the whole process: three managers whose backend hangs cost 2 s, not 6.
    Every manager's export thread is asked for its final flush first, then each is waited
    for with what is left of the deadline; no thread is started (Python 3.12.0-3.12.1 refuse
    new threads in exit hooks).
    """
    managers = [m for m in list(_all_managers) if not m._closed]
    if not managers:
        return
    deadline = time.monotonic() + max(m.config.shutdown_timeout for m in managers)
    for manager in managers:
        try:
            if manager.processor is not None:
                manager.processor.prepare_shutdown()
        except Exception:
            pass
    for manager in managers:
        try:
            manager._close_until(deadline)
        except Exception:
            pass
