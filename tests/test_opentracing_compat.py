"""The OpenTracing drop-in (aiecs_tracing.compat.opentracing): OpenTracing's own harnesses,
the bridge to OpenTelemetry's current span both ways, inject/extract in the three formats,
jaeger-client's span semantics and the global tracer. Spans go over real UDP to the sink."""

from __future__ import annotations

import asyncio
import threading

import opentracing
import pytest
from jaeger_client import Tracer as JaegerTracer
from jaeger_client.codecs import BinaryCodec
from jaeger_client.reporter import InMemoryReporter
from jaeger_client.sampler import ConstSampler
from opentracing import Format
from opentracing.harness.api_check import APICompatibilityCheckMixin
from opentracing.harness.scope_check import ScopeCompatibilityCheckMixin

from aiecs_tracing import TracingManager
from aiecs_tracing.compat.opentracing import ContextVarsScopeManager, OpenTracingTracer
from tests.wire import make_manager, settled

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _global_opentracing():
    """Tests may install a global tracer: put back whatever was there."""
    saved = opentracing.tracer, opentracing.is_tracer_registered
    try:
        yield
    finally:
        opentracing.tracer, opentracing.is_tracer_registered = saved


@pytest.fixture
def tracing(sink):
    manager = make_manager(sink, "ot-service")
    try:
        yield manager
    finally:
        manager.close_tracer()


@pytest.fixture
def legacy():
    loop = asyncio.new_event_loop()  # jaeger-client's Tracer asks tornado for the current IOLoop
    asyncio.set_event_loop(loop)
    reporter = InMemoryReporter()
    tracer = JaegerTracer("legacy", reporter=reporter, sampler=ConstSampler(True))
    try:
        yield tracer, reporter
    finally:
        tracer.close()
        asyncio.set_event_loop(None)
        loop.close()


# --- OpenTracing's compliance harnesses --------------------------------------------------------
class TestAPICompatibility(APICompatibilityCheckMixin):
    def setup_method(self, method):
        self.manager = TracingManager("harness", exporter="memory", set_global_provider=False,
                                      set_default_manager=False, set_global_opentracing=False)

    def teardown_method(self, method):
        self.manager.close_tracer()

    def tracer(self):
        return self.manager.opentracing_tracer

    def is_parent(self, parent, span):
        own = span.otel_span.parent
        if parent is None:
            return own is None
        return own is not None and own.span_id == parent.context.span_id


class TestScopeCompatibility(ScopeCompatibilityCheckMixin):
    def scope_manager(self):
        return ContextVarsScopeManager()


class TestScopeCompatibilityInAsyncio(ScopeCompatibilityCheckMixin):
    def scope_manager(self):
        return ContextVarsScopeManager()

    def run_test(self, test_fn):
        async def main():
            test_fn()

        asyncio.run(main())


class TestScopeCompatibilityInThread(ScopeCompatibilityCheckMixin):
    def scope_manager(self):
        return ContextVarsScopeManager()

    def run_test(self, test_fn):
        errors = []

        def run():
            try:
                test_fn()
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(10)
        if errors:
            raise errors[0]


# --- scopes and OpenTelemetry's current span, both ways ---------------------------------------------
def test_active_opentracing_span_parents_decorated_and_manager_spans(sink, tracing):
    tracer = tracing.opentracing_tracer
    step = tracing.with_tracing("decorated.step")(lambda: tracing.get_active_span())

    with tracer.start_active_span("ot.request", tags={"component": "legacy"}) as scope:
        scope.span.set_baggage_item("tenant", "acme")
        inner = step()
        with tracing.span("manager.span") as manager_span:
            assert manager_span.get_baggage_item("tenant") == "acme"
            assert tracer.active_span.operation_name == "manager.span"  # OpenTelemetry's current, seen by OpenTracing
        assert tracer.scope_manager.active is scope
    assert tracer.scope_manager.active is None
    assert inner.get_baggage_item("tenant") == "acme"

    spans = {s.operation: s for s in settled(sink, tracing)}
    root = spans["ot.request"]
    assert spans["decorated.step"].parent_id == root.span_id
    assert spans["manager.span"].parent_id == root.span_id
    assert root.tags["component"] == "legacy" and root.parent_id == 0


