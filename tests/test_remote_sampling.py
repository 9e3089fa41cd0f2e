"""Jaeger remote sampling, client side: parsing, strategies, environment, polling over real sockets."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from aiecs_tracing import TracingManager
from aiecs_tracing.core.config import parse_duration_seconds, resolve_config
from aiecs_tracing.core.remote_sampling import JaegerRemoteSampler, StrategyError, parse_strategy

PROBABILISTIC_V1 = {"strategyType": 0, "probabilisticSampling": {"samplingRate": 0.25}}
PROBABILISTIC_V2 = {"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 0.25}}
RATE_V1 = {"strategyType": 1, "rateLimitingSampling": {"maxTracesPerSecond": 5}}
RATE_V2 = {"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": 5}}
PER_OPERATION = {
    "strategyType": "PROBABILISTIC",
    "probabilisticSampling": {"samplingRate": 0.5},
    "operationSampling": {
        "defaultSamplingProbability": 0.5,
        "defaultLowerBoundTracesPerSecond": 0,
        "perOperationStrategies": [
            {"operation": "never", "probabilisticSampling": {}},  # api_v2 JSON leaves a zero rate out
            {"operation": "always", "probabilisticSampling": {"samplingRate": 1}},
        ],
        "defaultUpperBoundTracesPerSecond": 0,
    },
}


# --------------------------------------------------------------------------- a strategy server


class StrategyServer:
    """A real HTTP server answering ``GET /sampling?service=`` with whatever ``body`` is now."""

    def __init__(self, body: Any = PROBABILISTIC_V2) -> None:
        self.body: Any = body
        self.requests: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                service = parse_qs(urlsplit(self.path).query).get("service", [""])[0]
                outer.requests[service] += 1
                body = outer.body
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sampling"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def strategy_server() -> Iterator[StrategyServer]:
    server = StrategyServer()
    yield server
    server.close()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/sampling"
    stop.set()
    for conn in accepted:
        conn.close()
    listener.close()


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met within the deadline")


def remote_manager(endpoint: str, **options: Any) -> TracingManager:
    options.setdefault("sampler_param", 0.0)
    return TracingManager(
        "remote-svc",
        exporter="memory",
        sampler_type="remote",
        sampling_endpoint=endpoint,
        sampling_refresh_interval=options.pop("refresh", 0.1),
        set_global_provider=False,
        set_default_manager=False,
        **options,
    )


def sampled_by_name(tracing: TracingManager) -> Counter[str]:
    tracing.flush()
    return Counter(span.name for span in tracing.exporter.get_finished_spans())


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("doc", [PROBABILISTIC_V1, PROBABILISTIC_V2, {"probabilisticSampling": {"samplingRate": 0.25}}])
def test_probabilistic_in_both_strategy_type_forms(doc):
    assert parse_strategy(doc) == ("probabilistic", 0.25)


@pytest.mark.parametrize("doc", [RATE_V1, RATE_V2, {"strategyType": "rate_limiting", "rateLimitingSampling": {
    "maxTracesPerSecond": 5}}])
def test_rate_limiting_in_both_strategy_type_forms(doc):
    assert parse_strategy(doc) == ("ratelimiting", 5.0)


def test_per_operation_wins_and_zero_values_may_be_left_out():
    assert parse_strategy(PER_OPERATION) == ("operations", 0.5, 0.0, (("never", 0.0), ("always", 1.0)))
    assert parse_strategy({"operationSampling": {}}) == ("operations", 0.0, 0.0, ())


@pytest.mark.parametrize(
    "doc",
    [
        [],
        "probabilistic",
        {"strategyType": 7, "probabilisticSampling": {"samplingRate": 0.1}},
        {"strategyType": "ADAPTIVE"},
        {"strategyType": "PROBABILISTIC"},
        {"strategyType": 1},
        {"probabilisticSampling": {"samplingRate": 1.5}},
        {"probabilisticSampling": {"samplingRate": "0.5"}},
        {"rateLimitingSampling": {"maxTracesPerSecond": -1}, "strategyType": 1},
        {"operationSampling": {"perOperationStrategies": [{"probabilisticSampling": {}}]}},
        {"operationSampling": {"perOperationStrategies": {"a": 1}}},
    ],
)
def test_garbage_is_rejected(doc):
    with pytest.raises(StrategyError):
        parse_strategy(doc)


# --------------------------------------------------------------------------- decisions


def decide(sampler: JaegerRemoteSampler, name: str, n: int, trace_ids: Iterator[int] | None = None) -> int:
    import random

    rng = random.Random(7)
    root = Context()
    return sum(
        sampler.should_sample(root, rng.getrandbits(128) or 1, name).decision.is_sampled() for _ in range(n)
    )


def test_per_operation_probabilities_and_default(strategy_server):
    strategy_server.body = PER_OPERATION
    sampler = JaegerRemoteSampler("svc", strategy_server.url, 0.0, start=False)
    assert sampler.poll()
    assert decide(sampler, "never", 500) == 0
    assert decide(sampler, "always", 500) == 500
    assert 150 <= decide(sampler, "other", 500) <= 350  # the default 0.5
    sampler.close()


def test_per_operation_lower_bound_and_operation_cap():
    sampler = JaegerRemoteSampler("svc", "http://127.0.0.1:9/sampling", 0.0, start=False, max_operations=2)
    sampler.apply(("operations", 0.0, 2.0, (("a", 0.0),)))
    # p=0 but a lower bound of 2 traces/s: the first one or two are let through, then nothing
    first = sampler.should_sample(Context(), 12345, "a")
    assert first.decision.is_sampled()
    assert dict(first.attributes) == {"sampler.type": "lowerbound", "sampler.param": 0.0}
    assert decide(sampler, "a", 200) <= 2
    decide(sampler, "b", 1)  # the second operation tracked
    assert len(sampler._decider.samplers) == 2
    assert decide(sampler, "c", 50) == 0  # beyond the cap: the default probability (0), no lower bound
    assert len(sampler._decider.samplers) == 2


def test_rate_limiting_strategy(strategy_server):
    strategy_server.body = RATE_V1
    sampler = JaegerRemoteSampler("svc", strategy_server.url, 1.0, start=False)
    assert sampler.poll()
    assert sampler.strategy == "ratelimiting:5"
    assert decide(sampler, "op", 200) <= 6  # a burst of at most 5, plus what refills meanwhile
    sampler.close()


def test_parent_decides_children_strategy_decides_roots(strategy_server):
    strategy_server.body = {"strategyType": 0, "probabilisticSampling": {"samplingRate": 0}}
    sampler = JaegerRemoteSampler("svc", strategy_server.url, 1.0, start=False)
    assert sampler.poll()
    sampled_parent = SpanContext(1, 2, True, TraceFlags(TraceFlags.SAMPLED))
    dropped_parent = SpanContext(1, 2, True, TraceFlags(TraceFlags.DEFAULT))
    child = sampler.should_sample(set_span_in_context(NonRecordingSpan(sampled_parent)), 1, "op", attributes={"k": 1})
    assert child.decision.is_sampled() and dict(child.attributes) == {"k": 1}
    assert not sampler.should_sample(set_span_in_context(NonRecordingSpan(dropped_parent)), 1, "op").decision.is_sampled()
    assert not sampler.should_sample(Context(), 1, "op").decision.is_sampled()
    sampler.close()


def test_sampler_tags_on_root_spans_not_on_children(strategy_server):
    strategy_server.body = {"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": 1}}
    tracing = remote_manager(strategy_server.url)
    wait_until(lambda: tracing.get_tracer_info()["sampling"]["strategy"] == "probabilistic:1")
    with tracing.span("root", tags={"mine": 1}):
        with tracing.span("child"):
            pass
        light = tracing.start_light_span("light child", {})
        light.finish()
    light_root = tracing.start_light_span("light root", {"x": 1}, parent_span=Context())
    light_root.finish()
    tracing.flush()
    spans = {span.name: dict(span.attributes) for span in tracing.exporter.get_finished_spans()}
    assert spans["root"]["sampler.type"] == "probabilistic" and spans["root"]["sampler.param"] == 1.0
    assert spans["root"]["mine"] == 1
    assert spans["light root"]["sampler.type"] == "probabilistic" and spans["light root"]["x"] == 1
    for child in ("child", "light child"):
        assert "sampler.type" not in spans[child] and "sampler.param" not in spans[child]
    tracing.close_tracer()


def test_light_spans_obey_the_remote_sampler(strategy_server):
    strategy_server.body = PER_OPERATION
    tracing = remote_manager(strategy_server.url, sampler_param=1.0)
    wait_until(lambda: tracing.get_tracer_info()["sampling"]["polls_ok"] >= 1)
    for _ in range(50):
        tracing.start_light_span("never", {}, parent_span=Context()).finish()
        tracing.start_light_span("always", {}, parent_span=Context()).finish()
    with tracing.span("always") as parent:  # children follow their parent, whatever their name
        tracing.start_light_span("never", {}, parent_span=parent).finish()
    counts = sampled_by_name(tracing)
    assert counts["never"] == 1 and counts["always"] == 51
    source = tracing._light_source
    assert source.remote is tracing.provider.sampler and not source.always_on  # no const fast path
    tracing.close_tracer()


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1m", 60.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("2", 2.0), ("0.25", 0.25), ("250000us", 0.25)],
)
def test_go_durations(text, seconds):
    assert parse_duration_seconds("x", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "fast", "1x", "-1s", "0", "1m 30s", "ms"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration_seconds("x", text)


def test_jaeger_environment():
    cfg = resolve_config(env={
        "JAEGER_SAMPLER_TYPE": "remote",
        "JAEGER_SAMPLER_PARAM": "0.2",
        "JAEGER_SAMPLER_MANAGER_HOST_PORT": "agent:5778",
        "JAEGER_SAMPLER_REFRESH_INTERVAL": "500ms",
    })
    assert cfg.error is None
    assert (cfg.sampler_type, cfg.sampler_param) == ("remote", 0.2)
    assert cfg.sampling_endpoint == "http://agent:5778/sampling"
    assert cfg.sampling_refresh_interval == 0.5
    cfg = resolve_config(env={
        "JAEGER_SAMPLER_TYPE": "remote",
        "JAEGER_SAMPLING_ENDPOINT": "http://jaeger:5778/api/sampling",
        "JAEGER_SAMPLER_MANAGER_HOST_PORT": "agent:5778",
        "JAEGER_SAMPLER_REFRESH_INTERVAL": "1m",
    })
    assert cfg.sampling_endpoint == "http://jaeger:5778/api/sampling"
    assert cfg.sampling_refresh_interval == 60.0
    assert cfg.sampler_param == 0.001  # jaeger-client's initial rate


def test_defaults_and_arguments_beat_environment():
    cfg = resolve_config(sampler_type="remote", env={})
    assert (cfg.sampling_endpoint, cfg.sampling_refresh_interval) == ("http://localhost:5778/sampling", 60.0)
    cfg = resolve_config(
        sampler_type="remote", sampler_param=0.5, sampling_endpoint="http://x:1/s", sampling_refresh_interval="2s",
        env={"JAEGER_SAMPLING_ENDPOINT": "http://y:2/s", "JAEGER_SAMPLER_REFRESH_INTERVAL": "9"},
    )
    assert (cfg.sampler_param, cfg.sampling_endpoint, cfg.sampling_refresh_interval) == (0.5, "http://x:1/s", 2.0)


@pytest.mark.parametrize("name", ["jaeger_remote", "parentbased_jaeger_remote"])
def test_otel_environment(name):
    cfg = resolve_config(env={
        "OTEL_TRACES_SAMPLER": name,
        "OTEL_TRACES_SAMPLER_ARG": "endpoint=http://otel-agent:5778/sampling,pollingIntervalMs=250,"
                                   "initialSamplingRate=0.3",
    })
    assert cfg.error is None
    assert (cfg.sampler_type, cfg.sampler_param) == ("remote", 0.3)
    assert cfg.sampling_endpoint == "http://otel-agent:5778/sampling"
    assert cfg.sampling_refresh_interval == 0.25
    cfg = resolve_config(env={"OTEL_TRACES_SAMPLER": name})
    assert (cfg.sampler_param, cfg.sampling_endpoint) == (0.001, "http://localhost:5778/sampling")


@pytest.mark.parametrize(
    "env",
    [
        {"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLER_PARAM": "2"},
        {"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLING_ENDPOINT": "agent:5778"},
        {"JAEGER_SAMPLER_TYPE": "remote", "JAEGER_SAMPLER_REFRESH_INTERVAL": "soon"},
        {"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_TRACES_SAMPLER_ARG": "pollingInterval=5"},
        {"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_TRACES_SAMPLER_ARG": "initialSamplingRate=x"},
    ],
)
def test_bad_remote_settings_disable_tracing_naming_them(env):
    cfg = resolve_config(env=env)
    assert cfg.error and not cfg.enabled


def test_remote_settings_from_environment_are_ignored_for_local_samplers():
    cfg = resolve_config(env={"JAEGER_SAMPLER_TYPE": "const", "JAEGER_SAMPLING_ENDPOINT": "not a url"})
    assert cfg.error is None


# --------------------------------------------------------------------------- polling


def test_dead_endpoint_never_blocks_the_constructor(silent_endpoint):
    started = time.monotonic()
    tracing = remote_manager(silent_endpoint, sampler_param=1.0, refresh=30)
    with tracing.span("request"):
        pass
    elapsed = time.monotonic() - started
    assert elapsed < 3.0  # waiting on a poll would take its 10 s timeout
    assert sampled_by_name(tracing)["request"] == 1  # the initial rate is in force
    info = tracing.get_tracer_info()["sampling"]
    assert info["endpoint"].startswith(silent_endpoint) and info["polls_ok"] == 0
    started = time.monotonic()
    tracing.close_tracer(timeout=1)
    assert time.monotonic() - started < 3.0  # not the hung poll's 10 s
    assert tracing.get_tracer_info()["sampling"]["polling"] is False


def test_refused_endpoint_keeps_initial_rate_counted_and_logged_once(caplog):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with caplog.at_level("INFO", logger="aiecs_tracing"):
        tracing = remote_manager(f"http://127.0.0.1:{port}/sampling", sampler_param=1.0, refresh=0.05)
        wait_until(lambda: tracing.get_tracer_info()["sampling"]["polls_failed"] >= 3)
    info = tracing.get_tracer_info()["sampling"]
    assert "URLError" in info["last_error"] or "Connection" in info["last_error"]
    assert info["strategy"] == "probabilistic:1"
    assert sum("unavailable" in r.getMessage() and f":{port}/" in r.getMessage() for r in caplog.records) == 1
    tracing.close_tracer()


def test_garbage_keeps_last_good_strategy_counted_and_recovery_logged(strategy_server, caplog):
    strategy_server.body = PROBABILISTIC_V1
    tracing = remote_manager(strategy_server.url, refresh=0.05)
    wait_until(lambda: tracing.get_tracer_info()["sampling"]["strategy"] == "probabilistic:0.25")
    with caplog.at_level("INFO", logger="aiecs_tracing"):
        for garbage in (b"<html>oops</html>", b'{"strategyType": "ADAPTIVE"}', b"[]"):
            strategy_server.body = garbage
            failed = tracing.get_tracer_info()["sampling"]["polls_failed"]
            wait_until(lambda failed=failed: tracing.get_tracer_info()["sampling"]["polls_failed"] >= failed + 2)
            assert tracing.get_tracer_info()["sampling"]["strategy"] == "probabilistic:0.25"
        strategy_server.body = RATE_V2
        wait_until(lambda: tracing.get_tracer_info()["sampling"]["strategy"] == "ratelimiting:5")
    messages = [r.getMessage() for r in caplog.records if strategy_server.url in r.getMessage()]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("available again" in m for m in messages) == 1
    info = tracing.get_tracer_info()["sampling"]
    assert info["polls_failed"] >= 6 and info["polls_ok"] >= 2 and info["last_error"]
    assert strategy_server.requests["remote-svc"] >= 8
    tracing.close_tracer()
    polls = strategy_server.requests["remote-svc"]
    time.sleep(0.3)  # closed: no more polls (the absence of an event, so a short fixed wait)
    assert strategy_server.requests["remote-svc"] <= polls + 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_polls_again_after_fork(strategy_server):
    tracing = remote_manager(strategy_server.url, refresh=0.05)
    wait_until(lambda: tracing.get_tracer_info()["sampling"]["polls_ok"] >= 1)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its own poller runs
        try:
            before = tracing.get_tracer_info()["sampling"]["polls_ok"]
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and tracing.get_tracer_info()["sampling"]["polls_ok"] < before + 3:
                time.sleep(0.02)
            os.write(write_end, json.dumps(tracing.get_tracer_info()["sampling"]["polls_ok"] - before).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    assert int(report) >= 3
    tracing.close_tracer()
