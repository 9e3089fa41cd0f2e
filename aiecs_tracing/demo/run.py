"""``aiecs-tracing demo``: bring up a small AIECS, send it work, print every trace as a tree.

What it does, in order:

1. Find a trace backend on the query port (our collector, or a real Jaeger: anything that
   answers ``GET /api/services``) or start the embedded collector in this process.
2. Start the demo services, each its own process with its own tracing manager set up
   through environment variables: ``ml-service`` (OTLP/HTTP), ``aiecs-api`` and the
   Celery worker ``aiecs-worker`` (Jaeger UDP). Their logs go to files, not the terminal.
3. Send tasks to the API (some fail on purpose: a 500 from the model service, a tool
   that raises, a Celery retry), follow their progress over Socket.IO, fetch each trace
   from the query API and print it.
4. On Ctrl-C (or after ``--duration``/``--requests``): stop the services and their pool
   processes, and the collector if this command started it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import common
from .tree import Style, render_trace, trace_summary

DEFAULT_HOST = "127.0.0.1"
DEFAULT_OTLP_PORT = 4318
DEFAULT_UDP_PORT = 6831
DEFAULT_UI_PORT = 16686
STARTUP_TIMEOUT = 40.0
TASK_TIMEOUT = 20.0


@dataclass(frozen=True)
class Scenario:
    label: str
    request: dict[str, Any]
    expect: str = "completed"  # "completed", "failed" or "rejected"
    why: str = ""  # what goes wrong on purpose


SCENARIOS = (
    Scenario("summarize", {"kind": "summarize", "texts": ["Quarterly revenue grew 12% on cloud demand."]}),
    Scenario(
        "classify",
        {"kind": "classify", "texts": ["Invoice 0042: net 30, EUR 1,200"], "fail_ml": True},
        "failed",
        "ml-service answers 500",
    ),
    Scenario(
        "summarize",
        {"kind": "summarize", "texts": ["Release notes for 2.4"], "warmup_attempts": 1},
        "completed",
        "ml-service 503 while loading: Celery retries",
    ),
    Scenario(
        "analyze_document",
        {"kind": "analyze_document", "document": "scan-0042.pdf", "corrupt_document": True},
        "failed",
        "the document parser tool raises",
    ),
    Scenario("analyze_document", {"kind": "analyze_document", "document": "contract.pdf"}),
    Scenario("classify", {"kind": "classify", "texts": ["Dear customer, your contract renews on 1 May."]}),
    Scenario(
        "translate", {"kind": "translate", "texts": ["Hallo Welt"]}, "rejected", "unknown task kind: 400"
    ),
)


# --- command line ---------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="aiecs-tracing demo",
        description="Start a small AIECS (task API, Celery worker, ML service), send it work and print every "
        "trace as a tree. Traces go to the embedded collector (started if none is running) or to a "
        "Jaeger already listening on the query port.",
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--requests", type=int, default=None, metavar="N", help="stop after N requests")
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="pause between requests"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="collector address (default %(default)s)")
    parser.add_argument(
        "--otlp-port", type=int, default=DEFAULT_OTLP_PORT, help="OTLP/HTTP port (0: any free)"
    )
    parser.add_argument(
        "--udp-port", type=int, default=DEFAULT_UDP_PORT, help="Jaeger UDP port (0: any free)"
    )
    parser.add_argument(
        "--ui-port", type=int, default=DEFAULT_UI_PORT, help="query API and UI port (0: any free)"
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help="collector store (default: the one `aiecs-tracing serve` uses; :memory: keeps nothing)",
    )
    parser.add_argument("--api-port", type=int, default=0, help="task API port (default: any free)")
    parser.add_argument("--ml-port", type=int, default=0, help="ml-service port (default: any free)")
    parser.add_argument(
        "--broker",
        default=os.environ.get(common.ENV_BROKER) or "filesystem://",
        help="Celery broker URL (default: $CELERY_BROKER_URL, else files in the work directory)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="Celery prefork pool size")
    parser.add_argument(
        "--api-url",
        default=None,
        metavar="URL",
        help="drive an aiecs-api that is already running (e.g. docker compose's) instead of starting the services",
    )
    parser.add_argument(
        "--query-url",
        default=None,
        metavar="URL",
        help="read traces from this Jaeger-compatible query API instead of finding or starting the collector",
    )
    parser.add_argument(
        "--jaeger",
        nargs="?",
        const="",
        default=None,
        metavar="BINARY",
        help="send the traces to a real Jaeger v2 started for this run: BINARY, else the one "
        "scripts/ensure_jaeger.sh builds, else `jaeger` on PATH",
    )
    parser.add_argument("--viewer-url", default=None, metavar="URL", help="base of the trace links printed")
    parser.add_argument(
        "--workdir", default=None, help="where logs, broker files and SQLite go (default: a temp dir)"
    )
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args(argv)
    for name in ("otlp_port", "udp_port", "ui_port", "api_port", "ml_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be 0-65535")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    return args


# --- the trace backend ----------------------------------------------------------------
@dataclass
class Backend:
    query_url: str  # http://host:port of the Jaeger-compatible query API and UI
    udp: tuple[str, int]  # where the Jaeger UDP services send
    otlp_url: str  # OTEL_EXPORTER_OTLP_ENDPOINT for the OTLP service
    owned: Any = None  # the Collector this command started, else None
    description: str = ""

    viewer_url: str | None = None  # base of the links printed (default: query_url)
    api_links: bool = False  # link the query API's JSON (a Jaeger built without its UI)
    serve_hint: str = "aiecs-tracing serve"  # the command that shows these traces again
    name: str = "collector"

    def trace_url(self, trace_id: str) -> str:
        if self.api_links and not self.viewer_url:
            return f"{self.query_url}/api/traces/{trace_id}"
        return f"{(self.viewer_url or self.query_url).rstrip('/')}/trace/{trace_id}"


def start_real_jaeger(args: argparse.Namespace, workdir: Path) -> Backend:
    """A real Jaeger v2 for this run (``--jaeger``), on its usual ports where they are free."""
    from .jaeger import JAEGER_VERSION, JaegerProcess, find_binary

    binary = find_binary(args.jaeger or None)
    if binary is None:
        where = args.jaeger or "the cache of scripts/ensure_jaeger.sh or PATH"
        raise OSError(f"no Jaeger binary in {where}; build one with `bash scripts/ensure_jaeger.sh` (needs Go)")
    jaeger = JaegerProcess(binary, workdir / "jaeger", usual_ports=True).start()
    return Backend(
        jaeger.query_url,
        ("127.0.0.1", jaeger.udp_port),
        jaeger.otlp_url.removesuffix("/v1/traces"),
        jaeger,
        f"Jaeger {JAEGER_VERSION} ({binary}), in memory; log {jaeger.log_path}",
        api_links=True,
        name="jaeger",
    )


def _answers_query_api(host: str, port: int) -> bool:
    import httpx

    try:
        response = httpx.get(f"http://{host}:{port}/api/services", timeout=1.5)
        return response.status_code == 200 and isinstance(response.json().get("data"), (list, type(None)))
    except Exception:
        return False


def _port_free(host: str, port: int, kind: int) -> bool:
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def find_or_start_backend(args: argparse.Namespace) -> Backend:
    host = args.host
    if args.query_url:
        return Backend(
            args.query_url.rstrip("/"),
            (host, args.udp_port),
            f"http://{host}:{args.otlp_port}",
            None,
            "given with --query-url (left running afterwards)",
        )
    if args.ui_port and _answers_query_api(host, args.ui_port):
        return Backend(
            f"http://{host}:{args.ui_port}",
            (host, args.udp_port),
            f"http://{host}:{args.otlp_port}",
            None,
            "already running (reused, left running afterwards)",
        )
    from aiecs_tracing.collector.server import Collector

    ports = {
        "otlp_port": args.otlp_port if _port_free(host, args.otlp_port, socket.SOCK_STREAM) else 0,
        "udp_port": args.udp_port if _port_free(host, args.udp_port, socket.SOCK_DGRAM) else 0,
        "ui_port": args.ui_port if _port_free(host, args.ui_port, socket.SOCK_STREAM) else 0,
    }
    from aiecs_tracing.collector.store import default_db_path

    # The collector's usual store by default, so `aiecs-tracing serve` shows these traces later.
    collector = Collector(host=host, db_path=args.db or default_db_path(), **ports)
    collector.start()
    moved = [
        str(getattr(args, name)) for name, value in ports.items() if value == 0 and getattr(args, name) != 0
    ]
    note = f" (port {', '.join(moved)} in use by something else: picked a free one instead)" if moved else ""
    return Backend(
        f"http://{host}:{collector.ui_port}",
        (host, collector.udp_port),
        f"http://{host}:{collector.otlp_port}",
        collector,
        "started" + note,
    )


def serve_command(args: argparse.Namespace) -> str:
    """The `aiecs-tracing serve` that shows this run's traces again: the options it was given."""
    import shlex

    words = ["aiecs-tracing", "serve"]
    if args.db:
        words += ["--db", args.db]
    if args.host != DEFAULT_HOST:
        words += ["--host", args.host]
    if args.ui_port not in (DEFAULT_UI_PORT, 0):
        words += ["--ui-port", str(args.ui_port)]
    return shlex.join(words)


