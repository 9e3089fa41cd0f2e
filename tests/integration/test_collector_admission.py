"""The collector under overload and abuse, over real sockets: it says no early and stays answerable.

* a full backlog or no room in the bytes-in-flight budget is a 503 + Retry-After decided
  from the request head: the body is never read (a client that sent only the head gets it);
* slow clients (slowloris heads, stalled 20 MB bodies) cost a socket each, not a thread,
  are timed out, and never stop the query port from answering;
* the connection cap makes room by closing the oldest idle keep-alive connection;
* queries answer within a generous bound while several clients post as fast as they can.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from aiecs_tracing.collector import connections, framing
from aiecs_tracing.collector.server import Collector
from tests.integration.test_collector import api_get, otlp_batch, request

pytestmark = pytest.mark.slow

PROTOBUF = {"Content-Type": "application/x-protobuf"}
HEAD = "POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n"


def read_head(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def timed_get(port: int, path: str) -> tuple[int, float]:
    started = time.monotonic()
    status, _headers, _body = request(port, "GET", path)
    return status, time.monotonic() - started


def test_full_backlog_is_503_before_the_body_is_read():
    with Collector(otlp_port=0, udp_port=None, ui_port=0) as c:
        c.store.max_pending_spans = 0  # as if the writer were far behind
        with socket.create_connection(("127.0.0.1", c.otlp_port), timeout=5) as sock:
            sock.sendall(HEAD.format(10 * 1024 * 1024).encode())  # the 10 MiB body never comes
            head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head
        stats = api_get(c, "/api/stats")
        assert stats["rejected_payloads"]["otlp_http"] == 1 and stats["received"]["otlp_http"] == 0
        c.store.max_pending_spans = 1000
        # A small refused body is skipped and the keep-alive connection goes on serving.
        connection = http.client.HTTPConnection("127.0.0.1", c.otlp_port, timeout=5)
        c.store.max_pending_spans = 0
        connection.request("POST", "/v1/traces", otlp_batch("refused", 3, time.time_ns()), PROTOBUF)
        response = connection.getresponse()
        assert (response.status, response.getheader("Retry-After")) == (503, "1")
        response.read()
        c.store.max_pending_spans = 1000
        connection.request("POST", "/v1/traces", otlp_batch("kept", 3, time.time_ns()), PROTOBUF)
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        connection.close()
        assert api_get(c, "/api/services")["data"] == ["kept"]


def test_bytes_in_flight_are_bounded_from_content_length():
    with Collector(otlp_port=0, udp_port=None, ui_port=0, max_bytes_in_flight=1_000_000) as c:
        stalled = socket.create_connection(("127.0.0.1", c.otlp_port), timeout=5)
        stalled.sendall(HEAD.format(900_000).encode() + b"\x0a" * 1000)  # admitted, then stalls mid-body
        assert wait_for(lambda: c.in_flight.used == 900_000)
        with socket.create_connection(("127.0.0.1", c.otlp_port), timeout=5) as sock:
            sock.sendall(HEAD.format(200_000).encode())
            head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in head
        stalled.close()  # its reservation goes with it
        assert wait_for(lambda: c.in_flight.used == 0)
        status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", otlp_batch("fits", 3, time.time_ns()), PROTOBUF)
        assert status == 200


def test_a_hundred_stalled_20mb_bodies_are_refused_up_front_and_queries_still_answer():
    with Collector(otlp_port=0, udp_port=None, ui_port=0) as c:  # default 64 MiB in flight, 20 MiB bodies
        sockets = []
        refused = 0
        try:
            for _ in range(100):
                sock = socket.create_connection(("127.0.0.1", c.otlp_port), timeout=5)
                sock.sendall(HEAD.format(20 * 1024 * 1024).encode() + b"\x0a" * 65536)
                sockets.append(sock)
            for sock in sockets:
                sock.settimeout(0.5)
                try:
                    if sock.recv(64).startswith(b"HTTP/1.1 503"):
                        refused += 1
                except TimeoutError:
                    pass  # admitted: its body is awaited (and counted in the budget)
            assert refused >= 96  # at most 64 MiB / 20 MiB = 3 admitted (4 with one alone)
            assert c.in_flight.used <= 64 * 1024 * 1024
            status, elapsed = timed_get(c.ui_port, "/api/services")
            assert status == 200 and elapsed < 2
        finally:
            for sock in sockets:
                sock.close()


def test_slowloris_heads_time_out_and_never_block_queries(monkeypatch):
    monkeypatch.setattr(framing, "HEAD_TIMEOUT", 1.0)
    with Collector(otlp_port=0, udp_port=None, ui_port=0) as c:
        sockets = []
        try:
            for port in (c.otlp_port, c.ui_port):
                for _ in range(150):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.sendall(b"GET /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
                    sockets.append(sock)
            for _ in range(10):
                status, elapsed = timed_get(c.ui_port, "/api/services")
                assert status == 200 and elapsed < 2
            # Each slow head is answered 408 and closed once HEAD_TIMEOUT has passed.
            sockets[0].settimeout(5)
            assert read_head(sockets[0]).startswith(b"HTTP/1.1 408")
            assert sockets[0].recv(100) == b""
        finally:
            for sock in sockets:
                sock.close()


def test_connection_cap_evicts_the_oldest_idle_connection_or_slow_head_or_says_503(monkeypatch):
    monkeypatch.setattr(connections, "SLOW_HEAD_SECONDS", 60.0)
    with Collector(otlp_port=None, udp_port=None, ui_port=0, max_connections=5) as c:
        idle = []
        for _ in range(5):
            connection = http.client.HTTPConnection("127.0.0.1", c.ui_port, timeout=5)
            connection.request("GET", "/api/services")
            connection.getresponse().read()
            idle.append(connection)
        (server,) = c._http_servers
        assert wait_for(lambda: [conn.state for conn in list(server._connections.values())] == ["idle"] * 5)
        status, _elapsed = timed_get(c.ui_port, "/api/services")  # the oldest idle one made room
        assert status == 200
        with pytest.raises((http.client.HTTPException, OSError)):
            idle[0].request("GET", "/api/services")
            idle[0].getresponse()
        for connection in idle:
            connection.close()
        # the server has seen every one of them go (under load it may take a moment), so the
        # five below are the only connections: none is refused for a slot a closed one still holds
        assert wait_for(lambda: not server._connections), [c.state for c in list(server._connections.values())]
        busy = []
        try:
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", c.ui_port), timeout=5)
                sock.sendall(b"GET /api/services HTTP/1.1\r\n")  # mid-request: not evictable
                busy.append(sock)
            states = lambda: [conn.state for conn in list(server._connections.values())]  # noqa: E731
            assert wait_for(lambda: states() == ["head"] * 5), states()
            with socket.create_connection(("127.0.0.1", c.ui_port), timeout=5) as extra:
                assert read_head(extra).startswith(b"HTTP/1.1 503")
            # Heads slower than SLOW_HEAD_SECONDS make room, the oldest first (told 408).
            monkeypatch.setattr(connections, "SLOW_HEAD_SECONDS", 0.0)
            status, _elapsed = timed_get(c.ui_port, "/api/services")
            assert status == 200
            told = []
            for sock in busy:
                try:
                    told.append(read_head(sock, timeout=0.5)[:12])
                except TimeoutError:
                    pass
            assert told == [b"HTTP/1.1 408"]  # exactly one slow head made room
        finally:
            for sock in busy:
                sock.close()


def test_queries_answer_while_unpaced_clients_saturate_ingest():
    with Collector(otlp_port=0, udp_port=None, ui_port=0) as c:
        small = otlp_batch("small-trace", 1, time.time_ns())
        status, _headers, _body = request(c.otlp_port, "POST", "/v1/traces", small, PROTOBUF)
        assert status == 200
        (trace_id,) = {t["traceID"] for t in api_get(c, "/api/traces?service=small-trace")["data"]}
        bodies = [otlp_batch(f"load-{i}", 512, time.time_ns()) for i in range(8)]
        stop = threading.Event()
        statuses: list[int] = []

        def flood(index: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", c.otlp_port, timeout=30)
            while not stop.is_set():
                try:
                    connection.request("POST", "/v1/traces", bodies[index % len(bodies)], PROTOBUF)
                    response = connection.getresponse()
                    response.read()
                    statuses.append(response.status)
                except (OSError, http.client.HTTPException):
                    connection.close()
                index += 1

        flooders = [threading.Thread(target=flood, args=(i,)) for i in range(4)]
        for thread in flooders:
            thread.start()
        try:
            assert wait_for(lambda: len(statuses) >= 8)
            timings = []
            for _ in range(20):
                status, elapsed = timed_get(c.ui_port, f"/api/traces/{trace_id}")
                assert status == 200
                timings.append(elapsed)
        finally:
            stop.set()
            for thread in flooders:
                thread.join(30)
        assert max(timings) < 2, timings
        assert statuses.count(200) >= 8


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_query_port_refuses_large_bodies_before_reading_them():
    with Collector(otlp_port=None, udp_port=None, ui_port=0) as c:
        with socket.create_connection(("127.0.0.1", c.ui_port), timeout=5) as sock:
            sock.sendall(b"POST /api/services HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n")
            assert read_head(sock).startswith(b"HTTP/1.1 413")
        assert request(c.ui_port, "GET", "/api/services")[0] == 200

