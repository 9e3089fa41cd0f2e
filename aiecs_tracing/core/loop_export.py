"""Export on the asyncio event loop that ends the spans, for exporters that can send without blocking.

Where spans end on an event loop's thread (uvicorn, the ASGI middleware) and the exporter has
``export_nowait`` (the Jaeger UDP exporter), full batches are exported on that loop, in chunks of
at most :data:`LOOP_CHUNK` spans between the loop's other callbacks, instead of by the export
thread. Under the GIL the thread gets no CPU of its own anyway; what it adds is the GIL hand-off
between two busy threads, which on a saturated uvicorn worker cost more than the encoding.
Blocking exporters (OTLP/HTTP) always use the thread, and the thread helps a loop that falls
behind. :class:`~.processor.BoundedBatchProcessor` owns the queue; this module only drains it.
"""

from __future__ import annotations

import collections
import threading
from asyncio import _get_running_loop  # the C accessor: no RuntimeError, a few ns
from collections.abc import Callable
from time import perf_counter
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .guard import report_error

__all__ = ["LOOP_BUDGET_SECONDS", "LOOP_CHUNK", "LoopExport"]

#: Most spans exported per event-loop callback (2-3 ms of ordinary spans).
LOOP_CHUNK = 128
#: Work per loop callback the chunk size adapts to: big spans (LLM prompts in attributes) get
#: smaller chunks, so requests keep interleaving with export.
LOOP_BUDGET_SECONDS = 0.004
_FIRST_LOOP_CHUNK = 16  # start small: the first chunk's cost is unknown


class LoopExport:
    """The event-loop side of one processor's queue (one per process: rebuilt after ``fork``).

    ``account(batch, result)`` counts an export's outcome as the export thread's would be;
    ``export_lock`` is held by whichever side exports, so batches never go out concurrently;
    ``wake`` wakes the export thread when the loop leaves it the work.
    """

    def __init__(
        self,
        queue: collections.deque[ReadableSpan],
        export_lock: threading.Lock,
        wake: threading.Event,
        exporter: SpanExporter,
        max_export_batch_size: int,
        max_queue_size: int,
        account: Callable[[list[ReadableSpan], SpanExportResult], bool],
    ) -> None:
        self._queue, self._export_lock, self._wake = queue, export_lock, wake
        self._exporter, self._account = exporter, account
        self._max_batch, self._max_queue = max_export_batch_size, max_queue_size
        self._drain_loop: Any = None  # the event loop a chunked drain is scheduled on
        self._last_loop: Any = None  # the loop that last handed over a full batch
        self._thread_must_drain = False  # the loop declined (the exporter would block)
        self._handoff_pending = False  # a periodic drain handed to the loop has not run yet
        self._loop_chunk = _FIRST_LOOP_CHUNK

    def schedule(self, queued: int) -> bool:
        """Hand a full batch to the running event loop (True), or leave it to the thread."""
        loop = _get_running_loop()
        if loop is None or getattr(self._exporter, "export_nowait", None) is None:
            return False
        self._last_loop = loop
        if self._drain_loop is not loop:
            self._drain_loop = loop
            loop.call_soon(self._drain_on_loop, loop)
        # a loop falling behind (a coroutine ending spans without yielding, or a loop closed
        # before its callback ran) is helped by the thread well before the queue is full
        return queued < self._backlog_limit()

    def _backlog_limit(self) -> int:
        return max(1, min(2 * self._max_batch, self._max_queue // 2))

    def hand_off_periodic(self) -> bool:
        """The periodic export, asked of the loop that ends the spans while it runs (True).

        Without this the export thread would still take the GIL once per interval to send
        what is left below a full batch; on a busy loop that is most spans.
        """
        loop = self._last_loop
        if (
            loop is None
            or self._thread_must_drain
            or self._handoff_pending  # the last hand-off did not run within a period: loop busy
            or len(self._queue) >= self._backlog_limit()
        ):
            self._thread_must_drain = self._handoff_pending = False  # helped here instead
            return False
        if loop.is_closed() or not loop.is_running():
            self._last_loop = None
            return False
        if not self._queue:
            return True
        self._handoff_pending = True
        try:
            loop.call_soon_threadsafe(self._drain_on_loop, loop, True)
        except RuntimeError:  # closed in the meantime
            self._handoff_pending = False
            return False
        return True

    def _leave_to_thread(self) -> None:
        self._drain_loop = None
        self._thread_must_drain = True
        self._wake.set()

    def _drain_on_loop(self, loop: Any, everything: bool = False) -> None:
        """One chunk on the loop's thread, then yield to the loop's other callbacks."""
        if everything:
            self._handoff_pending = False
        try:
            queue = self._queue
            if not self._export_lock.acquire(blocking=False):  # the thread is exporting: let it
                self._leave_to_thread()
                return
            try:
                chunk = min(self._loop_chunk, self._max_batch)
                batch = [queue.popleft() for _ in range(min(chunk, len(queue)))]
                if not batch:
                    self._drain_loop = None
                    return
                export_nowait = getattr(self._exporter, "export_nowait", None)
                started = perf_counter()
                try:
                    result = export_nowait(batch) if export_nowait is not None else None
                except Exception as exc:  # a third-party exporter: counted like the thread's failures
                    report_error("span export", exc)
                    result = SpanExportResult.FAILURE
                self._adapt_chunk(len(batch), perf_counter() - started)
                if result is None:  # the exporter would block (e.g. DNS): the thread does it
                    queue.extendleft(reversed(batch))
                    self._leave_to_thread()
                    return
                self._account(batch, result)
            finally:
                self._export_lock.release()
            # go on while a chunk's worth is queued; less waits for the next batch or the timer
            more = len(queue) >= min(self._loop_chunk, self._max_batch) or (everything and queue)
            if more and not loop.is_closed():
                loop.call_soon(self._drain_on_loop, loop, everything)
            else:
                self._drain_loop = None
        except Exception as exc:
            self._drain_loop = None
            report_error("span export", exc)

    def _adapt_chunk(self, exported: int, seconds: float) -> None:
        """Next chunk: halve it past the time budget, double it (up to LOOP_CHUNK) well within."""
        if seconds > LOOP_BUDGET_SECONDS:
            self._loop_chunk = max(1, exported // 2)
        elif seconds < LOOP_BUDGET_SECONDS / 2 and exported >= self._loop_chunk:
            self._loop_chunk = min(LOOP_CHUNK, self._loop_chunk * 2)
