"""What a running collector's ports share and its handlers update, all thread-safe.

Per-receiver span counters, the budget of request bytes held in memory, and the
priority of queries over decodes. Kept below the handlers and the server that creates
them, so that handlers (:mod:`.http_base`) can name these types without importing the
server.
"""

from __future__ import annotations

import threading
from collections import defaultdict


class ReceiverStats:
    """Per-receiver counters: spans received/rejected and payloads (requests, datagrams) rejected.

    A payload that cannot be decoded at all counts once under ``rejected_payloads``;
    spans refused individually (bad ids, full backlog) count under ``rejected_spans``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: dict[str, int] = defaultdict(int)
        self._rejected_spans: dict[str, int] = defaultdict(int)
        self._rejected_payloads: dict[str, int] = defaultdict(int)

    def receive(self, receiver: str, spans: int) -> None:
        with self._lock:
            self._received[receiver] += spans

    def reject_spans(self, receiver: str, spans: int) -> None:
        with self._lock:
            self._rejected_spans[receiver] += spans

    def reject_payload(self, receiver: str) -> None:
        with self._lock:
            self._rejected_payloads[receiver] += 1

    def snapshot(self, receivers: tuple[str, ...]) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "received": {name: self._received[name] for name in receivers},
                "rejected": {name: self._rejected_spans[name] + self._rejected_payloads[name] for name in receivers},
                "rejected_spans": {name: self._rejected_spans[name] for name in receivers},
                "rejected_payloads": {name: self._rejected_payloads[name] for name in receivers},
            }


class BytesInFlight:
    """The budget of request bytes admitted but not yet answered (bodies held in memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def reserve(self, count: int) -> bool:
        with self._lock:
            if self._used and self._used + count > self.limit:
                return False  # one request alone may always use the whole budget
            self._used += count
            return True

    def release(self, count: int) -> None:
        with self._lock:
            self._used = max(0, self._used - count)

    @property
    def used(self) -> int:
        with self._lock:
            return self._used


class QueryPriority:
    """Queries first: while one is being answered, a decode waits (up to ``patience`` seconds).

    Python threads share one interpreter lock; a query that competes with several decoding
    requests gets a slice of it at a time. Holding back new decodes while queries run
    keeps the UI answering when ingest is saturated; the bound keeps ingest moving under a
    constant stream of queries.
    """

    def __init__(self, patience: float = 0.05) -> None:
        self.patience = patience
        self._active = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._active += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._idle:
            self._active -= 1
            if not self._active:
                self._idle.notify_all()

    def yield_to_queries(self) -> None:
        with self._idle:
            if self._active:
                self._idle.wait_for(lambda: not self._active, self.patience)
