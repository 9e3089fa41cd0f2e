"""jaeger-client's samplers on OpenTelemetry: const, probabilistic, ratelimiting, remote.

All are parent-based: a sampled (or dropped) upstream decision, from either W3C or
Jaeger headers, is honoured, so a trace is never cut in half between services.
``remote`` (Jaeger remote sampling, polled strategies) lives in ``remote_sampling.py``.
OpenTelemetry Python has no rate-limiting sampler; ``RateLimitingSampler`` is a token
bucket in spans per second, as jaeger-client's was (the bucket is in ``sampling_base.py``,
which the remote sampler uses too).
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import TraceState
from opentelemetry.util.types import Attributes

from .sampling_base import SpanSampler, TokenBucket


class RateLimitingSampler(SpanSampler):
    """Sample at most ``spans_per_second`` new traces per second (token bucket)."""

    def __init__(self, spans_per_second: float) -> None:
        self.rate = float(spans_per_second)
        self._bucket = TokenBucket(self.rate, time.monotonic())

    def take(self) -> bool:
        return self._bucket.take(time.monotonic())

    def decide(
        self, parent_context: Context | None, trace_id: int, name: str, attributes: Attributes, trace_state: TraceState | None
    ) -> SamplingResult:
        decision = Decision.RECORD_AND_SAMPLE if self.take() else Decision.DROP
        return SamplingResult(decision, attributes, trace_state)

    def get_description(self) -> str:
        return f"RateLimitingSampler{{{self.rate}}}"


def build_sampler(
    sampler_type: str,
    param: float,
    *,
    service_name: str = "",
    endpoint: str = "",
    refresh_interval: float = 60.0,
) -> Sampler:
    """A parent-based sampler for a validated (type, param) pair.

    ``remote`` polls ``endpoint`` for ``service_name``'s strategy every ``refresh_interval``
    seconds, ``param`` being the probability in force until the first answer.
    """
    if sampler_type == "remote":
        from .remote_sampling import JaegerRemoteSampler

        return JaegerRemoteSampler(service_name, endpoint, param, refresh_interval)
    if sampler_type == "const":
        root: Sampler = ALWAYS_ON if param else ALWAYS_OFF
    elif sampler_type == "probabilistic":
        root = TraceIdRatioBased(param)
    elif sampler_type == "ratelimiting":
        root = RateLimitingSampler(param)
    else:  # validated earlier; be safe anyway
        root = ALWAYS_ON
    return ParentBased(root)


def describe_sampler(sampler_type: str, param: float) -> str:
    return f"{sampler_type}:{param:g} (parent-based)"


def sampler_for(cfg: Any) -> Sampler:
    """The sampler a manager's :class:`~aiecs_tracing.core.config.TracingConfig` asks for."""
    return build_sampler(
        cfg.sampler_type,
        cfg.sampler_param,
        service_name=cfg.service_name,
        endpoint=cfg.sampling_endpoint,
        refresh_interval=cfg.sampling_refresh_interval,
    )


def sampling_info(sampler: Any) -> dict[str, Any] | None:
    """Remote sampling's state for ``get_tracer_info()["sampling"]`` (None for local samplers)."""
    info = getattr(sampler, "info", None)
    return info() if callable(info) else None


def close_sampler(sampler: Any) -> None:
    """Stop a remote sampler's poller; nothing for local samplers."""
    close = getattr(sampler, "close", None)
    if callable(close):
        close()
