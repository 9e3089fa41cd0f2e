"""Remote sampling against a real Jaeger v2 (its remote_sampling extension, strategies from a file).

The same three checks as against the embedded collector: per-operation strategies obeyed,
a changed strategies file taking effect, and a dead endpoint never blocking the app.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from aiecs_tracing.core.remote_sampling import parse_strategy
from tests.integration.test_sampling_collector import SERVICE, app, run_roots, sampling, strategies
from tests.test_remote_sampling import wait_until

pytestmark = pytest.mark.slow


def served(real_jaeger) -> dict:
    with urllib.request.urlopen(f"{real_jaeger.sampling_url}?service={SERVICE}", timeout=5) as response:
        return json.loads(response.read())


def test_per_operation_strategies_from_real_jaeger_are_obeyed(real_jaeger):
    real_jaeger.set_strategies(strategies(A=0.0, B=1.0, C=0.5))
    wait_until(lambda: "operationSampling" in served(real_jaeger))
    doc = served(real_jaeger)
    assert doc["strategyType"] in (0, "PROBABILISTIC")  # v1.76.0 writes the number; either is understood
    assert parse_strategy(doc) == ("operations", 0.5, 0.0, (("A", 0.0), ("B", 1.0), ("C", 0.5)))
    tracing = app(real_jaeger.sampling_url)
    wait_until(lambda: sampling(tracing)["strategy"].startswith("per-operation"))
    counts = run_roots(tracing, ["A", "B", "C"], 400)
    assert counts["A"] == 0
    assert counts["B"] == 400
    assert 120 <= counts["C"] <= 280
    tracing.close_tracer()


def test_changed_strategies_take_effect_from_real_jaeger(real_jaeger):
    real_jaeger.set_strategies(strategies(B=1.0))
    wait_until(lambda: "operationSampling" in served(real_jaeger))
    tracing = app(real_jaeger.sampling_url)
    wait_until(lambda: sampling(tracing)["strategy"].startswith("per-operation"))
    assert run_roots(tracing, ["B"], 50)["B"] == 50
    real_jaeger.set_strategies({"service_strategies": [{"service": SERVICE, "type": "ratelimiting", "param": 2}],
                                "default_strategy": {"type": "probabilistic", "param": 1.0}})
    wait_until(lambda: "rateLimitingSampling" in served(real_jaeger))  # Jaeger re-reads every second
    polls_before = sampling(tracing)["polls_ok"]
    wait_until(lambda: sampling(tracing)["strategy"] == "ratelimiting:2")
    assert sampling(tracing)["polls_ok"] - polls_before <= 3  # within two of our polls once Jaeger serves it
    assert run_roots(tracing, ["B"], 200)["B"] <= 4
    tracing.close_tracer()


def test_real_jaeger_gone_never_blocks_the_app(real_jaeger):
    real_jaeger.set_strategies(strategies(A=0.0, B=1.0))
    wait_until(lambda: "operationSampling" in served(real_jaeger))
    tracing = app(real_jaeger.sampling_url)
    wait_until(lambda: sampling(tracing)["strategy"].startswith("per-operation"))
    real_jaeger.stop()
    wait_until(lambda: sampling(tracing)["polls_failed"] >= 2)
    counts = run_roots(tracing, ["A", "B"], 200)
    assert (counts["A"], counts["B"]) == (0, 200)  # the last good strategy, not the initial rate 0
    assert sampling(tracing)["last_error"]
    tracing.close_tracer()
