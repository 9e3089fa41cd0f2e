"""The embedded collector against abusive clients: memory, query latency, acknowledged spans.

Each scenario runs the real ``aiecs-tracing serve`` in a child process (file database,
free ports), as ``bench/collector.py`` does (``AIECS_BENCH_ROOT`` runs another checkout):

1. stalled bodies: 100 connections each announce a 20 MiB OTLP body, send ``--stall-mb``
   of it and stall; the server's peak RSS (VmHWM) and a query's latency meanwhile;
2. slowloris: ``--slowloris`` connections to the query port each send half a request head;
   the latency of 20 queries meanwhile;
3. many clients: ``--clients`` threads post 50-span batches as fast as they can for
   ``--seconds`` (2,000 distinct bodies, round and round); the latency of a 20-trace
   search meanwhile (p50/max) and how many posts got 200 / 503.

Usage: ``python bench/collector_abuse.py [--stall-mb N] [--slowloris N] [--clients N] [--seconds S]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collector import ServeProcess, encode_batch  # noqa: E402


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def timed_get(port: int, path: str, timeout: float = 60.0) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        status = response.status
    except (OSError, http.client.HTTPException):
        status = 0
    return status, (time.perf_counter() - started) * 1000


def stalled_bodies(server: ServeProcess, stall_mb: float) -> str:
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {20 * 1024 * 1024}\r\n\r\n"
    ).encode()
    chunk = b"\x0a" * (1 << 20)
    sockets: list[socket.socket] = []
    refused = [0]

    def stall() -> None:
        sock = socket.create_connection(("127.0.0.1", server.otlp_port), timeout=30)
        sockets.append(sock)
        try:
            sock.sendall(head)
            for _ in range(int(stall_mb)):
                sock.sendall(chunk)
        except OSError:
            refused[0] += 1

    threads = [threading.Thread(target=stall) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    time.sleep(1)
    status, query_ms = timed_get(server.ui_port, "/api/services")
    rss = peak_rss_mb(server.process.pid)
    for sock in sockets:
        sock.close()
    return f"100 stalled 20 MiB bodies ({stall_mb:g} MiB sent each): peak RSS {rss:,.0f} MiB, query {status} in {query_ms:.0f} ms, {refused[0]} senders cut off"


def slowloris(server: ServeProcess, count: int) -> str:
    sockets = []
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", server.ui_port), timeout=10)
            sock.sendall(b"GET /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(sock)
        except OSError:
            break
    timings = []
    statuses = []
    for _ in range(20):
        status, elapsed = timed_get(server.ui_port, "/api/services")
        statuses.append(status)
        timings.append(elapsed)
    for sock in sockets:
        sock.close()
    return (
        f"{len(sockets)} slowloris connections: 20 queries p50 {statistics.median(timings):.0f} ms, "
        f"max {max(timings):.0f} ms, statuses {sorted(set(statuses))}"
    )


def many_clients(server: ServeProcess, clients: int, seconds: float) -> str:
    rng = random.Random(5)
    bodies = [encode_batch(rng, 50, 10, "frontend") for _ in range(2000)]  # unique traces, ~6 posts each
    stop = threading.Event()
    statuses: list[int] = []

    def post(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.otlp_port, timeout=60)
        while not stop.is_set():
            try:
                connection.request("POST", "/v1/traces", bodies[index % len(bodies)], {"Content-Type": "application/x-protobuf"})
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            except (OSError, http.client.HTTPException):
                statuses.append(0)
                connection.close()
            index += 1

    threads = [threading.Thread(target=post, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    timings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _status, elapsed = timed_get(server.ui_port, "/api/traces?service=frontend&limit=20&lookback=1h")
        timings.append(elapsed)
        time.sleep(0.1)
    stop.set()
    for thread in threads:
        thread.join(60)
    return (
        f"{clients} unpaced clients for {seconds:g} s: search p50 {statistics.median(timings):.0f} ms, "
        f"max {max(timings):.0f} ms ({len(timings)} searches); posts 200: {statuses.count(200)}, "
        f"503: {statuses.count(503)}, failed: {statuses.count(0)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall-mb", type=float, default=5)
    parser.add_argument("--slowloris", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--scenarios", default="123", help="which to run, e.g. 13")
    options = parser.parse_args()
    scenarios = {
        "1": lambda s: stalled_bodies(s, options.stall_mb),
        "2": lambda s: slowloris(s, options.slowloris),
        "3": lambda s: many_clients(s, options.clients, options.seconds),
    }
    for scenario in (scenarios[key] for key in options.scenarios):
        with tempfile.TemporaryDirectory(prefix="aiecs-abuse-") as directory:
            server = ServeProcess(os.path.join(directory, "traces.sqlite3"))
            try:
                print(scenario(server), flush=True)
            finally:
                server.process.kill()
                server.process.wait(30)


if __name__ == "__main__":
    main()
