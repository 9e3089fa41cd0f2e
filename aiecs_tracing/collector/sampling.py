"""Sampling strategies the embedded collector serves, as Jaeger's ``remote_sampling`` does.

``GET /sampling?service=<name>`` on the sampling port (5778 by default) and
``GET /api/sampling?service=<name>`` on the query port answer with the JSON of Jaeger's
``api_v2.SamplingStrategyResponse``, as Jaeger v2 writes it (``strategyType`` as a string,
zero values included). Strategies come from a file in Jaeger's format
(``service_strategies``, ``operation_strategies``, ``default_strategy``; types
``probabilistic`` and ``ratelimiting``), re-read when it changes; without one every trace
is sampled (probabilistic 1.0).

Adaptive mode (``target`` traces per second per operation) recomputes each operation's
probability from the root spans the collector stored over the last ``window`` seconds,
as Jaeger's adaptive sampling does: ``new = old * target / observed`` (increases capped
at +50% per step, no change within 30% of the target, doubled when nothing was seen),
bounded to ``[min_probability, 1]``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .http_base import BaseHandler

if TYPE_CHECKING:
    from .store import SpanStore

logger = logging.getLogger("aiecs_tracing.collector")

DEFAULT_SAMPLING_PORT = 5778
DEFAULT_PROBABILITY = 1.0
DEFAULT_ADAPTIVE_WINDOW = 60.0
MIN_PROBABILITY = 1e-5  # Jaeger's --sampling.min-sampling-probability
DELTA_TOLERANCE = 0.3  # Jaeger's: within 30% of the target, leave the probability alone
INCREASE_CAP = 0.5  # Jaeger's percentage-increase-capped calculator
ADAPTIVE_LOWER_BOUND = 1 / 60  # Jaeger's min samples per second: one trace a minute per operation


class StrategiesError(ValueError):
    """A strategies file that cannot be used."""


def probabilistic(rate: float) -> dict[str, Any]:
    return {"strategyType": "PROBABILISTIC", "probabilisticSampling": {"samplingRate": rate}}


def rate_limiting(traces_per_second: float) -> dict[str, Any]:
    return {"strategyType": "RATE_LIMITING", "rateLimitingSampling": {"maxTracesPerSecond": int(traces_per_second)}}


def per_operation(default: float, lower_bound: float, operations: Mapping[str, float]) -> dict[str, Any]:
    return {
        "defaultSamplingProbability": default,
        "defaultLowerBoundTracesPerSecond": lower_bound,
        "perOperationStrategies": [
            {"operation": name, "probabilisticSampling": {"samplingRate": rate}} for name, rate in operations.items()
        ],
        "defaultUpperBoundTracesPerSecond": 0,
    }


def _strategy(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise StrategiesError(f"{where} is not an object")
    kind, param = entry.get("type"), entry.get("param")
    if isinstance(param, bool) or not isinstance(param, (int, float)) or param < 0:
        raise StrategiesError(f"{where}: param {param!r} is not a number >= 0")
    if kind == "probabilistic":
        if param > 1:
            raise StrategiesError(f"{where}: probability {param!r} is above 1")
        return probabilistic(float(param))
    if kind == "ratelimiting":
        return rate_limiting(param)
    raise StrategiesError(f"{where}: type {kind!r} is not probabilistic or ratelimiting")


def _service_strategy(entry: Mapping[str, Any], where: str, default_probability: float) -> dict[str, Any]:
    response = _strategy(entry, where)
    operations = entry.get("operation_strategies") or []
    if not isinstance(operations, list):
        raise StrategiesError(f"{where}: operation_strategies is not a list")
    if not operations:
        return response
    default = response["probabilisticSampling"]["samplingRate"] if "probabilisticSampling" in response else (
        default_probability
    )
    rates: dict[str, float] = {}
    for index, op in enumerate(operations):
        op_where = f"{where} operation_strategies[{index}]"
        if not isinstance(op, Mapping) or not isinstance(op.get("operation"), str):
            raise StrategiesError(f"{op_where}: no operation name")
        op_strategy = _strategy(op, op_where)
        if "probabilisticSampling" not in op_strategy:  # as Jaeger: operations are probabilistic only
            logger.warning("sampling strategies: %s is ratelimiting; operations take probabilistic only", op_where)
            continue
        rates[op["operation"]] = op_strategy["probabilisticSampling"]["samplingRate"]
    response["operationSampling"] = per_operation(default, 0, rates)
    return response


def parse_strategies(
    doc: Any, default_probability: float = DEFAULT_PROBABILITY
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``(default response, {service: response})`` from a strategies file, as Jaeger's file provider.

    A service without operation strategies inherits the default strategy's (with its own
    probability as the default, when probabilistic); one with them gets the default's for
    operations it does not name.
    """
    if not isinstance(doc, Mapping):
        raise StrategiesError("the strategies file is not a JSON object")
    default = probabilistic(default_probability)
    if doc.get("default_strategy") is not None:
        default = _service_strategy(doc["default_strategy"], "default_strategy", default_probability)
    default_ops = default.get("operationSampling")
    services: dict[str, dict[str, Any]] = {}
    entries = doc.get("service_strategies") or []
    if not isinstance(entries, list):
        raise StrategiesError("service_strategies is not a list")
    for index, entry in enumerate(entries):
        where = f"service_strategies[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("service"), str):
            raise StrategiesError(f"{where}: no service name")
        response = _service_strategy(entry, where, default_probability)
        if default_ops is not None:
            own = response.get("operationSampling")
            if own is None:
                inherited = json.loads(json.dumps(default_ops))
                if "probabilisticSampling" in response:
                    inherited["defaultSamplingProbability"] = response["probabilisticSampling"]["samplingRate"]
                response["operationSampling"] = inherited
            else:
                named = {op["operation"] for op in own["perOperationStrategies"]}
                own["perOperationStrategies"] += [
                    op for op in default_ops["perOperationStrategies"] if op["operation"] not in named
                ]
        services[entry["service"]] = response
    return default, services


