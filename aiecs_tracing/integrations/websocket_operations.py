"""The WebSocketManager's outgoing operations: a PRODUCER span per broadcast, send and heartbeat.

- ``websocket broadcast`` / ``websocket send_to_user`` / ``websocket notify_user`` per call,
  with ``websocket.recipients``: the sends that went out on traced connections during the
  call (counted by a :class:`~.websocket_connection.SendTally`), or, when none were seen,
  the size of the manager's registry (``active_connections``/``connections``/
  ``user_connections``/``clients``).
- ``websocket heartbeat``: one per beat. A ``send_heartbeat`` that sends through
  ``broadcast_message``/``send_to_user`` gets one span per such call (so a heartbeat *loop*
  yields a span per beat); one that writes to connections directly gets one span for the call.

:class:`OperationTracer` builds the wrappers; ``websocket.py`` installs them on the manager.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..core.instrumentation import (
    OPERATION_SEND,
    Span,
    SpanKind,
    attach,
    detach,
    guarded,
    guarded_hook,
    start_span,
)
from ..core.manager import TracingManager
from .websocket_connection import MAX_NAME_LENGTH, SendTally

__all__ = ["OperationTracer"]

_REGISTRY_ATTRS = ("active_connections", "connections", "user_connections", "clients")
_HEARTBEAT_GUARD = guarded("websocket heartbeat")
_MANAGER_OPS = {
    "broadcast_message": "broadcast",
    "send_to_user": "send_to_user",
    "notify_user": "notify_user",
}


class _Heartbeat:
    """Set while ``send_heartbeat`` runs: did an operation inside it take the heartbeat's span?"""

    __slots__ = ("spanned",)

    def __init__(self) -> None:
        self.spanned = False


_heartbeat: contextvars.ContextVar[_Heartbeat | None] = contextvars.ContextVar(
    "aiecs_tracing_ws_heartbeat", default=None
)


def _operation_attributes(op: str) -> dict[str, Any]:
    return {
        "component": "websocket",
        "messaging.system": "websocket",
        "messaging.operation.type": OPERATION_SEND,
        "messaging.operation.name": op,
        "websocket.operation": op,
    }


def _registry_count(manager: Any, user_id: Any = None) -> int | None:
    for attr in _REGISTRY_ATTRS:
        registry = getattr(manager, attr, None)
        if registry is None or isinstance(registry, (str, bytes)):
            continue
        if isinstance(registry, Mapping):
            values = [registry.get(user_id)] if user_id is not None else list(registry.values())
            total = 0
            for value in values:
                if value is None:
                    continue
                total += len(value) if isinstance(value, (set, frozenset, list, tuple, Mapping)) else 1
            return total
        if user_id is None and isinstance(registry, (set, frozenset, list, tuple)):
            return len(registry)
    return None


def _record_recipients(otel: Any, tally: SendTally, registry: int | None) -> None:
    if tally.ok or tally.failed:
        recipients = tally.ok
    else:
        recipients = registry if registry is not None else 0
    otel.set_attribute("websocket.recipients", recipients)
    otel.set_attribute("messaging.batch.message_count", recipients)
    if tally.failed:
        otel.set_attribute("websocket.send_failures", tally.failed)
    if registry is not None:
        otel.set_attribute("websocket.connections", registry)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else None


