"""Celery integration in one process (kombu's in-memory broker): eager mode, scoping, install/uninstall.

No worker and no broker service needed; spans still go over real UDP to the fake agent.
"""

from __future__ import annotations

import pytest
from celery import Celery

from aiecs_tracing import set_tracing_manager
from aiecs_tracing.core.manager import get_tracing_manager
from aiecs_tracing.integrations.celery import (
    install_celery_tracing,
    is_celery_tracing_installed,
    uninstall_celery_tracing,
)
from tests.integration._celery_util import new_queue_name
from tests.wire import make_manager, refused_tcp_port, settled

pytestmark = pytest.mark.timeout(60)


_created: list[Celery] = []


def memory_app(name: str = "mem", **conf) -> Celery:
    app = Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_default_queue=new_queue_name("mem"), **conf)
    _created.append(app)
    return app


@pytest.fixture(autouse=True)
def _uninstall_everything():
    """Signal receivers are process-wide: leave none behind for the next test."""
    yield
    while _created:
        app = _created.pop()
        uninstall_celery_tracing(app)
        app.close()


def published_headers(app: Celery) -> dict:
    """The headers of the next message waiting in the app's default queue."""
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(app.conf.task_default_queue)
        try:
            message = queue.get(timeout=2)
            message.ack()
            return dict(message.headers)
        finally:
            queue.close()


@pytest.fixture
def tracing(sink):
    manager = make_manager(sink, "producer")
    yield manager
    manager.close_tracer()


def test_headers_carry_w3c_and_jaeger_context_of_the_publish_span(sink, tracing) -> None:
    app = memory_app()
    install_celery_tracing(app, tracing)
    with tracing.span("caller") as caller:
        result = app.send_task("elsewhere.task", args=(1,))
    headers = published_headers(app)
    tracing.flush()
    send = sink.wait_for(2) and sink.one("send elsewhere.task")
    assert send.parent_id == caller.context.span_id
    assert headers["traceparent"] == f"00-{send.trace_id:032x}-{send.span_id:016x}-01"
    assert headers["uber-trace-id"].startswith(f"{send.trace_id:x}:{send.span_id:x}:")
    assert headers["id"] == result.id == send.tags["messaging.message.id"]


def test_eager_execution_is_a_child_of_the_caller_without_publish(sink, tracing) -> None:
    app = memory_app(task_always_eager=True)
    install_celery_tracing(app, tracing)
    inner = tracing.with_tracing("inner.step")(lambda x: x + 1)

    @app.task(name="mem.add")
    def add(a: int, b: int) -> int:
        return inner(a) + b

    with tracing.span("caller") as caller:
        assert add.delay(1, 2).get() == 4
    assert len(settled(sink, tracing)) == 3
    run, step = sink.one("run mem.add"), sink.one("inner.step")
    assert run.parent_id == caller.context.span_id and step.parent_id == run.span_id
    assert run.tags["celery.eager"] is True and run.tags["celery.state"] == "SUCCESS"
    assert run.kind is None or run.kind == "internal"
    assert not sink.named("send mem.add")


def test_eager_failure_propagating_is_recorded(sink, tracing) -> None:
    app = memory_app(task_always_eager=True, task_eager_propagates=True)
    install_celery_tracing(app, tracing)

    @app.task(name="mem.fail")
    def fail() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        fail.delay()
    tracing.flush()
    run = sink.wait_for(1) and sink.one("run mem.fail")
    assert run.is_error and run.tags["error.kind"] == "KeyError"
    assert tracing.get_active_span() is None  # nothing left current


def test_install_is_idempotent_and_uninstall_stops_everything(sink, tracing) -> None:
    app = memory_app()
    install_celery_tracing(app, tracing)
    install_celery_tracing(app, tracing)
    assert is_celery_tracing_installed(app)
    app.send_task("x.one")
    published_headers(app)
    uninstall_celery_tracing(app)
    uninstall_celery_tracing(app)
    assert not is_celery_tracing_installed(app)
    assert "send_task" not in app.__dict__  # the class's own method again
    app.send_task("x.two")
    headers = published_headers(app)
    assert "traceparent" not in headers and "uber-trace-id" not in headers
    assert [s.operation for s in settled(sink, tracing)] == ["send x.one"]


@pytest.mark.filterwarnings("ignore:task_always_eager has no effect")
def test_another_apps_tasks_are_ignored(sink, tracing) -> None:
    mine, other = memory_app("mine"), memory_app("other", task_always_eager=True)
    install_celery_tracing(mine, tracing)

    @other.task(name="other.add")
    def add(a: int, b: int) -> int:
        return a + b

    with tracing.span("caller"):
        other.send_task("other.remote")
        assert add.delay(1, 1).get() == 2
    assert "traceparent" not in published_headers(other)
    assert [s.operation for s in settled(sink, tracing)] == ["caller"]
    uninstall_celery_tracing(mine)


def test_failed_publish_ends_the_span_with_the_error_and_reraises(sink, tracing) -> None:
    app = Celery("down", broker=f"redis://127.0.0.1:{refused_tcp_port()}/0", set_as_current=False)
    _created.append(app)
    app.conf.update(broker_connection_retry=False, task_publish_retry=False, broker_connection_timeout=1)
    install_celery_tracing(app, tracing)
    with pytest.raises(Exception) as raised:
        app.send_task("x.never", retry=False, ignore_result=True)
    tracing.flush()
    send = sink.wait_for(1) and sink.one("send x.never")
    assert send.is_error and send.tags["error.kind"] == type(raised.value).__name__
    assert tracing.get_active_span() is None


def test_manager_resolved_lazily_and_disabled_costs_nothing(sink, tracing) -> None:
    app = memory_app()
    previous = get_tracing_manager()
    set_tracing_manager(None)
    try:
        install_celery_tracing(app)  # before any manager exists
        app.send_task("x.untraced")
        assert "traceparent" not in published_headers(app)
        set_tracing_manager(tracing)
        app.send_task("x.traced")
        assert "traceparent" in published_headers(app)
    finally:
        set_tracing_manager(previous)
        uninstall_celery_tracing(app)
    assert [s.operation for s in settled(sink, tracing)] == ["send x.traced"]


def test_baggage_of_the_current_span_travels_with_the_task(sink, tracing) -> None:
    app = memory_app()
    install_celery_tracing(app, tracing)
    with tracing.span("caller") as caller:
        caller.set_baggage_item("tenant", "acme")
        app.send_task("x.bag")
    headers = published_headers(app)
    assert "tenant=acme" in headers["baggage"] and headers["uberctx-tenant"] == "acme"
    context = tracing.extract_span_context(headers)
    assert context.baggage == {"tenant": "acme"} and context.trace_id == caller.context.trace_id
    tracing.flush()
    assert sink.wait_for(2) and sink.one("send x.bag").parent_id == caller.context.span_id


def test_unsampled_publish_exports_nothing_and_says_so_downstream(sink) -> None:
    tracing = make_manager(sink, "producer", sampler_type="const", sampler_param=0)
    app = memory_app()
    install_celery_tracing(app, tracing)
    app.send_task("x.quiet")
    headers = published_headers(app)
    assert headers["traceparent"].endswith("-00") and headers["uber-trace-id"].endswith(":0")
    assert settled(sink, tracing) == []
    tracing.close_tracer()
