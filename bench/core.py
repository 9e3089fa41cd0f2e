"""Per-span cost of the core, side by side with raw OpenTelemetry and jaeger-client.

Every row is measured in the same run, in alternating rounds; the table shows medians.
Run: ``.venv/bin/python bench/core.py`` (``--rounds N``, ``--n N``).

Targets (issue 2): manager spans within 1.3x of raw OpenTelemetry; a disabled manager's
decorator adds under 1 us; UDP encoding under 15 us per span.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from aiecs_tracing import TracingManager  # noqa: E402
from aiecs_tracing.core.exporters.jaeger_thrift import encode_span  # noqa: E402
from aiecs_tracing.core.exporters.jaeger_udp import JaegerUDPExporter  # noqa: E402
from aiecs_tracing.core.remote_sampling import JaegerRemoteSampler, parse_strategy  # noqa: E402
from aiecs_tracing.core.sampling import build_sampler  # noqa: E402


class NullExporter(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def per_call_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def per_call_async_us(make: Callable[[], object], n: int) -> float:
    async def loop():
        start = time.perf_counter()
        for _ in range(n):
            await make()
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(loop())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    n = args.n

    provider = TracerProvider(resource=Resource.create({"service.name": "raw"}))
    provider.add_span_processor(BatchSpanProcessor(NullExporter(), max_queue_size=1 << 20))
    raw = provider.get_tracer("bench")
    tracing = TracingManager("bench", span_exporter=NullExporter(), max_queue_size=1 << 20,
                             set_global_provider=False, set_default_manager=False)
    tracing_noargs = TracingManager("bench2", span_exporter=NullExporter(), max_queue_size=1 << 20,
                                    capture_args=False, set_global_provider=False, set_default_manager=False)
    disabled = TracingManager("off", enable_tracing=False)

    from jaeger_client import Tracer
    from jaeger_client.reporter import NullReporter
    from jaeger_client.sampler import ConstSampler

    legacy = Tracer("legacy", reporter=NullReporter(), sampler=ConstSampler(True))

    def bare(x, y=None):
        return x

    async def abare(x, y=None):
        return x

    deco_sync = tracing.with_tracing("op")(bare)
    deco_async = tracing.with_tracing("op")(abare)
    deco_sync_noargs = tracing_noargs.with_tracing("op")(bare)
    db_sync = tracing.trace_database_operation("SELECT", table="t", query="SELECT 1")(bare)
    ext_async = tracing.trace_external_call("svc", endpoint="/x")(abare)
    tool_sync = tracing.trace_tool_execution("tool", "run")(bare)
    disabled_sync = disabled.with_tracing("op")(bare)

    def raw_equivalent(name, static, kind=None):
        """What a user would hand-write with raw OpenTelemetry for the same span."""
        from opentelemetry.trace import SpanKind

        k = SpanKind.CLIENT if kind == "client" else SpanKind.INTERNAL

        def f(x, y=None):
            with raw.start_as_current_span(name, kind=k, attributes={**static, "arg_0": x, "y": y}) as s:
                result = bare(x, y)
                s.set_attribute("success", True)
                return result

        async def af(x, y=None):
            with raw.start_as_current_span(name, kind=k, attributes={**static, "arg_0": x, "y": y}) as s:
                result = await abare(x, y)
                s.set_attribute("success", True)
                return result

        return f, af

    raw_deco, raw_adeco = raw_equivalent("op", {})
    raw_db, _ = raw_equivalent("SELECT t", {"component": "database", "db.statement.type": "SELECT",
                                            "db.operation.name": "SELECT", "db.table": "t",
                                            "db.collection.name": "t", "db.statement": "SELECT 1",
                                            "db.query.text": "SELECT 1"}, "client")
    _, raw_ext = raw_equivalent("svc /x", {"component": "external_call", "peer.service": "svc", "http.url": "/x",
                                           "url.path": "/x"}, "client")
    raw_tool, _ = raw_equivalent("tool.run", {"component": "tool", "tool.name": "tool", "tool.operation": "run",
                                              "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "tool"})

    def raw_start_end():
        raw.start_span("op").end()

    def raw_current():
        with raw.start_as_current_span("op"):
            pass

    def raw_current_attrs():
        with raw.start_as_current_span("op", attributes={"arg_0": 1, "y": "s", "success": True}):
            pass

    def ours_start_finish():
        tracing.finish_span(tracing.start_span("op"))

    def ours_ctx():
        with tracing.span("op"):
            pass

    def legacy_span():
        legacy.start_span("op").finish()

    # Per-span sampling decisions: the const sampler (the default) vs remote sampling's strategies,
    # never polled here (start=False), strategies put in force directly.
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, TraceFlags, set_span_in_context
    from opentelemetry.trace import SpanContext as OtelSpanContext

    const_sampler = build_sampler("const", 1.0)
    remote_probabilistic = JaegerRemoteSampler("bench", "http://127.0.0.1:9/sampling", 1.0, start=False)
    remote_operations = JaegerRemoteSampler("bench", "http://127.0.0.1:9/sampling", 1.0, start=False)
    remote_operations.apply(parse_strategy({"operationSampling": {
        "defaultSamplingProbability": 0.5, "defaultLowerBoundTracesPerSecond": 1.0,
        "perOperationStrategies": [{"operation": f"op{i}", "probabilisticSampling": {"samplingRate": 0.5}}
                                   for i in range(50)]}}))
    root_ctx = Context()
    child_ctx = set_span_in_context(NonRecordingSpan(OtelSpanContext(7, 9, True, TraceFlags(TraceFlags.SAMPLED))))
    trace_id = 0x5BD1E995_0000_0001_1E37_79B9_7F4A_7C15  # below every bound: the sampled path, as const's

    def decide(sampler, ctx, name="op"):
        return lambda: sampler.should_sample(ctx, trace_id, name)

    tracing_remote = TracingManager("bench-remote", span_exporter=NullExporter(), max_queue_size=1 << 20,
                                    sampler_type="remote", sampler_param=1.0, sampling_endpoint="http://127.0.0.1:9/s",
                                    sampling_refresh_interval=3600, set_global_provider=False,
                                    set_default_manager=False)

    def ours_start_finish_remote():
        tracing_remote.finish_span(tracing_remote.start_span("op"))

    # OpenTracing callers: start_active_span + finish on scope exit, on our tracer, on
    # jaeger-client's own (null reporter, thread-local scopes) and on OpenTelemetry's shim
    # (over the raw provider above: same null exporter behind a batch processor).
    from opentelemetry.shim.opentracing_shim import create_tracer as create_shim

    ot_ours, ot_shim = tracing.opentracing_tracer, create_shim(provider)

    def opentracing_active(tracer):
        def run():
            with tracer.start_active_span("op", tags={"component": "bench"}):
                pass

        return run

    rows: dict[str, list[float]] = {}
    cases: list[tuple[str, Callable[[], float]]] = [
        ("raw OTel start_span+end", lambda: per_call_us(raw_start_end, n)),
        ("raw OTel start_as_current_span", lambda: per_call_us(raw_current, n)),
        ("raw OTel current + 3 attributes", lambda: per_call_us(raw_current_attrs, n)),
        ("raw OTel hand-written decorator sync", lambda: per_call_us(lambda: raw_deco(1, y="s"), n)),
        ("raw OTel hand-written decorator async", lambda: per_call_async_us(lambda: raw_adeco(1, y="s"), n)),
        ("raw OTel hand-written db span", lambda: per_call_us(lambda: raw_db(1), n)),
        ("raw OTel hand-written external call async", lambda: per_call_async_us(lambda: raw_ext(1), n)),
        ("raw OTel hand-written tool span", lambda: per_call_us(lambda: raw_tool(1), n)),
        ("ours start_span+finish_span", lambda: per_call_us(ours_start_finish, n)),
        ("ours with tracing.span()", lambda: per_call_us(ours_ctx, n)),
        ("ours @with_tracing sync", lambda: per_call_us(lambda: deco_sync(1, y="s"), n)),
        ("ours @with_tracing sync, no arg capture", lambda: per_call_us(lambda: deco_sync_noargs(1, y="s"), n)),
        ("ours @with_tracing async", lambda: per_call_async_us(lambda: deco_async(1, y="s"), n)),
        ("ours @trace_database_operation sync", lambda: per_call_us(lambda: db_sync(1), n)),
        ("ours @trace_external_call async", lambda: per_call_async_us(lambda: ext_async(1), n)),
        ("ours @trace_tool_execution sync", lambda: per_call_us(lambda: tool_sync(1), n)),
        ("bare function call", lambda: per_call_us(lambda: bare(1, y="s"), n)),
        ("disabled manager @with_tracing", lambda: per_call_us(lambda: disabled_sync(1, y="s"), n)),
        ("bare coroutine await", lambda: per_call_async_us(lambda: abare(1, y="s"), n)),
        ("jaeger-client start+finish (null reporter)", lambda: per_call_us(legacy_span, n)),
        ("const sampler decision, root", lambda: per_call_us(decide(const_sampler, root_ctx), n)),
        ("remote sampler decision, root, probabilistic", lambda: per_call_us(decide(remote_probabilistic, root_ctx), n)),
        ("remote sampler decision, root, per-operation", lambda: per_call_us(
            decide(remote_operations, root_ctx, "op7"), n)),
        ("const sampler decision, child", lambda: per_call_us(decide(const_sampler, child_ctx), n)),
        ("remote sampler decision, child", lambda: per_call_us(decide(remote_probabilistic, child_ctx), n)),
        ("remote sampling: start_span+finish_span", lambda: per_call_us(ours_start_finish_remote, n)),
        ("OpenTracing start_active_span+finish, ours", lambda: per_call_us(opentracing_active(ot_ours), n)),
        ("OpenTracing ... on the OpenTelemetry shim", lambda: per_call_us(opentracing_active(ot_shim), n)),
        ("OpenTracing ... on jaeger-client", lambda: per_call_us(opentracing_active(legacy), n)),
    ]
    for round_index in range(args.rounds):
        order = cases if round_index % 2 == 0 else list(reversed(cases))
        for name, run in order:
            rows.setdefault(name, []).append(run())
        tracing.flush()
        tracing_noargs.flush()
        provider.force_flush()

    med = {name: statistics.median(values) for name, values in rows.items()}

    # Export cost: encode and send real spans.
    sample_tracer = TracingManager("export-bench", exporter="memory", set_global_provider=False,
                                   set_default_manager=False)
    for i in range(512):
        with sample_tracer.span("GET /tasks/{task_id}", tags={"http.method": "GET", "http.status_code": 200,
                                                              "user_id": f"u{i}", "arg_0": "x" * 40,
                                                              "success": True, "component": "fastapi",
                                                              "db.statement": "SELECT * FROM tasks"}) as s:
            s.log_kv({"event": "step", "n": i})
    sample_tracer.flush()
    spans = list(sample_tracer.exporter.get_finished_spans())
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
    sink.bind(("127.0.0.1", 0))
    udp = JaegerUDPExporter("127.0.0.1", sink.getsockname()[1])
    export_rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for span in spans:
            encode_span(span)
        export_rows.setdefault("UDP thrift encode (per span)", []).append((time.perf_counter() - t0) / len(spans) * 1e6)
        t0 = time.perf_counter()
        udp.export(spans)
        export_rows.setdefault("UDP export: encode+pack+sendto (per span)", []).append(
            (time.perf_counter() - t0) / len(spans) * 1e6)
        t0 = time.perf_counter()
        encode_spans(spans).SerializeToString()
        export_rows.setdefault("OTLP protobuf encode (per span)", []).append((time.perf_counter() - t0) / len(spans) * 1e6)
        try:  # drain the socket so the kernel buffer never fills
            sink.setblocking(False)
            while True:
                sink.recv(70000)
        except BlockingIOError:
            pass
    emed = {name: statistics.median(values) for name, values in export_rows.items()}

    raw_se = med["raw OTel start_span+end"]
    raw_cur = med["raw OTel start_as_current_span"]
    raw_attr = med["raw OTel current + 3 attributes"]
    print(f"aiecs-tracing core bench: {args.rounds} alternating rounds x {n} calls, medians (us per call)\n")
    print(f"{'case':48} {'us':>8} {'ratio':>8}  baseline")
    baselines = {
        "ours start_span+finish_span": ("raw OTel start_span+end", raw_se),
        "ours with tracing.span()": ("raw OTel start_as_current_span", raw_cur),
        "ours @with_tracing sync": ("raw OTel hand-written decorator sync",
                                    med["raw OTel hand-written decorator sync"]),
        "ours @with_tracing sync, no arg capture": ("raw OTel current + 3 attributes", raw_attr),
        "ours @with_tracing async": ("raw OTel hand-written decorator async",
                                     med["raw OTel hand-written decorator async"]),
        "ours @trace_database_operation sync": ("raw OTel hand-written db span", med["raw OTel hand-written db span"]),
        "ours @trace_external_call async": ("raw OTel hand-written external call async",
                                            med["raw OTel hand-written external call async"]),
        "ours @trace_tool_execution sync": ("raw OTel hand-written tool span", med["raw OTel hand-written tool span"]),
        "jaeger-client start+finish (null reporter)": ("raw OTel start_span+end", raw_se),
        "remote sampler decision, root, probabilistic": ("const sampler decision, root",
                                                         med["const sampler decision, root"]),
        "remote sampler decision, root, per-operation": ("const sampler decision, root",
                                                         med["const sampler decision, root"]),
        "remote sampler decision, child": ("const sampler decision, child", med["const sampler decision, child"]),
        "remote sampling: start_span+finish_span": ("ours start_span+finish_span",
                                                        med["ours start_span+finish_span"]),
        "OpenTracing start_active_span+finish, ours": ("OpenTracing ... on the OpenTelemetry shim",
                                                       med["OpenTracing ... on the OpenTelemetry shim"]),
        "OpenTracing ... on jaeger-client": ("OpenTracing start_active_span+finish, ours",
                                             med["OpenTracing start_active_span+finish, ours"]),
    }
    for name, _ in cases:
        value = med[name]
        if name in baselines:
            base_name, base = baselines[name]
            print(f"{name:48} {value:8.2f} {value / base:7.2f}x  vs {base_name}")
        else:
            print(f"{name:48} {value:8.2f}")
    added = med["disabled manager @with_tracing"] - med["bare function call"]
    print(f"\ndisabled decorator adds {added:.3f} us per call (target < 1 us)")
    remote_added = max(med[k] - baselines[k][1] for k in baselines if k.startswith("remote sampler"))
    print(f"remote sampling adds at most {remote_added:+.3f} us per decision over const (target <= +1 us)")
    worst = max(med[k] / baselines[k][1] for k in baselines if k.startswith("ours"))
    print(f"worst manager/raw OTel ratio: {worst:.2f}x (target <= 1.3x)")
    ot = med["OpenTracing start_active_span+finish, ours"]
    print(f"OpenTracing span: ours / OpenTelemetry shim {ot / med['OpenTracing ... on the OpenTelemetry shim']:.2f}x "
          f"(target <= 1.0x), ours / jaeger-client {ot / med['OpenTracing ... on jaeger-client']:.2f}x")
    print()
    for name, value in emed.items():
        print(f"{name:48} {value:8.2f}")
    print(f"UDP encoding {emed['UDP thrift encode (per span)']:.2f} us per span (target < 15 us); "
          f"{len(spans)} spans of ~8 tags + 1 log")
    for t in (tracing, tracing_noargs, sample_tracer, tracing_remote):
        t.close_tracer()
    provider.shutdown()


if __name__ == "__main__":
    main()
