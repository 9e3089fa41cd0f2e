"""Against a real Jaeger v2 (tools/jaeger, built from the Go module proxy), read back through
Jaeger's own query API:

- one trace across two TracingManager services (one exporting over UDP thrift-compact, one
  over OTLP/HTTP) and two jaeger-client services (``uber-trace-id``, baggage), with the
  parents, operation names, tags, logs with stack traces, process tags and durations a
  Jaeger user would look at;
- a 500-span trace that leaves in several UDP packets arrives whole;
- the embedded collector answers ``/api/traces/{id}`` exactly as Jaeger does for the same
  spans (apart from ids and timestamps), over both transports.

The Celery path (FastAPI -> publish -> prefork worker -> httpx -> FastAPI) against the same
Jaeger is in test_demo.py's real-Jaeger run of ``aiecs-tracing demo --jaeger``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from aiecs_tracing import TracingManager
from aiecs_tracing.core.exporters.jaeger_udp import JaegerUDPExporter
from aiecs_tracing.demo.jaeger import JAEGER_VERSION
from aiecs_tracing.integrations.fastapi import TracingMiddleware, instrument_fastapi
from tests.integration._jaeger import RealJaeger, go_mod_version
from tests.integration._web_util import UvicornServer, app_with_traced_client
from tests.integration.test_e2e_legacy_jaeger import (
    close_legacy,
    legacy_checkout,
    legacy_server,
    legacy_tracer,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def manager(service: str, jaeger: RealJaeger, transport: str, **options: Any) -> TracingManager:
    """A manager of its own exporting to ``jaeger`` over ``udp`` or ``otlp``."""
    options.setdefault("set_global_provider", False)
    options.setdefault("set_default_manager", False)
    options.setdefault("schedule_delay_millis", 50)
    if transport == "udp":
        return TracingManager(service, jaeger_host="127.0.0.1", jaeger_port=jaeger.udp_port, **options)
    return TracingManager(service, exporter="otlp", otlp_endpoint=jaeger.otlp_url, **options)


def tags(item: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in item["tags"]}


def test_pinned_version_is_the_one_go_mod_builds() -> None:
    assert JAEGER_VERSION == go_mod_version()


# --------------------------------------------------------------------- one trace, four services
def orders_service(tracing: TracingManager, inventory_url: str, legacy_url: str) -> FastAPI:
    """service-a: a DB call, a tool that fails (handled), a log, two instrumented httpx calls."""
    app, state = app_with_traced_client(tracing)

    @tracing.trace_database_operation(
        "SELECT", table="orders", query="SELECT * FROM orders WHERE id = ?", db_system="postgresql"
    )
    def load_order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    @tracing.trace_tool_execution("pricing", "discount")
    def discount(order: dict[str, int]) -> float:
        raise ValueError(f"no discount for order {order['id']}")

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, Any]:
        found = load_order(order_id)
        try:
            discount(found)
        except ValueError:
            pass
        with tracing.span("price_order", tags={"order.id": order_id}) as span:
            span.log_kv({"event": "priced", "price": order_id * 1.5})
            await asyncio.sleep(0)
        client = state["client"]
        stock = (await client.get(f"{inventory_url}/inventory/sku-{order_id}")).json()
        quote = (await client.get(f"{legacy_url}/quote")).json()
        return {"order": order_id, "stock": stock, "quote": quote}

    instrument_fastapi(app, tracing)
    return app


def inventory_service(tracing: TracingManager) -> FastAPI:
    """service-b, exporting over OTLP: a 500 on purpose for sku-0."""
    app = FastAPI()

    @app.get("/inventory/{sku}")
    async def inventory(sku: str) -> dict[str, Any]:
        return {"sku": sku, "stock": 7}

    app.add_middleware(TracingMiddleware, tracing=tracing)
    return app


def test_udp_otlp_and_jaeger_client_services_make_one_trace_in_jaeger(real_jaeger_module: RealJaeger) -> None:
    jaeger = real_jaeger_module
    tracing_a = manager("rj-orders", jaeger, "udp")
    tracing_b = manager("rj-inventory", jaeger, "otlp")
    legacy_client = legacy_tracer("rj-legacy-client", jaeger.udp_port)
    legacy_srv = legacy_tracer("rj-legacy-server", jaeger.udp_port)
    try:
        with (
            UvicornServer(inventory_service(tracing_b)) as b,
            UvicornServer(legacy_server(legacy_srv)) as legacy,
            UvicornServer(orders_service(tracing_a, b.url, legacy.url)) as a,
        ):
            response, headers = legacy_checkout(legacy_client, "checkout", f"{a.url}/orders/3")
            for tracing in (tracing_a, tracing_b):
                assert tracing.flush(timeout=5)
        assert response.status_code == 200
        assert response.json()["quote"] == {"price": 12.5, "tenant": "acme"}  # baggage crossed three hops
        trace_id = headers["uber-trace-id"].split(":")[0].zfill(32)  # jaeger_client's trace id
        trace = jaeger.wait_trace(trace_id, 9)
    finally:
        tracing_a.close_tracer()
        tracing_b.close_tracer()
        close_legacy(legacy_client)
        close_legacy(legacy_srv)

    # The search API finds it under every service that took part.
    for service in ("rj-orders", "rj-inventory", "rj-legacy-client", "rj-legacy-server"):
        found = jaeger.get("/api/traces", service=service, lookback="1h", limit=20)["data"]
        assert trace["traceID"] in {t["traceID"] for t in found}, service
    # a 64-bit id (jaeger-client's) in 16 digits, as Jaeger writes it
    assert trace["traceID"] == trace_id[16:]

    spans = trace["spans"]
    assert len(spans) == 9, sorted(s["operationName"] for s in spans)
    assert {s["traceID"] for s in spans} == {trace_id[16:]}
    service_of = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    by_name: dict[str, dict[str, Any]] = {}
    for span in spans:
        by_name.setdefault(span["operationName"], span)
    parent_of = {
        s["spanID"]: next((r["spanID"] for r in s["references"] if r["refType"] == "CHILD_OF"), None)
        for s in spans
    }

    def parent(name: str) -> str:
        up = parent_of[by_name[name]["spanID"]]
        return next(s["operationName"] for s in spans if s["spanID"] == up)

    clients = sorted((s for s in spans if s["operationName"] == "GET"), key=lambda s: s["startTime"])
    assert len(clients) == 2
    assert parent_of[by_name["checkout"]["spanID"]] is None
    assert parent("GET /orders/{order_id}") == "checkout"
    for child in ("SELECT orders", "pricing.discount", "price_order"):
        assert child in by_name, sorted(by_name)
        assert parent(child) == "GET /orders/{order_id}"
    assert all(parent_of[c["spanID"]] == by_name["GET /orders/{order_id}"]["spanID"] for c in clients)
    assert parent_of[by_name["GET /inventory/{sku}"]["spanID"]] == clients[0]["spanID"]
    assert parent_of[by_name["legacy-quote"]["spanID"]] == clients[1]["spanID"]
    assert service_of[by_name["checkout"]["processID"]] == "rj-legacy-client"
    assert service_of[by_name["legacy-quote"]["processID"]] == "rj-legacy-server"
    assert service_of[by_name["GET /orders/{order_id}"]["processID"]] == "rj-orders"
    assert service_of[by_name["GET /inventory/{sku}"]["processID"]] == "rj-inventory"

    server = tags(by_name["GET /orders/{order_id}"])
    assert server["span.kind"] == "server" and server["http.request.method"] == "GET"
    assert server["http.route"] == "/orders/{order_id}" and server["http.response.status_code"] == 200
    assert server["http.method"] == "GET" and server["http.status_code"] == 200  # the seed's names beside
    otlp_server = tags(by_name["GET /inventory/{sku}"])
    assert otlp_server["span.kind"] == "server" and otlp_server["http.response.status_code"] == 200
    db = tags(by_name["SELECT orders"])
    assert db["db.system.name"] == "postgresql" and db["db.operation.name"] == "SELECT"
    assert db["db.collection.name"] == "orders"
    client = tags(clients[0])
    assert client["span.kind"] == "client" and client["url.full"].endswith("/inventory/sku-3")

    failed = by_name["pricing.discount"]
    failed_tags = tags(failed)
    assert failed_tags["error"] is True and failed_tags["otel.status_code"] == "ERROR"
    assert "no discount for order 3" in failed_tags["otel.status_description"]
    (error_log,) = [log for log in failed["logs"] if log["fields"][0]["value"] == "error"]
    fields = {f["key"]: f["value"] for f in error_log["fields"]}
    assert (
        fields["exception.type"] == "ValueError" and fields["exception.message"] == "no discount for order 3"
    )
    assert "Traceback (most recent call last)" in fields["exception.stacktrace"]
    assert "in discount\n    raise ValueError" in fields["exception.stacktrace"]
    assert not any(tags(s).get("error") for s in spans if s is not failed)

    priced = by_name["price_order"]
    (priced_log,) = priced["logs"]
    assert {f["key"]: f["value"] for f in priced_log["fields"]} == {"event": "priced", "price": 4.5}
    assert priced["startTime"] <= priced_log["timestamp"] <= priced["startTime"] + priced["duration"]

    process_tags = {service_of[pid]: tags(p) for pid, p in trace["processes"].items()}
    assert process_tags["rj-orders"]["telemetry.sdk.language"] == "python"
    assert process_tags["rj-orders"]["hostname"] and process_tags["rj-orders"]["ip"]
    assert process_tags["rj-orders"]["opencensus.exporterversion"].startswith("Jaeger-Python-aiecs-tracing")
    assert process_tags["rj-inventory"]["service.instance.id"] and process_tags["rj-inventory"]["host.name"]
    assert process_tags["rj-legacy-client"]["opencensus.exporterversion"] == "Jaeger-Python-4.8.0"

    for span in spans:
        assert span["duration"] > 0
        up = parent_of[span["spanID"]]
        if up is not None:
            above = next(s for s in spans if s["spanID"] == up)
            assert above["startTime"] <= span["startTime"] + 1000  # within 1 ms across processes
    # every span of one process lies within its server span
    a_server = by_name["GET /orders/{order_id}"]
    for name in ("SELECT orders", "pricing.discount", "price_order"):
        inner = by_name[name]
        assert a_server["startTime"] <= inner["startTime"]
        assert inner["startTime"] + inner["duration"] <= a_server["startTime"] + a_server["duration"]


# --------------------------------------------------------------------- a big trace over UDP
def test_500_span_trace_in_several_udp_packets_arrives_whole(real_jaeger_module: RealJaeger) -> None:
    jaeger = real_jaeger_module
    tracing = manager("rj-big", jaeger, "udp", max_export_batch_size=1000, max_queue_size=4096)
    try:
        with tracing.span("batch-job") as root:
            for i in range(499):
                with tracing.span(f"item-{i % 50}", tags={"item.index": i, "item.payload": "x" * 300}):
                    pass
        assert tracing.flush(timeout=10)
        exporter = tracing.exporter
        assert isinstance(exporter, JaegerUDPExporter)
        assert exporter.spans_sent == 500 and exporter.packets_sent >= 3, (
            exporter.packets_sent,
            exporter.spans_sent,
        )
    finally:
        tracing.close_tracer()
    trace = jaeger.wait_trace(format(root.context.trace_id, "032x"), 500)
    spans = trace["spans"]
    assert len(spans) == 500
    root_id = format(root.context.span_id, "016x")
    children = [s for s in spans if s["spanID"] != root_id]
    assert all(
        s["references"] == [{"refType": "CHILD_OF", "traceID": s["traceID"], "spanID": root_id}]
        for s in children
    )
    assert sorted(tags(s)["item.index"] for s in children) == list(range(499))
    assert all(tags(s)["item.payload"] == "x" * 300 for s in children)


# --------------------------------------------------------------------- the embedded collector answers alike
class FanOut(SpanExporter):
    """The same batches to several exporters: the same spans reach both backends."""

    def __init__(self, *exporters: SpanExporter) -> None:
        self.exporters = exporters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        results = [exporter.export(spans) for exporter in self.exporters]
        ok = all(r is SpanExportResult.SUCCESS for r in results)
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        for exporter in self.exporters:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def comparable(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace with ids, timestamps and durations replaced by stable names, order kept."""
    names = {s["spanID"]: s["operationName"] for s in trace["spans"]}
    processes = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    volatile = {"service.instance.id", "hostname", "host.name", "ip"}

    def kv(items: list[dict[str, Any]]) -> list[Any]:
        return [[i["key"], i["type"], "*" if i["key"] in volatile else i["value"]] for i in items]

    def log_fields(fields: list[dict[str, Any]]) -> list[Any]:
        return [
            [f["key"], f["type"], "<stack>" if f["key"] == "exception.stacktrace" else f["value"]]
            for f in fields
        ]

    spans = []
    for span in sorted(trace["spans"], key=lambda s: s["operationName"]):
        shape = {k: v for k, v in span.items() if k not in ("traceID", "spanID", "startTime", "duration")}
        shape["processID"] = processes[span["processID"]]
        shape["references"] = [[r["refType"], names.get(r["spanID"], "?")] for r in span["references"]]
        shape["tags"] = kv(span["tags"])
        shape["logs"] = [log_fields(log["fields"]) for log in span["logs"]]
        # Jaeger measures skew in the nanoseconds OTLP carries, the collector keeps microseconds
        shape["warnings"] = span["warnings"] and [re.sub(r"delta of \S+$", "delta of <skew>", w) for w in span["warnings"]]
        spans.append(shape)
    return {
        "keys": sorted(trace),
        "warnings": trace.get("warnings"),
        "spans": spans,
        "processes": sorted([p["serviceName"], kv(p["tags"])] for p in trace["processes"].values()),
    }


