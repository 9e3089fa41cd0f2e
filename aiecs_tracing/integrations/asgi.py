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

Nothing here imports a web framework; ``starlette`` is looked at lazily, only to
recognise a ``Mount``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..core.instrumentation import (
    NEW_TRACE,
    REDACTED,
    SENSITIVE_HEADERS,
    SENSITIVE_QUERY_PARAMS,
    Span,
    SpanKind,
    active_manager,
    attach,
    detach,
    guarded,
    integration_secret_keys,
    is_sensitive_header,
    is_sensitive_param,
    redact_query,
    report_error,
    scrub_text,
    set_attributes,
    span_context_fields,
    start_span,
)
from ..core.manager import TracingManager
from ._contract import Installation, install_once, installation_of, uninstall_installed

if TYPE_CHECKING:
    from types import FrameType

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

logger = logging.getLogger("aiecs_tracing")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage", b"uber-trace-id"})
_CACHE_MAX = 4096
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_FRAMEWORK = "asgi"  # the marker's name, shared with the FastAPI installer
_STACK_GUARD = guarded("asgi middleware stack lookup")
_MATCH_GUARD = guarded("asgi route match")



def _normalize_patterns(patterns: str | Iterable[str] | None) -> re.Pattern[str] | None:
    if not patterns:
        return None
    if isinstance(patterns, str):
        patterns = [p for p in (p.strip() for p in patterns.split(",")) if p]
    items = [p if isinstance(p, str) else p.pattern for p in patterns]
    if not items:
        return None
    return re.compile("|".join(f"(?:{p})" for p in items))


def _header_set(names: Iterable[str] | None) -> dict[bytes, str]:
    """Allow-list of header names -> the attribute suffix (``x-request-id`` -> ``x_request_id``)."""
    out: dict[bytes, str] = {}
    for name in names or ():
        lowered = name.strip().lower()
        if lowered:
            out[lowered.encode("latin-1")] = lowered
    return out


_mount_class: Any = None


def _is_mount(route: Any) -> bool:
    global _mount_class
    if _mount_class is None:
        try:
            from starlette.routing import Mount

            _mount_class = Mount
        except ImportError:  # not a guard: starlette not installed, nothing can be a Mount
            _mount_class = type("_NoMount", (), {})
    return isinstance(route, _mount_class)


def _app_building_its_stack() -> Any:
    """The Starlette/FastAPI app whose ``build_middleware_stack`` is constructing this middleware.

    ``app.add_middleware(TracingMiddleware, ...)`` gives the middleware no reference to the
    app, and FastAPI (>= 0.130) decides whether to trace a request natively before it builds
    the stack for the first request, but reads that decision after: looking up one caller's
    frame is the only moment to switch its native tracing off in time, so that even the first
    request after startup (without a lifespan) is one trace with one server span. Anything
    unexpected returns None and the middleware falls back to deciding on the first request.
    """
    with _STACK_GUARD:  # never let the lookup break the app's start
        frame: FrameType | None = sys._getframe(2)  # this helper <- __init__ <- the caller that built us
        for _ in range(3):  # tolerate a wrapper or two (Middleware.__iter__, a factory)
            if frame is None:
                return None
            if frame.f_code.co_name == "build_middleware_stack":
                return frame.f_locals.get("self")
            frame = frame.f_back
    return None


def disable_fastapi_native_tracing(app: Any) -> bool:
    """Turn off the request spans of FastAPI's native telemetry for ``app``; True if it changed.

    Duck-typed on ``app._telemetry`` (FastAPI >= 0.130), so it is a no-op for Starlette,
    older FastAPI versions and any other ASGI app.
    """
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict) and config.get("tracing"):
        config["tracing"] = False
        logger.info(
            "aiecs_tracing: FastAPI's native request tracing is off for this app; TracingMiddleware "
            "traces its requests (pass fastapi_native_tracing=True to keep both)"
        )
        return True
    return False


def _attach(tracing: TracingManager, span: Span) -> object | None:
    try:
        return attach(tracing, span)
    except Exception as exc:  # the request goes on, untraced below this point
        report_error("asgi attach", exc)
        return None


