"""Celery outcomes only a worker's main process sees, on a real worker: stand-in spans.

- a prefork child killed while it runs a task (``WorkerLostError``): the child's own span is
  lost with it, so the main process reports ``worker lost <task>`` under the publish span;
- a task that rejects its message (``Reject(requeue=False)``): it will never run again, and
  ``failure <task>`` says so, in the caller's trace (Celery's ``task_failure`` carries no
  request there: the context comes from what ``task_received`` remembered);
- a revoked task on the solo and threads pools (tasks run in the main process there): the
  discarded message still gets its ``run <task>`` span, ``REVOKED``, in the caller's trace.

What a user checks in Jaeger: the span is there, in the caller's trace, under the publish
span, an error naming the outcome.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from aiecs_tracing.integrations.celery import install_celery_tracing, uninstall_celery_tracing
from tests.integration._celery_util import Worker, broker_urls, new_queue_name, producer_app
from tests.services import missing_service
from tests.wire import JaegerUDPSink, WireSpan, make_manager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

# The worker imports the tasks of this module's scenarios besides the shared app's.
EXTRA_TASKS = {"CELERY_WORKER_INCLUDE": "tests.integration.coverage_celery_tasks"}
RESULT_TIMEOUT = 30


class Deployment:
    """A producer (this process, service ``producer``) and a real worker (service ``worker``)."""

    def __init__(self, pool: str) -> None:
        urls = broker_urls("redis") or broker_urls("rabbitmq")
        if urls is None:
            missing_service("Redis or RabbitMQ on 127.0.0.1", "run scripts/ensure_services.sh")
        self.sink = JaegerUDPSink()
        queue = new_queue_name(f"cov{pool[:1]}")
        self.worker = Worker(urls[0], urls[1], queue, self.sink.port, pool=pool, concurrency=1, extra_env=EXTRA_TASKS)
        self.tracing = make_manager(self.sink, "producer")
        self.producer = producer_app("producer", urls[0], urls[1], queue)
        install_celery_tracing(self.producer, self.tracing)

    def trace(self, caller: Any, count: int) -> list[WireSpan]:
        """The caller's trace once ``count`` spans of it arrived (the worker's come over UDP)."""
        assert self.tracing.flush(10)
        trace_id = caller.context.trace_id
        spans = self.sink.wait_for(count, timeout=20, where=lambda s: s.trace_id == trace_id)
        assert len(spans) >= count, f"{spans}\n{self.worker.log()[-3000:]}"
        return spans

    def close(self) -> int | None:
        try:
            return self.worker.stop()
        finally:
            uninstall_celery_tracing(self.producer)
            self.producer.close()
            self.tracing.close_tracer()
            self.sink.close()


def only(spans: list[WireSpan], operation: str) -> WireSpan:
    found = [s for s in spans if s.operation == operation]
    assert len(found) == 1, f"expected one {operation!r} among {spans}"
    return found[0]


@pytest.fixture(scope="module")
def prefork() -> Iterator[Deployment]:
    deployment = Deployment("prefork")
    try:
        deployment.worker.wait_ready()
        yield deployment
    finally:
        deployment.close()


def wait_started(result: Any) -> int:
    """The pid of the prefork child running ``result``'s task (task_track_started reports it)."""
    deadline = time.monotonic() + 20
    while result.state != "STARTED":
        assert time.monotonic() < deadline, f"the task never started: {result.state}"
        time.sleep(0.05)
    return int(result.info["pid"])


def test_a_killed_prefork_child_is_reported_as_worker_lost(prefork: Deployment) -> None:
    with prefork.tracing.span("caller") as caller:
        result = prefork.producer.send_task("itest.sleep", args=(30,))
    os.kill(wait_started(result), signal.SIGKILL)  # the OOM killer, say
    with pytest.raises(Exception) as raised:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(raised.value).__name__ == "WorkerLostError"
    spans = prefork.trace(caller, 3)
    send = only(spans, "send itest.sleep")
    lost = only(spans, "worker lost itest.sleep")
    assert lost.service == "worker" and lost.parent_id == send.span_id
    assert lost.is_error and lost.tags["error.kind"] == "WorkerLostError"
    assert lost.tags["celery.terminated"] is True and lost.tags["celery.state"] == "FAILURE"
    assert lost.tags["messaging.message.id"] == result.id
    assert not [s for s in spans if s.operation == "run itest.sleep"]  # died with the child


def reject_in(prefork: Deployment) -> tuple[Any, Any]:
    """Send ``itest.reject`` under a caller span; return (caller, result) once it failed."""
    with prefork.tracing.span("caller") as caller:
        result = prefork.producer.send_task("itest.reject", args=("malformed payload",))
    with pytest.raises(Exception) as raised:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(raised.value).__name__ == "Reject"
    return caller, result


def test_a_rejected_task_gets_a_failure_span_from_the_main_process(prefork: Deployment) -> None:
    caller, result = reject_in(prefork)
    spans = prefork.trace(caller, 4)  # caller, send, the child's run, the main process's failure
    send = only(spans, "send itest.reject")
    run = only(spans, "run itest.reject")  # the child's own span of the attempt
    assert run.service == "worker" and run.parent_id == send.span_id
    (failure,) = prefork.sink.wait_for(
        1, timeout=20,
        where=lambda s: s.operation == "failure itest.reject" and s.tags.get("messaging.message.id") == result.id,
    )
    assert failure.service == "worker"
    assert failure.is_error and failure.tags["error.kind"] == "Reject"
    assert failure.tags["celery.state"] == "FAILURE"


def test_the_reject_failure_span_sits_under_the_publish_span(prefork: Deployment) -> None:
    caller, result = reject_in(prefork)
    (failure,) = prefork.sink.wait_for(
        1, timeout=20,
        where=lambda s: s.operation == "failure itest.reject" and s.tags.get("messaging.message.id") == result.id,
    )
    spans = prefork.trace(caller, 3)
    assert failure.trace_id == caller.context.trace_id
    assert failure.parent_id == only(spans, "send itest.reject").span_id


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_revoked_task_on_solo_and_threads_pools_gets_its_run_span(pool: str) -> None:
    deployment = Deployment(pool)
    try:
        deployment.worker.wait_ready()
        task_id = str(uuid.uuid4())
        # Revoked before it is sent; reply=True: the worker has it in its revoked set.
        replies = deployment.producer.control.revoke(task_id, reply=True, timeout=10)
        assert replies, "the worker did not answer the revoke"
        with deployment.tracing.span("caller") as caller:
            revoked = deployment.producer.send_task("itest.add", args=(1, 2), task_id=task_id)
            kept = deployment.producer.send_task("itest.add", args=(2, 3))
        assert kept.get(timeout=RESULT_TIMEOUT) == 5
        spans = deployment.trace(caller, 5)
        send = next(s for s in spans if s.operation == "send itest.add" and s.tags["messaging.message.id"] == task_id)
        runs = {s.tags["messaging.message.id"]: s for s in spans if s.operation == "run itest.add"}
        assert set(runs) == {task_id, kept.id}
        run = runs[task_id]
        assert run.service == "worker" and run.parent_id == send.span_id
        assert run.tags["celery.state"] == "REVOKED"
        assert runs[kept.id].tags["celery.state"] == "SUCCESS"
        assert revoked.state == "REVOKED"
    finally:
        code = deployment.close()
    assert code == 0
