"""``ml-service``: the downstream model service the worker calls over HTTP.

Its own process and its own tracing manager, exporting over OTLP/HTTP
(``OTEL_EXPORTER_OTLP_ENDPOINT``) where the API and worker use Jaeger UDP: one trace,
two transports. Requests can ask it to fail (``"fail": true`` gives a 500 from a failed
inference) or to be still warming up (a 503 until the caller's ``attempt`` reaches
``warmup_attempts``), which is how the demo shows errors and Celery retries.

Run: ``python -m aiecs_tracing.demo.ml_service --fd N`` (or ``--host H --port P``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import BaseModel

from .common import configure_logging, make_tracing, run_service

MODEL = "aiecs-small-2"


class InferenceError(RuntimeError):
    """The demo's deliberate model failure."""


class InferenceRequest(BaseModel):
    texts: list[str] = []
    labels: list[str] = []
    fail: bool = False
    warmup_attempts: int = 0
    attempt: int = 0


def create_app() -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from aiecs_tracing.integrations.asgi import TracingMiddleware

    tracing = make_tracing()
    configure_logging(tracing)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        tracing.close_tracer()

    app = FastAPI(title="ml-service", lifespan=lifespan)
    app.add_middleware(
        TracingMiddleware, tracing=tracing, excluded_urls=["^/healthz$"]
    )  # joins the caller's trace

    async def infer(task: str, request: InferenceRequest) -> dict[str, Any]:
        tags = {
            "gen_ai.operation.name": task,
            "gen_ai.request.model": MODEL,
            "ml.batch_size": len(request.texts),
        }
        with tracing.span(f"{task} {MODEL}", tags=tags) as span:
            with tracing.span("tokenize", tags={"ml.texts": len(request.texts)}):
                tokens = sum(len(t.split()) for t in request.texts)
                await asyncio.sleep(random.uniform(0.003, 0.01))
            span.set_tag("gen_ai.usage.input_tokens", tokens)
            await asyncio.sleep(random.uniform(0.04, 0.12))
            if request.fail:
                raise InferenceError("CUDA out of memory: tried to allocate 2.00 GiB (batch too large)")
            span.set_tag("gen_ai.usage.output_tokens", 64)
        return {"model": MODEL, "tokens": tokens}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/{task}")
    async def run(task: str, request: InferenceRequest) -> Any:
        if task not in ("summarize", "classify", "embed"):
            return JSONResponse({"detail": f"unknown task {task!r}"}, status_code=404)
        if request.attempt < request.warmup_attempts:
            return JSONResponse(
                {"detail": f"{MODEL} is still loading"}, status_code=503, headers={"Retry-After": "1"}
            )
        try:
            result = await infer(task, request)
        except InferenceError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=500)
        if task == "summarize":
            result["summary"] = " ".join(t[:40] for t in request.texts)[:200]
        elif task == "classify":
            result["label"] = (request.labels or ["other"])[0]
        return result

    return app


def main(argv: list[str] | None = None) -> None:
    run_service(create_app, __doc__, 8001, argv)


if __name__ == "__main__":
    main()