class TracingMiddleware:
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
        self.request_headers = _header_set(capture_request_headers)
        self.response_headers = _header_set(capture_response_headers)
        if traceresponse is True:
            formats: frozenset[str] = frozenset({"w3c"})
        elif not traceresponse:
            formats = frozenset()
        elif isinstance(traceresponse, str):
            formats = frozenset({traceresponse.lower()})
        else:
            formats = frozenset(f.lower() for f in traceresponse)
        self.traceresponse_w3c = bool(formats & {"w3c", "tracecontext", "traceresponse"})
        self.traceresponse_jaeger = "jaeger" in formats
        self.websocket_message_spans = websocket_message_spans
        self.component = component
        self.fastapi_native_tracing = fastapi_native_tracing
        self._seen_app: Any = None
        self.light_spans = True
        self._routes: dict[int, tuple[Any, str, str, str, dict[str, str]]] = {}
        self._origins: dict[tuple[str, bytes], tuple[dict[str, Any], str]] = {}
        building = _app_building_its_stack()
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

    # --- shared pieces ----------------------------------------------------------------
    def _request_attributes(self, scope: Scope, method: str, ws: bool) -> tuple[dict[str, Any], dict[str, str] | None]:
        """Start attributes of the server span and the propagation headers (or ``None``)."""
        carrier: dict[str, str] | None = None
        headers = scope.get("headers") or ()
        # Browsers send a dozen headers: index them in C, and look at names only when one of ours
        # is there (a repeated header keeps its last value, as the loop this replaces did).
        by_name = dict(headers)
        host = by_name.get(b"host")
        user_agent = by_name.get(b"user-agent")
        if not _PROPAGATION_HEADERS.isdisjoint(by_name) or b"\nuberctx-" in b"\n" + b"\n".join(by_name):
            carrier = {
                key.decode("latin-1"): value.decode("latin-1")
                for key, value in by_name.items()
                if key in _PROPAGATION_HEADERS or key[:8] == b"uberctx-"
            }
        scheme = scope.get("scheme") or ("ws" if ws else "http")
        origin = self._origins.get((scheme, host)) if host is not None else None
        if origin is None:
            origin = self._origin(scheme, host, scope)
        base, prefix = origin
        attributes = base.copy()
        path = scope.get("path") or "/"
        attributes["url.path"] = path
        attributes["http.method"] = method
        if method in _KNOWN_METHODS:
            attributes["http.request.method"] = method
        else:
            attributes["http.request.method"] = "_OTHER"
            attributes["http.request.method_original"] = method
        url = prefix + scope.get("root_path", "") + path
        query = scope.get("query_string")
        if query:
            text = redact_query(query.decode("latin-1"))
            attributes["url.query"] = text
            url = f"{url}?{text}"
        attributes["http.url"] = url
        version = scope.get("http_version")
        if version and version != "1.1":  # HTTP/1.1 is the default reading; h2/h3 is the news
            attributes["network.protocol.version"] = version
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        if user_agent is not None:
            attributes["user_agent.original"] = user_agent.decode("latin-1")
        if self.request_headers:
            self._capture(headers, self.request_headers, "http.request.header.", attributes)
        return attributes, carrier

    def _origin(self, scheme: str, host: bytes | None, scope: Scope) -> tuple[dict[str, Any], str]:
        """(constant attributes, ``scheme://host[:port]``) for a Host header, cached per value."""
        port: int | None = None
        if host is not None:
            text = host.decode("latin-1")
            if text.startswith("["):  # [::1]:8000
                end = text.find("]")
                address, rest = text[1:end], text[end + 1 :]
                if rest.startswith(":") and rest[1:].isdigit():
                    port = int(rest[1:])
            else:
                address, _, port_text = text.partition(":")
                if port_text.isdigit():
                    port = int(port_text)
            if port is None:
                port = _DEFAULT_PORTS.get(scheme)
        else:
            server = scope.get("server")
            address, port = (str(server[0]), server[1]) if server else ("", None)
        base: dict[str, Any] = {"component": self.component, "url.scheme": scheme, "server.address": address}
        if port is not None:
            base["server.port"] = port
        netloc = f"[{address}]" if ":" in address else address
        if port is not None and port != _DEFAULT_PORTS.get(scheme):
            netloc = f"{netloc}:{port}"
        origin = (base, f"{scheme}://{netloc}")
        if host is not None:
            if len(self._origins) >= _CACHE_MAX:
                self._origins.clear()
            self._origins[(scheme, host)] = origin
        return origin

    @staticmethod
    def _capture(headers: Iterable[tuple[bytes, bytes]], allow: dict[bytes, str], prefix: str, into: dict[str, Any]) -> None:
        found: dict[str, list[str]] = {}
        for key, value in headers:
            name = allow.get(key.lower())
            if name is not None:
                # credentials whole; any other value scrubbed (a referer's query, a URL's userinfo)
                text = REDACTED if is_sensitive_header(name) else scrub_text(
                    value.decode("latin-1"), integration_secret_keys()
                )
                found.setdefault(name, []).append(text)
        for name, values in found.items():
            into[prefix + name] = values

    def _route_name(self, scope: Scope, method: str, root_path: str) -> tuple[str | None, str]:
        """(route template or None, span name) for the route the router matched."""
        route = scope.get("route")
        if route is None:
            route = self._match_route(scope)
            if route is None:
                return None, method
        current_root = scope.get("root_path", "")
        cached = self._routes.get(id(route))
        if cached is None or cached[0] is not route or cached[1] != current_root or cached[2] != root_path:
            cached = self._route_template(route, current_root, root_path)
            if cached is None:
                return None, method
        template, names = cached[3], cached[4]
        span_name = names.get(method)
        if span_name is None:  # one string per (route, method), not one per request
            span_name = names[method] = f"{method} {template}"
        return template, span_name

    def _route_template(
        self, route: Any, current_root: str, root_path: str
    ) -> tuple[Any, str, str, str, dict[str, str]] | None:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            return None
        # a Mount on the way moved its (concrete) prefix from the path into root_path
        prefix = current_root[len(root_path) :] if current_root.startswith(root_path) else ""
        template = (f"{prefix}/{{path}}" if _is_mount(route) else f"{prefix}{path}") or "/"
        entry: tuple[Any, str, str, str, dict[str, str]] = (route, current_root, root_path, template, {})
        if len(self._routes) >= _CACHE_MAX:
            self._routes.clear()
        self._routes[id(route)] = entry
        return entry

    @staticmethod
    def _match_route(scope: Scope) -> Any:
        """The router's match when a middleware in between copied the scope (rare, uncached)."""
        router = getattr(scope.get("app"), "router", None)
        routes = getattr(router, "routes", None)
        if not routes:
            return None
        with _MATCH_GUARD:
            for route in routes:
                match, _ = route.matches(scope)
                if getattr(match, "name", "") == "FULL":
                    return route
        return None

    def _continue_from(self, tracing: TracingManager, carrier: dict[str, str] | None) -> Any:
        if carrier is None:
            return NEW_TRACE
        return tracing.extract_span_context(carrier) or NEW_TRACE

    def _response_trace_headers(self, span: Span, headers: list[tuple[bytes, bytes]]) -> None:
        # The same strings the propagator writes; W3C's response header is named traceresponse.
        formats = ("tracecontext",) * self.traceresponse_w3c + ("jaeger",) * self.traceresponse_jaeger
        written = span_context_fields(span, formats)
        if "traceparent" in written:
            headers.append((b"traceresponse", written["traceparent"].encode()))
        if "uber-trace-id" in written:
            headers.append((b"uber-trace-id", written["uber-trace-id"].encode()))

    def _set_outcome(self, span: Span, scope: Scope, name: str, root_path: str, code: int) -> None:
        """Routing has happened by now: name the span by the route, record the status, once."""
        template, span_name = self._route_name(scope, name, root_path)
        outcome: dict[str, Any] = {"http.response.status_code": code, "http.status_code": code}
        if template is not None:
            outcome["http.route"] = template
            span.set_operation_name(span_name)
        if code >= 500:
            outcome["error.type"] = str(code)
        set_attributes(span, outcome)  # our own plain values
        if code >= 500:
            span.set_status_error(f"HTTP {code}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("app") is not self._seen_app:
            self._adopt_app(scope.get("app"))
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                tracing = active_manager(self.tracing)
                if tracing is not None and not self._excluded(scope):
                    await self._websocket(tracing, scope, receive, send)
                    return
            await self.app(scope, receive, send)  # lifespan and anything else: untouched
            return
        tracing = active_manager(self.tracing)
        if tracing is None or (self.excluded is not None and self._excluded(scope)):
            await self.app(scope, receive, send)
            return
        # the HTTP path is inlined here: one coroutine less per request
        method = scope.get("method") or "GET"
        name = method if method in _KNOWN_METHODS else "HTTP"
        root_path = scope.get("root_path", "")
        try:
            attributes, carrier = self._request_attributes(scope, method, False)
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
        set_outcome = self._set_outcome

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
                        self._capture(message.get("headers") or (), self.response_headers, "http.response.header.", captured)
                        otel.set_attributes(captured)
                    if self.traceresponse_w3c or self.traceresponse_jaeger:
                        headers = list(message.get("headers") or ())
                        self._response_trace_headers(span, headers)
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

    # --- WebSocket ----------------------------------------------------------------------
    async def _websocket(self, tracing: TracingManager, scope: Scope, receive: Receive, send: Send) -> None:
        from .asgi_websocket import serve_websocket  # the module imports this one

        await serve_websocket(self, tracing, scope, receive, send)


class _StackInstallation(Installation):
    """:class:`TracingMiddleware` added to a Starlette/FastAPI app's middleware list."""

    def __init__(self, app: Any, tracing: TracingManager | None, options: dict[str, Any]) -> None:
        self.app = app
        self.tracing = tracing
        self.options = options

    def install(self) -> _StackInstallation:
        app = self.app
        if not self.options.get("fastapi_native_tracing", False):
            disable_fastapi_native_tracing(app)  # now, so not even the first request is traced twice
        if not any(getattr(m, "cls", None) is TracingMiddleware for m in app.user_middleware):
            app.add_middleware(TracingMiddleware, tracing=self.tracing, **self.options)
        return self

    def retarget(self, tracing: Any) -> None:  # the middleware list is read when the app starts
        self.tracing = tracing
        for middleware in self.app.user_middleware:
            if getattr(middleware, "cls", None) is TracingMiddleware and "tracing" in getattr(middleware, "kwargs", {}):
                middleware.kwargs["tracing"] = tracing

    def uninstall(self) -> None:
        app = self.app
        kept = [m for m in app.user_middleware if getattr(m, "cls", None) is not TracingMiddleware]
        if len(kept) != len(app.user_middleware):
            app.user_middleware[:] = kept
            app.middleware_stack = None


def install_asgi_tracing(app: Any, tracing: TracingManager | None = None, **options: Any) -> Any:
    """Trace ``app``; returns the app to serve. Idempotent.

    A Starlette/FastAPI app (one with ``add_middleware``) gets :class:`TracingMiddleware`
    added to its middleware list (before it starts serving) and is returned; any other ASGI
    app is returned wrapped in the middleware. ``options`` are the middleware's.
    """
    if isinstance(app, TracingMiddleware):
        return app
    if callable(getattr(app, "add_middleware", None)) and isinstance(getattr(app, "user_middleware", None), list):
        install_once(app, _FRAMEWORK, tracing, lambda: _StackInstallation(app, tracing, options).install())
        return app
    return TracingMiddleware(app, tracing, **options)


def uninstall_asgi_tracing(app: Any) -> Any:
    """Undo :func:`install_asgi_tracing`: the app without the middleware (before it starts). Idempotent."""
    if isinstance(app, TracingMiddleware):
        return app.app
    if installation_of(app, _FRAMEWORK) is not None:
        uninstall_installed(app, _FRAMEWORK)
    elif isinstance(getattr(app, "user_middleware", None), list):  # added by hand: removed all the same
        _StackInstallation(app, None, {}).uninstall()
    return app