def test_asyncio_tasks_and_threads_keep_their_own_active_scope(tracing):
    tracer = tracing.opentracing_tracer
    seen = {}

    async def task(name):
        with tracer.start_active_span(name) as scope:
            await asyncio.sleep(0.01)
            seen[name] = tracer.active_span is scope.span

    async def main():
        with tracer.start_active_span("outer") as outer:
            await asyncio.gather(task("a"), task("b"))
            seen["outer"] = tracer.active_span is outer.span

    asyncio.run(main())
    thread = threading.Thread(target=lambda: seen.setdefault("thread", tracer.active_span))
    with tracer.start_active_span("main-thread"):
        thread.start()
        thread.join()
    assert seen == {"a": True, "b": True, "outer": True, "thread": None}


def test_ignore_active_span_and_references(sink, tracing, legacy):
    tracer = tracing.opentracing_tracer
    legacy_tracer, _ = legacy
    other = tracer.start_span("other")
    jaeger_span = legacy_tracer.start_span("legacy-producer")
    with tracer.start_active_span("active"):
        root = tracer.start_span("root", ignore_active_span=True)
        follower = tracer.start_span("follower", references=[opentracing.follows_from(jaeger_span.context)])
        both = tracer.start_span("both", references=[opentracing.follows_from(other.context),
                                                     opentracing.child_of(jaeger_span.context)])
    for span in (root, follower, both, other):
        span.finish()
    spans = {s.operation: s for s in settled(sink, tracing)}
    assert spans["root"].parent_id == 0 and spans["root"].trace_id != spans["active"].trace_id
    # jaeger-client's rule: with no child_of, the first reference is the parent
    assert spans["follower"].parent_id == jaeger_span.context.span_id
    assert spans["follower"].trace_id == jaeger_span.context.trace_id
    # child_of wins; the other reference is kept (a link, FOLLOWS_FROM on the wire)
    assert spans["both"].parent_id == jaeger_span.context.span_id
    assert ("FOLLOWS_FROM", spans["other"].trace_id, spans["other"].span_id) in spans["both"].references
    jaeger_span.finish()


# --- jaeger-client's span semantics -------------------------------------------------------------
def test_error_tag_logs_finish_time_and_operation_name(sink, tracing):
    tracer = tracing.opentracing_tracer
    span = tracer.start_span("before", start_time=1_700_000_000.0, tags={"error": True})
    span.set_operation_name("after")
    try:
        raise ValueError("bad password=hunter2 in request")
    except ValueError as exc:
        span.log_kv({"event": "error", "error.object": exc, "error.kind": ValueError,
                     "stack": exc.__traceback__})
    span.log_event("retry", payload={"attempt": 2})
    span.finish(finish_time=1_700_000_002.5)
    with pytest.raises(RuntimeError):
        with tracer.start_active_span("failing"):
            raise RuntimeError("boom")
    spans = {s.operation: s for s in settled(sink, tracing)}
    wire = spans["after"]
    assert wire.is_error
    assert wire.start_us == 1_700_000_000_000_000 and wire.duration_us == 2_500_000
    error_log = next(log for log in wire.logs if log.get("event") == "error")
    assert error_log["error.kind"] == "ValueError"
    assert "hunter2" not in error_log["error.object"] and "bad password=" in error_log["error.object"]
    assert "raise ValueError" in error_log["stack"]
    assert any(log.get("event") == "retry" for log in wire.logs)
    failing = spans["failing"]
    assert failing.is_error and failing.tags["error.message"] == "boom"


