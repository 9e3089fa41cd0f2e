"""Celery integration against a real ``celery worker`` (prefork, 2 children) on Redis and RabbitMQ.

Spans are read off the wire (a fake Jaeger agent decoding UDP): the test process publishes
as service ``producer``, the worker subprocess runs as service ``worker``. Each test starts
its own trace and asserts on that trace only, so one worker per broker serves the module.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import chain, chord, group

from aiecs_tracing.integrations.celery import install_celery_tracing, uninstall_celery_tracing
from tests.integration._celery_util import Worker, broker_urls, new_queue_name, producer_app
from tests.services import missing_service
from tests.wire import JaegerUDPSink, WireSpan, make_manager

BROKER_HOW = "run scripts/ensure_services.sh (installs and starts Redis and RabbitMQ)"

pytestmark = pytest.mark.timeout(180)

RESULT_TIMEOUT = 30


@dataclass
class CeleryEnv:
    broker: str
    broker_url: str
    backend_url: str
    queue: str
    sink: JaegerUDPSink
    worker: Worker
    tracing: Any
    producer: Any

    def sig(self, name: str, *args: Any, **options: Any) -> Any:
        return self.producer.signature(name, args=args, **options)

    def trace(self, trace_id: int, count: int, timeout: float = 15.0) -> list[WireSpan]:
        """The spans of one trace, once ``count`` arrived; no sleep "for extras".

        The producer's side is exact: after its flush, the sink must hold every span it counted as
        exported. A worker child exports what it ended in order (one queue, one socket), so once the
        last span a task ends (its ``run`` span) is here, so is everything the task ended before it;
        the callers' exact assertions (``one()``, ``len(spans) == n``) then see any extra.
        """
        assert self.tracing.flush(10)
        exported = self.tracing.get_tracer_info()["spans_exported"]
        produced = self.sink.wait_for(exported, timeout=timeout, where=lambda s: s.service == "producer")
        assert len(produced) == exported, f"producer exported {exported} span(s), the sink has {produced}"
        spans = self.sink.wait_for(count, timeout=timeout, where=lambda s: s.trace_id == trace_id)
        assert len(spans) >= count, f"expected {count} spans in the trace, got {spans}\n{self.worker.log()[-3000:]}"
        return spans


def one(spans: list[WireSpan], operation: str, service: str | None = None) -> WireSpan:
    found = [s for s in spans if s.operation == operation and (service is None or s.service == service)]
    assert len(found) == 1, f"expected one {operation!r}, got {found} among {spans}"
    return found[0]


def named(spans: list[WireSpan], operation: str) -> list[WireSpan]:
    return [s for s in spans if s.operation == operation]


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def env(request: pytest.FixtureRequest) -> Iterator[CeleryEnv]:
    urls = broker_urls(request.param)
    if urls is None:
        missing_service(f"{request.param} on 127.0.0.1", BROKER_HOW)
    sink = JaegerUDPSink()
    queue = new_queue_name(request.param[:1])
    worker = Worker(urls[0], urls[1], queue, sink.port)
    tracing = make_manager(sink, "producer")
    producer = producer_app("producer", urls[0], urls[1], queue)
    install_celery_tracing(producer, tracing)
    try:
        worker.wait_ready()
        yield CeleryEnv(request.param, urls[0], urls[1], queue, sink, worker, tracing, producer)
    finally:
        uninstall_celery_tracing(producer)
        worker.stop()
        producer.close()
        tracing.close_tracer()
        sink.close()


def test_caller_publish_worker_and_task_code_in_one_trace(env: CeleryEnv) -> None:
    """send_task by name from an app that does not define the task (OpenTelemetry issue 609)."""
    assert "itest.work" not in env.producer.tasks
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.work", args=(3,))
    assert result.get(timeout=RESULT_TIMEOUT) == 30
    spans = env.trace(caller.context.trace_id, 4)
    send = one(spans, "send itest.work", "producer")
    run = one(spans, "run itest.work", "worker")
    inner = one(spans, "inner.compute", "worker")
    assert send.parent_id == caller.context.span_id
    assert run.parent_id == send.span_id
    assert inner.parent_id == run.span_id
    assert (send.kind, run.kind) == ("producer", "consumer")
    for span in (send, run):
        assert span.tags["messaging.system"] == "celery"
        assert span.tags["messaging.message.id"] == result.id
        assert span.tags["celery.task_name"] == "itest.work"
        assert span.tags["component"] == "celery"
    assert send.tags["messaging.operation.type"] == "send"
    assert run.tags["messaging.operation.type"] == "process"
    assert send.tags["messaging.destination.name"] == env.queue
    assert run.tags["messaging.destination.name"] == env.queue
    assert run.tags["celery.state"] == "SUCCESS"
    assert run.tags["celery.retries"] == 0
    assert not run.is_error and not send.is_error
    assert len(spans) == 4


def test_registered_task_delay_with_countdown(env: CeleryEnv) -> None:
    """The usual ``task.delay``/``apply_async`` path of an app that does define the task."""
    app = producer_app("producer-with-tasks", env.broker_url, env.backend_url, env.queue)

    @app.task(name="itest.add")
    def add(a: int, b: int) -> int:  # never runs here: the worker's copy does
        raise AssertionError("runs on the worker")

    install_celery_tracing(app, env.tracing)
    try:
        with env.tracing.span("caller") as caller:
            result = add.apply_async((20, 22), countdown=0.2)
        assert result.get(timeout=RESULT_TIMEOUT) == 42
        spans = env.trace(caller.context.trace_id, 3)
        send, run = one(spans, "send itest.add"), one(spans, "run itest.add")
        assert send.parent_id == caller.context.span_id and run.parent_id == send.span_id
        assert "celery.eta" in send.tags
    finally:
        uninstall_celery_tracing(app)
        app.close()


def test_chain_is_one_trace(env: CeleryEnv) -> None:
    """Later links are published by the worker when the previous task ends: children of its span."""
    with env.tracing.span("caller") as caller:
        result = chain(env.sig("itest.add", 1, 2), env.sig("itest.add", 3), env.sig("itest.add", 4)).apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 10
    spans = env.trace(caller.context.trace_id, 7)
    sends = sorted(named(spans, "send itest.add"), key=lambda s: s.start_us)
    runs = sorted(named(spans, "run itest.add"), key=lambda s: s.start_us)
    assert len(sends) == 3 and len(runs) == 3, spans
    assert sends[0].parent_id == caller.context.span_id
    for i in range(3):
        assert runs[i].parent_id == sends[i].span_id
    assert sends[1].parent_id == runs[0].span_id
    assert sends[2].parent_id == runs[1].span_id
    assert sends[1].service == "worker" and sends[0].service == "producer"


def test_group_is_one_trace(env: CeleryEnv) -> None:
    with env.tracing.span("caller") as caller:
        result = group(env.sig("itest.add", i, i) for i in range(3)).apply_async()
    assert sorted(result.get(timeout=RESULT_TIMEOUT)) == [0, 2, 4]
    spans = env.trace(caller.context.trace_id, 7)
    sends, runs = named(spans, "send itest.add"), named(spans, "run itest.add")
    assert len(sends) == 3 and len(runs) == 3
    assert all(s.parent_id == caller.context.span_id for s in sends)
    assert {r.parent_id for r in runs} == {s.span_id for s in sends}


def test_chord_header_and_body_in_one_trace(env: CeleryEnv) -> None:
    if env.backend_url.startswith("rpc"):
        missing_service("Redis (the chord test's result backend) on 127.0.0.1:6379", BROKER_HOW)
    with env.tracing.span("caller") as caller:
        result = chord([env.sig("itest.add", i, 1) for i in range(3)], env.sig("itest.tsum")).apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 6
    spans = env.trace(caller.context.trace_id, 9)
    header_sends, header_runs = named(spans, "send itest.add"), named(spans, "run itest.add")
    assert len(header_sends) == 3 and len(header_runs) == 3
    assert all(s.parent_id == caller.context.span_id for s in header_sends)
    body_send, body_run = one(spans, "send itest.tsum"), one(spans, "run itest.tsum")
    # The body is published by whichever header task completed the chord, inside its span.
    assert body_send.parent_id in {r.span_id for r in header_runs}
    assert body_run.parent_id == body_send.span_id


def test_link_and_link_error_callbacks_join_the_trace(env: CeleryEnv) -> None:
    with env.tracing.span("caller") as caller:
        ok = env.producer.send_task("itest.add", args=(1, 2), link=env.sig("itest.add", 100))
        bad = env.producer.send_task("itest.fail", args=("boom",), link_error=env.sig("itest.note"))
    assert ok.get(timeout=RESULT_TIMEOUT) == 3
    with pytest.raises(ValueError):
        bad.get(timeout=RESULT_TIMEOUT, propagate=True)
    spans = env.trace(caller.context.trace_id, 9)
    run_add = [s for s in named(spans, "run itest.add") if s.tags["messaging.message.id"] == ok.id][0]
    callback_send = [s for s in named(spans, "send itest.add") if s.service == "worker"]
    assert len(callback_send) == 1 and callback_send[0].parent_id == run_add.span_id
    callback_run = [s for s in named(spans, "run itest.add") if s.parent_id == callback_send[0].span_id]
    assert len(callback_run) == 1
    run_fail = one(spans, "run itest.fail")
    errback_send = one(spans, "send itest.note")
    assert errback_send.parent_id == run_fail.span_id
    assert one(spans, "run itest.note").parent_id == errback_send.span_id


def test_failing_task_records_the_exception(env: CeleryEnv) -> None:
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.fail", args=("no luck",))
    with pytest.raises(ValueError, match="no luck"):
        result.get(timeout=RESULT_TIMEOUT)
    spans = env.trace(caller.context.trace_id, 3)
    run = one(spans, "run itest.fail")
    assert run.is_error
    assert run.tags["error.kind"] == "ValueError"
    assert run.tags["error.message"] == "no luck"
    assert run.tags["celery.state"] == "FAILURE"
    events = [log for log in run.logs if log.get("event") == "error"]
    assert events and "ValueError: no luck" in events[0]["exception.stacktrace"]
    assert not one(spans, "send itest.fail").is_error


def test_retried_task_each_attempt_in_the_same_trace(env: CeleryEnv) -> None:
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.flaky", args=(2,))
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    spans = env.trace(caller.context.trace_id, 7)
    runs = sorted(named(spans, "run itest.flaky"), key=lambda s: s.tags["celery.retries"])
    sends = named(spans, "send itest.flaky")
    assert [r.tags["celery.retries"] for r in runs] == [0, 1, 2]
    assert [r.tags["messaging.celery.retries"] for r in runs] == [0, 1, 2]
    assert len(sends) == 3
    assert [r.tags["celery.state"] for r in runs] == ["RETRY", "RETRY", "SUCCESS"]
    assert "attempt 0 failed" in runs[0].tags["celery.retry.reason"]
    first_send = one(spans, "send itest.flaky", "producer")
    assert runs[0].parent_id == first_send.span_id
    for previous, current in zip(runs, runs[1:], strict=False):
        retry_send = [s for s in sends if s.span_id == current.parent_id]
        assert retry_send and retry_send[0].parent_id == previous.span_id
        assert retry_send[0].tags["celery.retries"] == current.tags["celery.retries"]
    assert {r.tags["messaging.message.id"] for r in runs} == {result.id}


def test_unknown_task_gets_a_closed_error_span(env: CeleryEnv) -> None:
    """OpenTelemetry's instrumentation leaves these open; here the worker's main process ends one."""
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.not_registered_anywhere", args=(1,))
    spans = env.trace(caller.context.trace_id, 3)
    run = one(spans, "run itest.not_registered_anywhere", "worker")
    assert run.parent_id == one(spans, "send itest.not_registered_anywhere").span_id
    assert run.is_error and run.tags["celery.state"] == "UNKNOWN"
    assert run.tags["messaging.message.id"] == result.id


def test_rejected_message_gets_a_closed_error_span(env: CeleryEnv) -> None:
    """A message that is not a task (no task header) is rejected by the worker's main process."""
    with env.tracing.span("caller") as caller:
        headers: dict[str, str] = {}
        env.tracing.inject_current_context(headers)
        with env.producer.producer_or_acquire() as producer:
            producer.publish({"not": "a task"}, exchange=env.queue, routing_key=env.queue, headers=headers)
    spans = env.trace(caller.context.trace_id, 2)
    rejected = one(spans, "run unknown", "worker")
    assert rejected.parent_id == caller.context.span_id
    assert rejected.is_error and rejected.tags["celery.state"] == "REJECTED"


