"""The decorators on generators, async generators and coroutines, at the edges a caller reaches.

A consumer that stops early, throws into the generator, or a manager switched off: the
decorated function must behave exactly as undecorated, and its span (when there is one)
must say what happened. ``trace_external_call`` with a method records it as HTTP does.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from aiecs_tracing import TracingManager
from tests.wire import make_manager, settled


class Skip(Exception):
    """What a consumer throws into a producer to skip an item."""


@pytest.fixture
def tracing(sink) -> TracingManager:
    return make_manager(sink, "decorators")  # closed after the test by tests/conftest.py


def off_manager() -> TracingManager:
    return TracingManager("off", enable_tracing=False, set_global_provider=False, set_default_manager=False)


def test_a_generator_takes_what_its_consumer_throws_in(sink, tracing) -> None:
    @tracing.with_tracing("rows")
    def rows():
        n = 0
        while n < 3:
            try:
                yield n
            except Skip:
                n += 1  # skip one
            n += 1

    gen = rows()
    assert next(gen) == 0
    assert gen.throw(Skip()) == 2  # the consumer's exception reached the producer
    assert list(gen) == []
    (span,) = settled(sink, tracing)
    assert span.operation == "rows" and not span.is_error


def test_an_async_generator_closed_early_or_thrown_into(sink, tracing) -> None:
    @tracing.with_tracing("stream")
    async def stream():
        n = 0
        while True:
            try:
                yield n
            except Skip:
                n += 10
            n += 1

    async def consume() -> list[int]:
        agen = stream()
        got = [await agen.__anext__(), await agen.athrow(Skip()), await agen.__anext__()]
        await agen.aclose()  # the consumer has enough
        return got

    assert asyncio.run(consume()) == [0, 11, 12]
    (span,) = settled(sink, tracing)
    assert span.tags["generator.closed_early"] is True and not span.is_error


def test_a_disabled_manager_leaves_every_kind_of_function_alone() -> None:
    off = off_manager()

    @off.with_tracing("coro")
    async def coro(x: int) -> int:
        return x + 1

    @off.with_tracing("gen")
    def gen(n: int):
        yield from range(n)

    @off.with_tracing("agen")
    async def agen(n: int):
        for i in range(n):
            yield i

    async def run() -> tuple[int, list[int]]:
        return await coro(1), [i async for i in agen(3)]

    assert asyncio.run(run()) == (2, [0, 1, 2])
    assert list(gen(2)) == [0, 1]


def test_a_callable_without_code_can_be_decorated(sink, tracing) -> None:
    """functools.partial (no __code__): traced, its arguments simply not named."""
    scale = tracing.with_tracing("scale")(functools.partial(lambda factor, x: factor * x, 3))
    assert scale(4) == 12
    (span,) = settled(sink, tracing)
    assert span.operation == "scale"


def test_external_call_with_a_method_records_it_and_the_response_status(sink, tracing) -> None:
    class Response:
        status_code = 503

    @tracing.trace_external_call("billing", "/charge", method="POST")
    def charge() -> Response:
        return Response()

    @tracing.trace_external_call("audit")
    def audit() -> None:
        return None

    charge()
    audit()
    spans = {s.operation: s for s in settled(sink, tracing)}
    call = spans["billing /charge"]
    assert call.tags["http.method"] == "POST" and call.tags["http.request.method"] == "POST"
    assert call.tags["http.response.status_code"] == 503 and call.is_error
    assert "http.method" not in spans["call audit"].tags and not spans["call audit"].is_error
