"""The WebSocket half of :class:`~aiecs_tracing.integrations.asgi.TracingMiddleware`.

One SERVER span per connection, named by its route, current while the app runs; a CONSUMER
span per received message and a PRODUCER span per sent one (``websocket_message_spans``),
with the attribute names every WebSocket tracer of this package shares. It builds on the
middleware's :class:`~.asgi_request.RequestSpans` part and imports nothing of :mod:`.asgi`.
"""

from __future__ import annotations

from typing import Any

from ..core.instrumentation import (
    MESSAGING_BODY_SIZE,
    MESSAGING_OPERATION_TYPE,
    OPERATION_RECEIVE,
    OPERATION_SEND,
    WEBSOCKET_CLOSE_CODE,
    WEBSOCKET_CLOSE_INITIATOR,
    WEBSOCKET_CLOSE_REASON,
    WEBSOCKET_MESSAGE_SIZE,
    WEBSOCKET_MESSAGE_TYPE,
    WEBSOCKET_MESSAGES_RECEIVED,
    WEBSOCKET_MESSAGES_SENT,
    Span,
    SpanKind,
    attach,
    detach,
    is_current,
    report_error,
    start_span,
)
from ..core.manager import TracingManager
from .asgi_request import RequestSpans
from .asgi_types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["serve_websocket"]


async def serve_websocket(
    mw: RequestSpans, app: ASGIApp, tracing: TracingManager, scope: Scope, receive: Receive, send: Send
) -> None:
    """One WebSocket connection to ``app`` under the middleware ``mw``: a SERVER span for it, a span per message."""
    root_path = scope.get("root_path", "")
    try:
        attributes, carrier = mw.request_attributes(scope, "GET", True)
        attributes["network.protocol.name"] = "websocket"
        span = start_span(tracing, "WEBSOCKET", attributes, SpanKind.SERVER, mw.continue_from(tracing, carrier))
    except Exception as exc:
        report_error("asgi websocket start", exc)
        span = None
    if span is None:
        await app(scope, receive, send)
        return
    conn = _WebSocketState(mw, tracing, span, scope, root_path)
    token = _attach(tracing, span)
    try:
        await app(scope, conn.receive(receive), conn.send(send))
    except BaseException as exc:
        conn.failed(exc)
        raise
    finally:
        conn._end_received()  # its context token was attached after ours: reset it first
        if token is not None:
            detach(tracing, token)
        conn.finish()


def _attach(tracing: TracingManager, span: Span) -> object | None:
    try:
        return attach(tracing, span)
    except Exception as exc:  # the connection goes on, untraced below this point
        report_error("asgi attach", exc)
        return None


