"""Bounded shutdown: a backend that is down or hangs never holds the app's exit.

Real processes and sockets: the "hanging" backend is a TCP server that accepts every
connection and never answers (what a wedged collector or a black-holed load balancer looks
like); the "down" one is a closed port (connection refused, the OTLP exporter retries with
back-off). One deadline covers the flush and the join of every manager in the process.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from aiecs_tracing import TracingManager
from aiecs_tracing.core.config import resolve_config
from tests.test_export_lifecycle import OTLPReceiver, _closed_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = r"""
import sys, time
from aiecs_tracing import TracingManager

endpoint, count = sys.argv[1], int(sys.argv[2])
managers = [TracingManager(service_name=f"svc{i}", otlp_endpoint=endpoint) for i in range(count)]
for manager in managers:
    for j in range(20):
        manager.finish_span(manager.start_span(f"op{j}"))
time.sleep(0.2)  # the export thread is now inside its first (hanging or retrying) export
print("MAIN-RETURNS", time.monotonic(), flush=True)
"""


class HangingServer:
    """Accepts TCP connections and never answers: an OTLP endpoint that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def hanging():
    server = HangingServer()
    yield server
    server.close()


def _endpoint(kind: str, hanging_server: HangingServer) -> str:
    port = hanging_server.port if kind == "hang" else _closed_port()
    return f"http://127.0.0.1:{port}/v1/traces"


def _run_app(endpoint: str, managers: int, shutdown_timeout: str | None) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_TRACING_"))}
    env["PYTHONPATH"] = ROOT
    if shutdown_timeout is not None:
        env["AIECS_TRACING_SHUTDOWN_TIMEOUT"] = shutdown_timeout
    proc = subprocess.Popen(
        [sys.executable, "-c", APP, endpoint, str(managers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    main_returned = None
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith("MAIN-RETURNS"):
            main_returned = time.monotonic()
    proc.wait(60)
    exited = time.monotonic()
    stderr = proc.stderr.read()  # type: ignore[union-attr]
    assert proc.returncode == 0, stderr
    assert main_returned is not None, stderr
    return exited - main_returned, stderr


@pytest.mark.parametrize("managers", [1, 3])
@pytest.mark.parametrize("backend", ["hang", "down"])
def test_exit_is_bounded_by_one_shared_deadline(backend, managers, hanging):
    elapsed, stderr = _run_app(_endpoint(backend, hanging), managers, "1")
    assert elapsed < 1.0 + 1.0, (elapsed, stderr)
    drop_lines = [line for line in stderr.splitlines() if "dropped" in line]
    assert len(drop_lines) == managers, stderr  # one line per manager, not one per span
    # plus at most the exporter's first complaint (connection refused), through the guard
    assert len(stderr.splitlines()) <= managers + 1, stderr


def test_exit_with_a_healthy_backend_sends_everything_at_once():
    receiver = OTLPReceiver()
    try:
        elapsed, stderr = _run_app(f"http://127.0.0.1:{receiver.port}/v1/traces", 3, None)
        assert elapsed < 1.0, (elapsed, stderr)
        assert sorted(service for service, _ in receiver.spans()) == ["svc0"] * 20 + ["svc1"] * 20 + ["svc2"] * 20
        assert "dropped" not in stderr
    finally:
        receiver.close()


def test_exit_default_deadline_is_two_seconds(hanging):
    elapsed, stderr = _run_app(_endpoint("hang", hanging), 3, None)
    assert 1.5 < elapsed < 2.0 + 1.0, (elapsed, stderr)


def _manager(endpoint: str, **options) -> TracingManager:
    return TracingManager(
        "closing", otlp_endpoint=endpoint, set_global_provider=False, set_default_manager=False, **options
    )


@pytest.mark.parametrize("backend", ["hang", "down"])
def test_close_tracer_returns_within_its_timeout_and_counts_the_rest(backend, hanging, caplog):
    t = _manager(_endpoint(backend, hanging))
    assert t.provider is not None and getattr(t.provider, "_atexit_handler", None) is None  # no SDK exit hook
    with caplog.at_level(logging.WARNING, logger="aiecs_tracing"):
        for i in range(30):
            t.finish_span(t.start_span(f"s{i}"))
        time.sleep(0.2)
        started = time.monotonic()
        t.close_tracer(timeout=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.5, elapsed
    info = t.get_tracer_info()
    assert info["closed"] is True
    assert info["spans_dropped"] == 30 and info["spans_exported"] == 0, info
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 1, [r.getMessage() for r in caplog.records]


def test_close_tracer_default_is_the_configured_shutdown_timeout(hanging):
    t = _manager(_endpoint("hang", hanging), shutdown_timeout=0.5)
    t.finish_span(t.start_span("s"))
    started = time.monotonic()
    t.close_tracer()
    assert time.monotonic() - started < 0.5 + 0.5
    assert t.get_tracer_info()["spans_dropped"] == 1


def test_a_late_answer_is_not_counted_twice():
    """A hung export that completes after the shutdown wrote it off stays counted as dropped."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    release = threading.Event()

    class Slow:
        def export(self, spans):
            release.wait(10)
            return SpanExportResult.SUCCESS

        def shutdown(self):
            pass

        def force_flush(self, timeout_millis=0):
            return True

    t = TracingManager("slow", span_exporter=Slow(), set_global_provider=False, set_default_manager=False)
    for i in range(5):
        t.finish_span(t.start_span(f"s{i}"))
    t.close_tracer(timeout=0.3)
    release.set()
    time.sleep(0.2)
    info = t.get_tracer_info()
    assert info["spans_dropped"] == 5 and info["spans_exported"] == 0, info


def test_shutdown_timeout_setting():
    assert resolve_config(env={}).shutdown_timeout == 2.0
    assert resolve_config(env={"AIECS_TRACING_SHUTDOWN_TIMEOUT": "0.5"}).shutdown_timeout == 0.5
    assert resolve_config(env={"AIECS_TRACING_SHUTDOWN_TIMEOUT": "9"}, shutdown_timeout=1).shutdown_timeout == 1
    for bad in ("abc", "-1", "nan", "inf"):
        cfg = resolve_config(env={"AIECS_TRACING_SHUTDOWN_TIMEOUT": bad})
        assert cfg.enabled is False and "AIECS_TRACING_SHUTDOWN_TIMEOUT" in (cfg.error or "")
    assert "shutdown_timeout" in (resolve_config(env={}, shutdown_timeout="x").error or "")
