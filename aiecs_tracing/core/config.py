"""Every knob, resolved once: argument, else environment, else default.

The seed's variables (``JAEGER_AGENT_HOST``, ``JAEGER_AGENT_PORT``, ``JAEGER_ENABLE_TRACING``,
``SERVICE_NAME``), jaeger-client's (``JAEGER_SAMPLER_TYPE``, ``JAEGER_SAMPLER_PARAM``,
``JAEGER_TAGS``) and OpenTelemetry's (``OTEL_*``) all land here, so nothing else in the
package reads the environment. A bad value never raises: it becomes ``error`` and the
manager starts disabled, naming the culprit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config_values import (
    ConfigError,
    parse_bool,
    parse_duration_seconds,
    parse_float,
    parse_http_url,
    parse_key_list,
    parse_key_values,
    parse_port,
    parse_seconds,
    parse_string_mapping,
)

__all__ = [
    "ConfigError",
    "TracingConfig",
    "parse_bool",
    "parse_duration_seconds",
    "parse_key_values",
    "parse_port",
    "parse_seconds",
    "resolve_config",
    "validate_sampler",
]

DEFAULT_SERVICE_NAME = "service_executor"
DEFAULT_AGENT_HOST = "localhost"
DEFAULT_AGENT_PORT = 6831
DEFAULT_MAX_TAG_VALUE_LENGTH = 1024
DEFAULT_MAX_ARGS = 32
#: Seconds the exit flush (queue and in-flight export together) may hold the process, all managers at once.
DEFAULT_SHUTDOWN_TIMEOUT = 2.0
DEFAULT_SECRET_KEYS = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "auth",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "session",
    "credential",
    "private_key",
    "pass",
    "jwt",
    "bearer",
    "access_key",
    "encryption_key",
    "signing_key",
    "signature",
)
EXPORTERS = ("udp", "otlp", "console", "memory", "none")
SAMPLER_TYPES = ("const", "probabilistic", "ratelimiting", "remote")
DEFAULT_SAMPLING_ENDPOINT = "http://localhost:5778/sampling"
DEFAULT_SAMPLING_REFRESH_SECONDS = 60.0
DEFAULT_REMOTE_INITIAL_RATE = 0.001  # jaeger-client's and OpenTelemetry's initial sampling rate


@dataclass
class TracingConfig:
    service_name: str = DEFAULT_SERVICE_NAME
    enabled: bool = True
    jaeger_host: str = DEFAULT_AGENT_HOST
    jaeger_port: int = DEFAULT_AGENT_PORT
    exporter: str = "udp"
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = field(default_factory=dict)
    sampler_type: str = "const"
    sampler_param: float = 1.0
    sampling_endpoint: str = DEFAULT_SAMPLING_ENDPOINT
    sampling_refresh_interval: float = DEFAULT_SAMPLING_REFRESH_SECONDS
    resource_attributes: dict[str, str] = field(default_factory=dict)
    process_tags: dict[str, str] = field(default_factory=dict)
    propagators: tuple[str, ...] = ("tracecontext", "baggage", "jaeger")
    capture_args: bool = True
    max_tag_value_length: int = DEFAULT_MAX_TAG_VALUE_LENGTH
    max_args: int = DEFAULT_MAX_ARGS
    secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    db_system: str | None = None
    set_global_provider: bool = True
    set_default_manager: bool = True
    set_global_opentracing: bool = True  # the first enabled manager becomes opentracing.tracer
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    schedule_delay_millis: int = 1000
    export_timeout_millis: int = 10_000
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    error: str | None = None


def _sampler_from_otel(name: str, arg: str | None) -> tuple[str, float]:
    """Map OTEL_TRACES_SAMPLER onto our (always parent-based) sampler types."""
    name = name.strip().lower()
    mapping = {
        "always_on": ("const", 1.0),
        "parentbased_always_on": ("const", 1.0),
        "always_off": ("const", 0.0),
        "parentbased_always_off": ("const", 0.0),
    }
    if name in mapping:
        return mapping[name]
    if name in ("jaeger_remote", "parentbased_jaeger_remote"):
        rate = _otel_remote_arg(arg).get("initialSamplingRate")
        return "remote", parse_float("OTEL_TRACES_SAMPLER_ARG initialSamplingRate", rate or DEFAULT_REMOTE_INITIAL_RATE)
    if name in ("traceidratio", "parentbased_traceidratio"):
        return "probabilistic", parse_float("OTEL_TRACES_SAMPLER_ARG", arg if arg is not None else "1.0")
    raise ConfigError(f"OTEL_TRACES_SAMPLER={name!r} is not supported")


def _otel_remote_arg(arg: str | None) -> dict[str, str]:
    """``endpoint=<url>,pollingIntervalMs=<n>,initialSamplingRate=<r>`` (OpenTelemetry's jaeger_remote)."""
    values = parse_key_values("OTEL_TRACES_SAMPLER_ARG", arg or "")
    unknown = sorted(set(values) - {"endpoint", "pollingIntervalMs", "initialSamplingRate"})
    if unknown:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: unknown key(s) {', '.join(unknown)} for jaeger_remote")
    return values


def _resolve_remote(cfg: TracingConfig, env: Mapping[str, str], options: dict[str, Any], otel: bool) -> None:
    """Endpoint and refresh interval: argument > OTEL_TRACES_SAMPLER_ARG > JAEGER_* > default."""
    endpoint = options.pop("sampling_endpoint", None)
    interval = options.pop("sampling_refresh_interval", None)
    if endpoint is not None:
        cfg.sampling_endpoint = parse_http_url("sampling_endpoint", endpoint)
    if interval is not None:
        cfg.sampling_refresh_interval = parse_duration_seconds("sampling_refresh_interval", interval)
    if cfg.sampler_type != "remote":
        return
    otel_arg = _otel_remote_arg(env.get("OTEL_TRACES_SAMPLER_ARG")) if otel else {}
    if endpoint is None:
        if otel_arg.get("endpoint"):
            cfg.sampling_endpoint = parse_http_url("OTEL_TRACES_SAMPLER_ARG endpoint", otel_arg["endpoint"])
        elif env.get("JAEGER_SAMPLING_ENDPOINT"):
            cfg.sampling_endpoint = parse_http_url("JAEGER_SAMPLING_ENDPOINT", env["JAEGER_SAMPLING_ENDPOINT"])
        elif env.get("JAEGER_SAMPLER_MANAGER_HOST_PORT"):
            host_port = env["JAEGER_SAMPLER_MANAGER_HOST_PORT"].strip()
            url = host_port if "://" in host_port else f"http://{host_port}/sampling"
            cfg.sampling_endpoint = parse_http_url("JAEGER_SAMPLER_MANAGER_HOST_PORT", url)
    if interval is None:
        if otel_arg.get("pollingIntervalMs"):
            millis = parse_float("OTEL_TRACES_SAMPLER_ARG pollingIntervalMs", otel_arg["pollingIntervalMs"])
            cfg.sampling_refresh_interval = parse_duration_seconds("OTEL_TRACES_SAMPLER_ARG pollingIntervalMs",
                                                                   millis / 1000)
        elif env.get("JAEGER_SAMPLER_REFRESH_INTERVAL"):
            cfg.sampling_refresh_interval = parse_duration_seconds(
                "JAEGER_SAMPLER_REFRESH_INTERVAL", env["JAEGER_SAMPLER_REFRESH_INTERVAL"]
            )


def validate_sampler(sampler_type: str, param: float) -> None:
    if sampler_type not in SAMPLER_TYPES:
        raise ConfigError(f"sampler type {sampler_type!r} is not one of {', '.join(SAMPLER_TYPES)}")
    if sampler_type == "const" and param not in (0, 1):
        raise ConfigError(f"const sampler param {param!r} must be 0 or 1")
    if sampler_type == "probabilistic" and not 0.0 <= param <= 1.0:
        raise ConfigError(f"probabilistic sampler param {param!r} is out of range 0..1")
    if sampler_type == "remote" and not 0.0 <= param <= 1.0:
        raise ConfigError(f"remote sampler initial sampling rate {param!r} is out of range 0..1")
    if sampler_type == "ratelimiting" and not param >= 0:
        raise ConfigError(f"ratelimiting sampler param {param!r} must be >= 0 spans per second")


def _otlp_traces_endpoint(env: Mapping[str, str]) -> str | None:
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return base.rstrip("/") + "/v1/traces"
    return None


def resolve_config(
    service_name: str | None = None,
    jaeger_host: str | None = None,
    jaeger_port: int | str | None = None,
    enable_tracing: bool | str | None = None,
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> TracingConfig:
    """Build the configuration; never raises (a bad value sets ``error`` and disables)."""
    env = os.environ if env is None else env
    cfg = TracingConfig()
    try:
        _resolve_into(cfg, service_name, jaeger_host, jaeger_port, enable_tracing, env, options)
    except ConfigError as exc:
        cfg.error = str(exc)
        cfg.enabled = False
    return cfg


def _pick(argument: Any, env: Mapping[str, str], *names: str) -> tuple[str | None, Any]:
    """Argument first, else the first environment variable that is set (even to '')."""
    if argument is not None:
        return "argument", argument
    for name in names:
        if name in env:
            return name, env[name]
    return None, None


def _resolve_into(
    cfg: TracingConfig,
    service_name: Any,
    jaeger_host: Any,
    jaeger_port: Any,
    enable_tracing: Any,
    env: Mapping[str, str],
    options: dict[str, Any],
) -> None:
    # OTEL_RESOURCE_ATTRIBUTES may carry service.name; explicit names beat it.
    if "OTEL_RESOURCE_ATTRIBUTES" in env:
        cfg.resource_attributes = parse_key_values("OTEL_RESOURCE_ATTRIBUTES", env["OTEL_RESOURCE_ATTRIBUTES"])
    source, value = _pick(service_name, env, "SERVICE_NAME", "OTEL_SERVICE_NAME")
    if value is not None and str(value) != "":
        cfg.service_name = str(value)
    elif "service.name" in cfg.resource_attributes:
        cfg.service_name = cfg.resource_attributes["service.name"]

    source, value = _pick(enable_tracing, env, "JAEGER_ENABLE_TRACING")
    if value is not None:
        cfg.enabled = parse_bool("enable_tracing" if source == "argument" else str(source), value)
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" and enable_tracing is None:
        cfg.enabled = False

    source, value = _pick(jaeger_host, env, "JAEGER_AGENT_HOST")
    if value is not None:
        cfg.jaeger_host = str(value)
    source, value = _pick(jaeger_port, env, "JAEGER_AGENT_PORT")
    if value is not None:
        cfg.jaeger_port = parse_port("jaeger_port" if source == "argument" else str(source), value)

    if "JAEGER_TAGS" in env:
        cfg.process_tags = parse_key_values("JAEGER_TAGS", env["JAEGER_TAGS"])

    # Sampler: explicit option > jaeger-client env > OTel env > const 1.
    sampler_type = options.pop("sampler_type", None)
    if sampler_type is not None:
        sampler_type = str(sampler_type).lower()
    sampler_param = options.pop("sampler_param", None)
    if sampler_type is None and "JAEGER_SAMPLER_TYPE" in env:
        sampler_type = env["JAEGER_SAMPLER_TYPE"].strip().lower()
    from_otel = sampler_type is None and "OTEL_TRACES_SAMPLER" in env
    if from_otel:
        sampler_type, otel_param = _sampler_from_otel(env["OTEL_TRACES_SAMPLER"], env.get("OTEL_TRACES_SAMPLER_ARG"))
        sampler_param = otel_param if sampler_param is None else sampler_param
    if sampler_param is None and "JAEGER_SAMPLER_PARAM" in env:  # with either type, or alone
        sampler_param = parse_float("JAEGER_SAMPLER_PARAM", env["JAEGER_SAMPLER_PARAM"])
    cfg.sampler_type = sampler_type or "const"  # each source gave it lower-case
    if sampler_param is None:
        sampler_param = DEFAULT_REMOTE_INITIAL_RATE if cfg.sampler_type == "remote" else 1.0
    cfg.sampler_param = parse_float("sampler_param", sampler_param)
    validate_sampler(cfg.sampler_type, cfg.sampler_param)
    _resolve_remote(cfg, env, options, from_otel)

    otlp = options.pop("otlp_endpoint", None)
    cfg.otlp_endpoint = otlp if otlp is not None else _otlp_traces_endpoint(env)
    exporter = options.pop("exporter", None)
    if exporter is None and otlp is None and (jaeger_host is not None or jaeger_port is not None):
        exporter = "udp"  # an explicit agent address beats a pod-wide OTLP variable
    exporter = exporter or env.get("AIECS_TRACING_EXPORTER")
    exporter = str(exporter).strip().lower() if exporter is not None else ("otlp" if cfg.otlp_endpoint else "udp")
    if exporter not in EXPORTERS:
        raise ConfigError(f"exporter {exporter!r} is not one of {', '.join(EXPORTERS)}")
    cfg.exporter = exporter
    if exporter == "otlp" and not cfg.otlp_endpoint:
        cfg.otlp_endpoint = "http://localhost:4318/v1/traces"
    if "OTEL_EXPORTER_OTLP_HEADERS" in env:
        cfg.otlp_headers = parse_key_values("OTEL_EXPORTER_OTLP_HEADERS", env["OTEL_EXPORTER_OTLP_HEADERS"])

    propagators = options.pop("propagators", None)
    if propagators is None and "OTEL_PROPAGATORS" in env:
        propagators = [p.strip().lower() for p in env["OTEL_PROPAGATORS"].split(",") if p.strip()]
    if propagators is not None:
        if isinstance(propagators, str):
            propagators = [p.strip().lower() for p in propagators.split(",") if p.strip()]
        known = {"tracecontext", "baggage", "jaeger", "none"}
        unknown = [p for p in propagators if p not in known]
        if unknown:
            raise ConfigError(f"propagators {unknown!r} not supported (use tracecontext, baggage, jaeger)")
        cfg.propagators = tuple(p for p in propagators if p != "none")

    for name in ("capture_args", "set_global_provider", "set_default_manager", "set_global_opentracing"):
        if name in options:
            setattr(cfg, name, parse_bool(name, options.pop(name)))
    for name in (
        "max_tag_value_length",
        "max_args",
        "max_queue_size",
        "max_export_batch_size",
        "schedule_delay_millis",
        "export_timeout_millis",
    ):
        if name in options:
            value = options.pop(name)
            try:
                number = int(value)
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(f"{name}={value!r} is not an integer") from None
            if number < 0:
                raise ConfigError(f"{name}={value!r} must be >= 0")
            setattr(cfg, name, number)
    source, value = _pick(options.pop("shutdown_timeout", None), env, "AIECS_TRACING_SHUTDOWN_TIMEOUT")
    if value is not None:
        cfg.shutdown_timeout = parse_seconds("shutdown_timeout" if source == "argument" else str(source), value)
    if "secret_keys" in options:
        cfg.secret_keys = parse_key_list("secret_keys", options.pop("secret_keys"))
    if "extra_secret_keys" in options:
        cfg.secret_keys = cfg.secret_keys + parse_key_list("extra_secret_keys", options.pop("extra_secret_keys"))
    if "db_system" in options:
        value = options.pop("db_system")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"db_system={value!r} is not a string")
        cfg.db_system = value
    for name in ("resource_attributes", "process_tags"):
        if name in options:
            getattr(cfg, name).update(parse_string_mapping(name, options.pop(name)))
    if options:
        raise ConfigError(f"unknown option(s): {', '.join(sorted(options))}")