# --- one WebSocket connection ------------------------------------------------------------------
class _WebSocketState:
    """One connection: the connection span, the open received-message span, close details."""

    __slots__ = (
        "mw",
        "tracing",
        "span",
        "scope",
        "root_path",
        "recv_span",
        "recv_token",
        "close_code",
        "close_reason",
        "initiator",
        "accepted",
        "status",
        "received",
        "sent",
        "template",
    )

    def __init__(self, mw: RequestSpans, tracing: TracingManager, span: Span, scope: Scope, root_path: str):
        self.mw = mw
        self.tracing = tracing
        self.span = span
        self.scope = scope
        self.root_path = root_path
        self.recv_span: Span | None = None
        self.recv_token: object = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.initiator: str | None = None
        self.accepted = False
        self.status: int | None = None
        self.received = 0
        self.sent = 0
        self.template: str | None = None

    def _name(self) -> None:
        if self.template is not None:
            return
        template, _ = self.mw.route_name(self.scope, "WEBSOCKET", self.root_path)
        if template is not None:
            self.template = template
            self.span.set_operation_name(f"WEBSOCKET {template}")
            self.span.otel_span.set_attribute("http.route", template)

    def _message_span(self, operation: str, message: Message, kind: SpanKind, parent: Span) -> Span | None:
        data = message.get("text")
        if data is not None:
            mtype = "text"
            size = len(data) if data.isascii() else len(data.encode("utf-8", "replace"))
        else:
            mtype = "binary"
            data = message.get("bytes")
            size = len(data) if data is not None else 0
        name = f"{operation} {self.template}" if self.template else f"websocket {operation}"
        return start_span(
            self.tracing,
            name,
            {
                "component": self.mw.component,
                WEBSOCKET_MESSAGE_TYPE: mtype,
                WEBSOCKET_MESSAGE_SIZE: size,
                MESSAGING_BODY_SIZE: size,
                MESSAGING_OPERATION_TYPE: operation,
            },
            kind,
            parent,
        )

    def _end_received(self) -> None:
        recv = self.recv_span
        if recv is not None:
            self.recv_span = None
            token, self.recv_token = self.recv_token, None
            if token is not None:
                detach(self.tracing, token)
            recv.finish()

    def _closed(self, code: Any, reason: Any, initiator: str) -> None:
        if self.close_code is None:
            self.close_code = code if isinstance(code, int) else 1005
            self.close_reason = reason if isinstance(reason, str) and reason else None
            self.initiator = initiator

    def receive(self, receive: Receive) -> Receive:
        spans = self.mw.websocket_message_spans

        async def traced_receive() -> Message:
            # the app asks for the next message: it has finished handling the previous one
            if self.recv_span is not None:
                try:
                    self._end_received()
                except Exception as exc:
                    report_error("asgi websocket receive", exc)
            message = await receive()
            try:
                kind = message["type"]
                if kind == "websocket.receive":
                    self.received += 1
                    if spans:
                        self._name()
                        recv = self._message_span(OPERATION_RECEIVE, message, SpanKind.CONSUMER, self.span)
                        if recv is not None:
                            self.recv_span = recv
                            self.recv_token = attach(self.tracing, recv)
                elif kind == "websocket.disconnect":
                    self._closed(message.get("code", 1005), message.get("reason"), "client")
            except Exception as exc:
                report_error("asgi websocket receive", exc)
            return message

        return traced_receive

    def send(self, send: Send) -> Send:
        spans = self.mw.websocket_message_spans

        async def traced_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "websocket.send":
                self.sent += 1
                out = None
                if spans:
                    try:
                        self._name()
                        # a reply sent while a received message is handled (in that task) is its
                        # child; a send from anywhere else (a broadcast task) is the connection's
                        recv = self.recv_span
                        parent = recv if recv is not None and is_current(recv) else self.span
                        out = self._message_span(OPERATION_SEND, message, SpanKind.PRODUCER, parent)
                    except Exception as exc:
                        report_error("asgi websocket send", exc)
                if out is None:
                    await send(message)
                    return
                try:
                    await send(message)
                except BaseException as exc:
                    out.record_exception(exc)
                    raise
                finally:
                    out.finish()
                return
            try:
                if kind == "websocket.accept":
                    self.accepted = True
                    self.status = 101
                    self._name()
                    if self.mw.traceresponse_w3c or self.mw.traceresponse_jaeger:
                        headers = list(message.get("headers") or ())
                        self.mw.response_trace_headers(self.span, headers)
                        message = {**message, "headers": headers}
                elif kind == "websocket.close":
                    self._name()
                    if not self.accepted:
                        self.status = 403
                    self._closed(message.get("code", 1000), message.get("reason"), "server")
                elif kind == "websocket.http.response.start":
                    self._name()
                    self.status = message.get("status")
            except Exception as exc:
                report_error("asgi websocket send", exc)
            await send(message)

        return traced_send

    def failed(self, exc: BaseException) -> None:
        try:
            self._end_received()
            if self.close_code is None and self.accepted:
                self._closed(1011, None, "server")  # what the server sends after an app error
            elif not self.accepted and self.status is None:
                self.status = 500  # the handshake is answered with a 500
            self.span.record_exception(exc)
        except Exception as err:
            report_error("asgi websocket error", err)

    def finish(self) -> None:
        try:
            self._end_received()
            self._name()
            otel = self.span.otel_span
            if self.close_code is None and self.accepted:
                self._closed(1000, None, "server")  # the server closes normally when the app returns
            status = self.status if self.status is not None else (101 if self.accepted else 403)
            otel.set_attribute("http.response.status_code", status)
            otel.set_attribute("http.status_code", status)
            if self.close_code is not None:
                otel.set_attribute(WEBSOCKET_CLOSE_CODE, self.close_code)
                otel.set_attribute(WEBSOCKET_CLOSE_INITIATOR, self.initiator or "")
                if self.close_reason:
                    otel.set_attribute(WEBSOCKET_CLOSE_REASON, self.close_reason)
                if self.close_code == 1011:
                    self.span.set_status_error("WebSocket closed with 1011 (internal error)")
            otel.set_attribute(WEBSOCKET_MESSAGES_RECEIVED, self.received)
            otel.set_attribute(WEBSOCKET_MESSAGES_SENT, self.sent)
        except Exception as exc:
            report_error("asgi websocket finish", exc)
        self.span.finish()