class OperationTracer:
    """Wrappers for one manager's ``broadcast_message``/``send_to_user``/``notify_user``/``send_heartbeat``.

    ``resolve`` gives the tracing manager to use for a call, or ``None`` to call through
    untraced (not installed any more, or tracing off).
    """

    def __init__(self, manager: Any, resolve: Callable[[], TracingManager | None]) -> None:
        self.manager = manager
        self.resolve = resolve

    def wrappers(self) -> dict[str, Callable[..., Any]]:
        """A wrapper for each of those methods the manager has as a coroutine function."""
        wrappers: dict[str, Callable[..., Any]] = {}
        for method, op in _MANAGER_OPS.items():
            original = getattr(self.manager, method, None)
            if inspect.iscoroutinefunction(original):
                wrappers[method] = self.wrap_operation(op, original)
        heartbeat = getattr(self.manager, "send_heartbeat", None)
        if inspect.iscoroutinefunction(heartbeat):
            wrappers["send_heartbeat"] = self.wrap_heartbeat(heartbeat)
        return wrappers

    def wrap_operation(self, op: str, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self

        @functools.wraps(original)
        async def operation(*args: Any, **kwargs: Any) -> Any:
            t = state.resolve()
            if t is None:
                return await original(*args, **kwargs)
            begun = state.operation_begin(t, op, args, kwargs)
            if begun is None:
                return await original(*args, **kwargs)
            span, tally, tokens = begun
            error: BaseException | None = None
            result: Any = None
            try:
                result = await original(*args, **kwargs)
                return result
            except BaseException as exc:
                error = exc
                raise
            finally:
                state.operation_end(t, op, args, kwargs, span, tally, tokens, error, result)

        return operation

    @guarded_hook("websocket operation")
    def operation_begin(
        self, t: TracingManager, op: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Span, SendTally, tuple[Any, ...]]:
        attrs = _operation_attributes(op)
        name = "websocket " + op
        hb = _heartbeat.get()
        hb_token = None
        if hb is not None:
            hb.spanned = True
            name = "websocket heartbeat"
            hb_token = _heartbeat.set(None)  # nested operations keep their own names
        message: Any = None
        if op == "broadcast":
            message = _arg(args, kwargs, 0, "message")
        elif op == "send_to_user":
            attrs["user.id"] = str(_arg(args, kwargs, 0, "user_id"))
            message = _arg(args, kwargs, 1, "message")
        elif op == "notify_user":
            attrs["user.id"] = str(_arg(args, kwargs, 1, "user_id"))
            task_id = _arg(args, kwargs, 2, "task_id")
            step = _arg(args, kwargs, 3, "step")
            if task_id is not None:
                attrs["websocket.task_id"] = str(task_id)
            if type(step) in (int, str):
                attrs["websocket.step"] = step
        if isinstance(message, Mapping):
            kind = message.get("type")
            if type(kind) is str:
                attrs["websocket.message.kind"] = kind[:MAX_NAME_LENGTH]
        span = start_span(t, name, attrs, SpanKind.PRODUCER, None)
        token = attach(t, span)
        tally, tally_token = SendTally.begin()
        return span, tally, (token, tally_token, hb_token)

    @guarded_hook("websocket operation")
    def operation_end(
        self, t: TracingManager, op: str, args: tuple[Any, ...], kwargs: dict[str, Any], span: Span,
        tally: SendTally, tokens: tuple[Any, ...], error: BaseException | None, result: Any,
    ) -> None:
        token, tally_token, hb_token = tokens
        SendTally.end(tally_token)
        if hb_token is not None:
            _heartbeat.reset(hb_token)
        detach(t, token)
        otel = span.otel_span
        user_id = None
        if op == "send_to_user":
            user_id = _arg(args, kwargs, 0, "user_id")
        elif op == "notify_user":
            user_id = _arg(args, kwargs, 1, "user_id")
        _record_recipients(otel, tally, _registry_count(self.manager, user_id))
        if op == "notify_user" and result is not None:
            proceed = getattr(result, "proceed", None)
            if isinstance(proceed, bool):
                otel.set_attribute("websocket.confirmation.proceed", proceed)
            feedback = getattr(result, "feedback", None)
            if isinstance(feedback, str) and feedback:
                otel.set_attribute("websocket.confirmation.feedback", feedback[:256])
        if error is not None:
            span.record_exception(error)
        span.finish()

    def wrap_heartbeat(self, original: Callable[..., Any]) -> Callable[..., Any]:
        state = self

        @functools.wraps(original)
        async def send_heartbeat(*args: Any, **kwargs: Any) -> Any:
            t = state.resolve()
            if t is None:
                return await original(*args, **kwargs)
            start = time.time_ns()
            hb = _Heartbeat()
            hb_token = _heartbeat.set(hb)
            tally, tally_token = SendTally.begin()
            error: BaseException | None = None
            try:
                return await original(*args, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                SendTally.end(tally_token)
                _heartbeat.reset(hb_token)
                if not hb.spanned:  # it wrote to connections itself: one span for the call
                    with _HEARTBEAT_GUARD:
                        attrs = _operation_attributes("heartbeat")
                        span = start_span(t, "websocket heartbeat", attrs, SpanKind.PRODUCER, None, start_time=start)
                        _record_recipients(span.otel_span, tally, _registry_count(state.manager))
                        if error is not None:
                            span.record_exception(error)
                        span.finish()

        return send_heartbeat