def test_sampling_priority_forces_an_unsampled_root(sink):
    manager = make_manager(sink, "never-sampled", sampler_type="const", sampler_param=0)
    try:
        tracer = manager.opentracing_tracer
        tracer.start_span("dropped").finish()
        forced = tracer.start_span("forced", tags={"sampling.priority": 1})
        child = tracer.start_span("child", child_of=forced)
        headers = {}
        tracer.inject(child.context, Format.HTTP_HEADERS, headers)
        child.finish()
        forced.finish()
        assert headers["uber-trace-id"].endswith(":3")  # sampled + debug, as jaeger-client wrote it
        spans = {s.operation: s for s in settled(sink, manager)}
        assert set(spans) == {"forced", "child"}
        assert spans["child"].parent_id == spans["forced"].span_id
    finally:
        manager.close_tracer()


# --- inject / extract ---------------------------------------------------------------------------
def test_formats_and_the_exceptions_opentracing_names(tracing):
    tracer = tracing.opentracing_tracer
    span = tracer.start_span("carrier")
    span.set_baggage_item("tenant", "acme corp")
    for fmt in (Format.TEXT_MAP, Format.HTTP_HEADERS):
        carrier = {}
        tracer.inject(span.context, fmt, carrier)
        assert {"traceparent", "uber-trace-id", "baggage", "uberctx-tenant"} <= set(carrier)
        ctx = tracer.extract(fmt, carrier)
        assert (ctx.trace_id, ctx.span_id, ctx.baggage) == (span.context.trace_id, span.context.span_id,
                                                            {"tenant": "acme corp"})
    binary = bytearray()
    tracer.inject(span.context, Format.BINARY, binary)
    ctx = tracer.extract(Format.BINARY, binary)
    assert (ctx.trace_id, ctx.span_id, ctx.baggage) == (span.context.trace_id, span.context.span_id,
                                                        {"tenant": "acme corp"})
    assert tracer.extract(Format.TEXT_MAP, {"x-other": "1"}) is None
    assert tracer.extract(Format.HTTP_HEADERS, {}) is None
    assert tracer.extract(Format.BINARY, bytearray()) is None
    for corrupted in ({"uber-trace-id": "not:a:trace"}, {"Traceparent": "00-zz-yy-01"}):
        with pytest.raises(opentracing.SpanContextCorruptedException):
            tracer.extract(Format.HTTP_HEADERS, corrupted)
    with pytest.raises(opentracing.SpanContextCorruptedException):
        tracer.extract(Format.BINARY, bytearray(b"\x00\x01"))
    with pytest.raises(opentracing.InvalidCarrierException):
        tracer.inject(span.context, Format.BINARY, {})
    with pytest.raises(opentracing.UnsupportedFormatException):
        tracer.inject(span.context, "zipkin", {})
    span.finish()


def test_binary_carrier_is_jaeger_clients(tracing, legacy):
    tracer = tracing.opentracing_tracer
    span = tracer.start_span("binary")
    span.set_baggage_item("k", "v")
    carrier = bytearray()
    tracer.inject(span.context, Format.BINARY, carrier)
    theirs = BinaryCodec().extract(carrier)
    assert (theirs.trace_id, theirs.span_id, theirs.flags, theirs.baggage) == (
        span.context.trace_id, span.context.span_id, 1, {"k": "v"})
    legacy_tracer, _ = legacy
    legacy_span = legacy_tracer.start_span("legacy")
    legacy_span.set_baggage_item("from", "legacy")
    carrier = bytearray()
    BinaryCodec().inject(legacy_span.context, carrier)
    ours = tracer.extract(Format.BINARY, carrier)
    assert (ours.trace_id, ours.span_id, ours.baggage) == (legacy_span.context.trace_id,
                                                           legacy_span.context.span_id, {"from": "legacy"})
    legacy_span.finish()
    span.finish()


