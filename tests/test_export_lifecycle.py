"""OTLP/HTTP export decoded by opentelemetry-proto, a down backend, fork, close, defaults, logs."""

from __future__ import annotations

import gzip
import logging
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aiecs_tracing import TracingManager, get_tracing_manager, set_tracing_manager
from tests.wire import make_manager, refused_tcp_port


class OTLPReceiver:
    """A real HTTP server on 127.0.0.1 that decodes OTLP protobuf with opentelemetry-proto."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.requests.append(request)
                receiver.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self):
        out = []
        for request in self.requests:
            for rs in request.resource_spans:
                service = next(a.value.string_value for a in rs.resource.attributes if a.key == "service.name")
                for ss in rs.scope_spans:
                    out.extend((service, s) for s in ss.spans)
        return out

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_otlp_export_decoded_by_opentelemetry_proto():
    receiver = OTLPReceiver()
    t = TracingManager("otlp-svc", otlp_endpoint=f"http://127.0.0.1:{receiver.port}/v1/traces",
                       set_global_provider=False, set_default_manager=False)
    assert t.get_tracer_info()["exporter"] == "otlp"
    with t.span("parent", kind="server") as parent:
        child = t.start_span("child", tags={"n": 1})
        try:
            raise ValueError("x")
        except ValueError as exc:
            t.finish_span(child, error=exc)
    assert t.flush(5)
    got = {s.name: (svc, s) for svc, s in receiver.spans()}
    assert receiver.paths == ["/v1/traces"]
    svc, p = got["parent"]
    _, c = got["child"]
    assert svc == "otlp-svc"
    assert p.kind == 2  # SPAN_KIND_SERVER
    assert c.parent_span_id == p.span_id and c.trace_id == p.trace_id
    assert int.from_bytes(p.trace_id, "big") == parent.context.trace_id
    assert c.status.code == 2  # STATUS_CODE_ERROR
    assert any(e.name == "exception" for e in c.events)
    t.close_tracer()
    receiver.close()


_closed_port = refused_tcp_port  # the name tests/test_shutdown.py imports


def test_down_backend_costs_nothing_but_counted_drops(caplog):
    t = TracingManager("down", otlp_endpoint=f"http://127.0.0.1:{_closed_port()}/v1/traces",
                       export_timeout_millis=1000, max_queue_size=10, max_export_batch_size=5,
                       set_global_provider=False, set_default_manager=False)
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        for i in range(50):
            with t.span(f"s{i}"):
                pass
        assert time.monotonic() - started < 2  # the app never waits for the backend
        t.flush(5)
        info = t.get_tracer_info()
    assert info["spans_finished"] == 50
    assert info["spans_dropped"] >= 40 and info["spans_exported"] == 0
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 1
    t.close_tracer()


def test_unresolvable_udp_agent_never_reaches_user_code():
    t = TracingManager("dns", jaeger_host="nonexistent.invalid", jaeger_port=6831,
                       set_global_provider=False, set_default_manager=False)

    @t.with_tracing("work")
    def work():
        return 42

    assert [work() for _ in range(20)] == [42] * 20
    t.flush(5)
    assert t.get_tracer_info()["spans_dropped"] == 20
    t.close_tracer()


def test_close_flushes_and_is_idempotent(sink):
    t = make_manager(sink, "closing", schedule_delay_millis=60_000)
    for i in range(5):
        t.finish_span(t.start_span(f"s{i}"))
    t.close_tracer()
    t.close_tracer()
    assert len(sink.wait_for(5)) == 5
    assert t.start_span("after") is None
    info = t.get_tracer_info()
    assert info["enabled"] is False and info["closed"] is True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_spans_arrive(sink):
    t = make_manager(sink, "forking")
    t.finish_span(t.start_span("before-fork"))
    t.flush()
    pid = os.fork()
    if pid == 0:  # the child: trace, flush, leave without running the parent's atexit
        code = 1
        try:
            with t.span("in-child", tags={"pid": os.getpid()}):
                pass
            code = 0 if t.flush(5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    spans = sink.wait_for(2)
    names = sorted(s.operation for s in spans)
    assert names == ["before-fork", "in-child"]  # and the parent's queue was not re-sent
    child = sink.one("in-child")
    assert child.tags["pid"] != os.getpid()
    t.close_tracer()


def test_first_enabled_manager_becomes_default_and_global(global_provider):
    previous = get_tracing_manager()
    set_tracing_manager(None)
    try:
        disabled = TracingManager("off", enable_tracing=False)
        assert disabled.provider is None
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # nothing to install
        opted_out_of_global = TracingManager("local", exporter="memory", set_default_manager=False,
                                             set_global_provider=False)
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        first = TracingManager("first", exporter="memory")
        second = TracingManager("second", exporter="memory")
        assert get_tracing_manager() is first
        assert trace.get_tracer_provider() is first.provider  # the first enabled one, not replaced
        with trace.get_tracer("some.library").start_as_current_span("via-the-global-api"):
            pass
        first.flush()
        assert [s.name for s in first.exporter.get_finished_spans()] == ["via-the-global-api"]
        assert not second.exporter.get_finished_spans()
        opted_out_of_global.close_tracer()
        opted_out = TracingManager("x", exporter="memory", set_default_manager=False, set_global_provider=False)
        first.close_tracer()
        assert get_tracing_manager() is None
        set_tracing_manager(second)
        assert get_tracing_manager() is second
        second.close_tracer()
        opted_out.close_tracer()
    finally:
        set_tracing_manager(previous)


def test_foreign_opentelemetry_spans_join_our_trace():
    t = TracingManager("mixed", exporter="memory", set_global_provider=False, set_default_manager=False)
    foreign_tracer = trace.get_tracer("some.instrumentation", tracer_provider=t.provider)
    with t.span("ours") as ours:
        with foreign_tracer.start_as_current_span("foreign"):
            inner = t.start_span("ours-inner")
            inner.finish()
    t.flush()
    spans = {s.name: s for s in t.exporter.get_finished_spans()}
    assert spans["foreign"].parent.span_id == ours.context.span_id
    assert spans["ours-inner"].parent.span_id == spans["foreign"].context.span_id
    t.close_tracer()


def test_log_correlation(caplog):
    t = TracingManager("logs", exporter="memory", set_global_provider=False, set_default_manager=False)
    log = logging.getLogger("tests.correlated")
    filters = list(log.filters)
    t.install_log_correlation(log)
    try:
        t.install_log_correlation(log)  # idempotent
        with caplog.at_level(logging.INFO, logger="tests.correlated"):
            with t.span("logged") as span:
                log.info("inside")
            log.info("outside")
        inside, outside = caplog.records[-2:]
        assert inside.trace_id == f"{span.context.trace_id:032x}" and inside.span_id == f"{span.context.span_id:016x}"
        assert outside.trace_id == ""
        assert len(log.filters) == len(filters) + 1
    finally:
        t.uninstall_log_correlation(log)
        t.close_tracer()
    assert log.filters == filters  # a global logger: the next test (or a second run) starts clean


class _StuckExporter:
    """An exporter whose backend hangs (a black-holed collector)."""

    def __init__(self):
        import threading as _t

        self.release = _t.Event()

    def export(self, spans):
        self.release.wait(30)
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()

    def force_flush(self, timeout_millis=0):
        return True


def test_close_is_bounded_when_the_backend_hangs():
    t = TracingManager("stuck", span_exporter=_StuckExporter(), set_global_provider=False, set_default_manager=False)
    for i in range(3):
        t.finish_span(t.start_span(f"s{i}"))
    started = time.monotonic()
    t.close_tracer(timeout=0.5)
    assert time.monotonic() - started < 3
    assert t.get_tracer_info()["closed"] is True


def test_multiprocessing_child_spans_arrive(sink):
    import multiprocessing

    t = make_manager(sink, "mp-parent")
    ctx = multiprocessing.get_context("fork")
    process = ctx.Process(target=_trace_in_child, args=(t,))
    process.start()
    process.join(20)
    assert process.exitcode == 0
    (span,) = sink.wait_for(1, where=lambda s: s.operation == "in-mp-child")
    assert span.service == "mp-parent"
    t.close_tracer()


def _trace_in_child(t):
    with t.span("in-mp-child"):
        pass  # no explicit flush: the child leaves through multiprocessing's os._exit


def test_flush_honours_its_timeout_when_the_backend_hangs():
    t = TracingManager("stuck-flush", span_exporter=_StuckExporter(), set_global_provider=False,
                       set_default_manager=False)
    t.finish_span(t.start_span("s"))
    started = time.monotonic()
    assert t.flush(timeout=0.3) is False
    assert time.monotonic() - started < 2
    t.close_tracer(timeout=0.3)
