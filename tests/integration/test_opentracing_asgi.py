"""OpenTracing code inside a traced FastAPI service (uvicorn, real sockets): the handler's
``opentracing.global_tracer().start_active_span`` nests under the middleware's server span, the
server span is ``scope_manager.active.span``, and httpx, Celery and decorated spans started
inside the OpenTracing scope are its children."""

from __future__ import annotations

import httpx
import opentracing
import pytest
from celery import Celery
from fastapi import FastAPI

from aiecs_tracing.integrations.asgi import TracingMiddleware
from aiecs_tracing.integrations.celery import install_celery_tracing, uninstall_celery_tracing
from tests.integration._celery_util import new_queue_name
from tests.integration._web_util import UvicornServer, app_with_traced_client, wait_spans
from tests.wire import make_manager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def service(tracing, celery_app: Celery) -> FastAPI:
    app, state = app_with_traced_client(tracing)

    @tracing.with_tracing("decorated.lookup")
    async def lookup(item_id: int) -> int:
        return item_id * 2

    @celery_app.task(name="ot.enrich")
    def enrich(x: int) -> int:
        return x + 1

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        tracer = opentracing.global_tracer()
        server_span = tracer.scope_manager.active.span  # the middleware's server span, seen by OpenTracing
        seen = server_span.context.span_id
        with tracer.start_active_span("handler.work", tags={"item": item_id}) as scope:
            scope.span.set_baggage_item("tenant", "acme")
            doubled = await lookup(item_id)
            inner = (await state["client"].get(f"{state['url']}/inner")).json()
            enriched = enrich.delay(doubled).get()
        return {"seen": seen, "doubled": doubled, "enriched": enriched, "inner": inner}

    @app.get("/inner")
    async def inner_route():
        span = opentracing.global_tracer().active_span
        return {"active": span.context.span_id, "tenant": span.get_baggage_item("tenant")}

    app.add_middleware(TracingMiddleware, tracing=tracing)
    app.state.urls = state
    return app


def test_opentracing_in_a_fastapi_handler_nests_under_the_server_span(sink):
    saved = opentracing.tracer, opentracing.is_tracer_registered
    opentracing.tracer, opentracing.is_tracer_registered = opentracing.Tracer(), False
    tracing = make_manager(sink, "ot-api", set_global_opentracing=True)
    celery_app = Celery("ot", broker="memory://", backend="cache+memory://", set_as_current=False)
    celery_app.conf.update(task_default_queue=new_queue_name("ot"), task_always_eager=True)
    install_celery_tracing(celery_app, tracing)
    try:
        assert opentracing.global_tracer() is tracing.opentracing_tracer
        app = service(tracing, celery_app)
        with UvicornServer(app) as server:
            app.state.urls["url"] = server.url
            response = httpx.get(f"{server.url}/items/21", timeout=10)
            assert response.status_code == 200, response.text
            body = response.json()
            spans = wait_spans(tracing, sink, 6, timeout=15)
        by_name = {s.operation: s for s in spans}
        assert len(spans) == 6, spans
        server = by_name["GET /items/{item_id}"]
        assert body == {"seen": server.span_id, "doubled": 42, "enriched": 43,
                        "inner": {"active": by_name["GET /inner"].span_id, "tenant": "acme"}}
        work = by_name["handler.work"]
        assert work.parent_id == server.span_id and work.trace_id == server.trace_id
        assert work.tags["item"] == 21
        assert by_name["decorated.lookup"].parent_id == work.span_id
        assert by_name["run ot.enrich"].parent_id == work.span_id
        client = by_name["GET"]
        assert client.parent_id == work.span_id and client.kind == "client"
        assert by_name["GET /inner"].parent_id == client.span_id
        assert {s.trace_id for s in spans} == {server.trace_id}
    finally:
        uninstall_celery_tracing(celery_app)
        tracing.close_tracer()
        assert opentracing.tracer is not tracing.opentracing_tracer  # close_tracer() put the default back
        opentracing.tracer, opentracing.is_tracer_registered = saved