def broker_unreachable(url: str, timeout: float = 3.0) -> str | None:
    """One line saying why a network broker cannot be reached, or None (reachable, or files).

    Celery would otherwise retry for about 40 s before the worker gives up, in silence.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    defaults = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}
    if parts.scheme not in defaults:
        return None
    try:
        host, port = parts.hostname or "localhost", parts.port or defaults[parts.scheme]
    except ValueError as exc:  # a port that is not a number
        return f"cannot use the broker URL {_redact_url(url)}: {exc}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot reach the broker {_redact_url(url)} ({host}:{port}: {reason}); start it, or omit --broker"


# --- the demo services ----------------------------------------------------------------
@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    pass_fds: tuple[int, ...] = ()
    proc: subprocess.Popen | None = None

    def start(self, cwd: Path) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=self.pass_fds,
                start_new_session=True,  # its own process group: Ctrl-C is ours to handle
            )

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the service and its children; False once none is left."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _service_env(base: dict[str, str], service_name: str, backend: Backend, transport: str) -> dict[str, str]:
    """The environment a deployment would give the service: the seed's variables or OTel's."""
    env = {k: v for k, v in base.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_TRACING_"))}
    env["SERVICE_NAME"] = service_name
    env["JAEGER_ENABLE_TRACING"] = "true"
    if transport == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = backend.otlp_url
    else:
        env["JAEGER_AGENT_HOST"] = backend.udp[0]
        env["JAEGER_AGENT_PORT"] = str(backend.udp[1])
    return env


class Services:
    """The three demo processes: started together, stopped together, no orphans."""

    def __init__(self, args: argparse.Namespace, backend: Backend, workdir: Path, run_id: str) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_sock = _listening_socket(DEFAULT_HOST, args.api_port)
        self.ml_sock = _listening_socket(DEFAULT_HOST, args.ml_port)
        self.api_url = f"http://{DEFAULT_HOST}:{self.api_sock.getsockname()[1]}"
        self.ml_url = f"http://{DEFAULT_HOST}:{self.ml_sock.getsockname()[1]}"
        self.broker = args.broker
        self.concurrency = args.concurrency
        package_root = str(Path(__file__).resolve().parents[2])
        base = dict(os.environ)
        base.update(
            {
                common.ENV_DIR: str(workdir),
                common.ENV_DB: str(workdir / "aiecs.db"),
                common.ENV_API_URL: self.api_url,
                common.ENV_ML_URL: self.ml_url,
                common.ENV_BROKER: args.broker,
                common.ENV_PARENT: str(os.getpid()),
                common.ENV_RUN_ID: run_id,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (package_root, base.get("PYTHONPATH", "")) if p),
            }
        )
        python = sys.executable
        self.ml = Service(
            "ml-service",
            [python, "-m", "aiecs_tracing.demo.ml_service", "--fd", str(self.ml_sock.fileno())],
            _service_env(base, "ml-service", backend, "otlp"),
            self.logs / "ml-service.log",
            (self.ml_sock.fileno(),),
        )
        self.api = Service(
            "aiecs-api",
            [python, "-m", "aiecs_tracing.demo.api", "--fd", str(self.api_sock.fileno())],
            _service_env(base, "aiecs-api", backend, "udp"),
            self.logs / "aiecs-api.log",
            (self.api_sock.fileno(),),
        )
        self.worker = Service(
            "aiecs-worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "aiecs_tracing.demo.worker",
                "worker",
                "--pool=prefork",
                f"--concurrency={args.concurrency}",
                "-Q",
                f"{common.FAST_QUEUE},{common.HEAVY_QUEUE}",
                "-n",
                f"aiecs-worker-{run_id[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            _service_env(base, "aiecs-worker", backend, "udp"),
            self.logs / "aiecs-worker.log",
        )
        self.all = (self.ml, self.api, self.worker)

    def start(self) -> None:
        for service in self.all:
            service.start(self.workdir)
        # The children hold their own copies of the listening sockets now.
        self.api_sock.close()
        self.ml_sock.close()

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> Service | None:
        """Wait until every service answers; the first service that died, if any."""
        import httpx

        deadline = time.monotonic() + timeout
        pending = {"ml": f"{self.ml_url}/healthz", "api": f"{self.api_url}/healthz", "worker": None}
        ready_file = self.workdir / "worker.ready"
        with httpx.Client(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                for service in self.all:
                    if service.exited() is not None:
                        return service
                for key, url in list(pending.items()):
                    if url is None:
                        if ready_file.exists():
                            del pending[key]
                        continue
                    try:
                        if client.get(url).status_code == 200:
                            del pending[key]
                    except httpx.HTTPError:
                        pass
                time.sleep(0.1)
        if pending:
            names = {"ml": self.ml, "api": self.api, "worker": self.worker}
            return names[next(iter(pending))]
        return None

    def stop(self, timeout: float = 8.0) -> list[str]:
        """SIGTERM every process group, SIGKILL what is left at ``timeout``; names of those killed."""
        for sock in (self.api_sock, self.ml_sock):
            sock.close()
        # SIGTERM to each main process only: Celery's warm shutdown stops its pool processes
        # itself (each flushes its spans); a signal to the whole group would kill them first.
        for service in self.all:
            if service.proc is not None and service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = []
        for service in self.all:
            if service.proc is None:
                continue
            try:
                service.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        # Pool processes may outlive their parent by a moment; wait for the whole group.
        while time.monotonic() < deadline and any(s.signal_group(0) for s in self.all):
            time.sleep(0.1)
        for service in self.all:
            if service.signal_group(signal.SIGKILL):
                killed.append(service.name)
            if service.proc is not None:
                try:
                    service.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        return killed


# --- the workload ---------------------------------------------------------------------
@dataclass
class Outcome:
    number: int
    scenario: Scenario
    status: str  # completed, failed, rejected, timeout, error
    seconds: float
    trace_id: str | None = None
    spans: int = 0
    services: list[str] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)


class Workload:
    """Send tasks, follow progress over Socket.IO, print each trace from the query API."""

    def __init__(self, api_url: str, backend: Backend, out: TextIO, style: Style, interval: float) -> None:
        self.api_url = api_url
        self.backend = backend
        self.out = out
        self.style = style
        self.interval = interval
        self.outcomes: list[Outcome] = []
        self._events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._done: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._sio: Any = None
        self.progress_via = "Socket.IO"

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def _connect_progress(self) -> None:
        try:
            import socketio

            sio = socketio.AsyncClient(reconnection=True, logger=False, engineio_logger=False)

            @sio.on("progress")
            async def on_progress(data: dict[str, Any]) -> None:
                task_id = data.get("task_id")
                if not task_id:
                    return
                self._events[task_id].append(data)
                if data.get("status") in ("completed", "failed"):
                    self._done[task_id].set()

            await sio.connect(self.api_url, auth={"user_id": "demo-user"}, wait_timeout=10)
            self._sio = sio
        except Exception as exc:  # e.g. aiohttp missing: poll the task status instead
            self.progress_via = f"polling (Socket.IO client unavailable: {type(exc).__name__})"
            self._sio = None

    async def run(self, deadline: float | None, max_requests: int | None) -> None:
        import httpx

        await self._connect_progress()
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                number = 0
                while max_requests is None or number < max_requests:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    scenario = SCENARIOS[number % len(SCENARIOS)]
                    number += 1
                    outcome = await self._one(client, number, scenario, deadline)
                    self.outcomes.append(outcome)
                    if max_requests is not None and number >= max_requests:
                        break
                    if deadline is not None and time.monotonic() + self.interval >= deadline:
                        break
                    await asyncio.sleep(self.interval)
        finally:
            # Also when cancelled (Ctrl-C, SIGTERM): an open Socket.IO session would
            # otherwise be torn down noisily after the event loop is gone.
            if self._sio is not None:
                try:
                    await asyncio.wait_for(self._sio.disconnect(), 3)
                except BaseException:
                    pass

    async def _one(self, client: Any, number: int, scenario: Scenario, deadline: float | None) -> Outcome:
        started = time.monotonic()
        outcome = Outcome(number, scenario, "error", 0.0)
        try:
            response = await client.post(f"{self.api_url}/api/tasks", json=scenario.request)
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            outcome.trace_id = _trace_id_of(response.headers.get("traceresponse"))
            if response.status_code >= 400:
                outcome.status = "rejected"
                outcome.progress = [f"HTTP {response.status_code}: {body.get('detail', '')}"]
            else:
                task_id = body["task_id"]
                limit = TASK_TIMEOUT
                if deadline is not None:
                    limit = max(min(limit, deadline - time.monotonic()), 0.5)
                outcome.status = await self._wait_task(client, task_id, limit)
                outcome.progress = [
                    _first_line(e.get("message") or e.get("status")) for e in self._events.pop(task_id, [])
                ]
                self._done.pop(task_id, None)
        except Exception as exc:
            outcome.status = "error"
            outcome.progress = [f"{type(exc).__name__}: {exc}"]
        outcome.seconds = time.monotonic() - started
        trace = await self._settled_trace(client, outcome.trace_id) if outcome.trace_id else None
        self._print(outcome, trace)
        return outcome

    async def _wait_task(self, client: Any, task_id: str, limit: float) -> str:
        if self._sio is not None:
            try:
                await asyncio.wait_for(self._done[task_id].wait(), limit)
            except asyncio.TimeoutError:
                return "timeout"
            events = self._events.get(task_id, [])
            return str(events[-1].get("status")) if events else "completed"
        stop = time.monotonic() + limit
        while time.monotonic() < stop:
            response = await client.get(f"{self.api_url}/api/tasks/{task_id}")
            if response.status_code == 200:
                row = response.json()
                if row.get("status") in ("completed", "failed"):
                    self._events[task_id].append(row)
                    return str(row["status"])
            await asyncio.sleep(0.2)
        return "timeout"

    async def _settled_trace(self, client: Any, trace_id: str, limit: float = 10.0) -> dict[str, Any] | None:
        """The trace once every span has arrived (see :func:`_looks_complete`) and the count is stable.

        Each service exports on its own schedule, so spans arrive over a few hundred
        milliseconds; on a loaded machine, longer. At ``limit`` whatever arrived is shown.
        """
        url = f"{self.backend.query_url}/api/traces/{trace_id}"
        stop = time.monotonic() + limit
        last_count, stable, trace = -1, 0, None
        await asyncio.sleep(0.3)
        while time.monotonic() < stop:
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    data = response.json().get("data") or []
                    trace = data[0] if data else trace
            except Exception:
                pass
            count = len(trace.get("spans") or []) if trace else 0
            if count and count == last_count and _looks_complete(trace):
                stable += 1
                if stable >= 1:
                    break
            else:
                stable = 0
            last_count = count
            await asyncio.sleep(0.25)
        return trace

    def _print(self, outcome: Outcome, trace: dict[str, Any] | None) -> None:
        s, scenario = self.style, outcome.scenario
        expected = outcome.status == scenario.expect
        marks = {"completed": ("✓", "green"), "failed": ("✗", "red"), "rejected": ("✗", "yellow")}
        mark, color = marks.get(outcome.status, ("?", "yellow"))
        status = s(f"{mark} {outcome.status}".ljust(12), color, "bold")
        why = f"  {s('(on purpose: ' + scenario.why + ')', 'dim')}" if scenario.why and expected else ""
        if not expected:
            why = "  " + s(f"(expected {scenario.expect})", "yellow")
        head = f"{s(f'#{outcome.number:<3}', 'bold')} {scenario.label:<17} {status}  {outcome.seconds:5.2f} s{why}"
        self.say(head)
        width = shutil.get_terminal_size((160, 24)).columns
        if outcome.progress:
            pushed = _first_line("progress: " + " → ".join(outcome.progress), max(width - 6, 40))
            self.say("     " + s(pushed, "dim"))
        if trace is None:
            if outcome.trace_id:
                self.say("     " + s(f"trace {outcome.trace_id}: not found in the collector", "yellow"))
            self.say()
            return
        count, services, errors = trace_summary(trace)
        outcome.spans, outcome.services = count, services
        error_text = s(f"{errors} with errors", "red") if errors else "no errors"
        self.say(
            f"     trace {outcome.trace_id} · {count} span{'' if count == 1 else 's'} · {' → '.join(services)} · {error_text}"
        )
        self.say("     " + s(self.backend.trace_url(outcome.trace_id or ""), "blue"))
        if not _looks_complete(trace):
            self.say(
                "     " + s("(some spans had not arrived yet: the viewer shows the whole trace)", "yellow")
            )
        for line in render_trace(trace, s, width=width, indent="     "):
            self.say(line)
        self.say()


def _trace_id_of(traceresponse: str | None) -> str | None:
    """The trace id in a W3C ``traceresponse`` header (``00-<trace id>-<span id>-<flags>``)."""
    parts = (traceresponse or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _first_line(text: Any, limit: int = 90) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _looks_complete(trace: dict[str, Any] | None) -> bool:
    """No span's parent is missing, and every call to another process has its other side.

    That is: each outgoing HTTP request (a CLIENT span with an HTTP method) and each
    Celery publish (a PRODUCER span of messaging system celery) has a child span from
    the receiving service. Socket.IO emits go to an untraced browser and have none.
    """
    if not trace:
        return False
    spans = trace.get("spans") or ()
    ids = {span.get("spanID") for span in spans}
    parents: set[str] = set()
    for span in spans:
        for ref in span.get("references") or ():
            if ref.get("refType", "CHILD_OF") == "CHILD_OF":
                if ref.get("spanID") not in ids:
                    return False
                parents.add(ref.get("spanID"))
    for span in spans:
        tags = {t.get("key"): t.get("value") for t in span.get("tags") or ()}
        kind = tags.get("span.kind")
        remote_call = (kind == "client" and ("http.request.method" in tags or "http.method" in tags)) or (
            kind == "producer" and tags.get("messaging.system") == "celery"
        )
        answered = kind == "producer" or "http.response.status_code" in tags or "http.status_code" in tags
        if remote_call and answered and span.get("spanID") not in parents:
            return False  # (a request that got no answer, e.g. connection refused, has no other side)
    return True


# --- main -----------------------------------------------------------------------------
class _Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stdout
    style = Style.for_stream(out, {"always": True, "never": False}.get(args.color))
    started = time.monotonic()
    deadline = started + args.duration if args.duration else None
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731

    say(
        style("aiecs-tracing demo", "bold")
        + " · a small AIECS (task API, Celery worker, ML service), traced end to end"
    )
    say()
    previous_term = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    backend: Backend | None = None
    services: Services | None = None
    workload: Workload | None = None
    try:
        try:
            if args.jaeger is not None:
                jaeger_dir = Path(args.workdir or tempfile.mkdtemp(prefix="aiecs-demo-jaeger-"))
                backend = start_real_jaeger(args, jaeger_dir)
            else:
                backend = find_or_start_backend(args)
        except ImportError as exc:
            say(style(f"The embedded collector is not available ({exc}).", "red"))
            say(
                "Start one with `aiecs-tracing serve`, or a Jaeger (docker compose up jaeger), and run again."
            )
            return 1
        except (OSError, RuntimeError) as exc:
            what = "Jaeger" if args.jaeger is not None else "the collector"
            say(style(f"Could not start {what}: {exc}", "red"))
            return 1
        backend.viewer_url = args.viewer_url
        backend.serve_hint = serve_command(args)
        q = backend.query_url
        say(f"  {backend.name:<13} {backend.description}")
        say(f"  {'':<13} {'query API' if backend.api_links else 'UI and query API'} {style(backend.viewer_url or q, 'blue')}")
        if backend.owned is not None:
            say(f"  {'':<13} OTLP/HTTP {backend.otlp_url} · Jaeger UDP {backend.udp[0]}:{backend.udp[1]}")
        if args.api_url:
            api_url = args.api_url.rstrip("/")
            say(f"  {style.service('aiecs-api', 'aiecs-api'.ljust(13))} {api_url} (already running)")
            if not _wait_for_urls([f"{api_url}/healthz", f"{q}/api/services"], STARTUP_TIMEOUT):
                say(
                    style(
                        f"{api_url}/healthz or {q}/api/services did not answer in {STARTUP_TIMEOUT:g} s",
                        "red",
                    )
                )
                return 1
        else:
            unreachable = broker_unreachable(args.broker)
            if unreachable:
                say(style(unreachable, "red"))
                return 1
            workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="aiecs-demo-"))
            workdir.mkdir(parents=True, exist_ok=True)
            services = Services(args, backend, workdir, uuid.uuid4().hex)
            services.start()
            api_url = services.api_url
            broker = (
                "filesystem" if services.broker.startswith("filesystem") else _redact_url(services.broker)
            )
            rows = (
                ("ml-service", services.ml_url, "OTLP/HTTP"),
                ("aiecs-api", services.api_url, "Jaeger UDP"),
                ("aiecs-worker", f"celery prefork ×{services.concurrency} · broker {broker}", "Jaeger UDP"),
            )
            for name, where, transport in rows:
                say(f"  {style.service(name, name.ljust(13))} {where:<40} → {transport}")
            say(f"  {'logs':<13} {services.logs}{os.sep}")
            failed = services.wait_ready()
            if failed is not None:
                state = "exited" if failed.exited() is not None else "did not become ready"
                say()
                say(style(f"{failed.name} {state}; last lines of {failed.log_path}:", "red"))
                say(failed.log_tail())
                return 1
        say()
        until = []
        if args.requests:
            until.append(f"{args.requests} request{'s' if args.requests > 1 else ''}")
        if args.duration:
            until.append(f"{args.duration:g} s")
        say(f"Sending tasks until {' or '.join(until) if until else 'Ctrl-C'}; press Ctrl-C to stop.")
        say()
        workload = Workload(api_url, backend, out, style, args.interval)
        try:
            asyncio.run(_run_workload(workload, deadline, args.requests))
        except KeyboardInterrupt:
            say()
            say("Interrupted.")
    except (KeyboardInterrupt, _Stop):
        say()
        say("Interrupted.")
    finally:
        # A second Ctrl-C during shutdown must not leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _shutdown(say, style, backend, services, workload)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous_term)
    return 0


def _wait_for_urls(urls: list[str], timeout: float) -> bool:
    """Whether every URL answered 200 within ``timeout`` (services still starting up)."""
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(urls)
    with httpx.Client(timeout=2.0) as client:
        while pending and time.monotonic() < deadline:
            try:
                if client.get(pending[0]).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return not pending


async def _run_workload(workload: Workload, deadline: float | None, max_requests: int | None) -> None:
    """Run ``workload``; SIGTERM cancels it like Ctrl-C does."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    except (NotImplementedError, RuntimeError):
        pass
    try:
        await workload.run(deadline, max_requests)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError):
            pass


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _redact_url(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://***@host``: no passwords on the screen."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _shutdown(
    say: Any, style: Style, backend: Backend | None, services: Services | None, workload: Workload | None
) -> None:
    if services is not None:
        say("Stopping the demo services…")
        killed = services.stop()
        note = f" (had to kill {', '.join(killed)})" if killed else ""
        say(f"Stopped them{note}.")
    if workload is not None and workload.outcomes:
        outcomes = workload.outcomes
        counts: dict[str, int] = defaultdict(int)
        for outcome in outcomes:
            counts[outcome.status] += 1
        parts = ", ".join(f"{n} {status}" for status, n in counts.items())
        spans = sum(o.spans for o in outcomes)
        traces = sum(1 for o in outcomes if o.spans)
        say(
            f"{_plural(len(outcomes), 'request')} ({parts}) · {_plural(spans, 'span')} in {_plural(traces, 'trace')}."
        )
        if workload.progress_via != "Socket.IO":
            say(f"Progress was followed by {workload.progress_via}.")
    if backend is not None:
        if backend.owned is not None:
            try:
                backend.owned.stop()
            except Exception as exc:
                say(style(f"Collector stop failed: {exc}", "yellow"))
            db = getattr(backend.owned, "db_path", None)
            if backend.name == "jaeger":
                say("Stopped Jaeger (its traces were in memory).")
            elif db is not None and str(db) != ":memory:":
                say(f"Stopped the collector. The traces are kept in {db}:")
                say(f"browse them with `{backend.serve_hint}` at {backend.query_url}")
            else:
                say("Stopped the collector.")
        else:
            say(f"The collector keeps running: {backend.query_url}")
    if services is not None:
        say(f"Service logs: {services.logs}{os.sep}")


if __name__ == "__main__":
    raise SystemExit(main())
