"""jaeger-client's ``Config(config={...}, service_name=..., validate=True)``, building an
OpenTracing tracer on a :class:`~aiecs_tracing.TracingManager` (its exporter, sampler and
redaction) instead of jaeger-client's reporter.

jaeger-client's keys and what they become:

============================================  ===================================================
``sampler.type``/``param``                    ``sampler_type``/``sampler_param``: ``const`` (0/1,
                                              true/false), ``probabilistic``, ``ratelimiting``
                                              (or ``rate_limiting``); ``remote``, or no type at
                                              all, is remote sampling as jaeger-client did
``sampler.sampling_server_url``,              ``sampling_endpoint`` (default
``local_agent.sampling_host``/``sampling_port``  ``http://<reporting host>:5778/sampling``)
``sampling_refresh_interval``                 ``sampling_refresh_interval``
``local_agent.reporting_host``/``port``       ``jaeger_host``/``jaeger_port`` (else
                                              ``JAEGER_AGENT_HOST``/``PORT``, as jaeger-client)
``tags`` (and ``JAEGER_TAGS``)                ``process_tags``
``enabled``                                   ``enable_tracing``
``max_tag_value_length``                      ``max_tag_value_length``
``reporter_batch_size``/``queue_size``        ``max_export_batch_size``/``max_queue_size``
``reporter_flush_interval`` (seconds)         ``schedule_delay_millis``
``trace_id_header``/``baggage_header_prefix`` the Jaeger header names the tracer writes and reads
``logging``                                   each finished span logged on ``jaeger_tracing``
``propagation: "b3"``                         not supported: a warning, W3C + Jaeger kept
``generate_128bit_trace_id``                  accepted; trace ids are always 128-bit
``throttler``, ``max_traceback_length``,      accepted and ignored (a warning for ``throttler``)
``metrics``, ``max_operations``,
``debug_id_header``
============================================  ===================================================

Unknown keys are a warning (jaeger-client's ``validate=True`` raised ``ValueError``), so a
dict copied from a service never stops it from starting; an unknown sampler type still
raises ``ValueError`` from ``new_tracer()``, as jaeger-client's did. Extra keyword arguments
go to the :class:`~aiecs_tracing.TracingManager` (``exporter="memory"``, ``propagators=...``).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

from opentelemetry.sdk.trace import SpanProcessor

from ...core.manager import TracingManager
from ..opentracing import OpenTracingTracer, install_global

logger = logging.getLogger("jaeger_tracing")  # jaeger-client's logger name

DEFAULT_SAMPLING_PORT = 5778
KNOWN_KEYS = frozenset({
    "logging", "local_agent", "sampler", "tags", "enabled", "reporter_batch_size", "reporter_queue_size",
    "propagation", "max_tag_value_length", "max_traceback_length", "reporter_flush_interval",
    "sampling_refresh_interval", "trace_id_header", "generate_128bit_trace_id", "baggage_header_prefix",
    "service_name", "throttler", "metrics", "max_operations", "debug_id_header",
})
_TRUE = {"true", "1", "yes", "y", "on", "t"}


def get_boolean(value: Any, default: bool) -> bool:
    """jaeger-client's reading of a boolean option (strings and numbers too)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return default


