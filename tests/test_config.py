"""Configuration: argument > environment > default; bad values disable with a named reason."""

from __future__ import annotations

import logging

import pytest

from aiecs_tracing import TracingManager
from aiecs_tracing.core.config import resolve_config


def test_defaults_match_the_seed():
    cfg = resolve_config(env={})
    assert (cfg.service_name, cfg.jaeger_host, cfg.jaeger_port, cfg.enabled) == (
        "service_executor", "localhost", 6831, True)
    assert (cfg.sampler_type, cfg.sampler_param, cfg.exporter) == ("const", 1.0, "udp")


def test_seed_environment_variables():
    env = {"JAEGER_AGENT_HOST": "jaeger", "JAEGER_AGENT_PORT": "6832", "JAEGER_ENABLE_TRACING": "yes",
           "SERVICE_NAME": "task_executor"}
    cfg = resolve_config(env=env)
    assert (cfg.service_name, cfg.jaeger_host, cfg.jaeger_port, cfg.enabled) == ("task_executor", "jaeger", 6832, True)


def test_arguments_beat_environment():
    env = {"JAEGER_AGENT_HOST": "jaeger", "JAEGER_AGENT_PORT": "6832", "SERVICE_NAME": "env"}
    cfg = resolve_config("arg", "h", 7000, True, env=env)
    assert (cfg.service_name, cfg.jaeger_host, cfg.jaeger_port) == ("arg", "h", 7000)


@pytest.mark.parametrize("value,expected", [("true", True), ("false", False), ("1", True), ("0", False),
                                            ("yes", True), ("no", False), ("FALSE", False)])
def test_enable_values(value, expected):
    assert resolve_config(env={"JAEGER_ENABLE_TRACING": value}).enabled is expected


def test_port_zero_and_empty_host_are_values_not_fallbacks():
    cfg = resolve_config(jaeger_port=0, jaeger_host="", env={"JAEGER_AGENT_PORT": "9999"})
    assert cfg.jaeger_port == 0 and cfg.jaeger_host == ""
    assert resolve_config(env={"JAEGER_AGENT_PORT": "0"}).jaeger_port == 0


@pytest.mark.parametrize(
    "env,needle",
    [
        ({"JAEGER_AGENT_PORT": "abc"}, "JAEGER_AGENT_PORT"),
        ({"JAEGER_AGENT_PORT": "70000"}, "JAEGER_AGENT_PORT"),
        ({"JAEGER_ENABLE_TRACING": "maybe"}, "JAEGER_ENABLE_TRACING"),
        ({"JAEGER_SAMPLER_TYPE": "probabilistic", "JAEGER_SAMPLER_PARAM": "1.5"}, "probabilistic"),
        ({"JAEGER_SAMPLER_TYPE": "adaptive"}, "adaptive"),
        ({"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLER_PARAM": "2"}, "remote"),
        ({"JAEGER_SAMPLER_PARAM": "x"}, "JAEGER_SAMPLER_PARAM"),
        ({"OTEL_TRACES_SAMPLER": "weird"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_PROPAGATORS": "b3"}, "b3"),
        ({"JAEGER_TAGS": "novalue"}, "JAEGER_TAGS"),
    ],
)
def test_bad_values_disable_with_a_warning_naming_them(monkeypatch, caplog, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with caplog.at_level(logging.WARNING, logger="aiecs_tracing"):
        t = TracingManager("bad")
    info = t.get_tracer_info()
    assert info["enabled"] is False and info["tracer_initialized"] is False
    assert needle in info["error"]
    assert any("Failed to initialize Jaeger tracer" in r.getMessage() and needle in r.getMessage()
               for r in caplog.records)
    assert t.start_span("x") is None


def test_bad_argument_port_disables():
    t = TracingManager("bad", jaeger_port="abc")
    assert not t.enabled and "jaeger_port" in t.get_tracer_info()["error"]


def test_otel_variables():
    env = {"OTEL_SERVICE_NAME": "otel-svc", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=ai",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_PROPAGATORS": "tracecontext,baggage"}
    cfg = resolve_config(env=env)
    assert cfg.service_name == "otel-svc"
    assert cfg.resource_attributes == {"deployment.environment": "prod", "team": "ai"}
    assert (cfg.exporter, cfg.otlp_endpoint) == ("otlp", "http://collector:4318/v1/traces")
    assert (cfg.sampler_type, cfg.sampler_param) == ("probabilistic", 0.25)
    assert cfg.propagators == ("tracecontext", "baggage")
    specific = resolve_config(env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:1/t"})
    assert specific.otlp_endpoint == "http://x:1/t"


def test_seed_service_name_beats_otel_service_name():
    assert resolve_config(env={"SERVICE_NAME": "seed", "OTEL_SERVICE_NAME": "otel"}).service_name == "seed"


def test_jaeger_tags_become_process_tags(monkeypatch):
    monkeypatch.setenv("REGION", "eu")
    cfg = resolve_config(env={"JAEGER_TAGS": "version=1.2,region=${REGION},zone=${ZONE:z1}"})
    assert cfg.process_tags == {"version": "1.2", "region": "eu", "zone": "z1"}


def test_ratelimiting_sampler_limits_new_traces():
    t = TracingManager("rl", exporter="memory", sampler_type="ratelimiting", sampler_param=2,
                       set_global_provider=False, set_default_manager=False)
    sampled = sum(t.start_span(f"s{i}").context.sampled for i in range(50))
    assert 1 <= sampled <= 4
    assert t.get_tracer_info()["sampler"].startswith("ratelimiting")
    t.close_tracer()


def test_probabilistic_sampler_is_parent_based():
    t = TracingManager("p", exporter="memory", sampler_type="probabilistic", sampler_param=0.0,
                       set_global_provider=False, set_default_manager=False)
    assert not t.start_span("root").context.sampled
    parent = t.extract_span_context({"uber-trace-id": "abc:def:0:1"})
    assert t.start_span("child", parent_span=parent).context.sampled
    t.close_tracer()


def test_unknown_option_disables_with_reason():
    t = TracingManager("x", no_such_option=1)
    assert not t.enabled and "no_such_option" in t.get_tracer_info()["error"]


@pytest.mark.parametrize(
    "options",
    [
        {"resource_attributes": None},
        {"process_tags": 5},
        {"secret_keys": None},
        {"extra_secret_keys": 5},
        {"max_queue_size": float("inf")},
        {"db_system": 3},
    ],
)
def test_bad_option_types_disable_instead_of_raising(options):
    t = TracingManager("typed", **options)
    assert not t.enabled and t.get_tracer_info()["error"]


def test_a_lone_string_is_one_secret_key_not_its_letters():
    cfg = resolve_config(extra_secret_keys="pin", env={})
    assert cfg.secret_keys[-1] == "pin" and "p" not in cfg.secret_keys
    assert resolve_config(process_tags="team=ai", env={}).process_tags == {"team": "ai"}


def test_explicit_agent_address_beats_a_pod_wide_otlp_variable():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}
    assert resolve_config(jaeger_host="jaeger", jaeger_port=6831, env=env).exporter == "udp"
    assert resolve_config(env=env).exporter == "otlp"
    assert resolve_config(jaeger_host="jaeger", exporter="otlp", env=env).exporter == "otlp"
