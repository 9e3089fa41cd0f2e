"""``aiecs-api``: the task API, as AIECS's FastAPI front end.

``POST /api/tasks`` stores the task in SQLite and sends it to the Celery worker by name
(``send_task``, as AIECS does, so the API never imports the worker's code); the worker
reports progress to ``POST /internal/progress``, which pushes a ``progress`` event over
Socket.IO to the user's room. Every step is one trace: the
HTTP middleware continues the caller's context, the Celery integration carries it in
the message headers, the httpx and Socket.IO integrations carry it on.

Run: ``python -m aiecs_tracing.demo.api --fd N`` (or ``--host H --port P``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel, Field

from .common import (
    EXECUTE_HEAVY_TASK,
    EXECUTE_TASK,
    DemoSettings,
    celery_config,
    configure_logging,
    make_tracing,
    run_service,
)
from .db import TaskStore

# Task kinds the API accepts, and the Celery task that runs each (AIECS's fast/heavy split).
TASK_KINDS = {
    "summarize": EXECUTE_TASK,
    "classify": EXECUTE_TASK,
    "analyze_document": EXECUTE_HEAVY_TASK,
}


class TaskRequest(BaseModel):
    kind: str
    user_id: str = "demo-user"
    texts: list[str] = Field(default_factory=list)
    document: str | None = None
    # Ways to make the request fail on purpose:
    fail_ml: bool = False  # ml_service answers 500
    corrupt_document: bool = False  # the document parser tool raises
    warmup_attempts: int = 0  # ml_service answers 503 that many times: Celery retries


class Progress(BaseModel):
    task_id: str
    user_id: str
    status: str
    progress: float
    message: str = ""
    result: dict[str, Any] | None = None


def create_app(settings: DemoSettings | None = None) -> Any:
    import socketio
    from celery import Celery
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from aiecs_tracing.integrations.asgi import TracingMiddleware
    from aiecs_tracing.integrations.celery import install_celery_tracing
    from aiecs_tracing.integrations.socketio import instrument_socketio

    settings = settings or DemoSettings.from_env()
    tracing = make_tracing()
    configure_logging(tracing)
    store = TaskStore(settings.db_path, tracing)

    celery_app = Celery("aiecs-api")
    celery_app.conf.update(celery_config(settings))
    install_celery_tracing(celery_app, tracing)  # PRODUCER span + context in the message headers

    sio = socketio.AsyncServer(
        async_mode="asgi", cors_allowed_origins="*", logger=False, engineio_logger=False
    )
    # Emits become PRODUCER spans of the current request's trace; a client's events, if
    # any, start traces of their own rather than joining its (long-lived) connection's.
    instrument_socketio(sio, tracing, events_in_connection_trace=False)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        tracing.close_tracer()

    api = FastAPI(title="aiecs-api", lifespan=lifespan)
    # A SERVER span per request (health checks excluded); the W3C ``traceresponse`` header
    # tells the caller which trace its request started.
    api.add_middleware(TracingMiddleware, tracing=tracing, excluded_urls=["^/healthz$"], traceresponse=True)

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "service": tracing.service_name}

    @api.post("/api/tasks", status_code=202)
    async def submit(request: TaskRequest) -> Any:
        task_name = TASK_KINDS.get(request.kind)
        if task_name is None:
            return JSONResponse({"detail": f"unknown task kind {request.kind!r}"}, status_code=400)
        task_id = str(uuid.uuid4())
        store.create_task(task_id, request.user_id, request.kind, request.model_dump())
        celery_app.send_task(task_name, kwargs={"task_id": task_id, **request.model_dump()}, task_id=task_id)
        return {"task_id": task_id, "status": "pending"}

    @api.get("/api/tasks/{task_id}")
    async def status(task_id: str) -> Any:
        row = store.get_task(task_id)
        if row is None:
            return JSONResponse({"detail": "no such task"}, status_code=404)
        return row

    @api.post("/internal/progress", status_code=204)
    async def progress(update: Progress) -> None:
        # The worker has written the row already; this only pushes to the user's browser.
        await sio.emit("progress", update.model_dump(), room=update.user_id)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None = None) -> None:
        user_id = (auth or {}).get("user_id", "demo-user")
        await sio.enter_room(sid, user_id)

    return socketio.ASGIApp(sio, other_asgi_app=api)


def main(argv: list[str] | None = None) -> None:
    run_service(create_app, __doc__, 8000, argv)


if __name__ == "__main__":
    main()
