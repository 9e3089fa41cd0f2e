"""install_httpx_tracing on clients with mounted transports (``httpx.Client(mounts=...)``).

A client that routes some hosts through their own transport (a proxy, a service mesh
sidecar, a test double) must trace those requests too, and uninstalling must give each
mount its own transport back. httpx's MockTransport stands in for the mounted services:
what it receives is what the service would see.
"""

from __future__ import annotations

import asyncio
import copy

import httpx
import pytest

from aiecs_tracing.integrations.httpx import (
    AsyncTracingTransport,
    TracingTransport,
    install_httpx_tracing,
    uninstall_httpx_tracing,
)
from tests.wire import make_manager, settled

pytestmark = pytest.mark.timeout(60)


def echo_headers(service: str):
    """A mounted service that answers with the trace headers it received."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen = {k: v for k, v in request.headers.items() if k in ("traceparent", "uber-trace-id")}
        return httpx.Response(200, json={"service": service, "headers": seen})

    return handle


@pytest.fixture
def tracing(sink):
    return make_manager(sink, "mounts")  # closed after the test by tests/conftest.py


def test_requests_through_mounted_transports_are_traced_and_carry_the_context(sink, tracing) -> None:
    client = httpx.Client(
        transport=httpx.MockTransport(echo_headers("default")),
        mounts={
            "http://billing.internal": httpx.MockTransport(echo_headers("billing")),
            "http://search.internal": httpx.MockTransport(echo_headers("search")),
        },
    )
    install_httpx_tracing(client, tracing)
    with client, tracing.span("checkout") as parent:
        answers = [
            client.get(f"http://{host}/v1/items?token=secret").json()
            for host in ("billing.internal", "search.internal", "example.org")
        ]
    assert [a["service"] for a in answers] == ["billing", "search", "default"]
    spans = settled(sink, tracing)
    clients = sorted((s for s in spans if s.kind == "client"), key=lambda s: s.tags["server.address"])
    assert [s.tags["server.address"] for s in clients] == ["billing.internal", "example.org", "search.internal"]
    assert all(s.parent_id == parent.context.span_id for s in clients)
    for answer in answers:  # each service saw the span of its own request
        host = {"billing": "billing.internal", "search": "search.internal", "default": "example.org"}[answer["service"]]
        span = next(s for s in clients if s.tags["server.address"] == host)
        assert answer["headers"]["traceparent"] == f"00-{span.trace_id:032x}-{span.span_id:016x}-01"
        assert "secret" not in span.tags["url.full"]


def test_uninstall_gives_every_mount_its_own_transport_back(sink, tracing) -> None:
    billing = httpx.MockTransport(echo_headers("billing"))
    client = httpx.Client(transport=httpx.MockTransport(echo_headers("default")), mounts={"http://billing.internal": billing})
    install_httpx_tracing(client, tracing)
    install_httpx_tracing(client, tracing)  # twice: still one span per request
    with client:
        traced = client.get("http://billing.internal/x").json()
        uninstall_httpx_tracing(client)
        plain = client.get("http://billing.internal/x").json()
        default = client.get("http://example.org/x").json()
    assert "traceparent" in traced["headers"]
    assert plain["headers"] == {} and default["headers"] == {}
    spans = settled(sink, tracing)
    assert len([s for s in spans if s.kind == "client"]) == 1


def test_async_client_mounts_are_traced_too(sink, tracing) -> None:
    async def scenario() -> list[dict]:
        client = httpx.AsyncClient(
            transport=httpx.MockTransport(echo_headers("default")),
            mounts={"http://billing.internal": httpx.MockTransport(echo_headers("billing")), "http://none.internal": None},
        )
        install_httpx_tracing(client, tracing)
        async with client:
            with tracing.span("async checkout"):
                return [(await client.get(url)).json() for url in ("http://billing.internal/a", "http://example.org/b")]

    answers = asyncio.run(scenario())
    assert [a["service"] for a in answers] == ["billing", "default"]
    assert all("traceparent" in a["headers"] for a in answers)
    spans = settled(sink, tracing)
    assert len([s for s in spans if s.kind == "client"]) == 2


def test_an_unknown_method_and_a_custom_span_name(sink, tracing) -> None:
    client = install_httpx_tracing(
        httpx.Client(transport=httpx.MockTransport(echo_headers("cache"))),
        tracing,
        span_name=lambda request: f"{request.method} {request.url.path}",
    )
    with client:
        assert client.request("PURGE", "http://cache.internal/items/1").json()["service"] == "cache"
    (span,) = settled(sink, tracing)
    assert span.operation == "PURGE /items/1"
    assert span.tags["http.request.method"] == "_OTHER" and span.tags["http.request.method_original"] == "PURGE"


def test_a_traced_transport_passed_in_stays_after_uninstall(sink, tracing) -> None:
    """The user's own TracingTransport is theirs: install adds nothing, uninstall removes nothing."""
    mine = TracingTransport(httpx.MockTransport(echo_headers("default")), tracing)
    client = httpx.Client(transport=mine)
    install_httpx_tracing(client, tracing)
    uninstall_httpx_tracing(client)
    with client:
        assert "traceparent" in client.get("http://example.org/").json()["headers"]
    assert len(settled(sink, tracing)) == 1


def test_traced_transports_show_the_wrapped_transports_attributes() -> None:
    """Code that reads a transport's own attributes (a pool, a handler) still finds them."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    inner = httpx.MockTransport(handler)
    for traced in (TracingTransport(inner), AsyncTracingTransport(inner)):
        assert traced.handler is handler and traced.transport is inner
        assert copy.copy(traced).transport is inner  # copy builds the object before its __init__ ran


def test_without_a_manager_async_requests_pass_untraced() -> None:
    async def scenario() -> dict:
        transport = AsyncTracingTransport(httpx.MockTransport(echo_headers("default")))  # no default manager
        async with httpx.AsyncClient(transport=transport) as client:
            return (await client.get("http://example.org/")).json()

    assert asyncio.run(scenario())["headers"] == {}
