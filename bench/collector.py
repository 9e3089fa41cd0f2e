"""Benchmark of the embedded collector: OTLP ingest rate and trace query latency.

Runs the real ``aiecs-tracing serve`` in a child process (file database in a temporary
directory, free ports), then from this process:

1. ingest: several keep-alive connections post pre-encoded 512-span OTLP protobuf
   batches (unique trace and span ids, realistic attributes and events); the clock
   stops when ``/api/stats`` says every span is *stored*, not merely received;
2. query: one 1,000-span trace is fetched repeatedly through ``/api/traces/{id}``;
3. overload, side by side on one server: one *paced* client (posts a batch, waits until
   ``/api/stats`` says it is stored, posts the next) against 2 and 4 *unpaced* clients
   (post the next batch as soon as an answer arrives; a 503 is retried at once, the
   worst client there is), each for ``--overload-seconds``. Each rate is the spans
   answered 200 / the time until they are all stored. While the 4 unpaced clients run,
   a 20-span trace is fetched over and over (latency p50/p99/max).

Usage: ``python bench/collector.py [--batches N] [--connections N] [--overload-batches N]``
(``AIECS_BENCH_ROOT`` runs another checkout's collector, e.g. a ``git archive`` of HEAD).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(os.environ.get("AIECS_BENCH_ROOT") or Path(__file__).resolve().parents[1])
BATCH_SPANS = 512
TARGET_SPANS_PER_SECOND = 50_000
TARGET_QUERY_MS = 50.0
SERVICES = ("frontend", "orders", "payments", "inventory")


def encode_batch(rng: random.Random, spans: int, spans_per_trace: int, service: str) -> bytes:
    """One ExportTraceServiceRequest shaped like the OpenTelemetry SDK's output."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (("service.name", service), ("host.name", "bench-host"), ("process.pid", 4242)):
        attribute = resource_spans.resource.attributes.add()
        attribute.key = key
        if isinstance(value, int):
            attribute.value.int_value = value
        else:
            attribute.value.string_value = value
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bench.instrumentation"
    scope_spans.scope.version = "1.0.0"
    now_ns = time.time_ns()
    trace_id = b""
    root_id = b""
    for index in range(spans):
        if index % spans_per_trace == 0:
            trace_id = rng.randbytes(16)
            root_id = b""
        span = scope_spans.spans.add()
        span.trace_id = trace_id
        span.span_id = rng.randbytes(8)
        if root_id:
            span.parent_span_id = root_id
        else:
            root_id = span.span_id
        span.name = f"GET /api/items/{{id}} #{index % 12}"
        span.kind = 2 if index % spans_per_trace == 0 else 3
        span.start_time_unix_nano = now_ns + index * 1_000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(10_000, 5_000_000)
        for key, value in (
            ("http.method", "GET"),
            ("http.route", "/api/items/{id}"),
            ("http.status_code", 200),
            ("net.peer.name", "inventory.internal"),
            ("db.rows_affected", rng.randint(0, 100)),
            ("cache.hit", index % 3 == 0),
        ):
            attribute = span.attributes.add()
            attribute.key = key
            if isinstance(value, bool):
                attribute.value.bool_value = value
            elif isinstance(value, int):
                attribute.value.int_value = value
            else:
                attribute.value.string_value = value
        if index % 4 == 0:
            event = span.events.add()
            event.name = "cache miss"
            event.time_unix_nano = span.start_time_unix_nano + 500
            attribute = event.attributes.add()
            attribute.key = "cache.key"
            attribute.value.string_value = f"item:{index}"
        span.status.code = 1
    return request.SerializeToString()