def test_hard_time_limit_kill_is_reported_by_the_parent(env: CeleryEnv) -> None:
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.sleep", args=(30,), time_limit=1)
    with pytest.raises(Exception, match="TimeLimitExceeded|Time limit"):
        result.get(timeout=RESULT_TIMEOUT)
    spans = env.trace(caller.context.trace_id, 4)
    send = one(spans, "send itest.sleep")
    kill = one(spans, "time limit itest.sleep", "worker")  # from the worker's main process
    assert kill.parent_id == send.span_id
    assert kill.is_error and kill.tags["error.kind"] == "TimeLimitExceeded"
    assert kill.tags["celery.time_limit_exceeded"] is True and kill.tags["celery.terminated"] is True
    assert kill.tags["messaging.message.id"] == result.id
    # The child is sent SIGTERM first: it ends its own span, which says so, and flushes as it exits.
    run = one(spans, "run itest.sleep", "worker")
    assert run.parent_id == send.span_id
    assert run.is_error and run.tags["celery.state"] == "INTERRUPTED"
    assert len(spans) == 4


def test_revoke_with_terminate_is_reported_by_the_parent(env: CeleryEnv) -> None:
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.sleep", args=(30,))
    deadline = time.monotonic() + 15
    while result.state != "STARTED":  # task_track_started: running in a child now
        assert time.monotonic() < deadline, f"the task never started: {result.state}"
        time.sleep(0.05)
    result.revoke(terminate=True)
    spans = env.trace(caller.context.trace_id, 4)
    send = one(spans, "send itest.sleep")
    terminate = one(spans, "terminate itest.sleep", "worker")
    assert terminate.parent_id == send.span_id
    assert terminate.tags["celery.state"] == "REVOKED" and terminate.tags["celery.terminated"] is True
    assert terminate.is_error
    run = one(spans, "run itest.sleep", "worker")  # SIGTERM: the child ends its own span too
    assert run.parent_id == send.span_id and run.tags["celery.state"] == "INTERRUPTED"
    assert len(spans) == 4


