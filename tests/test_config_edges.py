"""Configuration at its edges: what each value becomes, and the exact reason a bad one gives.

A bad value disables tracing with ``cfg.error`` as the logged reason, so the message is
what an operator reads: it must name the setting (argument or variable) and the value.
Written against the mutants ``make mutate`` left alive in config.py and config_values.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from aiecs_tracing.core.config import (
    DEFAULT_SAMPLING_ENDPOINT,
    DEFAULT_SECRET_KEYS,
    DEFAULT_SHUTDOWN_TIMEOUT,
    resolve_config,
)

REMOTE = {"OTEL_TRACES_SAMPLER": "jaeger_remote"}


@pytest.mark.parametrize(
    ("env", "options", "reason"),
    [
        ({}, {"enable_tracing": "maybe"}, "enable_tracing='maybe' is not a boolean (true/false/1/0/yes/no)"),
        ({"JAEGER_ENABLE_TRACING": "maybe"}, {},
         "JAEGER_ENABLE_TRACING='maybe' is not a boolean (true/false/1/0/yes/no)"),
        ({"JAEGER_AGENT_PORT": "x"}, {}, "JAEGER_AGENT_PORT='x' is not a port number"),
        ({}, {"jaeger_port": True}, "jaeger_port=True is not a port number"),
        ({}, {"jaeger_port": 65536}, "jaeger_port=65536 is out of range 0-65535"),
        ({}, {"jaeger_port": " x "}, "jaeger_port=' x ' is not a port number"),
        ({}, {"shutdown_timeout": True}, "shutdown_timeout=True is not a number of seconds >= 0"),
        ({}, {"shutdown_timeout": -1}, "shutdown_timeout=-1 is not a number of seconds >= 0"),
        ({}, {"shutdown_timeout": "inf"}, "shutdown_timeout='inf' is not a number of seconds >= 0"),
        ({}, {"shutdown_timeout": "soon"}, "shutdown_timeout='soon' is not a number"),
        ({"AIECS_TRACING_SHUTDOWN_TIMEOUT": "nan"}, {},
         "AIECS_TRACING_SHUTDOWN_TIMEOUT='nan' is not a number of seconds >= 0"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "junk"}, {}, "OTEL_RESOURCE_ATTRIBUTES: 'junk' is not key=value"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, {},
         "OTEL_TRACES_SAMPLER_ARG='half' is not a number"),
        ({**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "initialSamplingRate=some"}, {},
         "OTEL_TRACES_SAMPLER_ARG initialSamplingRate='some' is not a number"),
        ({**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "junk"}, {}, "OTEL_TRACES_SAMPLER_ARG: 'junk' is not key=value"),
        ({**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "b=1,a=2,endpoint=http://x/s"}, {},
         "OTEL_TRACES_SAMPLER_ARG: unknown key(s) a, b for jaeger_remote"),
        ({**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "endpoint=ftp://agent/s"}, {},
         "OTEL_TRACES_SAMPLER_ARG endpoint='ftp://agent/s' is not an http(s) URL"),
        ({**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "pollingIntervalMs=often"}, {},
         "OTEL_TRACES_SAMPLER_ARG pollingIntervalMs='often' is not a number"),
        ({**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "pollingIntervalMs=0"}, {},
         "OTEL_TRACES_SAMPLER_ARG pollingIntervalMs=0.0 must be a positive duration"),
        ({"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLING_ENDPOINT": "http://"}, {},
         "JAEGER_SAMPLING_ENDPOINT='http://' is not an http(s) URL"),
        ({"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLER_MANAGER_HOST_PORT": "ftp://agent:5778"}, {},
         "JAEGER_SAMPLER_MANAGER_HOST_PORT='ftp://agent:5778' is not an http(s) URL"),
        ({"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLER_REFRESH_INTERVAL": "0"}, {},
         "JAEGER_SAMPLER_REFRESH_INTERVAL='0' must be a positive duration"),
        ({}, {"sampling_endpoint": "agent:5778"}, "sampling_endpoint='agent:5778' is not an http(s) URL"),
        ({}, {"sampling_refresh_interval": True}, "sampling_refresh_interval=True is not a duration"),
        ({}, {"sampling_refresh_interval": "5 parsecs"},
         "sampling_refresh_interval='5 parsecs' is not a duration (seconds, or like 500ms, 1m)"),
        ({}, {"sampling_refresh_interval": "inf"}, "sampling_refresh_interval='inf' must be a positive duration"),
        ({}, {"sampler_type": "bogus"},
         "sampler type 'bogus' is not one of const, probabilistic, ratelimiting, remote"),
        ({}, {"sampler_type": "const", "sampler_param": 0.5}, "const sampler param 0.5 must be 0 or 1"),
        ({}, {"sampler_type": "ratelimiting", "sampler_param": -1},
         "ratelimiting sampler param -1.0 must be >= 0 spans per second"),
        ({}, {"secret_keys": 5}, "secret_keys=5 is not a list of names"),
        ({}, {"extra_secret_keys": ["ok", 5]}, "extra_secret_keys=['ok', 5] is not a list of names"),
        ({"JAEGER_TAGS": "novalue"}, {}, "JAEGER_TAGS: 'novalue' is not key=value"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "junk"}, {}, "OTEL_EXPORTER_OTLP_HEADERS: 'junk' is not key=value"),
        ({"JAEGER_SAMPLER_PARAM": "x"}, {}, "JAEGER_SAMPLER_PARAM='x' is not a number"),
        ({"JAEGER_SAMPLER_TYPE": "probabilistic", "JAEGER_SAMPLER_PARAM": "x"}, {},
         "JAEGER_SAMPLER_PARAM='x' is not a number"),
        ({}, {"sampler_param": "abc"}, "sampler_param='abc' is not a number"),
        ({}, {"exporter": "kafka"}, "exporter 'kafka' is not one of udp, otlp, console, memory, none"),
        ({"AIECS_TRACING_EXPORTER": ""}, {}, "exporter '' is not one of udp, otlp, console, memory, none"),
        ({}, {"propagators": "tracecontext,b3"},
         "propagators ['b3'] not supported (use tracecontext, baggage, jaeger)"),
        ({}, {"capture_args": "maybe"}, "capture_args='maybe' is not a boolean (true/false/1/0/yes/no)"),
        ({}, {"max_args": "x"}, "max_args='x' is not an integer"),
        ({}, {"max_queue_size": None}, "max_queue_size=None is not an integer"),
        ({}, {"schedule_delay_millis": float("inf")}, "schedule_delay_millis=inf is not an integer"),
        ({}, {"export_timeout_millis": -1}, "export_timeout_millis=-1 must be >= 0"),
        ({}, {"db_system": 5}, "db_system=5 is not a string"),
        ({}, {"colour": 1, "bogus": 2}, "unknown option(s): bogus, colour"),
        ({}, {"resource_attributes": "junk"}, "resource_attributes: 'junk' is not key=value"),
        ({}, {"resource_attributes": 5}, "resource_attributes=5 is not a mapping (or k=v,k2=v2)"),
    ],
)
def test_a_bad_value_disables_tracing_naming_setting_and_value(env: dict[str, str], options: dict[str, Any],
                                                                reason: str) -> None:
    cfg = resolve_config(env=env, **options)
    assert (cfg.error, cfg.enabled) == (reason, False)


@pytest.mark.parametrize(
    ("name", "arg", "expected"),
    [
        ("always_on", None, ("const", 1.0)),
        ("parentbased_always_on", None, ("const", 1.0)),
        ("always_off", None, ("const", 0.0)),
        ("PARENTBASED_ALWAYS_OFF", None, ("const", 0.0)),
        ("traceidratio", "0.25", ("probabilistic", 0.25)),
        ("parentbased_traceidratio", None, ("probabilistic", 1.0)),
        ("jaeger_remote", None, ("remote", 0.001)),
        ("parentbased_jaeger_remote", "initialSamplingRate=0.5", ("remote", 0.5)),
    ],
)
def test_otel_traces_sampler_names(name: str, arg: str | None, expected: tuple[str, float]) -> None:
    env = {"OTEL_TRACES_SAMPLER": name, **({"OTEL_TRACES_SAMPLER_ARG": arg} if arg is not None else {})}
    cfg = resolve_config(env=env)
    assert (cfg.error, (cfg.sampler_type, cfg.sampler_param)) == (None, expected)


def test_sampler_limits_that_are_allowed() -> None:
    for sampler_type, param in (("probabilistic", 1.0), ("probabilistic", 0.0), ("ratelimiting", 0),
                                ("ratelimiting", 0.5), ("const", 0), ("CONST", 1)):
        cfg = resolve_config(env={}, sampler_type=sampler_type, sampler_param=param)
        assert (cfg.error, cfg.sampler_type, cfg.sampler_param) == (None, sampler_type.lower(), float(param))


def test_numbers_at_their_limits() -> None:
    assert resolve_config(env={}, jaeger_port=65535).jaeger_port == 65535
    assert resolve_config(env={"JAEGER_AGENT_PORT": " 6832 "}).jaeger_port == 6832
    assert resolve_config(env={}, shutdown_timeout=0).shutdown_timeout == 0.0
    assert resolve_config(env={}, shutdown_timeout="0.5").shutdown_timeout == 0.5
    assert resolve_config(env={"AIECS_TRACING_SHUTDOWN_TIMEOUT": "3"}).shutdown_timeout == 3.0
    assert resolve_config(env={}).shutdown_timeout == DEFAULT_SHUTDOWN_TIMEOUT


def test_key_value_lists_skip_blanks_keep_equals_signs_and_expand_only_whole_placeholders(monkeypatch) -> None:
    monkeypatch.setenv("REGION_FOR_TEST", "eu")
    env = {"JAEGER_TAGS": "a=1,, b = x=y ,c=x},d=${REGION_FOR_TEST},e=${UNSET_FOR_TEST:dflt},f=${UNSET_FOR_TEST}"}
    assert resolve_config(env=env).process_tags == {"a": "1", "b": "x=y", "c": "x}", "d": "eu", "e": "dflt", "f": ""}


def test_resource_attributes_and_process_tags_given_as_mappings_become_strings() -> None:
    cfg = resolve_config(env={"OTEL_RESOURCE_ATTRIBUTES": "team=a"}, resource_attributes={"tier": 1},
                         process_tags="zone=b")
    assert (cfg.resource_attributes, cfg.process_tags) == ({"team": "a", "tier": "1"}, {"zone": "b"})


def test_service_name_from_resource_attributes_when_the_name_variables_are_empty() -> None:
    env = {"SERVICE_NAME": "", "OTEL_RESOURCE_ATTRIBUTES": "service.name=from-resource"}
    assert resolve_config(env=env).service_name == "from-resource"
    assert resolve_config(env={"OTEL_SERVICE_NAME": "otel", **env}).service_name == "from-resource"  # first set wins
    assert resolve_config(env={"OTEL_SERVICE_NAME": "otel"}).service_name == "otel"
    assert resolve_config("arg", env=env).service_name == "arg"


def test_enable_tracing_argument_beats_otel_sdk_disabled() -> None:
    assert resolve_config(env={}, enable_tracing=False).enabled is False
    assert resolve_config(env={"OTEL_SDK_DISABLED": "true"}).enabled is False
    assert resolve_config(env={"OTEL_SDK_DISABLED": " TRUE "}).enabled is False
    assert resolve_config(env={"OTEL_SDK_DISABLED": "true"}, enable_tracing=True).enabled is True
    assert resolve_config(env={"OTEL_SDK_DISABLED": "false"}).enabled is True


def test_remote_sampling_endpoint_and_interval_sources() -> None:
    jaeger = {"JAEGER_SAMPLER_TYPE": "remote"}
    # an OTel argument is read only when the sampler itself came from OTEL_TRACES_SAMPLER
    ignored = resolve_config(env={**jaeger, "OTEL_TRACES_SAMPLER_ARG": "endpoint=http://otel:1/s,pollingIntervalMs=5"})
    assert (ignored.sampling_endpoint, ignored.sampling_refresh_interval) == (DEFAULT_SAMPLING_ENDPOINT, 60.0)
    full_url = resolve_config(env={**jaeger, "JAEGER_SAMPLER_MANAGER_HOST_PORT": " https://agent:5778/custom "})
    assert full_url.sampling_endpoint == "https://agent:5778/custom"
    host_port = resolve_config(env={**jaeger, "JAEGER_SAMPLER_MANAGER_HOST_PORT": "agent:5778"})
    assert host_port.sampling_endpoint == "http://agent:5778/sampling"
    otel = resolve_config(env={**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "endpoint=https://o:1/s,pollingIntervalMs=1500"})
    assert (otel.sampling_endpoint, otel.sampling_refresh_interval) == ("https://o:1/s", 1.5)
    argument = resolve_config(env={**REMOTE, "OTEL_TRACES_SAMPLER_ARG": "endpoint=https://o:1/s"},
                              sampling_endpoint="http://arg/s", sampling_refresh_interval="1m30s")
    assert (argument.sampling_endpoint, argument.sampling_refresh_interval) == ("http://arg/s", 90.0)


def test_otlp_endpoint_from_the_base_variable_strips_only_trailing_slashes() -> None:
    cfg = resolve_config(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://COLLECTOR-X//"})
    assert (cfg.exporter, cfg.otlp_endpoint) == ("otlp", "http://COLLECTOR-X/v1/traces")


def test_an_explicit_sampler_param_beats_both_environments() -> None:
    jaeger = resolve_config(env={"JAEGER_SAMPLER_TYPE": "probabilistic", "JAEGER_SAMPLER_PARAM": "x"}, sampler_param=0.5)
    otel = resolve_config(env={"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
                          sampler_param=0.5)
    assert [(c.error, c.sampler_type, c.sampler_param) for c in (jaeger, otel)] == [
        (None, "probabilistic", 0.5), (None, "probabilistic", 0.5)]
    jaeger_param_alone = resolve_config(env={"JAEGER_SAMPLER_PARAM": "0"})
    assert (jaeger_param_alone.sampler_type, jaeger_param_alone.sampler_param) == ("const", 0.0)
    with_type = resolve_config(env={"JAEGER_SAMPLER_TYPE": " RateLimiting ", "JAEGER_SAMPLER_PARAM": "2"})
    assert (with_type.sampler_type, with_type.sampler_param) == ("ratelimiting", 2.0)


def test_exporter_choice_and_its_endpoint() -> None:
    pod_otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert resolve_config(env=pod_otlp).exporter == "otlp"
    assert resolve_config(env=pod_otlp, jaeger_host="agent").exporter == "udp"  # an agent address alone is enough
    assert resolve_config(env=pod_otlp, jaeger_port=6832).exporter == "udp"
    assert resolve_config(env={**pod_otlp, "AIECS_TRACING_EXPORTER": " Console "}).exporter == "console"
    assert resolve_config(env={}, exporter="MEMORY").exporter == "memory"
    default_otlp = resolve_config(env={}, exporter="otlp")
    assert (default_otlp.exporter, default_otlp.otlp_endpoint) == ("otlp", "http://localhost:4318/v1/traces")
    assert resolve_config(env={}, exporter="udp").otlp_endpoint is None
    assert resolve_config(env={}).exporter == "udp"
    headers = resolve_config(env={"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc, x=1"}, exporter="otlp")
    assert headers.otlp_headers == {"api-key": "abc", "x": "1"}


def test_propagators_from_argument_or_environment() -> None:
    assert resolve_config(env={}, propagators=" TraceContext , baggage,").propagators == ("tracecontext", "baggage")
    assert resolve_config(env={"OTEL_PROPAGATORS": "Jaeger, none"}).propagators == ("jaeger",)
    assert resolve_config(env={"OTEL_PROPAGATORS": "none"}).propagators == ()
    assert resolve_config(env={"OTEL_PROPAGATORS": "b3"}, propagators=["jaeger"]).propagators == ("jaeger",)
    assert resolve_config(env={}).propagators == ("tracecontext", "baggage", "jaeger")


def test_switches_numbers_secret_keys_and_db_system_as_given() -> None:
    cfg = resolve_config(env={}, capture_args="no", set_global_provider="0", set_default_manager=False,
                         set_global_opentracing="off", max_tag_value_length="0", max_args=7, max_queue_size=10,
                         max_export_batch_size=5, schedule_delay_millis=250, export_timeout_millis=3000,
                         db_system="postgresql")
    assert cfg.error is None
    assert (cfg.capture_args, cfg.set_global_provider, cfg.set_default_manager, cfg.set_global_opentracing) == (
        False, False, False, False)
    assert (cfg.max_tag_value_length, cfg.max_args, cfg.max_queue_size, cfg.max_export_batch_size,
            cfg.schedule_delay_millis, cfg.export_timeout_millis, cfg.db_system) == (0, 7, 10, 5, 250, 3000, "postgresql")
    assert resolve_config(env={}, secret_keys=("Card", "pin")).secret_keys == ("card", "pin")
    assert resolve_config(env={}, secret_keys="Solo").secret_keys == ("solo",)
    assert resolve_config(env={}, extra_secret_keys=["IBAN"]).secret_keys == (*DEFAULT_SECRET_KEYS, "iban")
    assert resolve_config(env={}, db_system=None).db_system is None
