"""Remote sampling end to end: the embedded collector serves strategies, TracingManager obeys them.

Real sockets both ways: the manager polls the collector's sampling port over HTTP, and in
adaptive mode exports its spans to the collector's OTLP port, whose stored root spans set
the next probabilities.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aiecs_tracing import TracingManager
from aiecs_tracing.collector.sampling import SamplingStrategies, StrategiesError, parse_strategies
from aiecs_tracing.collector.server import Collector
from tests.integration.test_collector import request
from tests.test_remote_sampling import silent_endpoint, wait_until  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow

SERVICE = "shop"


def strategies(**rates: float) -> dict[str, Any]:
    return {
        "service_strategies": [
            {
                "service": SERVICE,
                "type": "probabilistic",
                "param": 0.5,
                "operation_strategies": [
                    {"operation": name, "type": "probabilistic", "param": rate} for name, rate in rates.items()
                ],
            }
        ],
        "default_strategy": {"type": "probabilistic", "param": 1.0},
    }


def write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1))


def app(endpoint: str, **options: Any) -> TracingManager:
    options.setdefault("exporter", "memory")
    return TracingManager(
        SERVICE,
        sampler_type="remote",
        sampler_param=options.pop("initial", 0.0),
        sampling_endpoint=endpoint,
        sampling_refresh_interval=0.2,
        set_global_provider=False,
        set_default_manager=False,
        **options,
    )


def sampling(tracing: TracingManager) -> dict[str, Any]:
    return tracing.get_tracer_info()["sampling"]


def run_roots(tracing: TracingManager, names: list[str], n: int) -> Counter[str]:
    tracing.exporter.clear()
    for _ in range(n):
        for name in names:
            with tracing.span(name):
                pass
    tracing.flush()
    return Counter(span.name for span in tracing.exporter.get_finished_spans())


@pytest.fixture
def strategies_file(tmp_path: Path) -> Path:
    path = tmp_path / "strategies.json"
    write(path, strategies(A=0.0, B=1.0, C=0.5))
    return path


@pytest.fixture
def collector(strategies_file: Path):
    with Collector(otlp_port=None, udp_port=None, ui_port=0, sampling_port=0, db_path=":memory:",
                   sampling_strategies=strategies_file) as c:
        yield c


def test_per_operation_strategies_are_obeyed(collector):
    tracing = app(collector.sampling_url)
    wait_until(lambda: sampling(tracing)["strategy"].startswith("per-operation"))
    counts = run_roots(tracing, ["A", "B", "C", "unlisted"], 400)
    assert counts["A"] == 0
    assert counts["B"] == 400
    assert 120 <= counts["C"] <= 280  # p=0.5 of 400: 30%-70%
    assert 120 <= counts["unlisted"] <= 280  # the service's own probability, 0.5
    tracing.close_tracer()


def test_served_json_is_jaegers_and_query_port_answers_too(collector):
    status, headers, body = request(collector.sampling_port, "GET", f"/sampling?service={SERVICE}")
    assert status == 200 and headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["strategyType"] == "PROBABILISTIC" and doc["probabilisticSampling"] == {"samplingRate": 0.5}
    ops = doc["operationSampling"]
    assert ops["defaultSamplingProbability"] == 0.5 and ops["defaultLowerBoundTracesPerSecond"] == 0
    assert {o["operation"]: o["probabilisticSampling"]["samplingRate"] for o in ops["perOperationStrategies"]} == {
        "A": 0.0, "B": 1.0, "C": 0.5}
    status, _, other = request(collector.ui_port, "GET", "/api/sampling?service=someone-else")
    assert status == 200 and json.loads(other) == {"strategyType": "PROBABILISTIC",
                                                   "probabilisticSampling": {"samplingRate": 1.0}}
    assert request(collector.sampling_port, "GET", "/sampling")[0] == 400
    assert request(collector.ui_port, "GET", "/api/sampling?service=a&service=b")[0] == 400


def test_changed_strategies_file_takes_effect_within_two_polls(collector, strategies_file):
    tracing = app(collector.sampling_url)
    wait_until(lambda: sampling(tracing)["strategy"].startswith("per-operation"))
    assert run_roots(tracing, ["B"], 50)["B"] == 50
    polls_before = sampling(tracing)["polls_ok"]
    write(strategies_file, {"service_strategies": [{"service": SERVICE, "type": "ratelimiting", "param": 2}]})
    wait_until(lambda: sampling(tracing)["strategy"] == "ratelimiting:2")
    assert sampling(tracing)["polls_ok"] - polls_before <= 3  # two polls, plus one already in flight
    assert run_roots(tracing, ["B"], 200)["B"] <= 4
    # a broken rewrite keeps the last good strategy and is counted by the collector
    strategies_file.write_text("{not json")
    polls = sampling(tracing)["polls_ok"]
    wait_until(lambda: sampling(tracing)["polls_ok"] >= polls + 3)
    assert sampling(tracing)["strategy"] == "ratelimiting:2"
    stats = json.loads(request(collector.ui_port, "GET", "/api/stats")[2])
    assert stats["sampling"]["reload_errors"] >= 1 and stats["sampling"]["last_error"]
    tracing.close_tracer()


def test_dead_endpoint_never_blocks_the_app(collector, silent_endpoint):  # noqa: F811
    tracing = app(collector.sampling_url)
    wait_until(lambda: sampling(tracing)["strategy"].startswith("per-operation"))
    collector.stop()  # the endpoint goes away: refused connections from now on
    wait_until(lambda: sampling(tracing)["polls_failed"] >= 2)
    counts = run_roots(tracing, ["A", "B"], 200)
    assert (counts["A"], counts["B"]) == (0, 200)  # the last good strategy, not the initial rate 0
    tracing.close_tracer()

    started = time.monotonic()
    hung = app(silent_endpoint, initial=1.0)  # accepts and never answers
    counts = run_roots(hung, ["request"], 200)
    assert time.monotonic() - started < 5.0  # waiting on the endpoint would cost its 2 s timeout, and again
    assert counts["request"] == 200
    hung.close_tracer()


def test_adaptive_mode_lowers_a_hot_operations_probability():
    with Collector(otlp_port=0, udp_port=None, ui_port=None, sampling_port=0, db_path=":memory:",
                   sampling_adaptive=5.0, sampling_adaptive_window=1.0) as collector:
        tracing = app(collector.sampling_url, exporter="otlp", otlp_endpoint=collector.otlp_endpoint,
                      schedule_delay_millis=100, initial=1.0)
        seen = InMemorySpanExporter()
        tracing.provider.add_span_processor(SimpleSpanProcessor(seen))

        def hot_probability() -> float | None:
            params = [s.attributes.get("sampler.param") for s in seen.get_finished_spans() if s.name == "hot"]
            return params[-1] if params else None

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for _ in range(30):
                with tracing.span("hot"):
                    pass
            with tracing.span("cold"):
                pass
            probability = hot_probability()
            if probability is not None and probability < 0.5:
                break
            time.sleep(0.1)
        assert hot_probability() < 0.5
        served = json.loads(request(collector.sampling_port, "GET", f"/sampling?service={SERVICE}")[2])
        rates = {o["operation"]: o["probabilisticSampling"]["samplingRate"]
                 for o in served["operationSampling"]["perOperationStrategies"]}
        assert rates["hot"] < 0.5 and rates["cold"] > rates["hot"]
        tracing.close_tracer()


# --------------------------------------------------------------------------- strategies file, as Jaeger reads it


def test_strategies_file_inheritance_as_jaeger():
    default, services = parse_strategies({
        "service_strategies": [
            {"service": "A", "type": "probabilistic", "param": 0.8},
            {"service": "B", "type": "ratelimiting", "param": 3},
            {"service": "C", "type": "probabilistic", "param": 0.4,
             "operation_strategies": [{"operation": "/x", "type": "probabilistic", "param": 0.3},
                                      {"operation": "/rl", "type": "ratelimiting", "param": 5}]},
        ],
        "default_strategy": {"type": "probabilistic", "param": 0.2,
                             "operation_strategies": [{"operation": "/health", "type": "probabilistic", "param": 0.1}]},
    })
    health = {"operation": "/health", "probabilisticSampling": {"samplingRate": 0.1}}
    assert default["operationSampling"]["perOperationStrategies"] == [health]
    assert services["A"]["operationSampling"]["defaultSamplingProbability"] == 0.8
    assert services["A"]["operationSampling"]["perOperationStrategies"] == [health]
    assert services["B"]["strategyType"] == "RATE_LIMITING"
    assert services["B"]["rateLimitingSampling"] == {"maxTracesPerSecond": 3}
    assert services["B"]["operationSampling"]["defaultSamplingProbability"] == 0.2
    assert [o["operation"] for o in services["C"]["operationSampling"]["perOperationStrategies"]] == ["/x", "/health"]


@pytest.mark.parametrize("doc", [[], {"service_strategies": [{"service": "a", "type": "adaptive", "param": 1}]},
                                 {"default_strategy": {"type": "probabilistic", "param": 2}},
                                 {"service_strategies": [{"type": "probabilistic", "param": 1}]}])
def test_bad_strategies_files_are_refused_at_start(tmp_path, doc):
    path = tmp_path / "bad.json"
    write(path, doc)
    with pytest.raises(StrategiesError):
        SamplingStrategies(path)


def test_adaptive_step_as_jaegers_calculator():
    s = SamplingStrategies(adaptive_target=10.0)
    assert s.next_probability(1.0, 100.0) == pytest.approx(0.1)
    assert s.next_probability(0.1, 11.0) == 0.1  # within 30%: unchanged
    assert s.next_probability(0.1, 1.0) == pytest.approx(0.15)  # increases capped at +50%
    assert s.next_probability(0.1, 0.0) == pytest.approx(0.2)  # nothing seen: doubled
    assert s.next_probability(1e-5, 1e6) == 1e-5 and s.next_probability(0.9, 0.0) == 1.0


def test_legacy_jaeger_client_understands_what_the_collector_serves(collector, strategies_file):
    """jaeger-client (Python) reads strategyType as a string: served as Jaeger's api_v2 JSON does."""
    from jaeger_client.sampler import (
        AdaptiveSampler,
        ProbabilisticSampler,
        RateLimitingSampler,
        RemoteControlledSampler,
    )

    class NoLoop:
        io_loop = None  # no polling: the responses are fed in below

    legacy = RemoteControlledSampler(NoLoop(), SERVICE)
    errors: list[Any] = []
    legacy.error_reporter.error = lambda *args: errors.append(args)

    def feed(service: str) -> Any:
        legacy._update_sampler(json.loads(request(collector.sampling_port, "GET", f"/sampling?service={service}")[2]))
        return legacy.sampler

    sampler = feed(SERVICE)
    assert isinstance(sampler, AdaptiveSampler) and sampler.default_sampling_probability == 0.5
    assert sampler.is_sampled(1 << 62, "A")[0] is False and sampler.is_sampled(1 << 62, "B")[0] is True
    assert isinstance(feed("someone-else"), ProbabilisticSampler) and legacy.sampler.rate == 1.0
    write(strategies_file, {"default_strategy": {"type": "ratelimiting", "param": 7}})
    assert isinstance(feed("someone-else"), RateLimitingSampler) and legacy.sampler.traces_per_second == 7
    assert errors == []
