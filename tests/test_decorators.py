"""The four decorators on every kind of callable: spans, tags, errors, current span."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from aiecs_tracing import TracingManager


@pytest.fixture
def tracing():
    t = TracingManager("deco", exporter="memory", set_global_provider=False, set_default_manager=False)
    yield t
    t.close_tracer()


def finished(t):
    t.flush()
    return t.exporter.get_finished_spans()


def by_name(t, name):
    spans = [s for s in finished(t) if s.name == name]
    assert len(spans) == 1, [s.name for s in finished(t)]
    return spans[0]


def test_sync_async_generator_asyncgen_each_make_one_span(tracing):
    @tracing.with_tracing("f_sync")
    def f_sync(x):
        return x + 1

    @tracing.with_tracing("f_async")
    async def f_async(x):
        await asyncio.sleep(0)
        return x * 2

    @tracing.with_tracing("f_gen")
    def f_gen(n):
        for i in range(n):  # noqa: UP028 - a real generator body, on purpose
            yield i

    @tracing.with_tracing("f_agen")
    async def f_agen(n):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    async def consume():
        return [i async for i in f_agen(3)]

    assert f_sync(1) == 2
    assert asyncio.run(f_async(2)) == 4
    assert list(f_gen(3)) == [0, 1, 2]
    assert asyncio.run(consume()) == [0, 1, 2]
    names = sorted(s.name for s in finished(tracing))
    assert names == ["f_agen", "f_async", "f_gen", "f_sync"]
    for span in finished(tracing):
        assert span.attributes["success"] is True


def test_wrapped_function_keeps_name_signature_and_kind(tracing):
    async def original(a: int, b: str = "x") -> str:
        """Docs."""
        return b * a

    wrapped = tracing.with_tracing("op")(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Docs."
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert inspect.iscoroutinefunction(wrapped)

    def gen():
        yield 1

    assert inspect.isgeneratorfunction(tracing.with_tracing("g")(gen))

    async def agen():
        yield 1

    assert inspect.isasyncgenfunction(tracing.with_tracing("ag")(agen))


def test_user_exception_is_reraised_unchanged_and_span_marked(tracing):
    err = KeyError("missing")

    @tracing.trace_tool_execution("kit", "explode")
    def explode():
        raise err

    with pytest.raises(KeyError) as caught:
        explode()
    assert caught.value is err
    span = by_name(tracing, "kit.explode")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error"] is True
    assert span.attributes["error.kind"] == "KeyError"
    assert span.attributes["tool.success"] is False
    assert any(e.name == "exception" and "Traceback" in e.attributes["exception.stacktrace"] for e in span.events)


def test_async_exception_and_generator_exception(tracing):
    class Boom(Exception):
        pass

    @tracing.with_tracing("agen_fail")
    async def agen_fail():
        yield 1
        raise Boom("late")

    async def run():
        out = []
        with pytest.raises(Boom):
            async for i in agen_fail():
                out.append(i)
        return out

    assert asyncio.run(run()) == [1]
    span = by_name(tracing, "agen_fail")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["success"] is False


def test_generator_span_covers_whole_iteration_and_is_current_only_inside(tracing):
    seen = []

    @tracing.with_tracing("producer_gen")
    def producer_gen():
        for i in range(2):
            seen.append(tracing.get_active_span().operation_name)
            yield i

    it = producer_gen()
    next(it)
    # Between steps the caller is not inside the generator's span.
    assert tracing.get_active_span() is None
    assert list(it) == [1]
    assert seen == ["producer_gen", "producer_gen"]
    assert len(finished(tracing)) == 1


def test_generator_closed_early_finishes_span_once(tracing):
    @tracing.with_tracing("endless")
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = endless()
    assert next(it) == 0
    it.close()
    span = by_name(tracing, "endless")
    assert span.attributes["generator.closed_early"] is True
    assert span.status.status_code is not StatusCode.ERROR


def test_nested_decorated_calls_are_parent_and_child(tracing):
    @tracing.with_tracing("inner")
    async def inner():
        return 1

    @tracing.with_tracing("outer")
    async def outer():
        return await inner()

    asyncio.run(outer())
    outer_span, inner_span = by_name(tracing, "outer"), by_name(tracing, "inner")
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert inner_span.context.trace_id == outer_span.context.trace_id


def test_database_decorator_tags_and_client_kind(tracing):
    @tracing.trace_database_operation("SELECT", table="tasks", query="SELECT * FROM tasks", db_system="sqlite")
    def get_tasks():
        return []

    get_tasks()
    span = by_name(tracing, "SELECT tasks")
    assert span.kind is SpanKind.CLIENT
    attrs = span.attributes
    assert attrs["db.statement.type"] == "SELECT"
    assert attrs["db.table"] == "tasks" and attrs["db.collection.name"] == "tasks"
    assert attrs["db.statement"] == attrs["db.query.text"] == "SELECT * FROM tasks"
    assert attrs["db.system"] == attrs["db.system.name"] == "sqlite"
    assert attrs["component"] == "database"


def test_db_system_is_never_invented(tracing):
    @tracing.trace_database_operation("INSERT", table="task_results")
    def save():
        return 1

    save()
    attrs = by_name(tracing, "INSERT task_results").attributes
    assert "db.system" not in attrs and "db.system.name" not in attrs


def test_db_system_from_manager_option():
    t = TracingManager("x", exporter="memory", db_system="postgresql", set_global_provider=False,
                       set_default_manager=False)

    @t.trace_database_operation("SELECT")
    def q():
        return 1

    q()
    t.flush()
    assert t.exporter.get_finished_spans()[0].attributes["db.system.name"] == "postgresql"
    t.close_tracer()


class _Response:
    def __init__(self, status_code):
        self.status_code = status_code


class _AiohttpLike:
    status = 503


def test_external_call_records_real_status(tracing):
    @tracing.trace_external_call("ml_service", endpoint="/api/predict")
    def ok():
        return _Response(201)

    @tracing.trace_external_call("notify", endpoint="/api/send")
    def unavailable():
        return _AiohttpLike()

    @tracing.trace_external_call("plain", endpoint="/x")
    def plain():
        return {"not": "a response"}

    @tracing.trace_external_call("broken", endpoint="/y")
    def broken():
        raise ConnectionError("refused")

    ok()
    unavailable()
    plain()
    with pytest.raises(ConnectionError):
        broken()
    spans = {s.name: s for s in finished(tracing)}
    assert spans["ml_service /api/predict"].attributes["http.status_code"] == 201
    assert spans["ml_service /api/predict"].kind is SpanKind.CLIENT
    assert spans["ml_service /api/predict"].attributes["peer.service"] == "ml_service"
    assert spans["notify /api/send"].attributes["http.response.status_code"] == 503
    assert spans["notify /api/send"].status.status_code is StatusCode.ERROR
    assert "http.status_code" not in spans["plain /x"].attributes
    assert "http.status_code" not in spans["broken /y"].attributes  # no invented status
    assert spans["broken /y"].status.status_code is StatusCode.ERROR


def test_tool_result_size(tracing):
    @tracing.trace_tool_execution("data_processor", "clean_data")
    async def clean(rows):
        return [r for r in rows if r]

    asyncio.run(clean([1, 0, 2]))
    attrs = by_name(tracing, "data_processor.clean_data").attributes
    assert attrs["tool.name"] == "data_processor" and attrs["tool.operation"] == "clean_data"
    assert attrs["tool.result_size"] == 2 and attrs["tool.success"] is True


def test_arguments_captured_self_skipped_secrets_redacted(tracing):
    class Service:
        @tracing.with_tracing("login")
        def login(self, user, password, *, options=None, api_key=None):
            return True

    Service().login("alice", "hunter2", options={"remember": True, "token": "abc"}, api_key="k")
    attrs = by_name(tracing, "login").attributes
    assert attrs["arg_0"] == "alice"
    assert attrs["arg_1"] == "[REDACTED]"  # positional named 'password'
    assert attrs["api_key"] == "[REDACTED]"
    assert '"token":"[REDACTED]"' in attrs["options"]
    assert "hunter2" not in str(dict(attrs))
    assert not any(v == "<Service>" for v in attrs.values())


def test_disabled_manager_decorator_is_the_function_itself():
    t = TracingManager("off", enable_tracing=False)

    def f():
        return 1

    assert t.with_tracing("f")(f) is f
    assert t.start_span("x") is None
    assert t.get_tracer_info()["enabled"] is False


def test_closed_manager_becomes_a_no_op(tracing):
    @tracing.with_tracing("after_close")
    def f():
        return 5

    tracing.close_tracer()
    tracing.close_tracer()
    assert f() == 5
    assert tracing.start_span("x") is None


def test_span_context_manager_current_and_error(tracing):
    with tracing.span("outer", tags={"k": 1}) as outer:
        assert tracing.get_active_span() is outer
        child = tracing.start_span("child")
        tracing.finish_span(child)
    with pytest.raises(RuntimeError), tracing.span("failing"):
        raise RuntimeError("x")
    spans = {s.name: s for s in finished(tracing)}
    assert spans["child"].parent.span_id == spans["outer"].context.span_id
    assert spans["failing"].status.status_code is StatusCode.ERROR
    assert tracing.get_active_span() is None


def test_finish_twice_is_harmless(tracing):
    span = tracing.start_span("twice")
    tracing.finish_span(span)
    tracing.finish_span(span, tags={"late": True})
    span.finish()
    spans = finished(tracing)
    assert len(spans) == 1 and "late" not in spans[0].attributes


def test_cancelled_coroutine_is_not_an_error(tracing):
    @tracing.with_tracing("sleeper")
    async def sleeper():
        await asyncio.sleep(10)

    async def run():
        task = asyncio.ensure_future(sleeper())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    span = by_name(tracing, "sleeper")
    assert span.attributes["cancelled"] is True
    assert span.status.status_code is not StatusCode.ERROR


def test_staticmethod_and_classmethod(tracing):
    class K:
        @tracing.with_tracing("k.s")
        @staticmethod
        def s(x):
            return x

        @tracing.with_tracing("k.c")
        @classmethod
        def c(cls, x):
            return x

    assert K.s(1) == 1 and K.c(2) == 2
    assert sorted(s.name for s in finished(tracing)) == ["k.c", "k.s"]
    assert by_name(tracing, "k.c").attributes["arg_0"] == 2


def test_internal_failures_never_reach_user_code(tracing, monkeypatch, caplog):
    from aiecs_tracing.core import guard

    def broken(*args, **kwargs):
        raise RuntimeError("tracer exploded")

    @tracing.with_tracing("guarded")
    def work(x):
        return x * 2

    @tracing.with_tracing("guarded_err")
    def fails():
        raise ValueError("user error")

    from aiecs_tracing.core import engine as engine_module

    monkeypatch.setattr(tracing.tracer, "start_span", broken)  # the SDK's span ...
    monkeypatch.setattr(engine_module, "start_light", broken)  # ... and the fast path's
    guard._reset_for_tests()
    with caplog.at_level("WARNING", logger="aiecs_tracing"):
        assert [work(i) for i in range(5)] == [0, 2, 4, 6, 8]
        with pytest.raises(ValueError, match="user error"):
            fails()
        assert tracing.start_span("manual") is None
    assert guard.error_counts()["decorator start"] == 6
    assert len([r for r in caplog.records if "decorator start" in r.getMessage()]) == 1  # logged once


def test_span_methods_swallow_bad_input(tracing):
    class Hostile:
        def __str__(self):
            raise RuntimeError("no")

        __repr__ = __str__

    span = tracing.start_span("hostile")
    span.set_tag("obj", Hostile()).set_tag("none", None).set_tag("big", 2**80).set_tag(None, 1)
    span.log_kv({"event": Hostile(), "x": Hostile()})
    span.log_kv(None)
    span.set_baggage_item("k", Hostile())
    tracing.finish_span(span, tags={"t": Hostile()}, logs={"l": [1, 2]}, error=ValueError("v"))
    attrs = by_name(tracing, "hostile").attributes
    assert attrs["obj"] == "<Hostile>" and attrs["big"] == str(2**80) and attrs["error"] is True


def test_decorating_a_bound_method_keeps_argument_names(tracing):
    class Auth:
        def login(self, user, password):
            return user

    traced_login = tracing.with_tracing("bound.login")(Auth().login)
    assert traced_login("bob", "hunter2") == "bob"
    attrs = by_name(tracing, "bound.login").attributes
    assert attrs["arg_0"] == "bob" and attrs["arg_1"] == "[REDACTED]"


def test_bare_with_tracing_decorator_names_the_span_after_the_function(tracing):
    @tracing.with_tracing
    def add_one(x):
        return x + 1

    assert add_one(1) == 2
    assert by_name(tracing, "test_bare_with_tracing_decorator_names_the_span_after_the_function.<locals>.add_one")


def test_enable_tracing_attribute_switches_tracing_off_and_on(tracing):
    @tracing.with_tracing("toggled")
    def work():
        return 1

    tracing.enable_tracing = False
    assert work() == 1 and tracing.start_span("x") is None
    assert tracing.get_tracer_info()["enabled"] is False
    tracing.enable_tracing = True
    work()
    assert [s.name for s in finished(tracing)] == ["toggled"]


def test_activate_accepts_an_opentelemetry_span(tracing):
    otel_span = tracing.tracer.start_span("foreign")
    with tracing.activate(otel_span):
        child = tracing.start_span("child")
        child.finish()
    otel_span.end()
    spans = {s.name: s for s in finished(tracing)}
    assert spans["child"].parent.span_id == spans["foreign"].context.span_id

    from aiecs_tracing.core import guard

    guard._reset_for_tests()
    assert tracing.flush("not a number") is False  # bad input: no exception, and no false success
    assert guard.error_counts()["flush"] == 1
    span = tracing.start_span("s")
    assert span.set_tags([("not", "a dict")]) is span  # still chainable
    assert guard.error_counts()["span.set_tags"] == 1
    span.finish()
    assert tracing.flush(5)
    bad = {s.name: s for s in finished(tracing)}["s"]
    assert not any(key.startswith("not") for key in bad.attributes)
