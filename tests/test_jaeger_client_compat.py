"""jaeger-client's Config as a drop-in (aiecs_tracing.compat.jaeger_client): the seed's section 6
code unchanged, a real service's config dict unchanged, jaeger-client's keys mapped. Spans go
over real UDP to the sink; remote sampling polls the embedded collector."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any, Optional

import jaeger_client as real_jaeger_client
import opentracing
import pytest
from jaeger_client.reporter import InMemoryReporter
from jaeger_client.sampler import ConstSampler, ProbabilisticSampler
from opentelemetry import trace as otel_trace
from opentracing.propagation import Format

from aiecs_tracing.compat import jaeger_client
from aiecs_tracing.compat.jaeger_client import Config
from aiecs_tracing.compat.opentracing import OpenTracingTracer
from tests.wire import settled

pytestmark = pytest.mark.timeout(60)

# TRACING_MANAGER.md, section 6.1 (_init_tracer) and 6.3 (inject/extract through self.tracer),
# copied verbatim (blank lines without their trailing spaces); the only change is what the name
# ``jaeger_client`` is bound to.
SEED_6_1 = '''
def _init_tracer(self):
    """初始化 Jaeger 追踪器"""
    config = jaeger_client.config.Config(
        config={
            'sampler': {
                'type': 'const',  # 常量采样
                'param': 1,       # 100% 采样
            },
            'local_agent': {
                'reporting_host': self.jaeger_host,
                'reporting_port': self.jaeger_port,
            },
            'logging': True,
        },
        service_name=self.service_name,
        validate=True
    )
    self.tracer = config.initialize_tracer()
'''

SEED_6_3 = '''
def inject_span_context(self, span: Optional[Span], carrier: Dict[str, str]):
    """注入 Span 上下文到载体"""
    if not self.enable_tracing or not span or not self.tracer:
        return

    try:
        from opentracing.propagation import Format
        self.tracer.inject(span.context, Format.TEXT_MAP, carrier)
    except Exception as e:
        logger.error(f"Error injecting span context: {e}")

def extract_span_context(self, carrier: Dict[str, str]) -> Optional[Any]:
    """从载体提取 Span 上下文"""
    if not self.enable_tracing or not self.tracer:
        return None

    try:
        from opentracing.propagation import Format
        return self.tracer.extract(Format.TEXT_MAP, carrier)
    except Exception as e:
        logger.error(f"Error extracting span context: {e}")
        return None
'''

SEED_DOC = Path("/work/shared/seed/TRACING_MANAGER.md")
seed_logger = logging.getLogger("seed.tracing_manager")


def seed_class():
    namespace: dict[str, Any] = {
        "jaeger_client": jaeger_client, "logger": seed_logger, "Optional": Optional, "Dict": dict,
        "Any": Any, "Span": opentracing.Span,
    }
    exec(SEED_6_1 + SEED_6_3, namespace)

    class SeedTracingManager:
        def __init__(self, service_name: str, jaeger_host: str, jaeger_port: int) -> None:
            self.service_name = service_name
            self.jaeger_host = jaeger_host
            self.jaeger_port = jaeger_port
            self.enable_tracing = True
            self.tracer = None
            self._init_tracer()

        _init_tracer = namespace["_init_tracer"]
        inject_span_context = namespace["inject_span_context"]
        extract_span_context = namespace["extract_span_context"]

    return SeedTracingManager


@pytest.fixture(autouse=True)
def _process_state():
    """initialize_tracer() is once per process and sets opentracing.tracer: undo both."""
    saved = opentracing.tracer, opentracing.is_tracer_registered
    provider = otel_trace._TRACER_PROVIDER, otel_trace._TRACER_PROVIDER_SET_ONCE._done  # the seed's manager sets it
    tracers: list[OpenTracingTracer] = []
    try:
        yield tracers
    finally:
        for tracer in tracers:
            tracer.manager.close_tracer()
        Config._initialized = False
        opentracing.tracer, opentracing.is_tracer_registered = saved
        otel_trace._TRACER_PROVIDER, otel_trace._TRACER_PROVIDER_SET_ONCE._done = provider


def isolated(**options: Any) -> dict[str, Any]:
    return {"set_global_provider": False, "set_default_manager": False, **options}


def test_seed_code_is_the_documents():
    if not SEED_DOC.exists():
        pytest.skip("the seed document is not on this machine")
    doc = SEED_DOC.read_text(encoding="utf-8")
    doc = re.sub(r"(?m)^[ \t]+$", "", doc)  # the document's blank lines carry indentation; ours do not
    for block in (SEED_6_1, SEED_6_3):
        assert block.strip() in doc


def test_seed_section_6_runs_unchanged(sink, _process_state, caplog):
    caplog.set_level(logging.INFO, logger="jaeger_tracing")
    seed = seed_class()("task_executor", "127.0.0.1", sink.port)
    _process_state.append(seed.tracer)
    assert opentracing.global_tracer() is seed.tracer  # initialize_tracer() installs it, as jaeger-client's
    manager = seed.tracer.manager

    span = seed.tracer.start_span("process_user_request", tags={"user_id": "123"})
    carrier: dict[str, str] = {}
    seed.inject_span_context(span, carrier)
    assert "uber-trace-id" in carrier and "traceparent" in carrier
    parent = seed.extract_span_context(carrier)
    child = seed.tracer.start_span("process_request", child_of=parent)
    child.finish()
    span.finish()
    assert seed.extract_span_context({"uber-trace-id": "garbage"}) is None  # logged by the seed, never raised

    spans = {s.operation: s for s in settled(sink, manager)}
    assert spans["process_request"].parent_id == spans["process_user_request"].span_id
    assert {s.service for s in spans.values()} == {"task_executor"}
    assert any("Reporting span" in r.getMessage() for r in caplog.records)  # 'logging': True

    # a second service built the same way: jaeger-client's once-per-process rule
    assert seed_class()("other", "127.0.0.1", sink.port).tracer is None


def test_seed_carrier_is_read_by_jaeger_client(sink, _process_state):
    seed = seed_class()("task_executor", "127.0.0.1", sink.port)
    _process_state.append(seed.tracer)
    span = seed.tracer.start_span("handoff")
    span.set_baggage_item("tenant", "acme corp")
    carrier: dict[str, str] = {}
    seed.inject_span_context(span, carrier)
    loop = asyncio.new_event_loop()  # jaeger-client's Tracer asks tornado for the current IOLoop
    asyncio.set_event_loop(loop)
    legacy = real_jaeger_client.Tracer("legacy", reporter=InMemoryReporter(), sampler=ConstSampler(True))
    try:
        ctx = legacy.extract(Format.TEXT_MAP, carrier)
        assert (ctx.trace_id, ctx.span_id) == (span.context.trace_id, span.context.span_id)
        assert ctx.baggage == {"tenant": "acme corp"}  # TEXT_MAP baggage unquoted, as jaeger-client writes it
    finally:
        legacy.close()
        asyncio.set_event_loop(None)
        loop.close()
        span.finish()


REAL_SERVICE_CONFIG = {
    # as a jaeger-client service shipped it
    "sampler": {"type": "probabilistic", "param": 1.0},
    "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": 0, "sampling_port": 5778},
    "tags": {"deployment": "staging", "team": "aiecs", "build": 412},
    "logging": False,
    "reporter_batch_size": 10,
    "reporter_queue_size": 100,
    "reporter_flush_interval": 0.05,
    "max_tag_value_length": 64,
    "trace_id_header": "uber-trace-id",
    "baggage_header_prefix": "uberctx-",
    "generate_128bit_trace_id": True,
}


def test_a_real_services_config_works_unchanged(sink, _process_state):
    config = {**REAL_SERVICE_CONFIG, "local_agent": {**REAL_SERVICE_CONFIG["local_agent"], "reporting_port": sink.port}}
    real_jaeger_client.Config(config=dict(config), service_name="orders", validate=True)  # jaeger-client accepts it
    tracer = Config(config=config, service_name="orders", validate=True, **isolated()).new_tracer()
    _process_state.append(tracer)
    assert opentracing.global_tracer() is not tracer  # new_tracer() leaves the global alone
    info = tracer.manager.get_tracer_info()
    assert info["sampler"].startswith("probabilistic:1") and info["exporter"] == "udp"
    with tracer.start_active_span("GET /orders", tags={"note": "x" * 200}):
        pass
    (span,) = settled(sink, tracer.manager)
    assert span.service == "orders"
    assert {"deployment": "staging", "team": "aiecs", "build": "412"}.items() <= span.process_tags.items()
    assert span.tags["note"] == "x" * 64  # jaeger-client's max_tag_value_length


def test_no_sampler_type_is_remote_sampling_from_the_agent(sink, _process_state):
    from aiecs_tracing.collector.server import Collector

    with Collector(otlp_port=None, udp_port=None, ui_port=None, sampling_port=0, db_path=":memory:") as collector:
        config = {"local_agent": {"reporting_host": "127.0.0.1", "reporting_port": sink.port,
                                  "sampling_host": "127.0.0.1", "sampling_port": collector.sampling_port},
                  "sampling_refresh_interval": 0.2, "reporter_flush_interval": 0.05}
        cfg = Config(config=config, service_name="remote-svc", validate=True, **isolated())
        options = cfg.manager_options()
        assert options["sampler_type"] == "remote"
        assert options["sampling_endpoint"] == f"http://127.0.0.1:{collector.sampling_port}/sampling"
        tracer = cfg.new_tracer()
        _process_state.append(tracer)
        deadline = time.monotonic() + 10
        while tracer.manager.get_tracer_info()["sampling"]["polls_ok"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tracer.manager.get_tracer_info()["sampling"]["polls_ok"] >= 1
        tracer.start_span("sampled-by-the-collector").finish()
        (span,) = settled(sink, tracer.manager)
        assert span.tags["sampler.type"] == "probabilistic"


def test_jaeger_client_keys_mapped():
    def options(config, **kwargs):
        return Config(config=config, service_name="svc", **kwargs).manager_options()

    assert options({"sampler": {"type": "const", "param": "true"}})["sampler_param"] == 1
    assert options({"sampler": {"type": "const", "param": False}})["sampler_param"] == 0
    assert options({"sampler": {"type": "rate_limiting", "param": 5}})["sampler_type"] == "ratelimiting"
    assert options({"sampler": ProbabilisticSampler(0.25)})["sampler_param"] == 0.25
    remote = options({"sampler": {"type": "remote", "param": 0.5, "sampling_server_url": "http://agent:5778/sampling"}})
    assert (remote["sampler_type"], remote["sampler_param"], remote["sampling_endpoint"]) == (
        "remote", 0.5, "http://agent:5778/sampling")
    queue = options({"reporter_queue_size": 100, "reporter_flush_interval": 0.5, "enabled": "false"})
    assert (queue["max_queue_size"], queue["max_export_batch_size"], queue["schedule_delay_millis"]) == (100, 100, 500)
    assert queue["enable_tracing"] is False
    assert Config(config={"service_name": "from-dict"}, service_name="arg").service_name == "from-dict"
    with pytest.raises(ValueError):
        Config(config={})
    with pytest.raises(ValueError, match="Unknown sampler type"):
        Config(config={"sampler": {"type": "adaptive"}}, service_name="svc").new_tracer()


def test_unknown_keys_and_b3_warn(caplog, _process_state):
    caplog.set_level(logging.WARNING, logger="jaeger_tracing")
    cfg = Config(config={"sampler": {"type": "const", "param": 1}, "reporter_host": "x", "propagation": "b3"},
                 service_name="svc", validate=True, exporter="memory", **isolated())
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "reporter_host" in messages and "b3" in messages
    tracer = cfg.new_tracer()
    _process_state.append(tracer)
    assert tracer.manager.enabled


def test_renamed_headers_and_disabled(_process_state):
    cfg = Config(config={"sampler": {"type": "const", "param": 1}, "trace_id_header": "X-Trace-Id",
                         "baggage_header_prefix": "X-Ctx-"}, service_name="svc", exporter="memory", **isolated())
    tracer = cfg.new_tracer()
    _process_state.append(tracer)
    assert tracer.manager.opentracing_tracer is tracer
    with tracer.start_active_span("renamed") as scope:
        scope.span.set_baggage_item("user", "u1")
        headers: dict[str, str] = {}
        tracer.inject(scope.span.context, Format.HTTP_HEADERS, headers)
    assert "x-trace-id" in headers and headers["x-ctx-user"] == "u1"
    off = Config(config={"enabled": False}, service_name="off", exporter="memory", **isolated()).new_tracer()
    _process_state.append(off)
    with off.start_active_span("nothing"):
        pass
    assert off.manager.get_tracer_info()["spans_started"] == 0