class Config:
    """jaeger-client's ``Config``; :meth:`new_tracer` and :meth:`initialize_tracer` return an
    OpenTracing tracer (``tracer.manager`` is the :class:`~aiecs_tracing.TracingManager`)."""

    _initialized = False
    _initialized_lock = threading.Lock()

    def __init__(
        self,
        config: dict[str, Any],
        metrics: Any = None,
        service_name: str | None = None,
        metrics_factory: Any = None,
        validate: bool = False,
        scope_manager: Any = None,
        **manager_options: Any,
    ) -> None:
        self.config = config
        unknown = sorted(str(k) for k in config if k not in KNOWN_KEYS)
        if unknown:
            logger.warning("Unexpected keys found in config: %s (ignored)", ",".join(unknown))
        self._service_name: str = cast(str, config.get("service_name", service_name))  # not empty: checked below
        if not self._service_name:
            raise ValueError("service_name required in the config or param")
        if scope_manager is not None:
            logger.warning("scope_manager ignored: scopes live in OpenTelemetry's context (contextvars)")
        if config.get("throttler") is not None:
            logger.warning("throttler is not supported; ignored")
        if config.get("propagation") == "b3":
            logger.warning("propagation 'b3' is not supported; W3C traceparent and uber-trace-id are used")
        self._manager_options = manager_options

    @staticmethod
    def initialized() -> bool:
        with Config._initialized_lock:
            return Config._initialized

    # --- jaeger-client's accessors --------------------------------------------------------
    @property
    def service_name(self) -> str:
        return self._service_name

    @property
    def enabled(self) -> bool:
        return get_boolean(self.config.get("enabled", True), True)

    @property
    def logging(self) -> bool:
        return get_boolean(self.config.get("logging", False), False)

    @property
    def trace_id_header(self) -> str:
        return cast(str, self.config.get("trace_id_header", "uber-trace-id"))

    @property
    def baggage_header_prefix(self) -> str:
        return cast(str, self.config.get("baggage_header_prefix", "uberctx-"))

    def local_agent_group(self) -> dict[str, Any] | None:
        return self.config.get("local_agent", None)

    # --- tracers ----------------------------------------------------------------------------
    def initialize_tracer(self, io_loop: Any = None) -> OpenTracingTracer | None:
        """A new tracer, installed as ``opentracing.tracer``; only the first call in a process does anything."""
        with Config._initialized_lock:
            if Config._initialized:
                logger.warning("Jaeger tracer already initialized, skipping")
                return None
            Config._initialized = True
        tracer = self.new_tracer(io_loop)
        install_global(tracer.manager, force=True)
        logger.info("opentracing.tracer initialized to %s[app_name=%s]", tracer, self.service_name)
        return tracer

    def new_tracer(self, io_loop: Any = None) -> OpenTracingTracer:
        """A new tracer on a new manager; ``opentracing.tracer`` is left alone."""
        options = self.manager_options()
        manager = TracingManager(**options)
        tracer = OpenTracingTracer(
            manager, trace_id_header=self.trace_id_header, baggage_header_prefix=self.baggage_header_prefix
        )
        manager._opentracing_tracer = tracer  # tracing.opentracing_tracer is this one
        if self.logging and manager.provider is not None:
            manager.provider.add_span_processor(_LoggingProcessor(self.service_name))
        return tracer

    def manager_options(self) -> dict[str, Any]:
        """The :class:`~aiecs_tracing.TracingManager` arguments this configuration means."""
        cfg = self.config
        agent = self.local_agent_group() or {}
        options: dict[str, Any] = {
            "service_name": self.service_name,
            "enable_tracing": self.enabled,
            "set_global_opentracing": False,  # new_tracer() never sets it; initialize_tracer() does
        }
        if agent.get("reporting_host") is not None:
            options["jaeger_host"] = str(agent["reporting_host"])
        if agent.get("reporting_port") is not None:
            options["jaeger_port"] = agent["reporting_port"]
        options.update(self._sampler_options(agent))
        tags = cfg.get("tags")
        if tags:
            options["process_tags"] = {str(k): str(v) for k, v in dict(tags).items()}
        if cfg.get("max_tag_value_length") is not None:
            options["max_tag_value_length"] = int(cfg["max_tag_value_length"])
        if cfg.get("reporter_queue_size") is not None:
            options["max_queue_size"] = int(cfg["reporter_queue_size"])
        if cfg.get("reporter_batch_size") is not None:
            options["max_export_batch_size"] = int(cfg["reporter_batch_size"])
        elif "max_queue_size" in options:
            options["max_export_batch_size"] = min(512, options["max_queue_size"])
        if "max_export_batch_size" in options and "max_queue_size" not in options:
            options["max_queue_size"] = max(2048, options["max_export_batch_size"])
        if cfg.get("reporter_flush_interval") is not None:
            options["schedule_delay_millis"] = max(1, int(float(cfg["reporter_flush_interval"]) * 1000))
        if cfg.get("sampling_refresh_interval") is not None:
            options["sampling_refresh_interval"] = cfg["sampling_refresh_interval"]
        if "generate_128bit_trace_id" in cfg and not get_boolean(cfg["generate_128bit_trace_id"], False):
            logger.debug("generate_128bit_trace_id=false: trace ids are 128-bit anyway (jaeger-client peers read them)")
        options.update(self._manager_options)
        return options

    def _sampler_options(self, agent: dict[str, Any]) -> dict[str, Any]:
        sampler = self.config.get("sampler") or {}
        if not isinstance(sampler, dict):  # a jaeger_client Sampler instance
            return _from_sampler_object(sampler)
        sampler_type = sampler.get("type")
        param: Any = sampler.get("param")
        if sampler_type == "const":
            return {"sampler_type": "const", "sampler_param": 1 if get_boolean(param, False) else 0}
        if sampler_type == "probabilistic":
            return {"sampler_type": "probabilistic", "sampler_param": float(param)}
        if sampler_type in ("ratelimiting", "rate_limiting"):
            return {"sampler_type": "ratelimiting", "sampler_param": float(param)}
        if sampler_type not in (None, "", "remote"):
            raise ValueError(f"Unknown sampler type {sampler_type}")
        # jaeger-client: no sampler type means remote sampling from the local agent
        url = sampler.get("sampling_server_url")
        if not url:
            host = agent.get("sampling_host") or agent.get("reporting_host") or _env_agent_host()
            port = agent.get("sampling_port") or DEFAULT_SAMPLING_PORT
            url = f"http://{host}:{int(port)}/sampling"
        elif "://" not in str(url):
            url = f"http://{url}"
        options: dict[str, Any] = {"sampler_type": "remote", "sampling_endpoint": str(url)}
        if param is not None:
            options["sampler_param"] = float(param)
        return options


def _env_agent_host() -> str:
    import os

    return os.environ.get("JAEGER_AGENT_HOST", "localhost")


def _from_sampler_object(sampler: Any) -> dict[str, Any]:
    """jaeger_client's ConstSampler/ProbabilisticSampler/RateLimitingSampler passed as ``sampler``."""
    name = type(sampler).__name__
    if name == "ConstSampler":
        return {"sampler_type": "const", "sampler_param": 1 if getattr(sampler, "decision", True) else 0}
    if name == "ProbabilisticSampler":
        return {"sampler_type": "probabilistic", "sampler_param": float(sampler.rate)}
    if name == "RateLimitingSampler":
        return {"sampler_type": "ratelimiting", "sampler_param": float(sampler.traces_per_second)}
    raise ValueError(f"Unknown sampler {name}")


class _LoggingProcessor(SpanProcessor):
    """``logging: True``: jaeger-client's LoggingReporter, one INFO line per finished span."""

    def __init__(self, service_name: str) -> None:
        self.service_name = service_name

    def on_end(self, span: Any) -> None:
        try:
            context = span.get_span_context() if hasattr(span, "get_span_context") else span.context
            parent = getattr(span, "parent", None)
            logger.info(
                "Reporting span %x:%x:%x:%x %s.%s", context.trace_id, context.span_id,
                parent.span_id if parent is not None else 0, int(context.trace_flags),
                self.service_name, span.name,
            )
        except Exception:  # never break the export path
            pass
