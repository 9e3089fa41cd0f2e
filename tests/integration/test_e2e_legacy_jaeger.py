"""End to end: a jaeger-client ("legacy") service, two FastAPI services on TracingMiddleware, one trace.

    legacy-client (jaeger_client) --uber-trace-id--> service-a  GET /orders/{order_id}
        service-a: price_order (decorated)
        service-a: httpx.AsyncClient (instrumented) --> service-b  GET /inventory/{sku}
        service-a: httpx.AsyncClient (instrumented) --> legacy-server (jaeger_client extract)
    legacy-client reads service-a's response header with jaeger_client's extract and
    continues under service-a's server span.

Every reporter (jaeger_client's own UDP reporter and ours) sends to the same fake agent,
so the assertions are on what Jaeger would store.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi import FastAPI, Request
from jaeger_client import Config
from opentracing.propagation import Format
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from aiecs_tracing.integrations.fastapi import TracingMiddleware, instrument_fastapi
from tests.integration._web_util import UvicornServer, app_with_traced_client, wait_spans
from tests.wire import make_manager

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def legacy_tracer(service: str, port: int):
    """A jaeger_client tracer as legacy AIECS services built it: const sampler, UDP agent."""
    config = Config(
        config={
            "sampler": {"type": "const", "param": 1},
            "local_agent": {"reporting_host": "127.0.0.1", "reporting_port": port},
            "reporter_flush_interval": 0.05,
            "logging": False,
        },
        service_name=service,
        validate=True,
    )
    return config.new_tracer()


def service_b(tracing) -> FastAPI:
    app = FastAPI()

    @app.get("/inventory/{sku}")
    async def inventory(sku: str, request: Request):
        return {"sku": sku, "stock": 7, "baggage": request.headers.get("baggage")}

    app.add_middleware(TracingMiddleware, tracing=tracing)
    return app


def legacy_server(tracer) -> Starlette:
    """A service still on jaeger_client: extracts the caller's context the old way."""

    async def quote(request: Request):
        parent = tracer.extract(Format.HTTP_HEADERS, dict(request.headers))
        with tracer.start_span("legacy-quote", child_of=parent, tags={"span.kind": "server"}) as span:
            return JSONResponse({"price": 12.5, "tenant": span.get_baggage_item("tenant")})

    return Starlette(routes=[Route("/quote", quote)])


def legacy_checkout(tracer, operation: str, url: str) -> tuple[httpx.Response, dict[str, str]]:
    """A jaeger_client CLIENT span with baggage ``tenant=acme`` calling ``url`` (its headers injected the old way)."""
    with tracer.start_span(operation, tags={"span.kind": "client"}) as checkout:
        checkout.set_baggage_item("tenant", "acme")
        headers: dict[str, str] = {}
        tracer.inject(checkout.context, Format.HTTP_HEADERS, headers)
        return httpx.get(url, headers=headers, timeout=10), headers


def service_a(tracing, b_url: str, legacy_url: str) -> FastAPI:
    app, state = app_with_traced_client(tracing)

    @tracing.with_tracing("price_order")
    async def price_order(order_id: int) -> float:
        await asyncio.sleep(0)
        return order_id * 1.5

    @app.get("/orders/{order_id}")
    async def order(order_id: int):
        client: httpx.AsyncClient = state["client"]
        price = await price_order(order_id)
        stock = (await client.get(f"{b_url}/inventory/sku-{order_id}")).json()
        quote = (await client.get(f"{legacy_url}/quote")).json()
        return {"order": order_id, "price": price, "stock": stock, "quote": quote}

    instrument_fastapi(app, tracing, traceresponse=("w3c", "jaeger"))
    return app


def test_legacy_jaeger_client_and_fastapi_services_share_one_trace(sink):
    tracing_a = make_manager(sink, "service-a")
    tracing_b = make_manager(sink, "service-b")
    legacy_client = legacy_tracer("legacy-client", sink.port)
    legacy_srv = legacy_tracer("legacy-server", sink.port)
    try:
        with (
            UvicornServer(service_b(tracing_b)) as b,
            UvicornServer(legacy_server(legacy_srv)) as legacy,
            UvicornServer(service_a(tracing_a, b.url, legacy.url)) as a,
        ):
            response, headers = legacy_checkout(legacy_client, "legacy-checkout", f"{a.url}/orders/3")
            assert "uber-trace-id" in headers and "traceparent" not in headers
            body = response.json()
            # the other way: jaeger_client reads service-a's span from the response headers
            server_ctx = legacy_client.extract(Format.HTTP_HEADERS, dict(response.headers))
            with legacy_client.start_span("legacy-after", child_of=server_ctx):
                pass
            for tracing in (tracing_a, tracing_b):
                tracing.flush()
        assert response.status_code == 200
        assert body["price"] == 4.5 and body["stock"]["stock"] == 7
        assert body["stock"]["baggage"] == "tenant=acme"  # legacy baggage crossed two hops
        assert body["quote"] == {"price": 12.5, "tenant": "acme"}

        spans = wait_spans(tracing_a, sink, 8, timeout=15)
        by_name = {s.operation: s for s in spans}
        assert len(spans) == 8, spans
        checkout_span = by_name["legacy-checkout"]
        a_server = by_name["GET /orders/{order_id}"]
        priced = by_name["price_order"]
        b_server = by_name["GET /inventory/{sku}"]
        quote = by_name["legacy-quote"]
        after = by_name["legacy-after"]
        clients = sorted((s for s in spans if s.operation == "GET"), key=lambda s: s.start_us)
        assert len(clients) == 2

        assert {s.trace_id for s in spans} == {checkout_span.trace_id}
        assert checkout_span.parent_id == 0 and checkout_span.service == "legacy-client"
        assert a_server.parent_id == checkout_span.span_id and a_server.service == "service-a"
        assert a_server.kind == "server" and a_server.tags["http.route"] == "/orders/{order_id}"
        assert priced.parent_id == a_server.span_id and priced.service == "service-a"
        assert all(c.parent_id == a_server.span_id and c.kind == "client" for c in clients)
        to_b, to_legacy = clients
        assert to_b.tags["url.full"] == f"{b.url}/inventory/sku-3"
        assert b_server.parent_id == to_b.span_id and b_server.service == "service-b"
        assert quote.parent_id == to_legacy.span_id and quote.service == "legacy-server"
        assert after.parent_id == a_server.span_id and after.service == "legacy-client"
        assert not any(s.is_error for s in spans)
    finally:
        tracing_a.close_tracer()
        tracing_b.close_tracer()
        close_legacy(legacy_client)
        close_legacy(legacy_srv)


def close_legacy(tracer) -> None:
    """jaeger_client's close() wants a current asyncio loop (tornado): give it one in a thread."""

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        tracer.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
