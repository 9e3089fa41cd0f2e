"""httpx: a CLIENT span per request, with W3C + Jaeger headers (and baggage) injected.

    client = install_httpx_tracing(httpx.AsyncClient(), tracing)   # alias: instrument_httpx_client

Per client, never global: the client's transport (and each mounted/proxy transport) is
wrapped by a tracing transport. Why a transport and not only event hooks: a request hook
cannot see a refused connection or a timeout, and a response hook cannot see a streamed
body being closed; the transport sees the request exactly as sent (after auth and once
per redirect hop), every transport error, and the response stream whose ``close()`` ends
the span. Instrumenting twice changes nothing (one span, one set of headers).

:class:`TracingTransport` / :class:`AsyncTracingTransport` can also be passed directly:
``httpx.Client(transport=TracingTransport(httpx.HTTPTransport()))``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from ..core.instrumentation import Span, SpanKind, active_manager, redact_query, report_error, start_span
from ..core.manager import TracingManager
from ._contract import Installation, install_once, require_framework, uninstall_installed

try:
    import httpx
except ImportError:  # not a guard: reported by install_httpx_tracing, which needs it
    httpx = None  # type: ignore[assignment]


def _base(name: str) -> Any:
    return getattr(httpx, name) if httpx is not None else object

__all__ = [
    "install_httpx_tracing",
    "uninstall_httpx_tracing",
    "instrument_httpx_client",
    "uninstrument_httpx_client",
    "TracingTransport",
    "AsyncTracingTransport",
    "redact_url",
]

ClientT = TypeVar("ClientT")
SpanNamer = Callable[[Any], str]
_FRAMEWORK = "httpx"

_MARK = "aiecs_tracing.traced"  # request extension: this very request already has a span
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def redact_url(url: httpx.URL) -> str:
    """``url`` without userinfo or fragment, sensitive query values as ``REDACTED``."""
    netloc = url.netloc.decode("ascii", "replace")  # host[:port], never the userinfo
    raw = url.raw_path.decode("ascii", "replace")
    path, sep, query = raw.partition("?")
    if sep:
        query = redact_query(query)
        return f"{url.scheme}://{netloc}{path}?{query}"
    return f"{url.scheme}://{netloc}{path}"


class _Tracer:
    """What both transports share: start a span for a request, finish it from the response."""

    __slots__ = ("tracing", "span_name")

    def __init__(self, tracing: TracingManager | None, span_name: SpanNamer | None) -> None:
        self.tracing = tracing
        self.span_name = span_name

    def start(self, request: httpx.Request) -> Span | None:
        tracing = active_manager(self.tracing)
        if tracing is None:
            return None
        try:
            extensions = request.extensions
            if extensions.get(_MARK) == id(request):
                return None  # an outer tracing transport already spans this request
            method = request.method
            url = request.url
            full = redact_url(url)
            scheme = url.scheme
            port = url.port or _DEFAULT_PORTS.get(scheme)
            attributes: dict[str, Any] = {
                "component": "httpx",
                "http.request.method": method if method in _KNOWN_METHODS else "_OTHER",
                "http.method": method,
                "url.full": full,
                "http.url": full,
                "server.address": url.host,
            }
            if port is not None:
                attributes["server.port"] = port
            if method not in _KNOWN_METHODS:
                attributes["http.request.method_original"] = method
            if self.span_name is not None:
                name = self.span_name(request)
            else:
                name = method if method in _KNOWN_METHODS else "HTTP"
            span = start_span(tracing, name, attributes, SpanKind.CLIENT)
            if span is None:
                return None
            tracing.inject_span_context(span, request.headers)
            extensions[_MARK] = id(request)
            return span
        except Exception as exc:
            report_error("httpx request start", exc)
            return None

    @staticmethod
    def response(span: Span, response: httpx.Response) -> None:
        try:
            otel = span.otel_span
            status = response.status_code
            otel.set_attribute("http.response.status_code", status)
            otel.set_attribute("http.status_code", status)
            version = response.extensions.get("http_version")
            if isinstance(version, bytes) and version.startswith(b"HTTP/"):
                otel.set_attribute("network.protocol.version", version[5:].decode("ascii", "replace"))
            if status >= 400:
                otel.set_attribute("error.type", str(status))
                span.set_status_error(f"HTTP {status}")
        except Exception as exc:
            report_error("httpx response", exc)

    @staticmethod
    def failed(span: Span, exc: BaseException) -> None:
        span.record_exception(exc)
        span.finish()


class _TracedSyncStream(_base("SyncByteStream")):  # type: ignore[misc]  # httpx's class, object without httpx
    """The response body; the span ends when the body is closed (read fully or not)."""

    def __init__(self, inner: httpx.SyncByteStream, span: Span) -> None:
        self._inner = inner
        self._span = span

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except Exception as exc:  # not a guard (re-raised): a timeout or a dropped connection mid-body
            self._span.record_exception(exc)
            raise

    def close(self) -> None:
        try:
            self._inner.close()
        except BaseException as exc:
            self._span.record_exception(exc)
            raise
        finally:
            self._span.finish()


class _TracedAsyncStream(_base("AsyncByteStream")):  # type: ignore[misc]  # httpx's class, object without httpx
    def __init__(self, inner: httpx.AsyncByteStream, span: Span) -> None:
        self._inner = inner
        self._span = span

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:  # not a guard (re-raised)
            self._span.record_exception(exc)
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except BaseException as exc:
            self._span.record_exception(exc)
            raise
        finally:
            self._span.finish()


class TracingTransport(_base("BaseTransport")):  # type: ignore[misc]  # httpx's class, object without httpx
    """Wraps a sync transport: one CLIENT span per request it sends."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        tracing: TracingManager | None = None,
        *,
        span_name: SpanNamer | None = None,
    ) -> None:
        self.transport = transport
        self._tracer = _Tracer(tracing, span_name)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        span = self._tracer.start(request)
        if span is None:
            return self.transport.handle_request(request)
        try:
            response = self.transport.handle_request(request)
        except BaseException as exc:
            _Tracer.failed(span, exc)
            raise
        _Tracer.response(span, response)
        if response.is_closed or not isinstance(response.stream, httpx.SyncByteStream):
            span.finish()  # a body already in memory: nothing will close it later
        else:
            response.stream = _TracedSyncStream(response.stream, span)
        return response

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> TracingTransport:
        self.transport.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.transport.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:  # the wrapped transport's own attributes (e.g. _pool)
        if name == "transport":
            raise AttributeError(name)
        return getattr(self.transport, name)


