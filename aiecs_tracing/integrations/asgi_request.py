"""What an ASGI request's SERVER span says, shared by the HTTP and WebSocket paths.

:class:`RequestSpans` is the base of :class:`~aiecs_tracing.integrations.asgi.TracingMiddleware`:
the options that shape a server span (captured headers, ``traceresponse``, the ``component``
tag) and what is worked out from a request with them: its start attributes and propagation
headers, its name by the matched route template, its outcome, and the response trace headers.
Kept apart from the middleware so that the WebSocket half (:mod:`.asgi_websocket`) builds on it
without importing the middleware.

Nothing here imports a web framework; ``starlette`` is looked at lazily, only to recognise a
``Mount``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..core.instrumentation import (
    NEW_TRACE,
    REDACTED,
    Span,
    guarded,
    integration_secret_keys,
    is_sensitive_header,
    redact_query,
    scrub_text,
    set_attributes,
    span_context_fields,
)
from ..core.manager import TracingManager
from .asgi_types import Scope

__all__ = ["KNOWN_METHODS", "RequestSpans"]

#: the methods a span is named by; any other is named ``HTTP`` and recorded as ``_OTHER``
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage", b"uber-trace-id"})
_CACHE_MAX = 4096
_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_MATCH_GUARD = guarded("asgi route match")


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


class RequestSpans:
    """The options that shape a server span, and the span's parts worked out from a request.

    Per-instance caches (one entry per Host header value and per matched route) keep the
    strings built once; each is bounded and cleared when full.
    """

    def __init__(
        self,
        *,
        capture_request_headers: Iterable[str] | None = None,
        capture_response_headers: Iterable[str] | None = None,
        traceresponse: bool | str | Iterable[str] = False,
        websocket_message_spans: bool = True,
        component: str = "asgi",
    ) -> None:
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
        self._routes: dict[int, tuple[Any, str, str, str, dict[str, str]]] = {}
        self._origins: dict[tuple[str, bytes], tuple[dict[str, Any], str]] = {}

    def request_attributes(self, scope: Scope, method: str, ws: bool) -> tuple[dict[str, Any], dict[str, str] | None]:
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
        if method in KNOWN_METHODS:
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
            self.capture_headers(headers, self.request_headers, "http.request.header.", attributes)
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
    def capture_headers(headers: Iterable[tuple[bytes, bytes]], allow: dict[bytes, str], prefix: str, into: dict[str, Any]) -> None:
        """Record the ``allow``-listed headers as ``<prefix><name>`` lists, never a credential in clear."""
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

    def route_name(self, scope: Scope, method: str, root_path: str) -> tuple[str | None, str]:
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

    def continue_from(self, tracing: TracingManager, carrier: dict[str, str] | None) -> Any:
        """The caller's span context from the propagation headers, else a new trace."""
        if carrier is None:
            return NEW_TRACE
        return tracing.extract_span_context(carrier) or NEW_TRACE

    def response_trace_headers(self, span: Span, headers: list[tuple[bytes, bytes]]) -> None:
        """Append the opted-in ``traceresponse`` / ``uber-trace-id`` headers, so a caller finds ``span``."""
        # The same strings the propagator writes; W3C's response header is named traceresponse.
        formats = ("tracecontext",) * self.traceresponse_w3c + ("jaeger",) * self.traceresponse_jaeger
        written = span_context_fields(span, formats)
        if "traceparent" in written:
            headers.append((b"traceresponse", written["traceparent"].encode()))
        if "uber-trace-id" in written:
            headers.append((b"uber-trace-id", written["uber-trace-id"].encode()))

    def set_outcome(self, span: Span, scope: Scope, name: str, root_path: str, code: int) -> None:
        """Routing has happened by now: name the span by the route, record the status, once."""
        template, span_name = self.route_name(scope, name, root_path)
        outcome: dict[str, Any] = {"http.response.status_code": code, "http.status_code": code}
        if template is not None:
            outcome["http.route"] = template
            span.set_operation_name(span_name)
        if code >= 500:
            outcome["error.type"] = str(code)
        set_attributes(span, outcome)  # our own plain values
        if code >= 500:
            span.set_status_error(f"HTTP {code}")
