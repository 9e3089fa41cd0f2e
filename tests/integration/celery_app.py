"""The Celery app the integration tests' worker runs: ``celery -A tests.integration.celery_app worker``.

Configured from the environment the test sets (broker, result backend, queue, Jaeger
agent port). The manager and the instrumentation exist only in the worker process
(``ITEST_CELERY_WORKER=1``), the way a service would set them up at import time.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from tests.integration._celery_util import configure

app = Celery("itest")
configure(
    app,
    os.environ.get("CELERY_BROKER_URL", "memory://"),
    os.environ.get("CELERY_RESULT_BACKEND", "cache+memory://"),
    os.environ.get("ITEST_CELERY_QUEUE", "itest"),
)

tracing = None
if os.environ.get("ITEST_CELERY_WORKER") == "1":
    from aiecs_tracing import TracingManager
    from aiecs_tracing.integrations.celery import install_celery_tracing

    # SERVICE_NAME, JAEGER_AGENT_HOST/PORT from the environment; the process default manager.
    tracing = TracingManager(schedule_delay_millis=200)
    install_celery_tracing(app)


def _traced(name: str):
    """The service's own decorated code: a child of whatever span is current."""
    if tracing is None:
        return lambda func: func
    return tracing.with_tracing(name)


@_traced("inner.compute")
def compute(x: int) -> int:
    return x * 10


@app.task(name="itest.add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="itest.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task(name="itest.work")
def work(x: int) -> int:
    """Calls decorated code: its span must join the task's span."""
    return compute(x)


@app.task(name="itest.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(name="itest.flaky", bind=True, max_retries=5)
def flaky(self, fail_times: int) -> int:
    if self.request.retries < fail_times:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries} failed"), countdown=0)
    return self.request.retries


@app.task(name="itest.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="itest.fetch")
def fetch(url: str) -> int:
    """An instrumented httpx call from inside the task."""
    import httpx

    from aiecs_tracing.integrations.httpx import instrument_httpx_client

    with instrument_httpx_client(httpx.Client(timeout=10)) as client:
        return client.get(url).status_code


@app.task(name="itest.note")
def note(value: object) -> str:
    """An old-style errback target: called with the failed task's id."""
    return str(value)
