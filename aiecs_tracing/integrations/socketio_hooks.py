"""python-socketio: the wrappers set on a server's dispatch methods, async or sync alike.

Each wrapped method is bracketed by a ``begin`` (before the call: ``None`` lets it pass
through untouched) and an ``end`` (after it, whatever happens), both guarded hooks that
never raise; :class:`~.socketio_spans.ServerSpans` does the span work inside them. The
bracket is shared by the async and the sync wrapper: only the two shells (one awaits)
differ.

``emit`` runs inside ``send`` (named ``send`` then) and inside ``call`` (whose own span
covers the emit, so none is made for it): a context variable tells the inner ``emit``.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..core.instrumentation import guarded_hook

if TYPE_CHECKING:
    from ..core.manager import TracingManager
    from .socketio_spans import ServerSpans

__all__ = ["HOOKED_METHODS", "server_hooks"]

#: The server methods wrapped, on the instance only.
HOOKED_METHODS = ("_handle_connect", "_trigger_event", "_handle_event_internal", "emit", "send", "call")
_SEND = "send"
_SUPPRESS = "suppress"

# _SEND inside Server.send, _SUPPRESS inside Server.call (its own span covers the emit).
_emit_mode: contextvars.ContextVar[str | None] = contextvars.ContextVar("aiecs_tracing_socketio_emit", default=None)

Begin = Callable[[tuple[Any, ...], dict[str, Any]], Any]
End = Callable[[Any, BaseException | None], None]


class _Bracket:
    """What the async and the sync wrapper share: ``begin`` before the call, ``end`` after it."""

    __slots__ = ("end", "begun")

    def __init__(self, begin: Begin, end: End, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.end = end
        self.begun = begin(args, kwargs)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.begun is not None:
            self.end(self.begun, exc)


def _around(original: Callable[..., Any], begin: Begin, end: End, is_async: bool) -> Callable[..., Any]:
    """Wrap ``original`` in ``begin``/``end`` (see the module docstring), keeping its kind."""
    if is_async:

        async def async_hook(*args: Any, **kwargs: Any) -> Any:
            with _Bracket(begin, end, args, kwargs):
                return await original(*args, **kwargs)

        return functools.wraps(original)(async_hook)

    def hook(*args: Any, **kwargs: Any) -> Any:
        with _Bracket(begin, end, args, kwargs):
            return original(*args, **kwargs)

    return functools.wraps(original)(hook)


def server_hooks(
    spans: ServerSpans, orig: dict[str, Callable[..., Any]], is_async: bool
) -> dict[str, Callable[..., Any]]:
    """The wrappers of a server's dispatch methods (see :data:`HOOKED_METHODS`), by name."""

    def traced(kind: str, start: Callable[..., Any], finish: Callable[..., None]) -> tuple[Begin, End]:
        """A begin/end pair: ``start(t, args, kwargs)`` under the active manager ``t`` (none:
        pass through), ``finish(t, started, error)`` after the call."""

        @guarded_hook(kind)
        def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            t = spans.manager()
            if t is None:
                return None
            return t, start(t, args, kwargs)

        @guarded_hook(kind)
        def end(begun: Any, error: BaseException | None) -> None:
            t, started = begun
            finish(t, started, error)

        return begin, end

    # _handle_connect(eio_sid, namespace, data)
    def start_connect(t: TracingManager, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return spans.connect_begin(t, *args, **kwargs)

    # _trigger_event(event, namespace, *args): the connect handler's sid, the disconnect handler
    def start_disconnect(t: TracingManager, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return spans.disconnect_begin(t, args[1], args[2:])

    # _handle_event_internal(server, sid, eio_sid, data, namespace, id)
    def start_event(t: TracingManager, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _server, sid, _eio_sid, data, namespace, ack_id = args
        return spans.event_begin(t, sid, data, namespace, ack_id)

    connect_begin, connect_end = traced("socketio connect", start_connect, spans.connect_end)
    disconnect_begin, trigger_end = traced("socketio disconnect", start_disconnect, spans.disconnect_end)
    event_begin, event_end = traced("socketio event", start_event, spans.event_end)

    @guarded_hook("socketio disconnect")
    def trigger_begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        event = args[0]
        if event == "connect":
            spans.on_connect_event(args[1], args[2:])
            return None
        if event != "disconnect":
            return None
        return disconnect_begin(args, kwargs)

    # emit / call: a PRODUCER span, current while the message goes out (call: until the reply)
    def emit_begin(op: str) -> Begin:
        @guarded_hook("socketio emit")
        def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            name = op
            if op == "emit":
                mode = _emit_mode.get()
                if mode == _SUPPRESS:
                    return None  # inside call(), whose span covers this emit
                if mode == _SEND:
                    name = _SEND
            t = spans.manager()
            if t is None:
                return None
            return t, spans.emit_begin(t, name, args, kwargs), _emit_mode.set(_SUPPRESS) if op == "call" else None

        return begin

    @guarded_hook("socketio emit")
    def emit_end(begun: Any, error: BaseException | None) -> None:
        t, inner, mode = begun
        if mode is not None:
            _emit_mode.reset(mode)
        spans.emit_end(t, inner, error)

    # send(): an emit named "send"
    def send_begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return _emit_mode.set(_SEND)

    def send_end(token: Any, error: BaseException | None) -> None:
        _emit_mode.reset(token)

    return {
        "_handle_connect": _around(orig["_handle_connect"], connect_begin, connect_end, is_async),
        "_trigger_event": _around(orig["_trigger_event"], trigger_begin, trigger_end, is_async),
        "_handle_event_internal": _around(orig["_handle_event_internal"], event_begin, event_end, is_async),
        "emit": _around(orig["emit"], emit_begin("emit"), emit_end, is_async),
        "send": _around(orig["send"], send_begin, send_end, is_async),
        "call": _around(orig["call"], emit_begin("call"), emit_end, is_async),
    }
