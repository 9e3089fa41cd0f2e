"""ASGI middleware: a SERVER span per HTTP request and per WebSocket connection.

Pure ASGI (no ``BaseHTTPMiddleware``), so streaming responses, background tasks and
lifespan behave exactly as without it. Works with any ASGI app; with Starlette/FastAPI the
span is named by the matched route template (``GET /tasks/{task_id}``), read from
``scope["route"]`` once the router has run, never by the raw path.

    app.add_middleware(TracingMiddleware, tracing=tracing)
    app = install_asgi_tracing(app, tracing)   # the same, or the middleware around any other ASGI app

Why no span per ASGI message: OpenTelemetry's middleware adds two ``http send`` spans per
GET, which triple the span volume and cost without telling anyone anything. Here one
request is one span; a WebSocket gets one span per connection plus (switchable) one per
message, measuring the message's handling rather than the idle wait before it.

Cost: the request's span is a light span (:mod:`aiecs_tracing.core.light`), the same OpenTelemetry span
(same provider, sampler, ids, processors and exporter) without the SDK ``Span`` object's
locks and re-validation of attributes that are plain already; ``bench/asgi.py`` measures it
beside ``opentelemetry-instrumentation-fastapi``. WebSocket connections and messages use the
core's regular spans.

Nothing here imports a web framework. The module's parts, each importing only those before it:
:mod:`.asgi_types` (the ASGI shapes), :mod:`.asgi_request` (what a request's server span says),
:mod:`.asgi_websocket` (WebSocket connections), :mod:`.asgi_install` (the hosting app's
middleware list and FastAPI's native tracing), then this module (the middleware and its installer).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..core.instrumentation import (
    NEW_TRACE,
    SENSITIVE_HEADERS,
    SENSITIVE_QUERY_PARAMS,
    SpanKind,
    active_manager,
    attach,
    detach,
    is_sensitive_param,
    redact_query,
    report_error,
    start_span,
)
from ..core.manager import TracingManager
from .asgi_install import (
    app_building_its_stack,
    disable_fastapi_native_tracing,
    has_middleware_stack,
    install_on_stack,
    uninstall_from_stack,
)
from .asgi_request import KNOWN_METHODS, RequestSpans
from .asgi_types import ASGIApp, Message, Receive, Scope, Send
from .asgi_websocket import serve_websocket

__all__ = [
    "TracingMiddleware",
    "install_asgi_tracing",
    "uninstall_asgi_tracing",
    "SENSITIVE_HEADERS",
    "SENSITIVE_QUERY_PARAMS",
    "redact_query",
    "is_sensitive_param",
    "disable_fastapi_native_tracing",
]


def _normalize_patterns(patterns: str | Iterable[str] | None) -> re.Pattern[str] | None:
    if not patterns:
        return None
    if isinstance(patterns, str):
        patterns = [p for p in (p.strip() for p in patterns.split(",")) if p]
    items = [p if isinstance(p, str) else p.pattern for p in patterns]
    if not items:
        return None
    return re.compile("|".join(f"(?:{p})" for p in items))


class TracingMiddleware(RequestSpans):
    """Trace every HTTP request and WebSocket connection that reaches ``app``.

    An HTTP request's span is a light span (:mod:`aiecs_tracing.core.light`) (the same span, exported the
    same way, for about half the cost of the SDK's); ``light_spans = False`` on an
    instance or subclass falls back to the core's regular spans.

    Options:
      ``tracing``: the manager (default: the process default, looked up per request, so
      the middleware may be installed before the manager exists).
      ``excluded_urls``: regular expressions (or one comma-separated string) searched in the
      request path; matching requests get no span (health checks, metrics scrapes).
      ``capture_request_headers`` / ``capture_response_headers``: allow-lists of header names
      recorded as ``http.request.header.<name>`` / ``http.response.header.<name>``;
      credentials (:data:`SENSITIVE_HEADERS`) are always ``[REDACTED]``.
      ``traceresponse``: add the W3C ``traceresponse`` header to responses (opt-in), so a
      caller can find the server's span; ``"jaeger"`` (or ``("w3c", "jaeger")``) also adds
      ``uber-trace-id`` for jaeger-client callers.
      ``websocket_message_spans``: a child span per WebSocket message (default on).
      ``component``: the legacy ``component`` tag (``"fastapi"`` via ``instrument_fastapi``).
      ``fastapi_native_tracing``: keep FastAPI's own request spans (off by default: they
      would duplicate this middleware's, see :meth:`_adopt_app`).
    """

    def __init__(
        self,
        app: ASGIApp,
        tracing: TracingManager | None = None,
        *,
        excluded_urls: str | Iterable[str] | None = None,
        capture_request_headers: Iterable[str] | None = None,
        capture_response_headers: Iterable[str] | None = None,
        traceresponse: bool | str | Iterable[str] = False,
        websocket_message_spans: bool = True,
        component: str = "asgi",
        fastapi_native_tracing: bool = False,
    ) -> None:
        self.app = app
        self.tracing = tracing
        self.excluded = _normalize_patterns(excluded_urls)
        super().__init__(
            capture_request_headers=capture_request_headers,
            capture_response_headers=capture_response_headers,
            traceresponse=traceresponse,
            websocket_message_spans=websocket_message_spans,
            component=component,
        )
        self.fastapi_native_tracing = fastapi_native_tracing
        self._seen_app: Any = None
        self.light_spans = True
        building = app_building_its_stack()  # called from here: it counts frames
        if building is not None:  # decide about FastAPI's own spans now, before its first request
            self._adopt_app(building)

    def _excluded(self, scope: Scope) -> bool:
        return self.excluded is not None and self.excluded.search(scope.get("path", "")) is not None

    def _adopt_app(self, app: Any) -> None:
        """First sight of the app serving us (lifespan or first request): one tracer per request.

        FastAPI >= 0.130 traces requests natively through the global tracer provider, which
        a TracingManager installs: every request would get a second SERVER span (in a new
        trace when the caller sent only ``uber-trace-id``) plus operation spans. This
        middleware does that job, so the app's native *tracing* is switched off (its
        metrics and logs are left alone) unless ``fastapi_native_tracing=True``.
        """
        self._seen_app = app
        if not self.fastapi_native_tracing:
            try:
                disable_fastapi_native_tracing(app)
            except Exception as exc:
                report_error("asgi fastapi native tracing", exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("app") is not self._seen_app:
            self._adopt_app(scope.get("app"))
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                tracing = active_manager(self.tracing)
                if tracing is not None and not self._excluded(scope):
                    await serve_websocket(self, self.app, tracing, scope, receive, send)
                    return
            await self.app(scope, receive, send)  # lifespan and anything else: untouched
            return
        tracing = active_manager(self.tracing)
        if tracing is None or (self.excluded is not None and self._excluded(scope)):
            await self.app(scope, receive, send)
            return
        # the HTTP path is inlined here: one coroutine less per request
        method = scope.get("method") or "GET"
        name = method if method in KNOWN_METHODS else "HTTP"
        root_path = scope.get("root_path", "")
        try:
            attributes, carrier = self.request_attributes(scope, method, False)
            remote = tracing.extract_span_context(carrier) if carrier is not None else None
            span = start_span(
                tracing, name, attributes, SpanKind.SERVER, remote if remote is not None else NEW_TRACE,
                fast=self.light_spans,
            )
        except Exception as exc:
            report_error("asgi request start", exc)
            span = None
        if span is None:
            await self.app(scope, receive, send)
            return

        status = 0
        trailers = False
        otel = span.otel_span
        set_outcome = self.set_outcome

        async def traced_send(message: Message) -> None:
            nonlocal status, trailers
            kind = message["type"]
            if kind == "http.response.body":
                if message.get("more_body", False) or trailers:
                    await send(message)
                    return
            elif kind == "http.response.start":
                try:
                    status = message["status"]
                    trailers = bool(message.get("trailers", False))
                    set_outcome(span, scope, name, root_path, status)
                    if self.response_headers:
                        captured: dict[str, Any] = {}
                        self.capture_headers(message.get("headers") or (), self.response_headers, "http.response.header.", captured)
                        otel.set_attributes(captured)
                    if self.traceresponse_w3c or self.traceresponse_jaeger:
                        headers = list(message.get("headers") or ())
                        self.response_trace_headers(span, headers)
                        message = {**message, "headers": headers}
                except Exception as exc:
                    report_error("asgi response start", exc)
                await send(message)
                return
            elif kind == "http.response.trailers":
                if message.get("more_trailers", False):
                    await send(message)
                    return
            elif kind != "http.response.pathsend":
                await send(message)
                return
            # the last message of the response: the request is complete once it is sent
            try:
                await send(message)
            except BaseException as exc:
                span.record_exception(exc)
                span.finish()
                raise
            span.finish()

        try:
            token = attach(tracing, span)
        except Exception as exc:  # the request goes on, untraced below this point
            report_error("asgi attach", exc)
            token = None
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            if not span.finished:
                try:
                    if not status:
                        set_outcome(span, scope, name, root_path, 500)
                    span.record_exception(exc)
                except Exception as err:
                    report_error("asgi request error", err)
                span.finish()
            raise
        finally:
            if token is not None:
                detach(tracing, token)
        if not span.finished:
            if not status:
                # the app returned without a response: the server answers 500 on its own
                try:
                    set_outcome(span, scope, name, root_path, 500)
                    otel.set_attribute("error.type", "incomplete_response")
                    span.set_status_error("the application returned without sending a response")
                except Exception as exc:
                    report_error("asgi request end", exc)
            span.finish()


def install_asgi_tracing(app: Any, tracing: TracingManager | None = None, **options: Any) -> Any:
    """Trace ``app``; returns the app to serve. Idempotent.

    A Starlette/FastAPI app (one with ``add_middleware``) gets :class:`TracingMiddleware`
    added to its middleware list (before it starts serving) and is returned; any other ASGI
    app is returned wrapped in the middleware. ``options`` are the middleware's.
    """
    if isinstance(app, TracingMiddleware):
        return app
    if has_middleware_stack(app):
        install_on_stack(app, TracingMiddleware, tracing, options)
        return app
    return TracingMiddleware(app, tracing, **options)


def uninstall_asgi_tracing(app: Any) -> Any:
    """Undo :func:`install_asgi_tracing`: the app without the middleware (before it starts). Idempotent."""
    if isinstance(app, TracingMiddleware):
        return app.app
    uninstall_from_stack(app, TracingMiddleware)
    return app
