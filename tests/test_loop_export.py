"""Full batches ended on an asyncio loop are exported on that loop by non-blocking exporters.

Why it matters: on a busy uvicorn worker the export thread's GIL hand-offs cost more than the
encoding itself; the UDP exporter can send without blocking, so the processor exports there,
in chunks. Blocking exporters, and anything that needs DNS, stay on the export thread.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

from aiecs_tracing import TracingManager
from tests.wire import make_manager


def _record_threads(exporter, calls: list[tuple[str, int]]) -> None:
    """Wrap the exporter's entry points to record (method, thread id) of each call."""
    export, export_nowait = exporter.export, exporter.export_nowait

    def traced_export(spans):
        calls.append(("export", threading.get_ident()))
        return export(spans)

    def traced_nowait(spans):
        calls.append(("export_nowait", threading.get_ident()))
        return export_nowait(spans)

    exporter.export, exporter.export_nowait = traced_export, traced_nowait


async def _arrived(sink, count: int, timeout: float = 5.0) -> int:
    """Spans at the sink once ``count`` arrived (or at the timeout), yielding to the loop meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(sink.spans) < count and loop.time() < deadline:
        await asyncio.sleep(0.01)
    return len(sink.spans)


def _end_spans(t: TracingManager, count: int, prefix: str) -> None:
    for i in range(count):
        with t.span(f"{prefix}{i}"):
            pass


def test_full_batches_ended_on_a_loop_are_exported_on_that_loop(sink):
    t = make_manager(sink, "loop-export", schedule_delay_millis=60_000, max_export_batch_size=64)
    calls: list[tuple[str, int]] = []
    _record_threads(t.exporter, calls)
    loop_thread: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop_thread.append(threading.get_ident())
        # the agent's address is not resolved yet: that may block (DNS), so the thread does it
        _end_spans(t, 64, "first")
        assert await _arrived(sink, 64) == 64
        assert t.flush(5)  # the thread is done with it (a loop finding it exporting leaves it the work)
        for batch in range(3):
            _end_spans(t, 64, f"loop{batch}-")
            # the loop drains in chunks between the app's own callbacks until less than a chunk
            # (at most 63) is left: the queue stays below the thread's backlog limit (128)
            deadline = loop.time() + 5
            while len(sink.spans) < 64 + 64 * (batch + 1) - 63:
                assert loop.time() < deadline, f"batch {batch} was not exported on the loop"
                await asyncio.sleep(0)

    asyncio.run(main())
    # the full batches went out without a flush (the periodic export is a minute away); what is
    # left below a chunk waits for the next batch or the timer: flush() sends it
    assert len(sink.wait_for(3 * 64, timeout=5)) >= 3 * 64
    assert t.flush(5)
    spans = sink.wait_for(4 * 64, timeout=5)
    assert len(spans) == 4 * 64
    assert {s.operation for s in spans} >= {"first0", "loop0-0", "loop2-63"}
    on_loop = [method for method, ident in calls if ident == loop_thread[0]]
    assert calls[0][0] == "export_nowait" and calls[0][1] == loop_thread[0]  # declined: not resolved
    assert ("export", loop_thread[0]) not in calls  # the blocking entry point never ran on the loop
    assert on_loop.count("export_nowait") >= 4  # the declined call, then one per full batch
    assert any(method == "export" and ident != loop_thread[0] for method, ident in calls)
    info = t.get_tracer_info()
    assert info["spans_exported"] == 4 * 64 and info["spans_dropped"] == 0
    t.close_tracer()


def test_blocking_exporters_never_run_on_the_loop():
    class RecordingExporter:
        def __init__(self) -> None:
            self.threads: list[int] = []
            self.count = 0

        def export(self, spans):
            self.threads.append(threading.get_ident())
            self.count += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exporter = RecordingExporter()
    t = TracingManager("blocking", span_exporter=exporter, max_export_batch_size=16,
                       set_global_provider=False, set_default_manager=False)
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        _end_spans(t, 100, "s")
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert t.flush(5)
    assert exporter.count == 100
    assert loop_thread[0] not in exporter.threads
    t.close_tracer()


def test_a_loop_closed_before_its_drain_ran_loses_nothing(sink):
    t = make_manager(sink, "closed-loop", schedule_delay_millis=60_000, max_export_batch_size=32)
    _end_spans(t, 32, "warm")  # resolves the agent's address on the export thread
    assert len(sink.wait_for(32, timeout=5)) == 32

    async def end_without_yielding() -> None:
        _end_spans(t, 40, "orphan")  # a drain is scheduled; the coroutine returns before it runs

    loop = asyncio.new_event_loop()
    loop.run_until_complete(end_without_yielding())
    loop.close()
    assert t.flush(5)
    assert len(sink.wait_for(72, timeout=5)) == 72

    # a new loop gets its own drain: the stale one does not block scheduling
    async def next_loop() -> None:
        _end_spans(t, 64, "next")
        await asyncio.sleep(0.05)

    asyncio.run(next_loop())
    assert len(sink.wait_for(136, timeout=5)) >= 72 + 32  # at least the first full chunk, unflushed
    assert t.flush(5)
    assert len(sink.wait_for(136, timeout=5)) == 136
    assert t.get_tracer_info()["spans_dropped"] == 0
    t.close_tracer()


def test_the_periodic_export_of_a_partial_batch_runs_on_the_loop_too(sink):
    t = make_manager(sink, "loop-periodic", schedule_delay_millis=250, max_export_batch_size=64)
    calls: list[tuple[str, int]] = []
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        _end_spans(t, 64, "resolve")  # declined on the loop (address unresolved): the thread sends
        assert await _arrived(sink, 64) == 64
        _end_spans(t, 64, "full")  # a full batch: the loop is now known to the processor
        assert await _arrived(sink, 128) == 128
        _record_threads(t.exporter, calls)
        _end_spans(t, 10, "partial")  # below a batch: only the periodic export sends these
        assert await _arrived(sink, 138, timeout=3) == 138

    asyncio.run(main())
    assert calls and all(ident == loop_thread[0] and method == "export_nowait" for method, ident in calls)
    # once the loop is gone, the thread does the periodic export again
    _end_spans(t, 5, "after")
    assert len(sink.wait_for(143, timeout=3)) == 143
    assert ("export", loop_thread[0]) not in calls and any(method == "export" for method, _ in calls)
    t.close_tracer()


def _exports_by_thread(exporter) -> list[tuple[str, int, int]]:
    """Record (entry point, thread id, batch size) of each export call."""
    calls: list[tuple[str, int, int]] = []
    export, export_nowait = exporter.export, exporter.export_nowait

    def traced_export(spans):
        calls.append(("export", threading.get_ident(), len(spans)))
        return export(spans)

    def traced_nowait(spans):
        calls.append(("export_nowait", threading.get_ident(), len(spans)))
        return export_nowait(spans)

    exporter.export, exporter.export_nowait = traced_export, traced_nowait
    return calls


@pytest.mark.parametrize(
    ("queue_size", "batch_size", "limit"),
    [(128, 16, 32), (100, 32, 50)],  # min(2 x batch, queue / 2): each term decides once
)
def test_a_coroutine_that_never_yields_is_helped_by_the_thread_at_the_backlog_limit(
    sink, queue_size, batch_size, limit
):
    """The loop never gets a turn: below the limit the spans wait for it, at the limit the thread sends.

    No timing is assumed: the periodic export is a minute away, so only the limit wakes the thread,
    and the coroutine blocks (without yielding) until what the thread sent has arrived.
    """
    t = make_manager(sink, "busy-coroutine", schedule_delay_millis=60_000,
                     max_queue_size=queue_size, max_export_batch_size=batch_size)
    _end_spans(t, batch_size, "warm")  # resolves the agent's address on the thread
    assert t.flush(5) and len(sink.wait_for(batch_size, timeout=5)) == batch_size
    calls = _exports_by_thread(t.exporter)
    rounds = 2000 // limit
    queued_below_limit: list[int] = []
    loop_thread: list[int] = []

    async def busy() -> None:
        loop_thread.append(threading.get_ident())
        for r in range(rounds):
            _end_spans(t, limit - 1, f"r{r}-")
            queued_below_limit.append(t.get_tracer_info()["spans_queued"])
            _end_spans(t, 1, f"r{r}-last")  # the limit: the thread is woken
            expected = batch_size + (r + 1) * limit
            # blocking the loop (no await): only the export thread can have sent these
            assert len(sink.wait_for(expected, timeout=10)) == expected, f"round {r}"

    asyncio.run(busy())
    assert queued_below_limit == [limit - 1] * rounds  # nothing left the queue before the limit
    assert calls and all(method == "export" and ident != loop_thread[0] for method, ident, _ in calls)
    assert all(size <= batch_size for _, _, size in calls)
    assert t.flush(5)
    info = t.get_tracer_info()
    assert info["spans_dropped"] == 0
    assert info["spans_exported"] == batch_size + rounds * limit == len(sink.spans)
    t.close_tracer()


def test_below_the_backlog_limit_full_batches_are_the_loops_job(sink):
    t = make_manager(sink, "loop-job", schedule_delay_millis=60_000, max_queue_size=2048, max_export_batch_size=32)
    _end_spans(t, 32, "warm")
    assert t.flush(5) and len(sink.wait_for(32, timeout=5)) == 32
    calls = _exports_by_thread(t.exporter)
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        _end_spans(t, 63, "job")  # one below the limit (2 x 32): nothing wakes the thread
        assert t.get_tracer_info()["spans_queued"] == 63
        assert await _arrived(sink, 32 + 32) >= 32 + 32  # at least the full batch, in chunks on the loop's turn

    asyncio.run(main())
    assert calls and all(method == "export_nowait" and ident == loop_thread[0] for method, ident, _ in calls)
    assert t.flush(5)  # the 31 below a chunk: the thread's flush
    assert t.get_tracer_info()["spans_exported"] == 32 + 63 == len(sink.wait_for(95, timeout=5))
    t.close_tracer()


def test_spans_beyond_a_full_queue_are_dropped_and_counted(sink, caplog):
    """The thread cannot keep up (its export is stuck) and the loop never yields: the queue bounds memory."""
    t = make_manager(sink, "full-queue", schedule_delay_millis=60_000, max_queue_size=128, max_export_batch_size=32)
    _end_spans(t, 32, "warm")
    assert t.flush(5) and len(sink.wait_for(32, timeout=5)) == 32
    gate, entered = threading.Event(), threading.Event()
    real_export = t.exporter.export

    def stuck(spans):
        entered.set()
        assert gate.wait(10)
        return real_export(spans)

    t.exporter.export = stuck

    async def busy() -> None:
        _end_spans(t, 64, "a")  # the backlog limit: the thread takes a batch and gets stuck
        assert entered.wait(10)
        _end_spans(t, 1000, "b")

    with caplog.at_level("WARNING", logger="aiecs_tracing"):
        asyncio.run(busy())
        info = t.get_tracer_info()
        # at most one batch in flight and a full queue kept; every other span counted as dropped
        assert 1064 - 128 - 32 <= info["spans_dropped"] <= 1064 - 128
        assert info["spans_queued"] == 128
        gate.set()
        assert t.flush(5)
    info = t.get_tracer_info()
    assert info["spans_exported"] + info["spans_dropped"] == 32 + 1064  # none vanish uncounted
    assert info["spans_exported"] == len(sink.wait_for(info["spans_exported"], timeout=5))
    drop_lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_lines) == 1 and "queue is full" in drop_lines[0].getMessage()
    t.close_tracer()


def test_the_loop_never_resolves_the_agents_address(sink, monkeypatch):
    """Even when the address is due for its refresh in the middle of a chunk: DNS may block."""
    from aiecs_tracing.core.exporters import jaeger_udp

    t = make_manager(sink, "dns-off-loop", schedule_delay_millis=60_000, max_export_batch_size=64)
    _end_spans(t, 64, "resolve")
    assert t.flush(5) and len(sink.wait_for(64, timeout=5)) == 64
    exporter = t.exporter
    resolved_on: list[str] = []
    real_resolve = jaeger_udp._resolve

    def recording_resolve(host, port):
        resolved_on.append(threading.current_thread().name)
        return real_resolve(host, port)

    monkeypatch.setattr(jaeger_udp, "_resolve", recording_resolve)
    real_nowait = exporter.export_nowait

    def nowait_with_the_refresh_due_now(spans):
        # 1 ms of freshness left when the chunk starts: it runs out while the chunk is encoded
        exporter._resolved_at = time.monotonic() - jaeger_udp.RESOLVE_REFRESH_SECONDS + 0.001
        return real_nowait(spans)

    exporter.export_nowait = nowait_with_the_refresh_due_now

    async def main() -> None:
        for batch in range(3):
            _end_spans(t, 64, f"b{batch}-")
            for _ in range(20):
                await asyncio.sleep(0)

    asyncio.run(main())
    assert t.flush(5) and len(sink.wait_for(256, timeout=5)) == 256
    assert "MainThread" not in resolved_on  # refreshes, if any, ran on the export thread
    t.close_tracer()


def test_a_loop_busy_in_sync_code_does_not_hold_the_periodic_export(sink):
    t = make_manager(sink, "busy-loop", schedule_delay_millis=100, max_export_batch_size=64)

    async def main() -> int:
        _end_spans(t, 64, "warm")  # a full batch: the processor now knows this loop
        await _arrived(sink, 64)
        for i in range(20):  # synchronous work on the loop's thread, a span every 100 ms
            with t.span(f"work{i}"):
                time.sleep(0.1)
        deadline = time.monotonic() + 1.0  # still without yielding to the loop
        while time.monotonic() < deadline and len([s for s in sink.spans if s.operation.startswith("work")]) < 19:
            time.sleep(0.02)
        return len([s for s in sink.spans if s.operation.startswith("work")])

    assert asyncio.run(main()) >= 19  # the thread sent them while the loop could not
    t.close_tracer()


def test_an_exporter_raising_on_the_loop_has_its_spans_counted(sink):
    t = make_manager(sink, "raising", schedule_delay_millis=60_000, max_export_batch_size=32)
    _end_spans(t, 32, "warm")
    assert t.flush(5)

    def broken(spans):
        raise ConnectionRefusedError("agent went away")

    t.exporter.export_nowait = broken

    async def main() -> None:
        _end_spans(t, 48, "lost")  # one full batch and some, below the thread's backlog limit
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert t.flush(5)
    info = t.get_tracer_info()
    assert info["spans_exported"] + info["spans_dropped"] == 80  # none vanish uncounted
    assert info["spans_dropped"] > 0
    t.close_tracer()


def test_loop_chunks_shrink_when_export_is_slow(sink):
    """Big spans (prompts in attributes) must not hold the loop for a whole 128-span chunk."""
    t = make_manager(sink, "slow-chunks", schedule_delay_millis=60_000, max_export_batch_size=64)
    _end_spans(t, 64, "warm")
    assert t.flush(5)
    sizes: list[int] = []
    real_nowait = t.exporter.export_nowait

    def slow(spans):
        sizes.append(len(spans))
        time.sleep(0.001 * len(spans))  # 1 ms per span
        return real_nowait(spans)

    t.exporter.export_nowait = slow

    async def main() -> None:
        _end_spans(t, 100, "big")  # below the thread's backlog limit (2 batches): the loop's job
        for _ in range(200):
            await asyncio.sleep(0)
            if len(sink.spans) >= 64 + 100:
                break

    asyncio.run(main())
    assert sizes and sizes[0] <= 16 and max(sizes[1:] or [0]) <= 8  # ~4 ms of work per callback
    assert t.flush(5) and len(sink.wait_for(164, timeout=5)) == 164
    t.close_tracer()