class SamplingStrategies:
    """What the collector answers per service: file strategies, optionally adapted to throughput."""

    def __init__(
        self,
        strategies_file: str | os.PathLike[str] | None = None,
        *,
        adaptive_target: float | None = None,
        store: SpanStore | None = None,
        window: float = DEFAULT_ADAPTIVE_WINDOW,
        min_probability: float = MIN_PROBABILITY,
        default_probability: float = DEFAULT_PROBABILITY,
    ) -> None:
        self.path = os.fspath(strategies_file) if strategies_file is not None else None
        self.adaptive_target = adaptive_target
        self.store = store
        self.window = float(window)
        self.min_probability = min_probability
        self.default_probability = default_probability
        self.reloads = 0
        self.reload_errors = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._default: dict[str, Any] = probabilistic(default_probability)
        self._services: dict[str, dict[str, Any]] = {}
        self._file_state: tuple[int, int, int] | None = None
        self._started = time.time()
        self._probabilities: dict[str, dict[str, float]] = {}
        self._computed_at: dict[str, float] = {}
        if self.path is not None:
            self._reload(raise_errors=True)

    # -- the strategies file -------------------------------------------------------
    def _reload(self, raise_errors: bool = False) -> None:
        """Re-read the file when its mtime, size or inode changed; a bad file keeps the last good one."""
        assert self.path is not None
        state = None
        try:
            stat = os.stat(self.path)
            state = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if state == self._file_state:
                return
            with open(self.path, encoding="utf-8") as handle:
                default, services = parse_strategies(json.load(handle), self.default_probability)
        except (OSError, ValueError) as exc:
            if raise_errors:
                raise StrategiesError(f"sampling strategies file {self.path}: {exc}") from exc
            message = f"{type(exc).__name__}: {exc}"
            if message != self.last_error:  # once per distinct problem, not per request
                logger.warning("sampling strategies file %s not reloaded, keeping the last good one: %s",
                               self.path, message)
            self.last_error = message
            self.reload_errors += 1
            self._file_state = state  # the same bad file is not re-read per request
            return
        self._default, self._services, self._file_state = default, services, state
        self.reloads += 1
        self.last_error = None

    def strategy(self, service: str) -> dict[str, Any]:
        """The strategy response for ``service``, as a JSON-ready dict."""
        with self._lock:
            if self.path is not None:
                self._reload()
            base = self._services.get(service, self._default)
            if self.adaptive_target is None or "rateLimitingSampling" in base:
                return base
            return self._adaptive(service, base)

    def response_body(self, service: str) -> bytes:
        return json.dumps(self.strategy(service), separators=(",", ":")).encode("utf-8")

    # -- adaptive ------------------------------------------------------------------
    def _adaptive(self, service: str, base: dict[str, Any]) -> dict[str, Any]:
        ops = base.get("operationSampling")
        default = ops["defaultSamplingProbability"] if ops else base["probabilisticSampling"]["samplingRate"]
        rates = {op["operation"]: op["probabilisticSampling"]["samplingRate"] for op in (ops or {}).get(
            "perOperationStrategies", [])}
        now = time.time()
        if now - self._computed_at.get(service, self._started) >= self.window:
            self._recompute(service, now, rates, default)
        rates.update(self._probabilities.get(service, {}))
        return {**probabilistic(default), "operationSampling": per_operation(default, ADAPTIVE_LOWER_BOUND, rates)}

    def _recompute(self, service: str, now: float, rates: dict[str, float], default: float) -> None:
        window = min(self.window, now - self._started)
        if window <= 0 or self.store is None:
            return
        counts = self.store.root_span_counts(service, int((now - window) * 1_000_000))
        probabilities = self._probabilities.setdefault(service, {})
        for operation in set(counts) | set(probabilities):
            old = probabilities.get(operation, rates.get(operation, default))
            probabilities[operation] = self.next_probability(old, counts.get(operation, 0) / window)
        self._computed_at[service] = now

    def next_probability(self, old: float, observed: float) -> float:
        """Jaeger's step: ``old * target / observed``, increases capped, clamped to [min, 1]."""
        target = float(self.adaptive_target or 0)
        if target > 0 and abs(observed - target) / target < DELTA_TOLERANCE:
            return old
        if observed <= 0:
            new = old * 2.0
        else:
            new = old * target / observed
            if new > old * (1 + INCREASE_CAP):
                new = old * (1 + INCREASE_CAP)
        return min(1.0, max(self.min_probability, new))

    def info(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "adaptive_target": self.adaptive_target,
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "last_error": self.last_error,
        }


def respond_strategy(handler: BaseHandler, query: str) -> None:
    """Answer ``?service=<name>`` (exactly once, as Jaeger requires) with that service's strategy."""
    services = parse_qs(query, keep_blank_values=True).get("service", [])
    if len(services) != 1:
        handler.respond(400, b"'service' parameter must be provided once\n", "text/plain; charset=utf-8")
        return
    body = handler.collector.sampling.response_body(services[0])
    handler.respond(200, body, "application/json")


class SamplingHandler(BaseHandler):
    """The sampling port: ``GET /sampling?service=`` (and ``/`` and ``/api/sampling``, as Jaeger's)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urlsplit(self.path)
        if url.path not in ("/", "/sampling", "/api/sampling"):
            self.respond(404, b"not found\n", "text/plain; charset=utf-8")
            return
        try:
            respond_strategy(self, url.query)
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
            logger.warning("collector: sampling strategy request failed: %s", exc)
            self.respond_json(500, {"error": f"{type(exc).__name__}: {exc}"})
