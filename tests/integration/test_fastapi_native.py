"""FastAPI >= 0.130 traces requests itself; with TracingMiddleware the decision is made when
the app builds its middleware stack, so even the very first request after startup (no
lifespan to announce the app) is one trace with one server span.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from aiecs_tracing import TracingManager
from aiecs_tracing.integrations.asgi import TracingMiddleware
from tests.integration._web_util import UvicornServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def app_with_native_tracing(tracing: TracingManager, **middleware: object) -> FastAPI:
    # FastAPI's native tracing on, through this manager's provider (no process-global state)
    app = FastAPI(telemetry={"tracer_provider": tracing.provider}) if has_native_telemetry() else FastAPI()

    @app.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        with tracing.span("handler-work"):
            return {"item": item}

    app.add_middleware(TracingMiddleware, tracing=tracing, **middleware)
    return app


@pytest.mark.parametrize("lifespan", ["off", "on"])
def test_first_request_after_startup_is_one_trace_with_one_server_span(lifespan: str) -> None:
    tracing = TracingManager("native-off", exporter="memory", set_global_provider=False, set_default_manager=False)
    try:
        with UvicornServer(app_with_native_tracing(tracing), lifespan=lifespan) as server:
            for n in range(2):
                assert httpx.get(f"{server.url}/items/{n}", headers={"uber-trace-id": f"{n + 1:x}ab:1:0:1"}).status_code == 200
        assert tracing.flush(timeout=5)
        spans = tracing.exporter.get_finished_spans()
    finally:
        tracing.close_tracer()
    names = sorted(span.name for span in spans)
    assert names == ["GET /items/{item}"] * 2 + ["handler-work"] * 2, names  # no FastAPI spans, first request too
    for n in range(2):
        trace = [s for s in spans if s.context.trace_id == n + 1 << 8 | 0xAB]
        server, = [s for s in trace if s.name == "GET /items/{item}"]
        work, = [s for s in trace if s.name == "handler-work"]
        assert server.parent.span_id == 1 and work.parent.span_id == server.context.span_id


def test_native_tracing_kept_when_asked() -> None:
    tracing = TracingManager("native-on", exporter="memory", set_global_provider=False, set_default_manager=False)
    try:
        with UvicornServer(app_with_native_tracing(tracing, fastapi_native_tracing=True), lifespan="off") as server:
            assert httpx.get(f"{server.url}/items/a").status_code == 200
        assert tracing.flush(timeout=5)
        names = {span.name for span in tracing.exporter.get_finished_spans()}
    finally:
        tracing.close_tracer()
    if has_native_telemetry():
        assert {"GET /items/{item}", "handler-work", "fastapi.endpoint"} <= names, names
    else:  # an older FastAPI (the oldest supported is 0.100) has none: the option changes nothing
        assert names == {"GET /items/{item}", "handler-work"}, names


def has_native_telemetry() -> bool:
    import inspect

    return "telemetry" in inspect.signature(FastAPI.__init__).parameters