def test_expired_task_ends_with_a_revoked_span(env: CeleryEnv) -> None:
    if env.broker != "redis":
        pytest.skip("RabbitMQ drops a message whose TTL is already over before any worker sees it")
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=300)
    with env.tracing.span("caller") as caller:
        result = env.producer.send_task("itest.add", args=(1, 1), expires=expires, countdown=1)
    spans = env.trace(caller.context.trace_id, 3)
    run = one(spans, "run itest.add", "worker")
    assert run.tags["celery.state"] == "REVOKED" and run.tags["celery.revoked.reason"] == "expired"
    assert run.is_error
    assert run.parent_id == one(spans, "send itest.add").span_id
    assert run.tags["messaging.message.id"] == result.id


def test_task_protocol_1_message_continues_the_trace(env: CeleryEnv) -> None:
    """Protocol 1 puts custom headers under ``task.request.headers``: the worker reads them there."""
    app = producer_app("producer-v1", env.broker_url, env.backend_url, env.queue, task_protocol=1)
    install_celery_tracing(app, env.tracing)
    try:
        with env.tracing.span("caller") as caller:
            result = app.send_task("itest.add", args=(5, 6))
        assert result.get(timeout=RESULT_TIMEOUT) == 11
        spans = env.trace(caller.context.trace_id, 3)
        assert one(spans, "run itest.add").parent_id == one(spans, "send itest.add").span_id
    finally:
        uninstall_celery_tracing(app)
        app.close()


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_max_tasks_per_child_1_loses_no_span_on_graceful_stop(broker: str) -> None:
    """OpenTelemetry issue 4916: "10 tasks in, 1 span out". Here: 10 in, 10 out."""
    urls = broker_urls(broker)
    if urls is None:
        missing_service(f"{broker} on 127.0.0.1", BROKER_HOW)
    sink = JaegerUDPSink()
    queue = new_queue_name("m")
    worker = Worker(urls[0], urls[1], queue, sink.port, max_tasks_per_child=1)
    tracing = make_manager(sink, "producer")
    producer = producer_app("producer", urls[0], urls[1], queue)
    install_celery_tracing(producer, tracing)
    try:
        worker.wait_ready()
        with tracing.span("caller") as caller:
            results = [producer.send_task("itest.add", args=(i, i)) for i in range(10)]
        assert [r.get(timeout=60) for r in results] == [2 * i for i in range(10)]
    finally:
        code = worker.stop()
        uninstall_celery_tracing(producer)
        producer.close()
    try:
        assert code == 0, worker.log()[-3000:]
        tracing.flush()
        trace_id = caller.context.trace_id
        runs = sink.wait_for(10, timeout=5, where=lambda s: s.trace_id == trace_id and s.service == "worker")
        assert len(runs) == 10, f"{len(runs)} worker spans of 10\n{worker.log()[-3000:]}"
        assert {r.tags["messaging.message.id"] for r in runs} == {r.id for r in results}
        assert all(r.operation == "run itest.add" for r in runs)
    finally:
        tracing.close_tracer()
        sink.close()


