"""``aiecs-worker``: the Celery worker that runs the API's tasks, as AIECS's ``worker.py``.

Tasks are registered under AIECS's names (``aiecs.tasks.worker.execute_task`` on the
``fast_tasks`` queue, ``execute_heavy_task`` on ``heavy_tasks``); the API sends them by
name. A task runs tools (``trace_tool_execution``), calls ``ml-service`` through an
instrumented httpx client, writes to SQLite (``trace_database_operation``) and reports
progress to the API, which pushes it to the browser over Socket.IO. A 503 from the model
service (still loading) makes the task retry, as Celery tasks do.

Run: ``python -m celery -A aiecs_tracing.demo.worker worker --pool=prefork -Q fast_tasks,heavy_tasks``.

The tracing manager is created in each pool process (``worker_process_init``), after the
fork, and flushed when the process exits; the Celery integration finds it lazily.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from celery import Celery, signals
from celery.exceptions import Retry

from aiecs_tracing import TracingManager
from aiecs_tracing.integrations.celery import install_celery_tracing
from aiecs_tracing.integrations.httpx import instrument_httpx_client

from .common import (
    EXECUTE_HEAVY_TASK,
    EXECUTE_TASK,
    DemoSettings,
    celery_config,
    configure_logging,
    make_tracing,
    watch_parent,
)
from .db import TaskStore
from .tools import ToolBox

settings = DemoSettings.from_env()
app = Celery("ai_worker")
app.conf.update(celery_config(settings))
# No manager yet: each pool process makes its own after the fork, and the integration
# looks up the process default manager at each task.
install_celery_tracing(app)


@dataclass
class _Services:
    tracing: TracingManager
    store: TaskStore
    tools: ToolBox
    http: Any


_services: _Services | None = None


def services() -> _Services:
    """This pool process's tracing manager, database, tools and HTTP client."""
    global _services
    if _services is None:
        import httpx

        tracing = make_tracing()
        configure_logging(tracing)
        http = instrument_httpx_client(httpx.Client(timeout=10.0), tracing)  # CLIENT spans + context
        _services = _Services(tracing, TaskStore(settings.db_path, tracing), ToolBox(tracing), http)
    return _services


@signals.worker_init.connect
def _on_worker_init(**_: Any) -> None:
    watch_parent()


@signals.worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    # The demo runner waits for this file before sending work.
    (settings.workdir / "worker.ready").write_text(str(os.getpid()))


@signals.worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    services()


@signals.worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    if _services is not None:
        _services.tracing.close_tracer(timeout=2.0)


def _push(
    s: _Services, task_id: str, user_id: str, status: str, progress: float, message: str, **extra: Any
) -> None:
    """Report progress to the API (which pushes it over Socket.IO); never fails the task."""
    body = {
        "task_id": task_id,
        "user_id": user_id,
        "status": status,
        "progress": progress,
        "message": message,
    }
    try:
        s.http.post(f"{settings.api_url}/internal/progress", json={**body, **extra})
    except Exception:
        pass


def _execute(
    task: Any,
    task_id: str,
    kind: str,
    user_id: str = "demo-user",
    texts: list[str] | None = None,
    document: str | None = None,
    fail_ml: bool = False,
    corrupt_document: bool = False,
    warmup_attempts: int = 0,
    **_: Any,
) -> dict[str, Any]:
    s = services()
    attempt = task.request.retries
    s.store.update_status(task_id, "running", 0.1, f"attempt {attempt + 1}")
    _push(s, task_id, user_id, "running", 0.1, f"started (attempt {attempt + 1})")
    try:
        texts = list(texts or [])
        if kind == "analyze_document":
            text = s.tools.parse_document(document or "report.pdf", corrupt=corrupt_document)
            texts += s.tools.chunk_text(text)[:4]
            model_task = "summarize"
        else:
            texts += [hit["snippet"] for hit in s.tools.search(" ".join(texts) or kind)]
            model_task = kind
        _push(s, task_id, user_id, "running", 0.5, f"calling ml-service /v1/{model_task}")
        response = s.http.post(
            f"{settings.ml_url}/v1/{model_task}",
            json={
                "texts": texts,
                "labels": ["finance", "legal", "other"],
                "fail": fail_ml,
                "warmup_attempts": warmup_attempts,
                "attempt": attempt,
            },
        )
        if response.status_code == 503 and attempt < task.max_retries:
            _push(s, task_id, user_id, "retrying", 0.5, "ml-service is loading its model; retrying")
            raise task.retry(countdown=0.3)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        s.store.save_result(task_id, result)
        s.store.update_status(task_id, "completed", 1.0, "")
        _push(s, task_id, user_id, "completed", 1.0, "done", result=result)
        return result
    except Retry:
        raise
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        s.store.update_status(task_id, "failed", 1.0, message)
        _push(s, task_id, user_id, "failed", 1.0, message)
        raise


@app.task(name=EXECUTE_TASK, bind=True, max_retries=3)
def execute_task(self: Any, task_id: str, kind: str, **kwargs: Any) -> dict[str, Any]:
    """A fast task: search, then one model call."""
    return _execute(self, task_id, kind, **kwargs)


@app.task(name=EXECUTE_HEAVY_TASK, bind=True, max_retries=3)
def execute_heavy_task(self: Any, task_id: str, kind: str, **kwargs: Any) -> dict[str, Any]:
    """A heavy task: parse and chunk a document, then summarize it."""
    return _execute(self, task_id, kind, **kwargs)
