"""Where the demo's traces go: a collector or Jaeger found on the query port, one started here, or a real Jaeger v2."""

from __future__ import annotations

import argparse
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .options import DEFAULT_HOST, DEFAULT_UI_PORT


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

    ports: dict[str, Any] = {
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
        (host, cast(int, collector.udp_port)),  # bound by start()
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
        return f"cannot use the broker URL {redact_url(url)}: {exc}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot reach the broker {redact_url(url)} ({host}:{port}: {reason}); start it, or omit --broker"


def redact_url(url: str) -> str:
    """``redis://:secret@host`` -> ``redis://***@host``: no passwords on the screen."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


