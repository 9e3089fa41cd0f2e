"""What the local and the remote samplers share, below both: a token bucket and ``should_sample``.

``sampling.py`` (the samplers a config names) builds ``remote_sampling.py``'s sampler, and
both rate-limit with the same bucket; keeping the bucket here lets either import it
without importing the other. The bucket is given the time on each call, so each caller
reads its own clock (tests move ``sampling.time`` by hand).
"""

from __future__ import annotations

import threading
from abc import abstractmethod
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes


class TokenBucket:
    """At most ``rate`` takes per second, bursts of ``max(rate, 1)`` (jaeger-client's rate limiter)."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate = float(rate)
        self._capacity = max(self.rate, 1.0)
        self._balance = self._capacity
        self._last = now
        self._lock = threading.Lock()

    def take(self, now: float) -> bool:
        """One token at time ``now`` (a monotonic clock), if the bucket holds one."""
        if self.rate <= 0:
            return False
        with self._lock:
            self._balance = min(self._capacity, self._balance + (now - self._last) * self.rate)
            self._last = now
            if self._balance >= 1.0:
                self._balance -= 1.0
                return True
            return False


class SpanSampler(Sampler):
    """OpenTelemetry's ``should_sample`` written once; a subclass decides in :meth:`decide`."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        return self.decide(parent_context, trace_id, name, attributes, trace_state)

    @abstractmethod
    def decide(
        self, parent_context: Context | None, trace_id: int, name: str, attributes: Attributes, trace_state: TraceState | None
    ) -> SamplingResult:
        """The decision for one span, from what the samplers here look at."""
