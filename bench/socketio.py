"""Per-event cost of ``instrument_socketio``: bare vs instrumented, side by side in one run.

Part 1 (in-process, CPU cost): a ``socketio.AsyncServer`` driven through its own packet
entry point (``_handle_eio_message``, as engine.io calls it) with one connected client
and the transport stubbed out, so the numbers are python-socketio's dispatch plus ours:
an event with an ack, an event carrying a trace carrier, and a server ``emit``. Servers:
bare, instrumented with tracing disabled, instrumented exporting for real (Jaeger thrift
over UDP to a local socket). Rounds alternate; each ends with a flush inside the timed
region so export work is paid for. Medians.

Part 2 (round trip): the same server under uvicorn on 127.0.0.1 with a real
``socketio.AsyncClient`` (websocket transport) doing ``call`` round trips, bare vs traced
in alternating rounds.

Run: ``.venv/bin/python bench/socketio.py`` (``--rounds``, ``--n``, ``--calls``, ``--skip-uvicorn``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file is named socketio.py: keep its directory off the path so the real package is imported.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import socketio  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from aiecs_tracing import TracingManager  # noqa: E402
from aiecs_tracing.integrations.socketio import instrument_socketio  # noqa: E402

CARRIER = {"_trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}


def udp_sink() -> tuple[socket.socket, int]:
    """A local UDP socket drained in a thread: the exporter really sends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))

    def drain() -> None:
        while True:
            try:
                sock.recv(70000)
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    return sock, sock.getsockname()[1]


def make_server(tracing: TracingManager | None, async_handlers: bool = False) -> socketio.AsyncServer:
    sio = socketio.AsyncServer(async_mode="asgi", async_handlers=async_handlers)
    if tracing is not None:
        instrument_socketio(sio, tracing)

    @sio.event
    async def ping(sid: str, data: Any) -> dict:
        return {"pong": data.get("n") if isinstance(data, dict) else data}

    return sio


async def connected(sio: socketio.AsyncServer) -> str:
    """Connect a fake engine.io client to ``/``; returns its Socket.IO sid."""

    async def nowhere(*args: Any, **kwargs: Any) -> None:
        return None

    sio.eio.send = nowhere  # the transport: packets go nowhere
    environ = {"REMOTE_ADDR": "127.0.0.1", "PATH_INFO": "/socket.io/", "HTTP_TRACEPARENT": CARRIER["_trace"]["traceparent"]}
    await sio._handle_eio_connect("eio1", environ)
    await sio._handle_eio_message("eio1", "0")
    return sio.manager.sid_from_eio_sid("eio1", "/")


async def time_loop(sio: socketio.AsyncServer, sid: str, kind: str, n: int, tracing: TracingManager | None) -> float:
    data: dict[str, Any] = {"n": 1, **CARRIER} if kind == "carrier" else {"n": 1}
    packet = "21" + json.dumps(["ping", data], separators=(",", ":"))
    handle = sio._handle_eio_message
    start = time.perf_counter()
    if kind == "emit":
        for _ in range(n):
            await sio.emit("news", {"n": 1}, to=sid)
    else:
        for _ in range(n):
            await handle("eio1", packet)
    if tracing is not None:
        tracing.flush()
    return (time.perf_counter() - start) / n * 1e6


async def part1(rounds: int, n: int, port: int) -> list[tuple[str, float, float, float]]:
    traced_mgr = TracingManager(
        "bench-socketio", jaeger_host="127.0.0.1", jaeger_port=port, enable_tracing=True,
        set_global_provider=False, set_default_manager=False,
    )
    disabled_mgr = TracingManager("off", enable_tracing=False, set_global_provider=False, set_default_manager=False)
    servers = {"bare": make_server(None), "disabled": make_server(disabled_mgr), "traced": make_server(traced_mgr)}
    managers = {"bare": None, "disabled": None, "traced": traced_mgr}
    sids = {name: await connected(sio) for name, sio in servers.items()}
    results: dict[tuple[str, str], list[float]] = {}
    kinds = ("event+ack", "carrier", "emit")
    for name, sio in servers.items():  # warm-up
        for kind in kinds:
            await time_loop(sio, sids[name], kind, 200, managers[name])
    for _ in range(rounds):
        for kind in kinds:
            for name, sio in servers.items():
                results.setdefault((kind, name), []).append(await time_loop(sio, sids[name], kind, n, managers[name]))
    ref: list[float] = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            span = traced_mgr.start_sdk("reference", {"component": "bench"}, SpanKind.CONSUMER, None)
            token = traced_mgr.attach(span)
            traced_mgr.detach(token)
            span.finish()
        traced_mgr.flush()
        ref.append((time.perf_counter() - start) / n * 1e6)
    rows = [("1 span (ref)", 0.0, 0.0, statistics.median(ref))]
    for kind in kinds:
        bare = statistics.median(results[(kind, "bare")])
        rows.append((kind, bare, statistics.median(results[(kind, "disabled")]), statistics.median(results[(kind, "traced")])))
    traced_mgr.close_tracer()
    return rows


