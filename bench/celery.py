"""Publish cost per Celery task on Redis: bare, with this integration, with OpenTelemetry's.

Every mode is measured in the same run, in alternating rounds (so drift in Redis or the
machine hits all of them alike); the table shows the median of the rounds' µs per task.
OpenTelemetry's ``CeleryInstrumentor`` connects global signals, so each round instruments
and uninstruments around its own publishes; ours installs/uninstalls the same way.

Both tracers get the same do-nothing exporter, so the table
compares the instrumentation, not the backend; one more row exports ours over real UDP.

Run: ``.venv/bin/python bench/celery.py`` (``--rounds N``, ``--n N``). Needs Redis on
127.0.0.1:6379 (``make services``); prints a note and exits 0 when it is not up.
Target (issue 4): our added cost at most half of OpenTelemetry's.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# This file is named celery.py: keep its own folder off the path so ``import celery`` finds Celery.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from celery import Celery  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from aiecs_tracing import TracingManager  # noqa: E402
from aiecs_tracing.integrations.celery import install_celery_tracing, uninstall_celery_tracing  # noqa: E402

BROKER = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/11")


class NullExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def make_app() -> tuple[Celery, object]:
    queue = f"aiecs-bench-{uuid.uuid4().hex[:8]}"
    # The current app: OpenTelemetry's instrumentation looks the task up in the current app's
    # registry and, when it is not there, never ends the publish span (nor detaches its context).
    app = Celery("bench", broker=BROKER, set_as_current=True)
    app.conf.update(task_default_queue=queue, task_ignore_result=True, broker_connection_retry_on_startup=True)

    @app.task(name="bench.add")  # registered: OpenTelemetry's instrumentation skips unregistered tasks
    def add(a: int, b: int) -> int:
        return a + b

    return app, add


def publish_round(task: object, n: int) -> tuple[float, float]:
    """(wall µs, CPU µs of the publishing thread) per ``apply_async`` over ``n`` publishes."""
    apply_async = task.apply_async  # type: ignore[attr-defined]
    wall, cpu = time.perf_counter(), time.thread_time()
    for i in range(n):
        apply_async((i, i))
    return (time.perf_counter() - wall) / n * 1e6, (time.thread_time() - cpu) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--n", type=int, default=120, help="publishes per round and mode")
    args = parser.parse_args()
    if BROKER.startswith("redis://127.0.0.1:6379") and not redis_up():
        print("bench/celery.py: Redis is not listening on 127.0.0.1:6379 (make services); skipped")
        return 0

    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    app, task = make_app()
    ours = TracingManager("bench", exporter="memory", set_global_provider=False, set_default_manager=False)
    ours.processor.exporter = NullExporter()  # the same do-nothing exporter OpenTelemetry gets
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a UDP "agent" that never reads
    sink.bind(("127.0.0.1", 0))
    ours_udp = TracingManager(
        "bench", jaeger_host="127.0.0.1", jaeger_port=sink.getsockname()[1], set_global_provider=False,
        set_default_manager=False,
    )
    otel_provider = TracerProvider()
    otel_provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    instrumentor = CeleryInstrumentor()

    def bare() -> tuple[float, float]:
        return publish_round(task, args.n)

    def with_ours(manager: TracingManager) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            install_celery_tracing(app, manager)
            try:
                return publish_round(task, args.n)
            finally:
                uninstall_celery_tracing(app)
                manager.flush()

        return run

    def with_otel() -> tuple[float, float]:
        instrumentor.instrument(tracer_provider=otel_provider)
        try:
            return publish_round(task, args.n)
        finally:
            instrumentor.uninstrument()
            otel_provider.force_flush()

    modes: dict[str, Callable[[], tuple[float, float]]] = {
        "bare": bare,
        "aiecs-tracing": with_ours(ours),
        "opentelemetry-instrumentation-celery": with_otel,
        "aiecs-tracing (UDP export)": with_ours(ours_udp),
    }
    walls: dict[str, list[float]] = {name: [] for name in modes}
    cpus: dict[str, list[float]] = {name: [] for name in modes}
    try:
        for run in modes.values():  # warm-up: connections, caches, first spans
            run()
        names = list(modes)
        for round_no in range(args.rounds):
            # Rotate the order too: no mode always runs first after the purge.
            for name in names[round_no % len(names) :] + names[: round_no % len(names)]:
                wall, cpu = modes[name]()
                walls[name].append(wall)
                cpus[name].append(cpu)
            app.control.purge()
    finally:
        app.control.purge()
        app.close()
        ours.close_tracer()
        ours_udp.close_tracer()
        otel_provider.shutdown()
        sink.close()

    print(f"Celery publish on Redis: {args.rounds} alternating rounds x {args.n} apply_async, medians")
    print("wall = elapsed per task; CPU = the publishing thread's CPU time per task (less sensitive to")
    print("other load on the machine; export threads are not counted, for either tracer)")
    header = f"{'mode':38} {'wall µs':>8} {'added':>7} {'CPU µs':>8} {'added':>7} {'added/OTel (wall, CPU)':>23}"
    print(header)
    wall_m = {name: statistics.median(values) for name, values in walls.items()}
    cpu_m = {name: statistics.median(values) for name, values in cpus.items()}
    otel = "opentelemetry-instrumentation-celery"
    otel_wall, otel_cpu = wall_m[otel] - wall_m["bare"], cpu_m[otel] - cpu_m["bare"]

    def ratio(added: float, reference: float) -> str:
        return f"{added / reference:.2f}" if reference > 0 else "n/a"

    for name in modes:
        add_wall, add_cpu = wall_m[name] - wall_m["bare"], cpu_m[name] - cpu_m["bare"]
        ratios = "" if name == "bare" else f"{ratio(add_wall, otel_wall)}, {ratio(add_cpu, otel_cpu)}"
        print(f"{name:38} {wall_m[name]:8.1f} {add_wall:7.1f} {cpu_m[name]:8.1f} {add_cpu:7.1f} {ratios:>23}")
    ours_wall = (wall_m["aiecs-tracing"] - wall_m["bare"]) / otel_wall if otel_wall > 0 else float("nan")
    ours_cpu = (cpu_m["aiecs-tracing"] - cpu_m["bare"]) / otel_cpu if otel_cpu > 0 else float("nan")
    verdict = "met" if max(ours_wall, ours_cpu) <= 0.5 else "NOT met"
    print(f"target: our added cost <= 0.5 x OpenTelemetry's -> wall {ours_wall:.2f}, CPU {ours_cpu:.2f} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