def test_http_headers_continued_by_jaeger_client_and_by_a_w3c_only_service(sink, tracing, legacy):
    tracer = tracing.opentracing_tracer
    legacy_tracer, reporter = legacy
    w3c_only = make_manager(sink, "w3c-only", propagators="tracecontext,baggage")
    try:
        with tracer.start_active_span("ot.client") as scope:
            scope.span.set_baggage_item("request-id", "r 42")
            headers = {}
            tracer.inject(scope.span.context, Format.HTTP_HEADERS, headers)
        ot_span = scope.span

        legacy_ctx = legacy_tracer.extract(Format.HTTP_HEADERS, headers)
        legacy_child = legacy_tracer.start_span("legacy.server", child_of=legacy_ctx)
        assert legacy_child.get_baggage_item("request-id") == "r 42"
        legacy_child.finish()
        (reported,) = reporter.get_spans()
        assert (reported.trace_id, reported.parent_id) == (ot_span.context.trace_id, ot_span.context.span_id)

        w3c_ctx = w3c_only.opentracing_tracer.extract(Format.HTTP_HEADERS,
                                                     {k: v for k, v in headers.items() if not k.startswith("uber")})
        w3c_child = w3c_only.start_span("w3c.server", parent_span=w3c_ctx)
        assert w3c_child.get_baggage_item("request-id") == "r 42"
        w3c_child.finish()
        spans = {s.operation: s for s in settled(sink, tracing, w3c_only)}
        assert spans["w3c.server"].parent_id == spans["ot.client"].span_id
        assert spans["w3c.server"].trace_id == spans["ot.client"].trace_id
    finally:
        w3c_only.close_tracer()


def test_renamed_jaeger_headers(tracing):
    tracer = OpenTracingTracer(tracing, trace_id_header="X-Trace", baggage_header_prefix="x-bag-")
    span = tracer.start_span("renamed")
    span.set_baggage_item("user", "u1")
    carrier = {}
    tracer.inject(span.context, Format.TEXT_MAP, carrier)
    assert "x-trace" in carrier and carrier["x-bag-user"] == "u1" and "uber-trace-id" not in carrier
    del carrier["traceparent"], carrier["baggage"]
    ctx = tracer.extract(Format.TEXT_MAP, {k.upper(): v for k, v in carrier.items()})
    assert (ctx.span_id, ctx.baggage) == (span.context.span_id, {"user": "u1"})
    span.finish()


# --- the global tracer ----------------------------------------------------------------------------
def test_first_enabled_manager_installs_the_global_tracer_and_close_restores_it(sink):
    opentracing.tracer, opentracing.is_tracer_registered = opentracing.Tracer(), False
    disabled = TracingManager("off", enable_tracing=False, exporter="memory", set_global_provider=False,
                              set_default_manager=False)
    opted_out = make_manager(sink, "opted-out", set_global_opentracing=False)
    first = make_manager(sink, "first", set_global_opentracing=True)
    second = make_manager(sink, "second", set_global_opentracing=True)
    try:
        assert opentracing.global_tracer() is first.opentracing_tracer
        assert opentracing.is_global_tracer_registered()
        with opentracing.global_tracer().start_active_span("via-global"):
            pass
        assert [s.service for s in settled(sink, first)] == ["first"]
    finally:
        for manager in (second, first, opted_out, disabled):
            manager.close_tracer()
    assert type(opentracing.global_tracer()) is opentracing.Tracer
    assert not opentracing.is_global_tracer_registered()

    foreign = type("ForeignTracer", (opentracing.Tracer,), {})()
    opentracing.set_global_tracer(foreign)
    third = make_manager(sink, "third", set_global_opentracing=True)
    try:
        assert opentracing.global_tracer() is foreign  # one already set: left alone
    finally:
        third.close_tracer()
    assert opentracing.global_tracer() is foreign


def test_disabled_manager_tracer_is_a_harmless_noop(sink):
    manager = TracingManager("off", enable_tracing=False, exporter="memory", set_global_provider=False,
                             set_default_manager=False, set_global_opentracing=False)
    tracer = manager.opentracing_tracer
    with tracer.start_active_span("nothing") as scope:
        scope.span.set_tag("k", "v").log_kv({"event": "x"})
        carrier = {}
        tracer.inject(scope.span.context, Format.HTTP_HEADERS, carrier)
    assert carrier == {} and tracer.extract(Format.HTTP_HEADERS, {"uber-trace-id": "1:2:0:1"}) is None
    assert manager.get_tracer_info()["spans_started"] == 0
