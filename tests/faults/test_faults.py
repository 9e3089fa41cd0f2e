"""Faults, with accounting: after each one, every span a process finished is either stored by
the collector or counted by that process as dropped. Zero unaccounted (UDP: at most a few
datagrams in flight as its port closes, 2%; it has no acknowledgement).

- the collector taken down and restarted (OTLP: killed with -9, the exporter's retries meet
  the restarted collector; UDP: stopped, its port closed, then open again);
- uvicorn stopped with SIGTERM while spans wait in the queue: all of them are stored;
- the OTLP endpoint hanging (accepts, never answers): requests keep their latency, every
  span is counted as dropped, and the app still exits within its shutdown timeout;
- a dead backend for a long run: memory stays bounded.

Celery's faults (a prefork child SIGKILLed, the worker stopped with SIGTERM, a task whose
message is redelivered) are in tests/integration/test_celery.py.
"""

from __future__ import annotations

import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.faults._pipeline import CollectorProcess, Pipeline, make_manager, reconcile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def collector(tmp_path: Path):
    process = CollectorProcess(tmp_path).start()
    try:
        yield process
    finally:
        process.kill()


def _assert_accounted(rows: list[dict], requests: int, udp_port_closed: bool = False) -> None:
    edge, inventory = rows  # edge: server, db and client spans per request; inventory: its server span
    assert edge["finished"] == 3 * requests and inventory["finished"] == requests, rows
    for row in rows:
        # UDP has no acknowledgement: datagrams in flight while the port closes (read by the
        # collector, or sent before the ICMP refusal of an earlier one arrives) can go without
        # being counted. Seen under two CPU hogs: 0-3 of ~350. Everything else: exactly 0.
        bound = max(3, row["finished"] // 50) if udp_port_closed else 0
        assert row["unaccounted"] <= bound, rows
    assert edge["stored"] <= edge["finished"] and inventory["stored"] <= inventory["finished"], rows


@pytest.mark.parametrize("transport", ["udp", "otlp"])
def test_collector_killed_and_restarted_loses_no_span_unaccounted(collector: CollectorProcess, transport: str) -> None:
    target = collector.udp_port if transport == "udp" else collector.otlp_url
    pipeline = Pipeline(make_manager("fault-edge", transport, target), make_manager("fault-inventory", transport, target))
    try:
        before = pipeline.drive(2.0)
        # OTLP: kill -9, and every span answered 200 was committed. UDP has no answer: a kill -9
        # loses the datagrams the collector had read and not yet stored, and no sender can
        # count those (seen: 5 of 351 under coverage's slowdown). So for UDP the collector is
        # stopped (SIGTERM: it stores what it read) and its port is closed while it is down.
        collector.kill(signal.SIGKILL if transport == "otlp" else signal.SIGTERM)
        during = pipeline.drive(2.0)
        collector.start()
        after = pipeline.drive(2.0)
    finally:
        infos = pipeline.close()
    assert pipeline.failures == 0  # the app never noticed
    rows = reconcile(collector, infos)
    print(f"\n{transport}: {rows}")
    _assert_accounted(rows, len(before) + len(during) + len(after), udp_port_closed=transport == "udp")
    edge = rows[0]
    if transport == "udp":  # spans sent while the port was closed were refused and counted
        assert edge["dropped"] > 0, rows
    assert edge["stored"] >= len(after) * 3, rows  # what came after the restart arrived


class HangingEndpoint:
    """A TCP server that accepts connections and never answers (a wedged backend)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1/traces"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_hanging_otlp_endpoint_costs_no_latency_and_every_span_is_counted(collector: CollectorProcess) -> None:
    healthy = Pipeline(make_manager("fault-h-edge", "otlp", collector.otlp_url),
                       make_manager("fault-h-inventory", "otlp", collector.otlp_url))  # fmt: skip
    hanging = HangingEndpoint()
    wedged = Pipeline(make_manager("fault-w-edge", "otlp", hanging.url, shutdown_timeout=2),
                      make_manager("fault-w-inventory", "otlp", hanging.url, shutdown_timeout=2))  # fmt: skip
    try:
        # alternate short runs so both see the same machine load
        healthy_latency, wedged_latency = [], []
        for _ in range(3):
            healthy_latency += healthy.drive(1.0)
            wedged_latency += wedged.drive(1.0)
        started = time.monotonic()
        wedged_infos = wedged.close()
        close_took = time.monotonic() - started
        healthy_infos = healthy.close()
    finally:
        hanging.close()
    assert healthy.failures == wedged.failures == 0
    ok, bad = statistics.median(healthy_latency), statistics.median(wedged_latency)
    print(f"\nmedian latency: healthy {ok * 1000:.2f} ms, OTLP hanging {bad * 1000:.2f} ms; close took {close_took:.2f} s")
    assert bad <= ok * 2 + 0.005, (ok, bad)  # within noise: no request waits for the backend
    assert close_took <= 2 * 2 + 1.5  # two managers, each bounded by its shutdown_timeout
    for info in wedged_infos:  # nothing stored anywhere: every span counted as dropped
        assert info["spans_finished"] > 0 and info["spans_dropped"] == info["spans_finished"], info
    _assert_accounted(reconcile(collector, healthy_infos), len(healthy_latency))


RSS_SCRIPT = textwrap.dedent(
    """
    import resource, socket, sys, time
    from aiecs_tracing import TracingManager

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()  # nothing listens
    tracing = TracingManager("rss", exporter="otlp", otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces",
                             set_global_provider=False, shutdown_timeout=1, export_timeout_millis=500)
    seconds = float(sys.argv[1])
    start = time.monotonic(); warm = None; n = 0
    while time.monotonic() - start < seconds:
        with tracing.span("work", tags={"n": n, "payload": "x" * 200}):
            n += 1
        if warm is None and time.monotonic() - start > 2:
            warm = rss_mb()
    info = tracing.get_tracer_info()
    print(n, warm, rss_mb(), info["spans_finished"], info["spans_dropped"], info["spans_queued"])
    """
)
RSS_BOUND_MB = 25  # the export queue holds at most max_queue_size (2,048) spans


def test_dead_backend_memory_stays_bounded() -> None:
    result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, "15"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    n, warm, end, finished, dropped, queued = result.stdout.split()
    growth = float(end) - float(warm)
    print(f"\n{n} spans in 15 s against a dead OTLP endpoint: RSS {float(warm):.1f} -> {float(end):.1f} MB")
    assert int(finished) == int(n) > 10_000
    assert int(dropped) + int(queued) >= int(finished) - 2_048  # all but what an export holds
    assert growth < RSS_BOUND_MB, (warm, end)


APP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from contextlib import asynccontextmanager
    import uvicorn
    from fastapi import FastAPI
    from aiecs_tracing import TracingManager
    from aiecs_tracing.integrations.fastapi import install_fastapi_tracing

    otlp, report = sys.argv[1], sys.argv[2]
    tracing = TracingManager("fault-sigterm", exporter="otlp", otlp_endpoint=otlp, set_global_provider=False,
                             schedule_delay_millis=5000)  # spans wait in the queue: the stop must flush them

    @asynccontextmanager
    async def lifespan(app):
        yield
        tracing.close_tracer()
        with open(report, "w") as f:
            json.dump(tracing.get_tracer_info(), f)

    app = FastAPI(lifespan=lifespan)

    @app.get("/work/{n}")
    async def work(n: int):
        with tracing.span("step", tags={"n": n}):
            return {"n": n}

    install_fastapi_tracing(app, tracing)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
    """
)


def test_uvicorn_stopped_with_sigterm_flushes_every_span(collector: CollectorProcess, tmp_path: Path) -> None:
    import signal

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = tmp_path / "report.json"
    app = subprocess.Popen([sys.executable, "-c", APP_SCRIPT, collector.otlp_url, str(report), str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and app.poll() is None, "the app did not start"
                time.sleep(0.05)
        requests = 60
        for n in range(requests):
            assert httpx.get(f"http://127.0.0.1:{port}/work/{n}", timeout=5).status_code == 200
        app.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal (exit status -15) since 0.29
        assert app.wait(15) in (0, -signal.SIGTERM)
    finally:
        if app.poll() is None:
            app.kill()
    import json

    info = json.loads(report.read_text())
    (row,) = reconcile(collector, [info])
    print(f"\nSIGTERM: {row}")
    # a server and a "step" span per request, and the server span of the one readiness probe answered
    assert row["finished"] == 2 * requests + 1 and row["dropped"] == 0 and row["unaccounted"] == 0, row