class AsyncTracingTransport(_base("AsyncBaseTransport")):  # type: ignore[misc]  # httpx's class, object without httpx
    """Wraps an async transport: one CLIENT span per request it sends."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        tracing: TracingManager | None = None,
        *,
        span_name: SpanNamer | None = None,
    ) -> None:
        self.transport = transport
        self._tracer = _Tracer(tracing, span_name)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        span = self._tracer.start(request)
        if span is None:
            return await self.transport.handle_async_request(request)
        try:
            response = await self.transport.handle_async_request(request)
        except BaseException as exc:
            _Tracer.failed(span, exc)
            raise
        _Tracer.response(span, response)
        if response.is_closed or not isinstance(response.stream, httpx.AsyncByteStream):
            span.finish()
        else:
            response.stream = _TracedAsyncStream(response.stream, span)
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> AsyncTracingTransport:
        await self.transport.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.transport.__aexit__(*exc)

    def __getattr__(self, name: str) -> Any:
        if name == "transport":
            raise AttributeError(name)
        return getattr(self.transport, name)


_WRAPPERS = (TracingTransport, AsyncTracingTransport)


class _ClientInstallation(Installation):
    """The tracing transports one ``install_httpx_tracing`` call put on one client."""

    def __init__(self, client: Any, tracing: TracingManager | None, span_name: SpanNamer | None) -> None:
        self.client = client
        self.tracing = tracing
        self.span_name = span_name
        self.wrapped: list[Any] = []  # the wrappers made here (a transport passed in already traced stays)

    def _wrap(self, wrapper: Any, transport: Any) -> Any:
        traced = wrapper(transport, self.tracing, span_name=self.span_name)
        self.wrapped.append(traced)
        return traced

    def install(self) -> _ClientInstallation:
        client = self.client
        wrapper: Any = AsyncTracingTransport if isinstance(client, httpx.AsyncClient) else TracingTransport
        try:
            if not isinstance(client._transport, _WRAPPERS):
                client._transport = self._wrap(wrapper, client._transport)
            mounts = client._mounts
            for pattern in list(mounts):
                transport = mounts[pattern]
                if transport is not None and not isinstance(transport, _WRAPPERS):
                    mounts[pattern] = self._wrap(wrapper, transport)
        except AttributeError as exc:  # a future httpx without these attributes
            report_error("httpx instrument", exc)
        return self

    def retarget(self, tracing: Any) -> None:
        self.tracing = tracing
        for traced in self.wrapped:
            traced._tracer.tracing = tracing

    def uninstall(self) -> None:
        client = self.client
        mine = {id(t) for t in self.wrapped}
        transport: Any = getattr(client, "_transport", None)
        if id(transport) in mine:
            client._transport = transport.transport
        mounts = getattr(client, "_mounts", None) or {}
        for pattern in list(mounts):
            transport = mounts[pattern]
            if id(transport) in mine:
                mounts[pattern] = transport.transport
        self.wrapped.clear()


def install_httpx_tracing(
    client: ClientT,
    tracing: TracingManager | None = None,
    *,
    span_name: SpanNamer | None = None,
) -> ClientT:
    """Trace every request ``client`` sends; returns ``client``. A second call changes nothing
    (but the manager, if given).

    ``tracing`` defaults to the process default manager, looked up per request.
    ``span_name(request) -> str`` overrides the span name (default: the method, as the
    OpenTelemetry conventions say for client spans without a URL template). Needs httpx:
    ``pip install 'aiecs-tracing[httpx]'``.
    """
    require_framework("httpx")
    if not isinstance(client, (httpx.Client, httpx.AsyncClient)):
        raise TypeError(f"install_httpx_tracing expects an httpx.Client or httpx.AsyncClient, not {type(client)!r}")
    install_once(client, _FRAMEWORK, tracing, lambda: _ClientInstallation(client, tracing, span_name).install())
    return client


def uninstall_httpx_tracing(client: ClientT) -> ClientT:
    """Undo :func:`install_httpx_tracing` (harmless on a client that was never instrumented)."""
    uninstall_installed(client, _FRAMEWORK)
    return client


#: The names before the one verb pair; they still work.
instrument_httpx_client = install_httpx_tracing
uninstrument_httpx_client = uninstall_httpx_tracing