def test_http_request_to_worker_to_http_is_one_trace(env: CeleryEnv) -> None:
    """FastAPI (TracingMiddleware) -> send_task -> worker -> instrumented httpx -> FastAPI again."""
    import httpx
    from fastapi import FastAPI

    from aiecs_tracing.integrations.asgi import TracingMiddleware
    from tests.integration._web_util import UvicornServer

    api_tracing = make_manager(env.sink, "api")
    publisher = producer_app("api-publisher", env.broker_url, env.backend_url, env.queue)
    install_celery_tracing(publisher, api_tracing)
    web = FastAPI()
    web.add_middleware(TracingMiddleware, tracing=api_tracing)
    base: dict[str, str] = {}

    @web.get("/enqueue")
    def enqueue() -> dict[str, str]:
        return {"id": publisher.send_task("itest.fetch", args=(base["url"] + "/downstream",)).id}

    @web.get("/downstream")
    def downstream() -> dict[str, bool]:
        return {"ok": True}

    try:
        with UvicornServer(web) as server:
            base["url"] = server.url
            task_id = httpx.get(server.url + "/enqueue", timeout=10).json()["id"]  # no trace header sent
            assert publisher.AsyncResult(task_id).get(timeout=RESULT_TIMEOUT) == 200
            api_tracing.flush()
            send = env.sink.wait_for(1, where=lambda s: s.tags.get("messaging.message.id") == task_id)
            assert send, "no publish span"
            trace_id = send[0].trace_id
            spans = env.sink.wait_for(5, timeout=15, where=lambda s: s.trace_id == trace_id)
            api_tracing.flush()
        spans = [s for s in env.sink.spans if s.trace_id == trace_id]
        entry = one(spans, "GET /enqueue", "api")
        publish = one(spans, "send itest.fetch", "api")
        run = one(spans, "run itest.fetch", "worker")
        client = [s for s in spans if s.service == "worker" and s.kind == "client"]
        downstream_span = one(spans, "GET /downstream", "api")
        assert entry.parent_id == 0
        assert publish.parent_id == entry.span_id
        assert run.parent_id == publish.span_id
        assert len(client) == 1 and client[0].parent_id == run.span_id
        assert downstream_span.parent_id == client[0].span_id
        assert len(spans) == 5, spans
    finally:
        uninstall_celery_tracing(publisher)
        publisher.close()
        api_tracing.close_tracer()


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_threads_and_solo_pools(pool: str) -> None:
    """Tasks run in the worker's main process: the same trace, the same current-span handling."""
    urls = broker_urls("redis") or broker_urls("rabbitmq")
    if urls is None:
        missing_service("Redis or RabbitMQ on 127.0.0.1", BROKER_HOW)
    sink = JaegerUDPSink()
    queue = new_queue_name(pool[:1])
    worker = Worker(urls[0], urls[1], queue, sink.port, pool=pool, concurrency=2 if pool == "threads" else 1)
    tracing = make_manager(sink, "producer")
    producer = producer_app("producer", urls[0], urls[1], queue)
    install_celery_tracing(producer, tracing)
    try:
        worker.wait_ready()
        with tracing.span("caller") as caller:
            ok = [producer.send_task("itest.work", args=(i,)) for i in range(3)]
            bad = producer.send_task("itest.fail", args=("x",))
        assert [r.get(timeout=RESULT_TIMEOUT) for r in ok] == [0, 10, 20]
        with pytest.raises(ValueError):
            bad.get(timeout=RESULT_TIMEOUT)
        tracing.flush()
        trace_id = caller.context.trace_id
        spans = sink.wait_for(12, timeout=15, where=lambda s: s.trace_id == trace_id)
        runs = named(spans, "run itest.work")
        assert len(runs) == 3
        sends = {s.span_id for s in named(spans, "send itest.work")}
        assert {r.parent_id for r in runs} == sends
        # Each task's decorated code is a child of its own run span, even with two threads.
        inner = named(spans, "inner.compute")
        assert sorted(i.parent_id for i in inner) == sorted(r.span_id for r in runs)
        failed = one(spans, "run itest.fail")
        assert failed.is_error and failed.parent_id == one(spans, "send itest.fail").span_id
    finally:
        code = worker.stop()
        uninstall_celery_tracing(producer)
        producer.close()
        tracing.close_tracer()
        sink.close()
    assert code == 0
