"""``aiecs-tracing`` command line: ``serve`` runs the embedded collector, ``demo`` the demo.

Kept import-light: the collector and the demo are imported only by the subcommand
that needs them, so ``aiecs-tracing --help`` works even without optional extras.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

TOKEN_ENV = "AIECS_TRACING_TOKEN"


class _ServeParser(argparse.ArgumentParser):
    """``serve``'s parser: a bad value is one line (option, value, why); unknown options get the usage."""

    def error(self, message: str) -> NoReturn:
        if message.startswith(("unrecognized arguments", "the following arguments are required")):
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: Callable[[str], Any], low: float | None, high: float | None, what: str) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within [low, high] (None: unbounded), else '<value>: <why>'."""

    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    convert.__name__ = what
    return convert


PORT = _number(int, 0, 65535, "a port number (0-65535; 0 picks a free port)")
POSITIVE_INT = _number(int, 1, None, "a whole number of at least 1")
POSITIVE_MB = _number(float, 1e-6, 1e9, "a positive number of MiB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiecs-tracing",
        description="Distributed tracing for Celery + FastAPI services, with an embedded Jaeger-compatible collector.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ServeParser)

    serve = commands.add_parser(
        "serve",
        help="run the embedded collector (OTLP/HTTP, Jaeger UDP, query API and web UI)",
        description="Run the embedded trace collector until Ctrl-C or SIGTERM. Port 0 picks a free port.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    serve.add_argument("--otlp-port", type=PORT, default=4318, help="OTLP/HTTP port (default: %(default)s)")
    serve.add_argument("--udp-port", type=PORT, default=6831, help="Jaeger agent UDP port (default: %(default)s)")
    serve.add_argument("--ui-port", type=PORT, default=16686, help="query API and web UI port (default: %(default)s)")
    serve.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="SQLite file, or :memory: (default: $XDG_DATA_HOME/aiecs-tracing/traces.sqlite3)",
    )
    serve.add_argument(
        "--max-spans", type=POSITIVE_INT, default=None, metavar="N", help="keep at most N spans (oldest go first)"
    )
    serve.add_argument(
        "--max-db-mb",
        type=POSITIVE_MB,
        default=None,
        metavar="MB",
        help="keep the database's used size under MB MiB, oldest spans first (plus up to 64 MiB of WAL)",
    )
    serve.add_argument(
        "--max-age", default=None, metavar="AGE", help="drop spans older than AGE, e.g. 12h, 7d (default: keep)"
    )
    serve.add_argument(
        "--max-body-mb", type=POSITIVE_MB, default=20.0, metavar="MB", help="largest OTLP request accepted (default: 20)"
    )
    serve.add_argument(
        "--auth-token",
        metavar="TOKEN",
        default=None,
        help=f"bearer token every HTTP port requires (default: ${TOKEN_ENV}); "
        "required to bind a non-loopback --host unless --insecure-no-auth",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow a non-loopback --host without a token: anyone who can reach it reads and writes traces",
    )
    serve.add_argument(
        "--sampling-port", type=PORT, default=5778, help="Jaeger remote sampling HTTP port (default: %(default)s)"
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
        type=_number(float, 1e-9, None, "a positive number of traces per second"),
        default=None,
        metavar="TARGET",
        help="adapt each operation's probability to TARGET traces/s from the spans stored",
    )
    serve.add_argument(
        "--sampling-adaptive-window",
        type=_number(float, 1e-3, None, "a positive number of seconds"),
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
        if args.command == "serve":
            _subparser(parser, "serve").error(f"unrecognized arguments: {' '.join(extra)}")
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "serve":
        return serve(args)
    parser.print_help()
    return 2


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    raise KeyError(name)


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
    from aiecs_tracing.collector.exposure import ExposureError
    from aiecs_tracing.collector.sampling import StrategiesError
    from aiecs_tracing.collector.server import BindError, Collector
    from aiecs_tracing.collector.store import default_db_path
    from aiecs_tracing.collector.store_open import StoreOpenError

    max_age_seconds = None
    if args.max_age:
        try:
            max_age_seconds = parse_lookback_us(args.max_age) / 1_000_000
        except ValueError:
            return _fail(f"--max-age {args.max_age!r} is not a duration like 12h or 7d")
        if max_age_seconds <= 0:
            return _fail(f"--max-age {args.max_age!r}: must be longer than 0")
    token = args.auth_token if args.auth_token is not None else os.environ.get(TOKEN_ENV)
    if token is not None and not token.strip():
        return _fail("--auth-token: the token is empty")
    try:
        collector = Collector(
            host=args.host,
            otlp_port=args.otlp_port,
            udp_port=args.udp_port,
            ui_port=args.ui_port,
            db_path=args.db or default_db_path(),
            max_spans=args.max_spans,
            max_age_seconds=max_age_seconds,
            max_body_bytes=max(1, int(args.max_body_mb * 1024 * 1024)),
            max_db_bytes=None if args.max_db_mb is None else max(1, int(args.max_db_mb * 1024 * 1024)),
            sampling_port=args.sampling_port,
            sampling_strategies=args.sampling_strategies,
            sampling_adaptive=args.sampling_adaptive,
            sampling_adaptive_window=args.sampling_adaptive_window,
            auth_token=token,
            insecure_no_auth=args.insecure_no_auth,
        )
    except StrategiesError as exc:
        return _fail(str(exc))
    except ExposureError as exc:
        return _fail(f"--host {args.host}: {exc}")
    try:
        collector.start()
    except StoreOpenError as exc:
        return _fail(f"--db {exc.path}: {exc.reason}")
    except BindError as exc:
        option = {"OTLP/HTTP receiver": "--otlp-port", "query API and UI": "--ui-port"}.get(exc.receiver)
        option = option or ("--udp-port" if "UDP" in exc.receiver else "--sampling-port")
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = f" (port {exc.port} is in use: another collector or Jaeger? {option} 0 picks a free port)"
        print(f"aiecs-tracing: {exc.strerror}{hint}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"aiecs-tracing: cannot start: {exc}", file=sys.stderr)
        return 1

    stop_requested = threading.Event()
    previous = _install_signal_handlers(stop_requested)
    if collector.insecure_no_auth:
        print(
            f"aiecs-tracing: WARNING: listening on {collector.bound_host} without authentication "
            "(--insecure-no-auth): anyone who can reach these ports can read and write traces",
            file=sys.stderr,
            flush=True,
        )
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


def _fail(message: str) -> int:
    print(f"aiecs-tracing serve: error: {message}", file=sys.stderr)
    return 2


def _banner(collector: Any) -> str:
    host = collector.bound_host
    lines = [
        f"aiecs-tracing collector {_version()}",
        f"  OTLP/HTTP   http://{host}:{collector.otlp_port}/v1/traces",
        f"  Jaeger UDP  {host}:{collector.udp_port} (thrift compact, emitBatch)",
        f"  UI + API    http://{host}:{collector.ui_port}",
    ]
    if collector.sampling_port is not None:
        lines.append(f"  sampling    http://{host}:{collector.sampling_port}/sampling?service=<name>")
    else:
        lines.append(f"  sampling    http://{host}:{collector.ui_port}/api/sampling?service=<name>")
    lines.append(f"  storage     {collector.store.display_path}")
    if host in ("0.0.0.0", "[::]"):
        lines.append(f"  (all interfaces; from this machine: {collector.query_url})")
    if collector.auth_token:
        lines.append("  auth        bearer token required on every HTTP port; UI: open /?token=<token> once")
        lines.append("              (UDP cannot carry a token: the Jaeger UDP port is not authenticated)")
    elif collector.insecure_no_auth:
        lines.append("  auth        NONE (--insecure-no-auth)")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


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
