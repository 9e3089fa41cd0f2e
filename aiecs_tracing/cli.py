"""``aiecs-tracing`` command line: ``serve`` runs the embedded collector, ``demo`` the demo.

Kept import-light: the collector and the demo are imported only by the subcommand
that needs them, so ``aiecs-tracing --help`` works even without optional extras.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiecs-tracing",
        description="Distributed tracing for Celery + FastAPI services, with an embedded Jaeger-compatible collector.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the embedded collector (OTLP/HTTP, Jaeger UDP, query API and web UI)",
        description="Run the embedded trace collector until Ctrl-C or SIGTERM. Port 0 picks a free port.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    serve.add_argument("--otlp-port", type=int, default=4318, help="OTLP/HTTP port (default: %(default)s)")
    serve.add_argument("--udp-port", type=int, default=6831, help="Jaeger agent UDP port (default: %(default)s)")
    serve.add_argument("--ui-port", type=int, default=16686, help="query API and web UI port (default: %(default)s)")
    serve.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="SQLite file, or :memory: (default: $XDG_DATA_HOME/aiecs-tracing/traces.sqlite3)",
    )
    serve.add_argument("--max-spans", type=int, default=None, metavar="N", help="keep at most N spans (oldest go first)")
    serve.add_argument(
        "--max-age", default=None, metavar="AGE", help="drop spans older than AGE, e.g. 12h, 7d (default: keep)"
    )
    serve.add_argument(
        "--max-body-mb", type=float, default=20.0, metavar="MB", help="largest OTLP request accepted (default: 20)"
    )
    serve.add_argument(
        "--sampling-port", type=int, default=5778, help="Jaeger remote sampling HTTP port (default: %(default)s)"
    )
    serve.add_argument(
        "--sampling-strategies",
        metavar="FILE",
        default=None,
        help="Jaeger strategies file (service_strategies, default_strategy), re-read when it changes "
        "(default: sample everything)",
    )
    serve.add_argument(
        "--sampling-adaptive",
        type=float,
        default=None,
        metavar="TARGET",
        help="adapt each operation's probability to TARGET traces/s from the spans stored",
    )
    serve.add_argument(
        "--sampling-adaptive-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="throughput window and recalculation interval of adaptive sampling (default: %(default)s)",
    )


    commands.add_parser(
        "demo",
        help="run the end-to-end demo (FastAPI + Celery + collector); extra arguments go to the demo",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == "demo":
        return _run_demo(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        return serve(args)
    parser.print_help()
    return 2


def _run_demo(demo_args: list[str]) -> int:
    try:
        from aiecs_tracing.demo import run as demo_run
    except ImportError as exc:
        print(f"aiecs-tracing: the demo is not available ({exc})", file=sys.stderr)
        return 1
    result: Any = demo_run.main(demo_args)
    return int(result or 0)


def serve(args: argparse.Namespace) -> int:
    """Start the collector, print where it listens, block until asked to stop."""
    from aiecs_tracing.collector.api import parse_lookback_us
    from aiecs_tracing.collector.sampling import StrategiesError
    from aiecs_tracing.collector.server import Collector
    from aiecs_tracing.collector.store import default_db_path

    max_age_seconds = None
    if args.max_age:
        try:
            max_age_seconds = parse_lookback_us(args.max_age) / 1_000_000
        except ValueError:
            print(f"aiecs-tracing: --max-age {args.max_age!r} is not a duration like 12h or 7d", file=sys.stderr)
            return 2
    if (args.sampling_adaptive is not None and not args.sampling_adaptive > 0) or not args.sampling_adaptive_window > 0:
        print("aiecs-tracing: --sampling-adaptive and its window must be positive numbers", file=sys.stderr)
        return 2
    try:
        collector = Collector(
            host=args.host,
            otlp_port=args.otlp_port,
            udp_port=args.udp_port,
            ui_port=args.ui_port,
            db_path=args.db or default_db_path(),
            max_spans=args.max_spans,
            max_age_seconds=max_age_seconds,
            max_body_bytes=int(args.max_body_mb * 1024 * 1024),
            sampling_port=args.sampling_port,
            sampling_strategies=args.sampling_strategies,
            sampling_adaptive=args.sampling_adaptive,
            sampling_adaptive_window=args.sampling_adaptive_window,
        )
    except StrategiesError as exc:
        print(f"aiecs-tracing: {exc}", file=sys.stderr)
        return 2
    try:
        collector.start()
    except OSError as exc:
        hint = " (is another collector or Jaeger already running? use --*-port 0 for a free port)"
        print(
            f"aiecs-tracing: cannot bind: {exc}{hint if exc.errno == errno.EADDRINUSE else ''}",
            file=sys.stderr,
        )
        return 1

    stop_requested = threading.Event()
    previous = _install_signal_handlers(stop_requested)
    print(_banner(collector), flush=True)
    try:
        while not stop_requested.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        _restore_signal_handlers(previous)
        print("aiecs-tracing: stopping...", flush=True)
        collector.stop()
        stored = collector.store.counters()["stored"]
        print(f"aiecs-tracing: stopped ({stored} spans stored this run)", flush=True)
    return 0


def _banner(collector: Any) -> str:
    return "\n".join(
        [
            f"aiecs-tracing collector {_version()}",
            f"  OTLP/HTTP   {collector.otlp_endpoint}",
            f"  Jaeger UDP  {collector.host}:{collector.udp_port} (thrift compact, emitBatch)",
            f"  UI + API    {collector.query_url}",
            f"  sampling    {collector.sampling_url}?service=<name>",
            f"  storage     {collector.store.display_path}",
            "Press Ctrl-C to stop.",
        ]
    )


def _install_signal_handlers(stop_requested: threading.Event) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None:
            previous[signum] = signal.signal(signum, lambda *_: stop_requested.set())
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _version() -> str:
    try:
        from aiecs_tracing import __version__

        return __version__
    except Exception:  # noqa: BLE001 - the version must never break the CLI
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