def collector_trace(collector: Any, trace_id: str, spans: int, timeout: float = 10.0) -> dict[str, Any]:
    """The embedded collector's ``/api/traces/{id}`` once it holds ``spans`` spans (stored, not just received)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{collector.ui_port}/api/traces/{trace_id}"
    while True:
        response = httpx.get(url, timeout=10)
        if response.status_code == 200 and len(response.json()["data"][0]["spans"]) >= spans:
            return response.json()["data"][0]
        if time.monotonic() > deadline:
            pytest.fail(f"the collector holds {response.text[:200]} for {trace_id}, not {spans} spans", pytrace=False)
        time.sleep(0.05)


def emit_sample_trace(tracing: TracingManager, parent: Any = None) -> int:
    """Spans with every kind of field a user would look at: kinds, value types, errors, logs."""
    root = tracing.start_span(
        "checkout",
        parent_span=parent,
        tags={
            "user_id": "123",
            "n": 5,
            "ratio": 1.5,
            "vip": True,
            "big": 2**60,
            "seq": [1, 2, 3],
            "names": ["a", "b"],
            "text": "héllo ✓",
            "http.request.method": "POST",
        },
    )
    for kind in ("server", "client", "producer", "consumer"):
        tracing.finish_span(tracing.start_span(f"kind-{kind}", parent_span=root, tags={"span.kind": kind}))
    # a child that starts 2.5 ms before its parent: Jaeger's clock-skew warning, where it applies
    early = tracing.start_span("early-child", parent_span=root, start_time=time.time() - 0.0025)
    tracing.finish_span(early)
    child = tracing.start_span(
        "db-step", parent_span=root, tags={"db.system.name": "postgresql", "db.operation.name": "SELECT"}
    )
    child.log_kv({"event": "zeta", "key": "k1"})
    child.log_kv({"z": 1, "event": "alpha", "a": 2.5})
    child.log_kv({"message": "no event field"})
    try:
        raise KeyError("missing")
    except KeyError as exc:
        tracing.finish_span(child, error=exc)
    tracing.finish_span(root, tags={"success": True})
    return root.context.trace_id


@pytest.mark.parametrize("transport", ["udp", "otlp"])
def test_embedded_collector_answers_api_traces_as_jaeger_does(
    real_jaeger_module: RealJaeger, transport: str
) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from aiecs_tracing.collector.server import Collector

    jaeger = real_jaeger_module
    collector = Collector(host="127.0.0.1", otlp_port=0, udp_port=0, ui_port=0, db_path=":memory:").start()
    try:
        if transport == "udp":
            fan_out = FanOut(
                JaegerUDPExporter("127.0.0.1", jaeger.udp_port),
                JaegerUDPExporter("127.0.0.1", collector.udp_port),
            )
        else:
            fan_out = FanOut(
                OTLPSpanExporter(endpoint=jaeger.otlp_url), OTLPSpanExporter(endpoint=collector.otlp_endpoint)
            )
        tracing = TracingManager(
            f"rj-parity-{transport}",
            span_exporter=fan_out,
            set_global_provider=False,
            set_default_manager=False,
            schedule_delay_millis=50,
        )
        try:
            # a new 128-bit trace, and one continuing a jaeger-client caller's 64-bit trace
            legacy_trace = f"{random.getrandbits(63) | 1 << 62:016x}"  # a fresh one: Jaeger is shared by the module
            legacy_parent = tracing.extract_span_context({"uber-trace-id": f"{legacy_trace}:1122334455667788:0:1"})
            trace_ids = [
                format(emit_sample_trace(tracing, parent), "032x") for parent in (None, legacy_parent)
            ]
            assert tracing.flush(timeout=5)
        finally:
            tracing.close_tracer()
        assert trace_ids[1] == "0" * 16 + legacy_trace
        theirs = [jaeger.wait_trace(trace_id, 7) for trace_id in trace_ids]
        ours = [collector_trace(collector, trace_id, 7) for trace_id in trace_ids]
    finally:
        collector.stop()
    assert [t["traceID"] for t in ours] == [t["traceID"] for t in theirs] == [trace_ids[0], trace_ids[1][16:]]
    for mine, reference in zip(map(comparable, ours), map(comparable, theirs), strict=True):
        assert json.dumps(mine, indent=1) == json.dumps(reference, indent=1)
    reference = comparable(theirs[0])
    warnings = {s["operationName"]: s["warnings"] for s in comparable(theirs[1])["spans"]}
    assert warnings["checkout"] == ["invalid parent span IDs=1122334455667788; skipping clock skew adjustment"]
    if transport == "otlp":  # no "ip" process tag: Jaeger compares every child with its parent
        assert warnings["early-child"][0].startswith("clock skew adjustment disabled; not applying calculated delta of")
    else:  # one ip for the whole process: no skew between its own spans
        assert warnings["early-child"] is None
    # and the comparison is not blind: it sees what Jaeger renders specially
    db_step = next(s for s in reference["spans"] if s["operationName"] == "db-step")
    assert [log[0][:3] for log in db_step["logs"]][:2] == [
        ["event", "string", "zeta"],
        ["event", "string", "alpha"],
    ]
    assert ["big", "int64", str(2**60)] in next(
        s for s in reference["spans"] if s["operationName"] == "checkout"
    )["tags"]


# --------------------------------------------------------------------- the demo's Celery path, into Jaeger
def run_demo(tmp_path: Any, *args: str) -> tuple[str, list[int]]:
    """``aiecs-tracing demo`` in a subprocess; its output and the processes it left behind (killed)."""
    from tests.integration.test_demo import _demo_command, _processes_of_run

    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_", "CELERY_"))}
    env.update({"COLUMNS": "220", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    command = [*_demo_command(), "--requests", "1", "--duration", "45", "--interval", "0.2", "--api-port", "0",
               "--workdir", str(workdir), "--color", "never", *args]  # fmt: skip
    try:
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=75)
    finally:
        leftovers = _processes_of_run(workdir)
        for pid in leftovers:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output, leftovers


def test_celery_task_trace_from_the_demo_arrives_whole_in_jaeger(real_jaeger_module: RealJaeger, tmp_path) -> None:
    """FastAPI -> publish -> prefork worker -> httpx -> FastAPI (OTLP), read back from Jaeger."""
    jaeger = real_jaeger_module
    output, leftovers = run_demo(
        tmp_path, "--query-url", jaeger.query_url, "--host", "127.0.0.1",
        "--udp-port", str(jaeger.udp_port), "--otlp-port", jaeger.otlp_url.split(":")[-1].split("/")[0],
    )  # fmt: skip
    assert leftovers == [], output
    found = re.search(r"trace ([0-9a-f]{32}) · (\d+) spans", output)
    assert found, output
    trace = jaeger.wait_trace(found.group(1), int(found.group(2)))
    spans = trace["spans"]
    service_of = {pid: p["serviceName"] for pid, p in trace["processes"].items()}
    by_id = {s["spanID"]: s for s in spans}

    def parent(span: dict[str, Any]) -> dict[str, Any] | None:
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return by_id.get(refs[0]["spanID"]) if refs else None

    def chain(span: dict[str, Any]) -> list[tuple[str, str]]:
        names = []
        while span is not None:
            names.append((service_of[span["processID"]], span["operationName"]))
            span = parent(span)
        return names[::-1]

    assert [s for s in spans if parent(s) is None] == [s for s in spans if s["operationName"] == "POST /api/tasks"]
    inference = [s for s in spans if service_of[s["processID"]] == "ml-service" and s["operationName"] == "POST /v1/{task}"]
    assert inference, sorted(s["operationName"] for s in spans)
    assert chain(inference[0]) == [
        ("aiecs-api", "POST /api/tasks"),
        ("aiecs-api", "send aiecs.tasks.worker.execute_task"),
        ("aiecs-worker", "run aiecs.tasks.worker.execute_task"),
        ("aiecs-worker", "POST"),
        ("ml-service", "POST /v1/{task}"),
    ]
    publish = next(s for s in spans if s["operationName"] == "send aiecs.tasks.worker.execute_task")
    run = next(s for s in spans if s["operationName"] == "run aiecs.tasks.worker.execute_task")
    assert tags(publish)["span.kind"] == "producer" and tags(run)["span.kind"] == "consumer"
    for span in (publish, run):
        assert tags(span)["messaging.system"] == "celery"
        assert tags(span)["messaging.destination.name"]
    assert tags(run)["celery.task_name"] == "aiecs.tasks.worker.execute_task"
    assert service_of[inference[0]["processID"]] == "ml-service"  # over OTLP, the others over UDP
    assert {service_of[p] for p in service_of} == {"aiecs-api", "aiecs-worker", "ml-service"}


def test_demo_starts_its_own_jaeger_with_the_jaeger_option(tmp_path) -> None:
    from tests.integration._jaeger import jaeger_binary

    output, leftovers = run_demo(tmp_path, "--jaeger", str(jaeger_binary()))
    assert leftovers == [], output
    assert f"Jaeger {JAEGER_VERSION}" in output and "Stopped Jaeger" in output, output
    found = re.search(r"trace ([0-9a-f]{32}) · (\d+) spans · aiecs-api → aiecs-worker → ml-service", output)
    assert found and int(found.group(2)) >= 10, output
    assert re.search(rf"http://127\.0\.0\.1:\d+/api/traces/{found.group(1)}", output), output
