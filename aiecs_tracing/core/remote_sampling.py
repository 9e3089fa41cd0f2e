"""Jaeger remote sampling: the strategy comes from ``GET <endpoint>?service=<name>``.

As jaeger-client's ``RemoteControlledSampler``: probabilistic, rate limiting, or per
operation (each operation probabilistic OR a lower-bound rate limiter, the
"guaranteed throughput" sampler, with a cap on the operations tracked). Parent-based:
a span with a parent follows the parent's decision; the strategy decides roots, and a
sampled root carries ``sampler.type`` / ``sampler.param`` as jaeger-client's did.

Polling runs on a daemon thread, first poll included, so neither the constructor nor a
request ever waits on the endpoint. A dead or garbled endpoint keeps the last good
strategy (or the initial rate), is logged once (and once on recovery) and counted in
:meth:`JaegerRemoteSampler.info`. After ``os.fork()`` the child starts its own poller.

The per-span path reads one attribute (the strategy in force, swapped whole by the
poller) and returns a prebuilt ``SamplingResult`` where it can.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, SamplingResult
from opentelemetry.trace import TraceState, get_current_span
from opentelemetry.util.types import Attributes

from .sampling_base import SpanSampler, TokenBucket

logger = logging.getLogger("aiecs_tracing")

DEFAULT_MAX_OPERATIONS = 2000  # jaeger-client's default cap on per-operation samplers
MAX_RESPONSE_BYTES = 1 << 20
_ID_MASK = (1 << 64) - 1  # the trace id's low 64 bits, as OpenTelemetry's TraceIdRatioBased
_SAMPLE = Decision.RECORD_AND_SAMPLE
_DROP_RESULT = SamplingResult(Decision.DROP)
_STRATEGY_TYPES = {0: "PROBABILISTIC", 1: "RATE_LIMITING", "PROBABILISTIC": "PROBABILISTIC",
                   "RATE_LIMITING": "RATE_LIMITING"}


class StrategyError(ValueError):
    """A sampling strategy response that cannot be used."""


# --------------------------------------------------------------------------- parsing


def _number(value: Any, what: str, low: float = 0.0, high: float | None = None) -> float:
    if value is None:
        return 0.0  # protobuf JSON leaves zero values out
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StrategyError(f"{what}={value!r} is not a number")
    if not low <= value or (high is not None and value > high) or value != value:
        raise StrategyError(f"{what}={value!r} is out of range")
    return float(value)


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise StrategyError(f"{key} is not an object")
    return value


def parse_strategy(doc: Any) -> tuple[Any, ...]:
    """A hashable description of a strategy response (thrift-JSON or api_v2 JSON).

    ``("probabilistic", rate)``, ``("ratelimiting", traces_per_second)`` or
    ``("operations", default_probability, lower_bound, ((operation, probability), ...))``.
    ``strategyType`` may be a number (old agents) or a string (Jaeger v2); a per-operation
    section wins over both, as in jaeger-client.
    """
    if not isinstance(doc, Mapping):
        raise StrategyError("the response is not a JSON object")
    operations = _section(doc, "operationSampling")
    if operations is not None:
        default = _number(operations.get("defaultSamplingProbability"), "defaultSamplingProbability", 0, 1)
        lower = _number(operations.get("defaultLowerBoundTracesPerSecond"), "defaultLowerBoundTracesPerSecond")
        per_op = operations.get("perOperationStrategies") or []
        if not isinstance(per_op, list):
            raise StrategyError("perOperationStrategies is not a list")
        entries = []
        for item in per_op:
            if not isinstance(item, Mapping) or not isinstance(item.get("operation"), str):
                raise StrategyError(f"bad perOperationStrategies entry {item!r}")
            probabilistic = _section(item, "probabilisticSampling") or {}
            rate = _number(probabilistic.get("samplingRate"), "samplingRate", 0, 1)
            entries.append((item["operation"], rate))
        return ("operations", default, lower, tuple(entries))
    kind = doc.get("strategyType", 0)
    kind = _STRATEGY_TYPES.get(kind.upper() if isinstance(kind, str) else kind)
    if kind is None:
        raise StrategyError(f"unknown strategyType {doc.get('strategyType')!r}")
    if kind == "RATE_LIMITING":
        section = _section(doc, "rateLimitingSampling")
        if section is None:
            raise StrategyError("RATE_LIMITING without rateLimitingSampling")
        return ("ratelimiting", _number(section.get("maxTracesPerSecond"), "maxTracesPerSecond"))
    section = _section(doc, "probabilisticSampling")
    if section is None:
        raise StrategyError("PROBABILISTIC without probabilisticSampling")
    return ("probabilistic", _number(section.get("samplingRate"), "samplingRate", 0, 1))


def describe_strategy(description: tuple[Any, ...]) -> str:
    if description[0] == "operations":
        return (f"per-operation: default probabilistic {description[1]:g}, lower bound "
                f"{description[2]:g}/s, {len(description[3])} operation(s)")
    return f"{description[0]}:{description[1]:g}"


# --------------------------------------------------------------------------- root deciders
# Each has ``sample(trace_id, name, attributes) -> SamplingResult``; built once per strategy.


def _tags(sampler_type: str, param: float) -> tuple[dict[str, Any], SamplingResult]:
    tags: dict[str, Any] = {"sampler.type": sampler_type, "sampler.param": param}
    return tags, SamplingResult(_SAMPLE, tags)


class _Probabilistic:
    __slots__ = ("bound", "tags", "result")

    def __init__(self, rate: float) -> None:
        self.bound = round(rate * (_ID_MASK + 1))
        self.tags, self.result = _tags("probabilistic", rate)

    def sample(self, trace_id: int, name: str, attributes: Attributes) -> SamplingResult:
        if trace_id & _ID_MASK < self.bound:
            return SamplingResult(_SAMPLE, {**attributes, **self.tags}) if attributes else self.result
        return _DROP_RESULT


class _RateLimiting:
    __slots__ = ("limiter", "tags", "result")

    def __init__(self, rate: float) -> None:
        self.limiter = TokenBucket(rate, time.monotonic())
        self.tags, self.result = _tags("ratelimiting", rate)

    def sample(self, trace_id: int, name: str, attributes: Attributes) -> SamplingResult:
        if self.limiter.take(time.monotonic()):
            return SamplingResult(_SAMPLE, {**attributes, **self.tags}) if attributes else self.result
        return _DROP_RESULT


class _GuaranteedThroughput:
    """Probabilistic, or else a lower-bound rate limiter (jaeger-client's, per operation)."""

    __slots__ = ("bound", "limiter", "tags", "result", "lower_tags", "lower_result")

    def __init__(self, rate: float, lower_bound: float) -> None:
        self.bound = round(rate * (_ID_MASK + 1))
        self.limiter = TokenBucket(lower_bound, time.monotonic()) if lower_bound > 0 else None
        self.tags, self.result = _tags("probabilistic", rate)
        self.lower_tags, self.lower_result = _tags("lowerbound", rate)

    def sample(self, trace_id: int, name: str, attributes: Attributes) -> SamplingResult:
        limiter = self.limiter
        if trace_id & _ID_MASK < self.bound:
            if limiter is not None:
                limiter.take(time.monotonic())  # sampled spans count towards the lower bound, as in jaeger-client
            return SamplingResult(_SAMPLE, {**attributes, **self.tags}) if attributes else self.result
        if limiter is not None and limiter.take(time.monotonic()):
            return SamplingResult(_SAMPLE, {**attributes, **self.lower_tags}) if attributes else self.lower_result
        return _DROP_RESULT


class _PerOperation:
    __slots__ = ("samplers", "default_rate", "lower_bound", "max_operations", "fallback")

    def __init__(self, default_rate: float, lower_bound: float, operations: tuple[Any, ...], max_operations: int) -> None:
        self.default_rate = default_rate
        self.lower_bound = lower_bound
        self.max_operations = max_operations
        self.samplers = {name: _GuaranteedThroughput(rate, lower_bound) for name, rate in operations[:max_operations]}
        self.fallback = _Probabilistic(default_rate)  # beyond the cap, as jaeger-client

    def sample(self, trace_id: int, name: str, attributes: Attributes) -> SamplingResult:
        sampler = self.samplers.get(name)
        if sampler is None:
            if len(self.samplers) >= self.max_operations:
                return self.fallback.sample(trace_id, name, attributes)
            sampler = self.samplers.setdefault(name, _GuaranteedThroughput(self.default_rate, self.lower_bound))
        return sampler.sample(trace_id, name, attributes)


def build_decider(
    description: tuple[Any, ...], max_operations: int = DEFAULT_MAX_OPERATIONS
) -> _PerOperation | _RateLimiting | _Probabilistic:
    if description[0] == "operations":
        return _PerOperation(description[1], description[2], description[3], max_operations)
    if description[0] == "ratelimiting":
        return _RateLimiting(description[1])
    return _Probabilistic(description[1])


# --------------------------------------------------------------------------- the sampler

_live: weakref.WeakSet[JaegerRemoteSampler] = weakref.WeakSet()


class JaegerRemoteSampler(SpanSampler):
    """Parent-based sampler whose root strategy is polled from a Jaeger sampling endpoint."""

    def __init__(
        self,
        service_name: str,
        endpoint: str,
        initial_rate: float,
        refresh_interval: float = 60.0,
        *,
        max_operations: int = DEFAULT_MAX_OPERATIONS,
        start: bool = True,
    ) -> None:
        self.service_name = service_name
        self.endpoint = endpoint
        self.refresh_interval = float(refresh_interval)
        self.max_operations = max_operations
        separator = "&" if "?" in endpoint else "?"
        self.url = f"{endpoint}{separator}service={urllib.parse.quote(service_name, safe='')}"
        self.timeout = min(10.0, max(2.0, self.refresh_interval))
        self._description: tuple[Any, ...] = ("probabilistic", float(initial_rate))
        self._decider = build_decider(self._description, max_operations)
        self.polls_ok = 0
        self.polls_failed = 0
        self.last_error: str | None = None
        self.last_poll: float | None = None
        self._failing = False
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # No proxy: the sampling endpoint is an agent or collector next to the service.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        _live.add(self)
        if start:
            self.start()

    # -- per span -------------------------------------------------------------------
    def decide(
        self, parent_context: Context | None, trace_id: int, name: str, attributes: Attributes, trace_state: TraceState | None
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()  # None: the current context
        if parent.is_valid:
            if parent.trace_flags & 1:
                return SamplingResult(_SAMPLE, attributes, parent.trace_state)
            return SamplingResult(Decision.DROP, None, parent.trace_state)
        return self._decider.sample(trace_id, name, attributes)

    def sample_root(self, trace_id: int, name: str) -> SamplingResult:
        """The strategy's decision for a new trace; its attributes are the sampler tags alone."""
        return self._decider.sample(trace_id, name, None)

    def get_description(self) -> str:
        return f"JaegerRemoteSampler{{{self.endpoint}, {describe_strategy(self._description)}}}"

    # -- polling ----------------------------------------------------------------------
    def start(self) -> None:
        if self._closed:
            return
        self._stop = threading.Event()
        thread = threading.Thread(target=self._run, args=(self._stop,), name="aiecs-sampling-poller", daemon=True)
        self._thread = thread
        thread.start()

    def close(self) -> None:
        """Stop polling (idempotent); the strategy in force stays."""
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(0.05)  # never waits on a hung endpoint: the thread is a daemon

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(self.refresh_interval)

    def poll(self) -> bool:
        """Fetch and apply the strategy once; True when it worked."""
        try:
            with self._opener.open(self.url, timeout=self.timeout) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
            if len(body) > MAX_RESPONSE_BYTES:
                raise StrategyError("response larger than 1 MiB")
            description = parse_strategy(json.loads(body))
        except Exception as exc:  # noqa: BLE001 - any failure keeps the strategy in force
            if self._closed:
                return False  # a poll that outlived close_tracer(): nothing to report
            self.last_poll = time.time()
            self.polls_failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if not self._failing:
                self._failing = True
                logger.warning(
                    "sampling strategy from %s unavailable (%s); keeping %s",
                    self.url, self.last_error, describe_strategy(self._description),
                )
            return False
        self.last_poll = time.time()
        self.polls_ok += 1
        if self._failing:
            self._failing = False
            logger.info("sampling strategy from %s available again", self.url)
        self.apply(description)
        return True

    def apply(self, description: tuple[Any, ...]) -> None:
        """Put a strategy (from :func:`parse_strategy`) in force; the same one again changes nothing."""
        if description != self._description:
            decider = build_decider(description, self.max_operations)
            self._description = description
            self._decider = decider  # one attribute store: readers see the old or the new whole

    @property
    def strategy(self) -> str:
        return describe_strategy(self._description)

    def info(self) -> dict[str, Any]:
        return {
            "endpoint": self.url,
            "strategy": self.strategy,
            "refresh_interval": self.refresh_interval,
            "polls_ok": self.polls_ok,
            "polls_failed": self.polls_failed,
            "last_error": self.last_error,
            "polling": not self._closed,
        }

    def _after_fork_in_child(self) -> None:
        # Fresh limiters (their locks may have been held by a thread that does not exist here)
        # and a fresh poller: the parent's thread did not survive the fork.
        self._decider = build_decider(self._description, self.max_operations)
        self._thread = None
        self._failing = False
        self.start()


def _restart_pollers_in_child() -> None:
    for sampler in list(_live):
        if not sampler._closed:
            try:
                sampler._after_fork_in_child()
            except Exception as exc:  # noqa: BLE001 - never break the forked child
                logger.debug("sampling poller restart after fork failed: %r", exc)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_pollers_in_child)
