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

import asyncio
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from .backend import (
    Backend,
    broker_unreachable,
    find_or_start_backend,
    redact_url,
    serve_command,
    start_real_jaeger,
)
from .options import (
    STARTUP_TIMEOUT,
    parse_args,
)
from .supervisor import Services, wait_for_urls
from .tree import Style
from .workload import Workload, plural, run_workload


# --- main -----------------------------------------------------------------------------
class _Stop(Exception):
    """SIGTERM: stop like Ctrl-C."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = sys.stdout
    style = Style.for_stream(out, {"always": True, "never": False}.get(args.color))
    started = time.monotonic()
    deadline = started + args.duration if args.duration else None

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)


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
            if not wait_for_urls([f"{api_url}/healthz", f"{q}/api/services"], STARTUP_TIMEOUT):
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
                "filesystem" if services.broker.startswith("filesystem") else redact_url(services.broker)
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
            asyncio.run(run_workload(workload, deadline, args.requests))
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
            f"{plural(len(outcomes), 'request')} ({parts}) · {plural(spans, 'span')} in {plural(traces, 'trace')}."
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
