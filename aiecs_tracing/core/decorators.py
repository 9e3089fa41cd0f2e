"""One wrapper for sync functions, coroutines, generators and async generators.

The seed's four decorators (``with_tracing``, ``trace_database_operation``,
``trace_external_call``, ``trace_tool_execution``) are presets of :func:`traced` (the last
three built here: :func:`database_operation`, :func:`external_call`, :func:`tool_execution`):
a name, static tags (the seed's and OpenTelemetry's), a span kind and a hook that reads the
result. The span is current while the
function's own code runs (for generators: only while a step runs, not while the caller
holds the iterator), covers a generator's whole iteration, is finished exactly once, and
the user's exception is re-raised as the very same object.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from .attributes import capture_arguments, result_size, sanitize_tags
from .engine import SpanEngine
from .guard import report_error
from .span import Span

ResultHook = Callable[[Span, Any], None]


def _param_names(func: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """(positional parameter names as callers pass them, whether to skip the first argument)."""
    if inspect.ismethod(func):  # already bound: ``self`` is not among the call's arguments
        names, _ = _param_names(func.__func__)
        return names[1:], False
    code = getattr(func, "__code__", None)
    if code is None:
        return (), False
    names = code.co_varnames[: code.co_argcount]
    return tuple(names), bool(names) and names[0] in ("self", "cls")


class _CallSpec:
    """What a decorated function needs per call, computed once at decoration time."""

    __slots__ = (
        "manager",
        "name",
        "attributes",
        "kind",
        "on_result",
        "success_key",
        "capture",
        "skip_first",
        "positional_names",
    )

    def __init__(
        self,
        manager: SpanEngine,
        func: Callable[..., Any],
        name: str,
        tags: Mapping[str, Any] | None,
        kind: SpanKind,
        on_result: ResultHook | None,
        success_key: str,
    ) -> None:
        config = manager.config
        self.manager = manager
        self.name = name
        self.attributes = sanitize_tags(tags, config.max_tag_value_length, config.secret_keys)
        self.kind = kind
        self.on_result = on_result
        self.success_key = success_key
        self.capture = config.capture_args
        self.positional_names, self.skip_first = _param_names(func)

    def start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
        try:
            attributes = self.attributes
            if self.capture and (args or kwargs):
                config = self.manager.config
                attributes = {
                    **attributes,
                    **capture_arguments(
                        args,
                        kwargs,
                        skip_first=self.skip_first,
                        max_length=config.max_tag_value_length,
                        max_args=config.max_args,
                        secret_keys=config.secret_keys,
                        positional_names=self.positional_names,
                    ),
                }
            return self.manager.start_fast(self.name, dict(attributes), self.kind)
        except Exception as exc:
            report_error("decorator start", exc)
            return None

    def succeed(self, span: Span, result: Any) -> None:
        try:
            span.otel_span.set_attribute(self.success_key, True)
            if self.on_result is not None:
                self.on_result(span, result)
        except Exception as exc:
            report_error("decorator result hook", exc)
        span.finish()

    def fail(self, span: Span, exc: BaseException) -> None:
        try:
            if isinstance(exc, asyncio.CancelledError):
                span.otel_span.set_attribute("cancelled", True)
            elif isinstance(exc, GeneratorExit):
                span.otel_span.set_attribute("generator.closed_early", True)
            else:
                span.otel_span.set_attribute(self.success_key, False)
                span.record_exception(exc)
        except Exception as err:
            report_error("decorator error", err)
        span.finish()


def traced(
    manager: SpanEngine,
    operation_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    on_result: ResultHook | None = None,
    success_key: str = "success",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator factory behind every tracing decorator of the manager."""

    def decorator(func: Any) -> Any:
        if isinstance(func, (staticmethod, classmethod)):
            return type(func)(decorator(func.__func__))
        if not manager.enabled:
            return func  # tracing off at decoration time: zero cost per call
        spec = _CallSpec(manager, func, operation_name or func.__qualname__, tags, kind, on_result, success_key)
        if inspect.isasyncgenfunction(func):
            return _wrap_async_generator(func, spec)
        if inspect.iscoroutinefunction(func):
            return _wrap_coroutine(func, spec)
        if inspect.isgeneratorfunction(func):
            return _wrap_generator(func, spec)
        return _wrap_function(func, spec)

    return decorator


def _wrap_function(func: Callable[..., Any], spec: _CallSpec) -> Callable[..., Any]:
    manager = spec.manager

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not manager.enabled:
            return func(*args, **kwargs)
        span = spec.start(args, kwargs)
        if span is None:
            return func(*args, **kwargs)
        token = manager.attach(span)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            spec.fail(span, exc)
            raise
        finally:
            manager.detach(token)
        spec.succeed(span, result)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Any], spec: _CallSpec) -> Callable[..., Any]:
    manager = spec.manager

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not manager.enabled:
            return await func(*args, **kwargs)
        span = spec.start(args, kwargs)
        if span is None:
            return await func(*args, **kwargs)
        token = manager.attach(span)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            spec.fail(span, exc)
            raise
        finally:
            manager.detach(token)
        spec.succeed(span, result)
        return result

    return wrapper


