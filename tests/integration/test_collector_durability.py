"""What an OTLP "200 OK" from the embedded collector promises: the spans are committed.

* kill -9 under load: a collector subprocess with a file database takes OTLP posts from
  several unpaced clients that record every request answered 200 (and its span ids);
  it is killed mid-stream, restarted on the same file, and every acknowledged span is
  there. (UDP has no acknowledgement, so it promises nothing of the kind.)
* a full disk is a 507, never a 200; a commit that cannot happen in time is a 503 with
  Retry-After, and those spans are never written later (a retry cannot duplicate them).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aiecs_tracing.collector.server import Collector
from tests.integration.test_collector import api_get, otlp_batch, request

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def start_serve(db: Path) -> tuple[subprocess.Popen[str], int, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "aiecs_tracing", "serve", "--otlp-port", "0", "--udp-port", "0"]
    command += ["--ui-port", "0", "--sampling-port", "0", "--db", str(db)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    banner = ""
    assert process.stdout is not None
    while "Press Ctrl-C" not in banner:
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError("collector exited: " + banner + (process.stderr.read() if process.stderr else ""))
        banner += line
    otlp = int(re.search(r"OTLP/HTTP\s+http://[^:]+:(\d+)", banner).group(1))
    ui = int(re.search(r"UI \+ API\s+http://[^:]+:(\d+)", banner).group(1))
    return process, otlp, ui


def one_trace_batch(spans: int) -> tuple[bytes, str, set[str]]:
    """A request holding one trace of ``spans`` spans; its trace id and span ids."""
    request_pb = ExportTraceServiceRequest.FromString(otlp_batch("durable", spans, time.time_ns()))
    trace_id = os.urandom(16)
    span_ids = set()
    for span in request_pb.resource_spans[0].scope_spans[0].spans:
        span.trace_id = trace_id
        span_ids.add(span.span_id.hex())
    return request_pb.SerializeToString(), trace_id.hex(), span_ids


def test_every_span_answered_200_survives_kill_9(tmp_path):
    db = tmp_path / "durable.sqlite3"
    process, otlp_port, _ui_port = start_serve(db)
    acknowledged: dict[str, set[str]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    answers: list[int] = []

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", otlp_port, timeout=10)
        while not stop.is_set():
            body, trace_id, span_ids = one_trace_batch(300)
            try:
                connection.request("POST", "/v1/traces", body, PROTOBUF)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                return  # the collector is gone: nothing more is acknowledged
            answers.append(response.status)
            if response.status == 200:
                with lock:
                    acknowledged[trace_id] = span_ids

    try:
        clients = [threading.Thread(target=client) for _ in range(4)]
        for thread in clients:
            thread.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 20 and time.monotonic() < deadline:  # mid-stream, not at the start
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        stop.set()
        for thread in clients:
            thread.join(15)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(acknowledged) >= 20, answers[-5:]
    with lock:
        expected = {trace_id: set(ids) for trace_id, ids in acknowledged.items()}

    process, _otlp_port, ui_port = start_serve(db)
    try:
        missing = 0
        for trace_id, span_ids in expected.items():
            status, _headers, body = request(ui_port, "GET", f"/api/traces/{trace_id}")
            assert status == 200, (trace_id, status)
            (trace,) = json.loads(body)["data"]
            missing += len(span_ids - {span["spanID"] for span in trace["spans"]})
        assert missing == 0, f"{missing} acknowledged spans lost of {sum(map(len, expected.values()))}"
    finally:
        process.terminate()
        process.wait(30)


def test_full_disk_is_507_never_200(tmp_path):
    with Collector(otlp_port=0, udp_port=None, ui_port=0, db_path=tmp_path / "full.sqlite3") as c:
        status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", otlp_batch("before", 5, time.time_ns()), PROTOBUF)
        assert status == 200
        assert c.flush(10)
        db = c.store._writer_db  # the writer is idle: cap the file where it is now
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        big = otlp_batch("too-much", 3000, time.time_ns())
        status, _headers, body = request(c.otlp_port, "POST", "/v1/traces", big, PROTOBUF)
        assert status == 507, body
        stats = api_get(c, "/api/stats")
        assert stats["store"]["disk_full"] == 3000
        assert stats["received"]["otlp_http"] == 5
        db.execute("PRAGMA max_page_count = 1073741823")  # space again: the next post is stored
        status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", otlp_batch("after", 4, time.time_ns()), PROTOBUF)
        assert status == 200
        assert sorted(api_get(c, "/api/services")["data"]) == ["after", "before"]


def test_a_commit_not_done_in_time_is_503_and_never_written_later():
    with Collector(otlp_port=0, udp_port=None, ui_port=0, commit_timeout=0.5) as c:
        store = c.store
        writing = threading.Event()
        release = threading.Event()
        original = store._write

        def slow_write(tickets):
            writing.set()
            release.wait(20)
            original(tickets)

        store._write = slow_write
        first: list[int] = []
        blocked = threading.Thread(
            target=lambda: first.append(
                request(c.otlp_port, "POST", "/v1/traces", otlp_batch("first", 3, time.time_ns()), PROTOBUF)[0]
            )
        )
        c.commit_timeout = 10.0
        blocked.start()
        assert writing.wait(10)  # the writer holds the first request's rows
        c.commit_timeout = 0.5
        started = time.monotonic()
        status, headers, body = request(c.otlp_port, "POST", "/v1/traces", otlp_batch("late", 4, time.time_ns()), PROTOBUF)
        assert status == 503 and headers["retry-after"] == "1", body
        assert time.monotonic() - started < 5
        release.set()
        blocked.join(20)
        assert first == [200]
        store._write = original
        assert c.flush(10)
        assert api_get(c, "/api/services")["data"] == ["first"]
        stats = api_get(c, "/api/stats")
        assert stats["received"]["otlp_http"] == 3 and stats["rejected_spans"]["otlp_http"] == 4
