"""A bounded batch span processor that counts what it drops and survives ``fork``.

OpenTelemetry's ``BatchSpanProcessor`` drops silently when its queue is full (one
warning, no count). Tracing must cost the app nothing when the backend is down, and a
user must be able to see that spans were lost: so the queue is bounded, drops are
counted (full queue, failed export, after shutdown) and logged once with the count.
After ``os.fork()`` (Celery prefork, gunicorn) the child starts with an empty queue and
its own export thread; the exporter re-creates its socket itself.

Where spans end on an asyncio event loop's thread and the exporter can send without blocking,
full batches are exported on that loop instead (:mod:`.loop_export`); the thread keeps the
periodic and final flushes.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from time import monotonic
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .guard import report_error
from .loop_export import LOOP_BUDGET_SECONDS, LOOP_CHUNK, LoopExport

__all__ = ["LOOP_BUDGET_SECONDS", "LOOP_CHUNK", "BoundedBatchProcessor"]

logger = logging.getLogger("aiecs_tracing")


class BoundedBatchProcessor(SpanProcessor):
    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_millis: int = 1000,
        shutdown_timeout: float = 2.0,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max(1, max_queue_size)
        self.max_export_batch_size = max(1, max_export_batch_size)
        self.delay = max(0.001, schedule_delay_millis / 1000.0)
        self.shutdown_timeout = max(0.0, shutdown_timeout)
        self.exported = 0
        self.dropped = 0
        self.export_failures = 0
        self._drop_logged = False
        self._shutdown = False
        self._init_process_state()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()
        # Batches handed to ``exporter.export`` and not yet answered (id -> size): what a
        # shutdown that runs out of time writes off as dropped while the export hangs on.
        self._in_flight: dict[int, int] = {}
        self._written_off: set[int] = set()
        self._flush_requests: collections.deque[_FlushRequest] = collections.deque()
        self._pending_flush: _FlushRequest | None = None
        self._account_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._loop_export = LoopExport(
            self._queue,
            self._export_lock,
            self._wake,
            self.exporter,
            self.max_export_batch_size,
            self.max_queue_size,
            self._account,
        )

    # --- SpanProcessor ----------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if not span.context.trace_flags.sampled:
                return
            if self._shutdown:
                self._count_drop(1, "the tracer is closed")
                return
            queue = self._queue
            if len(queue) >= self.max_queue_size:
                self._count_drop(1, "the export queue is full")
                return
            queue.append(span)
            if self._thread is None:
                self._start_thread()
            if len(queue) >= self.max_export_batch_size:
                if self._loop_export.schedule(len(queue)):
                    return
                wake = self._wake
                if not wake.is_set():  # set() takes a lock: once per wake-up, not once per span
                    wake.set()
        except Exception as exc:
            report_error("span processor", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now; wait at most the timeout (False when it ran out)."""
        flushed = self._flush_until(monotonic() + max(0.0, timeout_millis / 1000.0))
        confirm = getattr(self.exporter, "confirm", None)
        if confirm is not None:  # settle whether what was just sent was refused (UDP)
            try:
                confirm()
            except Exception as exc:
                report_error("span processor", exc)
        return flushed

    def _flush_until(self, deadline: float, request: _FlushRequest | None = None) -> bool:
        """Export what is queued, waiting until ``deadline`` (monotonic) at the latest.

        The export thread does the work and is waited for until the deadline: an exporter
        retrying a backend that is down (OTLP), or blocked on one that accepted the connection
        and never answers, must not hold the caller, a worker exiting or the interpreter at
        exit, longer than asked. Asking the thread that already exists, rather than starting
        one, is what works at exit too (Python 3.12.0-3.12.1 refuse new threads in atexit).
        """
        if request is None:
            request = self._request_flush()
        if request is None:  # no export thread (nothing was ever queued in this process)
            return self._flush_in_new_thread(deadline)
        return request.done.wait(max(0.0, deadline - monotonic())) and request.ok

    def _request_flush(self) -> _FlushRequest | None:
        """Ask the export thread to export everything queued now; None when there is no thread."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return None
        request = _FlushRequest()
        self._flush_requests.append(request)
        self._wake.set()
        return request

    def prepare_shutdown(self) -> None:
        """Start the final flush without waiting: :meth:`shutdown_until` then waits for it.

        Several managers closed in turn against one deadline flush in parallel this way.
        """
        if not self._shutdown and self._pending_flush is None:
            self._pending_flush = self._request_flush()

    def _flush_in_new_thread(self, deadline: float) -> bool:
        done = threading.Event()
        outcome = [False]

        def run() -> None:
            try:
                outcome[0] = self._drain(deadline_seconds=None)
            except Exception as exc:
                report_error("span flush", exc)
            finally:
                done.set()

        if not self._queue:
            return True
        try:
            threading.Thread(target=run, name="aiecs-tracing-flush", daemon=True).start()
        except Exception as exc:  # no threads left (interpreter shutting down): flush inline
            report_error("span flush", exc)
            run()
        return done.wait(max(0.0, deadline - monotonic())) and outcome[0]

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Flush and stop, within ``timeout_millis`` (default: ``shutdown_timeout``) in all.

        One deadline covers the flush, the export thread's join and the exporter's own
        shutdown, so a backend that is down or hangs costs at most the timeout (plus a few
        milliseconds), never the exporter's retry budget. What is still queued or in flight
        at the deadline is counted as dropped (and logged once); a hung export thread is left
        behind as a daemon.
        """
        timeout = self.shutdown_timeout if timeout_millis is None else max(0.0, timeout_millis / 1000.0)
        self.shutdown_until(monotonic() + timeout)

    def shutdown_until(self, deadline: float) -> None:
        """:meth:`shutdown` with an absolute ``time.monotonic()`` deadline (shared by managers)."""
        if self._shutdown:
            return
        pending, self._pending_flush = self._pending_flush, None
        flushed = self._flush_until(deadline, pending)
        self._shutdown = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - monotonic()))
        if not flushed:
            self._write_off("the exporter did not finish before shutdown")
        # The exporter's shutdown interrupts its retry back-off (OTLP); bounded like the rest.
        done = threading.Event()

        def stop_exporter() -> None:
            try:
                self.exporter.shutdown()
            except Exception as exc:
                report_error("exporter shutdown", exc)
            finally:
                done.set()

        try:
            threading.Thread(target=stop_exporter, name="aiecs-tracing-exporter-stop", daemon=True).start()
        except Exception:  # interpreter shutting down: no thread to spare
            stop_exporter()
        done.wait(max(0.01, min(0.1, deadline - monotonic())))

    def _write_off(self, reason: str) -> None:
        """Count what is still queued or in an unanswered export as dropped, once."""
        with self._account_lock:
            count = 0
            queue = self._queue
            while queue:
                try:
                    queue.popleft()
                except IndexError:
                    break
                count += 1
            for batch_id, size in self._in_flight.items():
                if batch_id not in self._written_off:
                    self._written_off.add(batch_id)
                    count += size
        if count:
            self._count_drop(count, reason)

    # --- internals ----------------------------------------------------------------------
    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is not None or self._shutdown:
                return
            thread = threading.Thread(target=self._run, name="aiecs-tracing-export", daemon=True)
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        requests = self._flush_requests
        while not self._shutdown:
            self._wake.wait(self.delay)
            self._wake.clear()
            asked = []
            while requests:  # taken after clear(): a request appended later wakes the next wait
                asked.append(requests.popleft())
            if self._shutdown and not asked:
                break
            ok = False
            try:
                if asked or not self._loop_export.hand_off_periodic():
                    ok = self._drain(deadline_seconds=None)
            except Exception as exc:
                report_error("span export", exc)
            for request in asked:
                request.ok = ok
                request.done.set()

    def _drain(self, deadline_seconds: float | None) -> bool:
        ok = True
        with self._export_lock:
            queue = self._queue
            while queue:
                batch: list[ReadableSpan] = []
                while queue and len(batch) < self.max_export_batch_size:
                    batch.append(queue.popleft())
                ok = self._export(batch) and ok
        return ok

    def _export(self, batch: list[ReadableSpan]) -> bool:
        key = id(batch)
        self._in_flight[key] = len(batch)
        try:
            result = self.exporter.export(batch)
        except Exception as exc:
            report_error("span export", exc)
            result = SpanExportResult.FAILURE
        with self._account_lock:
            self._in_flight.pop(key, None)
            if key in self._written_off:  # a shutdown gave up on it and counted it already
                self._written_off.discard(key)
                return result is SpanExportResult.SUCCESS
        return self._account(batch, result)

    def _account(self, batch: list[ReadableSpan], result: SpanExportResult) -> bool:
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
            return True
        self.export_failures += 1
        self._count_drop(len(batch), "the exporter failed")
        return False

    def _count_drop(self, count: int, reason: str) -> None:
        self.dropped += count
        if not self._drop_logged:
            self._drop_logged = True
            logger.warning(
                "aiecs_tracing: dropped %d span(s) because %s; later drops are counted "
                "(get_tracer_info()['spans_dropped']), not logged",
                count,
                reason,
            )

    def _reinit_after_fork(self) -> None:
        # Spans queued by the parent belong to the parent; the child exports its own.
        self._init_process_state()

    def stats(self) -> dict[str, Any]:
        # Spans the exporter sent but later learnt were refused (UDP to a closed port) were
        # counted as exported when sent; they are drops.
        refused = getattr(self.exporter, "spans_refused", 0)
        refused = refused if isinstance(refused, int) else 0
        return {
            "queued": len(self._queue),
            "in_flight": sum(self._in_flight.values()),
            "exported": self.exported - refused,
            "dropped": self.dropped + refused,
            "export_failures": self.export_failures,
        }


class _FlushRequest:
    """A flush asked of the export thread: ``done`` is set once it has exported (``ok``) or failed."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


def _after_fork(ref: weakref.ref[BoundedBatchProcessor]) -> None:
    processor = ref()
    if processor is not None:
        try:
            processor._reinit_after_fork()
        except Exception as exc:
            report_error("after fork", exc)