def _wrap_generator(func: Callable[..., Any], spec: _CallSpec) -> Callable[..., Any]:
    manager = spec.manager

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not manager.enabled:
            return (yield from func(*args, **kwargs))
        span = spec.start(args, kwargs)
        if span is None:
            return (yield from func(*args, **kwargs))
        gen = func(*args, **kwargs)
        send_value: Any = None
        pending: BaseException | None = None
        try:
            while True:
                token = manager.attach(span)
                try:
                    item = gen.throw(pending) if pending is not None else gen.send(send_value)
                except StopIteration as stop:
                    result = stop.value
                    break
                finally:
                    manager.detach(token)
                pending = None
                try:
                    send_value = yield item
                except GeneratorExit:
                    gen.close()
                    raise
                except BaseException as exc:  # thrown in by the consumer: pass it on
                    pending = exc
        except BaseException as exc:
            spec.fail(span, exc)
            raise
        spec.succeed(span, result)
        return result

    return wrapper


def _wrap_async_generator(func: Callable[..., Any], spec: _CallSpec) -> Callable[..., Any]:
    manager = spec.manager

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not manager.enabled or (span := spec.start(args, kwargs)) is None:
            async for item in func(*args, **kwargs):
                yield item
            return
        agen = func(*args, **kwargs)
        send_value: Any = None
        pending: BaseException | None = None
        try:
            while True:
                token = manager.attach(span)
                try:
                    if pending is not None:
                        item = await agen.athrow(pending)
                    else:
                        item = await agen.asend(send_value)
                except StopAsyncIteration:
                    break
                finally:
                    manager.detach(token)
                pending = None
                try:
                    send_value = yield item
                except GeneratorExit:
                    await agen.aclose()
                    raise
                except BaseException as exc:
                    pending = exc
        except BaseException as exc:
            spec.fail(span, exc)
            raise
        spec.succeed(span, None)

    return wrapper


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def database_operation(
    manager: SpanEngine, operation: str, table: str | None, query: str | None, system: str | None
) -> Decorator:
    """A CLIENT span for a database call, with the seed's tags and OpenTelemetry's."""
    tags: dict[str, Any] = {
        "component": "database",
        "db.statement.type": operation,
        "db.operation.name": operation,
    }
    if table:
        tags["db.table"] = table
        tags["db.collection.name"] = table
    if query:
        tags["db.statement"] = query
        tags["db.query.text"] = query
    if system:
        tags["db.system"] = system
        tags["db.system.name"] = system
    name = f"{operation} {table}" if table else f"db.{operation}"
    return traced(manager, name, tags, kind=SpanKind.CLIENT)


def external_call(manager: SpanEngine, service_name: str, endpoint: str | None, method: str | None) -> Decorator:
    """A CLIENT span for a call to another service; the status comes from the real response."""
    tags: dict[str, Any] = {"component": "external_call", "peer.service": service_name}
    if endpoint:
        tags["http.url"] = endpoint
        tags["url.path" if endpoint.startswith("/") else "url.full"] = endpoint
    if method:
        tags["http.method"] = method
        tags["http.request.method"] = method
    name = f"{service_name} {endpoint}" if endpoint else f"call {service_name}"
    return traced(manager, name, tags, kind=SpanKind.CLIENT, on_result=record_response_status)


def tool_execution(manager: SpanEngine, tool_name: str, operation: str) -> Decorator:
    """A span per tool run: ``tool.name``, ``tool.operation``, ``tool.success``, ``tool.result_size``."""
    tags = {
        "component": "tool",
        "tool.name": tool_name,
        "tool.operation": operation,
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool_name,
    }
    return traced(manager, f"{tool_name}.{operation}", tags, on_result=record_result_size, success_key="tool.success")


def record_response_status(span: Span, result: Any) -> None:
    """``trace_external_call``'s hook: the real status of the returned response, if any."""
    status = getattr(result, "status_code", None)
    if status is None:
        status = getattr(result, "status", None)
    if isinstance(status, bool) or not isinstance(status, int):
        return
    otel = span.otel_span
    otel.set_attribute("http.status_code", status)
    otel.set_attribute("http.response.status_code", status)
    if status >= 400:
        otel.set_attribute("success", False)
        span.set_status_error(f"HTTP {status}")
        otel.set_attribute("error.type", str(status))


def record_result_size(span: Span, result: Any) -> None:
    """``trace_tool_execution``'s hook: the size of what the tool returned."""
    size = result_size(result)
    if size is not None:
        span.otel_span.set_attribute("tool.result_size", size)