class ServeProcess:
    """``python -m aiecs_tracing serve`` on free ports; ports parsed from its banner."""

    def __init__(self, db_path: str, extra: tuple[str, ...] = ()) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, "-m", "aiecs_tracing", "serve", "--otlp-port", "0", "--udp-port", "0"]
        command += ["--ui-port", "0", "--sampling-port", "0", "--db", db_path, *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        banner = ""
        assert self.process.stdout is not None
        while "Press Ctrl-C" not in banner:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("collector exited before it was ready:\n" + banner)
            banner += line
        self.otlp_port = int(re.search(r"OTLP/HTTP\s+http://[^:]+:(\d+)", banner).group(1))
        self.ui_port = int(re.search(r"UI \+ API\s+http://[^:]+:(\d+)", banner).group(1))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def get_json(port: int, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return json.loads(body)


def post_batches(port: int, bodies: list[bytes], errors: list[str]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Content-Type": "application/x-protobuf"}
    for body in bodies:
        connection.request("POST", "/v1/traces", body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            errors.append(f"HTTP {response.status}")
    connection.close()


def wait_stored(port: int, count: int, timeout: float = 300.0, poll: float = 0.02) -> int:
    deadline = time.monotonic() + timeout
    stored = 0
    while time.monotonic() < deadline:
        stored = get_json(port, "/api/stats")["stored"]
        if stored >= count:
            return stored
        time.sleep(poll)
    raise RuntimeError(f"only {stored} of {count} spans stored after {timeout}s")


def run(batches: int, connections: int, query_repeats: int) -> list[tuple[str, str, str, str]]:
    rng = random.Random(7)
    print(f"encoding {batches} batches of {BATCH_SPANS} spans...", file=sys.stderr)
    bodies = [encode_batch(rng, BATCH_SPANS, 64, SERVICES[i % len(SERVICES)]) for i in range(batches)]
    warmup = [encode_batch(rng, BATCH_SPANS, 64, "warmup") for _ in range(4)]
    big_trace = encode_batch(rng, 1000, 1000, "big-trace")
    big_trace_id = ExportTraceServiceRequest.FromString(big_trace).resource_spans[0].scope_spans[0].spans[0]
    big_trace_hex = big_trace_id.trace_id.hex()

    with tempfile.TemporaryDirectory(prefix="aiecs-bench-") as directory:
        server = ServeProcess(os.path.join(directory, "traces.sqlite3"))
        try:
            errors: list[str] = []
            post_batches(server.otlp_port, warmup, errors)
            already = wait_stored(server.ui_port, len(warmup) * BATCH_SPANS)

            shares = [bodies[i::connections] for i in range(connections)]
            threads = [
                threading.Thread(target=post_batches, args=(server.otlp_port, share, errors)) for share in shares
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            posted = time.perf_counter()
            total = batches * BATCH_SPANS
            wait_stored(server.ui_port, already + total)
            elapsed = time.perf_counter() - started
            if errors:
                raise RuntimeError(f"{len(errors)} batches refused: {errors[:3]}")
            rate = total / elapsed
            accept_rate = total / (posted - started)

            post_batches(server.otlp_port, [big_trace], errors)
            wait_stored(server.ui_port, already + total + 1000)
            connection = http.client.HTTPConnection("127.0.0.1", server.ui_port, timeout=60)
            timings = []
            for _ in range(query_repeats):
                begin = time.perf_counter()
                connection.request("GET", f"/api/traces/{big_trace_hex}")
                response = connection.getresponse()
                body = response.read()
                timings.append((time.perf_counter() - begin) * 1000)
                assert response.status == 200, response.status
            connection.close()
            spans_returned = len(json.loads(body)["data"][0]["spans"])
            assert spans_returned == 1000, spans_returned
            stats = get_json(server.ui_port, "/api/stats")
        finally:
            server.stop()

    median = statistics.median(timings)
    bytes_per_span = stats["store"]["bytes"] / max(1, stats["store"]["spans"])
    rows = [
        ("OTLP ingest, stored (spans/s)", f"{rate:,.0f}", f">= {TARGET_SPANS_PER_SECOND:,}", _verdict(rate >= 50_000)),
        ("OTLP ingest, accepted (spans/s)", f"{accept_rate:,.0f}", "", ""),
        ("1,000-span trace, median (ms)", f"{median:.1f}", f"< {TARGET_QUERY_MS:.0f}", _verdict(median < 50)),
        ("1,000-span trace, first/max (ms)", f"{timings[0]:.1f} / {max(timings):.1f}", "", ""),
        ("store size (bytes/span, incl. indexes+WAL)", f"{bytes_per_span:.0f}", "", ""),
    ]
    print(
        f"{total:,} spans in {batches} batches over {connections} keep-alive connections; "
        f"{query_repeats} queries; cpus={os.cpu_count()}"
    )
    return rows


def post_until_accepted(connection: http.client.HTTPConnection, port: int, body: bytes, refused: list[int]) -> None:
    """POST one batch until it is answered 200; a 503 is retried at once (no back-off)."""
    headers = {"Content-Type": "application/x-protobuf"}
    while True:
        try:
            connection.request("POST", "/v1/traces", body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            connection.close()  # the server may close after a 503 it answered without reading
            connection.__init__("127.0.0.1", port, timeout=120)  # type: ignore[misc]
            refused.append(0)
            continue
        if response.status == 200:
            return
        refused.append(response.status)
        if response.getheader("Connection", "").lower() == "close":
            connection.close()


def paced_client(port: int, ui_port: int, bodies: list[bytes], until: float, counts: list[int], refused: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    base = get_json(ui_port, "/api/stats")["stored"]
    index = 0
    while time.perf_counter() < until:
        post_until_accepted(connection, port, bodies[index % len(bodies)], refused)
        index += 1
        counts.append(BATCH_SPANS)
        wait_stored(ui_port, base + index * BATCH_SPANS, poll=0.002)
    connection.close()


def unpaced_client(port: int, bodies: list[bytes], until: float, counts: list[int], refused: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    index = 0
    while time.perf_counter() < until:
        post_until_accepted(connection, port, bodies[index % len(bodies)], refused)
        index += 1
        counts.append(BATCH_SPANS)
    connection.close()


def query_probe(port: int, trace_hex: str, stop: threading.Event, timings: list[float]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while not stop.is_set():
        begin = time.perf_counter()
        connection.request("GET", f"/api/traces/{trace_hex}")
        response = connection.getresponse()
        response.read()
        timings.append((time.perf_counter() - begin) * 1000)
        assert response.status == 200, response.status
        time.sleep(0.01)
    connection.close()


def run_overload(batches: int, seconds: float) -> list[tuple[str, str, str, str]]:
    """One paced client, then 2 and then 4 unpaced ones, each for ``seconds`` on a fresh server.

    A phase's rate is the spans answered 200 during it / the time until all of them are
    stored (so spans acknowledged but still queued count only once they are written).
    The ``batches`` distinct bodies are posted round and round (the store keeps duplicates).
    """
    rng = random.Random(11)
    print(f"encoding {batches} overload batches...", file=sys.stderr)
    bodies = [encode_batch(rng, BATCH_SPANS, 64, SERVICES[i % 4]) for i in range(batches)]
    small_trace = encode_batch(rng, 20, 20, "small-trace")
    small_hex = ExportTraceServiceRequest.FromString(small_trace).resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    phases = [("paced x1", 1), ("unpaced x2", 2), ("unpaced x4", 4)]
    rates: dict[str, float] = {}
    refusals: dict[str, int] = {}
    probe: list[float] = []
    # Every phase on a fresh server and database, so no phase pays for another's rows.
    for name, clients in phases:
        with tempfile.TemporaryDirectory(prefix="aiecs-bench-") as directory:
            server = ServeProcess(os.path.join(directory, "traces.sqlite3"))
            try:
                errors: list[str] = []
                post_batches(server.otlp_port, [small_trace], errors)
                stored = wait_stored(server.ui_port, 20)
                refused: list[int] = []
                counts: list[int] = []
                started = time.perf_counter()
                until = started + seconds
                if clients == 1:
                    args = (server.otlp_port, server.ui_port, bodies, until, counts, refused)
                    threads = [threading.Thread(target=paced_client, args=args)]
                else:
                    threads = [
                        threading.Thread(target=unpaced_client, args=(server.otlp_port, bodies[i::clients], until, counts, refused))
                        for i in range(clients)
                    ]
                stop = threading.Event()
                prober = threading.Thread(target=query_probe, args=(server.ui_port, small_hex, stop, probe))
                for thread in threads:
                    thread.start()
                if clients == 4:
                    prober.start()
                for thread in threads:
                    thread.join()
                stored = wait_stored(server.ui_port, stored + sum(counts), timeout=600)
                elapsed = time.perf_counter() - started
                stop.set()
                if clients == 4:
                    prober.join()
                rates[name] = sum(counts) / elapsed
                refusals[name] = len(refused)
                print(f"{name}: {sum(counts)} spans in {elapsed:.1f}s, {len(refused)} refusals", file=sys.stderr)
            finally:
                server.stop()
    probe.sort()
    paced = rates["paced x1"]
    rows = [
        (
            f"overload: {name}, stored (spans/s)",
            f"{rate:,.0f} ({rate / paced:.2f}x paced; {refusals[name]} refusals)",
            ">= 0.8x" if name != "paced x1" else "",
            "" if name == "paced x1" else _verdict(rate >= 0.8 * paced),
        )
        for name, rate in rates.items()
    ]
    if probe:
        p99 = probe[min(len(probe) - 1, int(len(probe) * 0.99))]
        rows.append(
            (
                "20-span trace under 4 unpaced, p50/p99/max (ms)",
                f"{statistics.median(probe):.0f} / {p99:.0f} / {probe[-1]:.0f}",
                "p99 < 500",
                _verdict(p99 < 500),
            )
        )
    return rows


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    header = ("metric", "measured", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--query-repeats", type=int, default=30)
    parser.add_argument("--overload-batches", type=int, default=40, help="distinct overload bodies (0: no overload)")
    parser.add_argument("--overload-seconds", type=float, default=15.0, help="length of each overload phase")
    parser.add_argument("--overload-only", action="store_true")
    options = parser.parse_args()
    rows = [] if options.overload_only else run(options.batches, options.connections, options.query_repeats)
    if options.overload_batches:
        rows += run_overload(options.overload_batches, options.overload_seconds)
    print_table(rows)


if __name__ == "__main__":
    main()