# --- part 2: uvicorn + a real client ------------------------------------------------------------


def serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return server, thread, sock.getsockname()[1]


async def round_trips(ports: dict[str, int], rounds: int, calls: int) -> dict[str, float]:
    clients = {}
    for name, port in ports.items():
        client = socketio.AsyncClient()
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=5)
        clients[name] = client
    results: dict[str, list[float]] = {name: [] for name in ports}
    for client in clients.values():
        for _ in range(50):
            await client.call("ping", {"n": 1}, timeout=5)
    for _ in range(rounds):
        for name, client in clients.items():
            start = time.perf_counter()
            for _ in range(calls):
                await client.call("ping", {"n": 1}, timeout=5)
            results[name].append((time.perf_counter() - start) / calls * 1e6)
    for client in clients.values():
        await client.disconnect()
    return {name: statistics.median(values) for name, values in results.items()}


def part2(rounds: int, calls: int, port: int) -> dict[str, float]:
    tracing = TracingManager(
        "bench-socketio-rt", jaeger_host="127.0.0.1", jaeger_port=port, enable_tracing=True,
        set_global_provider=False, set_default_manager=False, schedule_delay_millis=200,
    )
    running = {
        "bare": serve(socketio.ASGIApp(make_server(None, async_handlers=True))),
        "traced": serve(socketio.ASGIApp(make_server(tracing, async_handlers=True))),
    }
    try:
        return asyncio.run(round_trips({name: r[2] for name, r in running.items()}, rounds, calls))
    finally:
        for server, thread, _ in running.values():
            server.should_exit = True
            thread.join(5)
        tracing.close_tracer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000, help="events per in-process round")
    parser.add_argument("--calls", type=int, default=300, help="round trips per uvicorn round")
    parser.add_argument("--skip-uvicorn", action="store_true")
    args = parser.parse_args()
    logging.getLogger("socketio").setLevel(logging.ERROR)
    sink, port = udp_sink()

    rows = asyncio.run(part1(args.rounds, args.n, port))
    print(f"\npython-socketio {importlib.metadata.version('python-socketio')}: "
          f"in-process dispatch, median of {args.rounds} rounds x {args.n}")
    print(f"{'per event':<13}{'bare us':>10}{'disabled us':>13}{'traced us':>11}{'added us':>10}{'traced/bare':>13}")
    for kind, bare, disabled, traced in rows[1:]:
        print(f"{kind:<13}{bare:>10.1f}{disabled:>13.1f}{traced:>11.1f}{traced - bare:>10.1f}{traced / bare:>12.2f}x")
    print(f"(reference: one core span started, made current and exported costs {rows[0][3]:.1f} us here;"
          " every row above adds one span)")

    if not args.skip_uvicorn:
        rt = part2(args.rounds, args.calls, port)
        print(f"\nround trip under uvicorn (AsyncClient.call over websocket), median of {args.rounds} x {args.calls}")
        print(f"{'per call':<12}{'bare us':>10}{'traced us':>11}{'added us':>10}{'traced/bare':>13}")
        print(f"{'call+ack':<12}{rt['bare']:>10.1f}{rt['traced']:>11.1f}{rt['traced'] - rt['bare']:>10.1f}"
              f"{rt['traced'] / rt['bare']:>12.2f}x")
    sink.close()


if __name__ == "__main__":
    main()
