"""HTTP front ends: the OTLP/HTTP receiver and the Jaeger-compatible query API + UI.

Both run on the stdlib's threaded ``http.server`` with HTTP/1.1 keep-alive: one thread
per client connection is plenty for a local collector, and exporters reuse their
connection. Handlers stay thin; parsing of query parameters is done by the pure
functions at the top so they can be tested without sockets.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import socket
import threading
import time
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .jaeger_json import traces_json
from .model import normalize_trace_id
from .otlp import (
    OtlpDecodeError,
    decode_json,
    encode_response_json,
    encode_response_protobuf,
    encode_status_json,
    encode_status_protobuf,
    pack_protobuf,
)
from .packing import pack_record
from .store import DEFAULT_QUERY_LIMIT, TraceQuery

if TYPE_CHECKING:
    from .server import Collector

logger = logging.getLogger("aiecs_tracing.collector")

UI_DIR = Path(__file__).parent / "ui"
DEFAULT_TRACE_LOOKBACK_US = 2 * 24 * 3600 * 1_000_000  # Jaeger's default for /api/traces
DEFAULT_DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
GRPC_INVALID_ARGUMENT = 3
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNAVAILABLE = 14

PLACEHOLDER_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>aiecs-tracing collector</title></head>
<body><h1>aiecs-tracing collector</h1><p>The web UI files are not installed. The query API is at
<a href="/api/services">/api/services</a>, <a href="/api/stats">/api/stats</a>.</p></body></html>"""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


class ApiError(Exception):
    """A request the API refuses; rendered as Jaeger's error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- parameter parsing

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_LOOKBACK_UNITS_US = {**_DURATION_UNITS_US, "d": 86_400_000_000, "w": 7 * 86_400_000_000}
_LOOKBACK = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h|d|w)")


def parse_duration_us(text: str) -> int:
    """Go's ``time.ParseDuration`` syntax ("1.2s", "100ms", "1h30m", "500us") to µs."""
    text = text.strip()
    sign = 1
    if text[:1] in "+-" and text:
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS_US[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"invalid duration {text!r}")
    return sign * int(round(total))


def parse_lookback_us(text: str) -> int:
    """The UI's lookback values ("1h", "2d", "7d") to µs; also any Go duration."""
    match = _LOOKBACK.fullmatch(text.strip())
    if match:
        return int(float(match.group(1)) * _LOOKBACK_UNITS_US[match.group(2)])
    return parse_duration_us(text)


_LOGFMT_PAIR = re.compile(r'\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(text: str) -> dict[str, str]:
    """``error=true http.status_code=500 msg="a b"`` to a dict (what the Jaeger UI accepts)."""
    result: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LOGFMT_PAIR.match(text, position)
        if not match:
            raise ValueError(f"cannot parse tags {text!r}")
        key, value = match.group(1), match.group(2)
        if value.startswith('"'):
            value = json.loads(value)
        result[key] = value
        position = match.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return result


def parse_tags(simple_tags: list[str], json_tags: list[str]) -> dict[str, str]:
    """``tag=key:value`` params plus ``tags=`` JSON objects (or logfmt text), merged."""
    tags: dict[str, str] = {}
    for tag in simple_tags:
        key, sep, value = tag.partition(":")
        if not sep:
            raise ApiError(400, f"malformed 'tag' parameter, expecting key:value, received: {tag}")
        tags[key] = value
    for text in json_tags:
        if not text.strip():
            continue
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            tags.update({str(k): _search_text(v) for k, v in parsed.items()})
            continue
        try:
            tags.update(parse_logfmt(text))
        except ValueError as exc:
            raise ApiError(400, f"malformed 'tags' parameter: {exc}") from None
    return tags


def _search_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _first(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _int_param(params: dict[str, list[str]], name: str) -> int | None:
    text = _first(params, name).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"unable to parse param '{name}': {text!r} is not an integer") from None


def parse_trace_query(params: dict[str, list[str]], now_us: int) -> TraceQuery:
    """``/api/traces`` parameters (Jaeger's names and defaults) to a TraceQuery."""
    end = _int_param(params, "end")
    end_us = end if end is not None else now_us
    start = _int_param(params, "start")
    if start is None:
        lookback = _first(params, "lookback").strip()
        lookback_us = DEFAULT_TRACE_LOOKBACK_US
        if lookback and lookback != "custom":
            try:
                lookback_us = parse_lookback_us(lookback)
            except ValueError:
                raise ApiError(400, f"unable to parse param 'lookback': {lookback!r}") from None
        start = end_us - lookback_us
    durations: dict[str, int | None] = {}
    for name in ("minDuration", "maxDuration"):
        text = _first(params, name).strip()
        try:
            durations[name] = parse_duration_us(text) if text else None
        except ValueError:
            raise ApiError(400, f"unable to parse param '{name}': {text!r}") from None
    low, high = durations["minDuration"], durations["maxDuration"]
    if low and high and high < low:
        raise ApiError(400, "'maxDuration' should be greater than 'minDuration'")
    limit = _int_param(params, "limit")
    return TraceQuery(
        service=_first(params, "service") or None,
        operation=_first(params, "operation") or None,
        tags=parse_tags(params.get("tag", []), params.get("tags", [])),
        start_min_us=start,
        start_max_us=end_us,
        duration_min_us=low or None,
        duration_max_us=high or None,
        limit=limit if limit and limit > 0 else DEFAULT_QUERY_LIMIT,
    )


def envelope(data: Any, total: int | None = None, errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Jaeger's structuredResponse."""
    if total is None:
        total = len(data) if isinstance(data, list) else 0
    return {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}


def error_envelope(status: int, message: str) -> dict[str, Any]:
    return envelope(None, 0, [{"code": status, "msg": message}])


# --------------------------------------------------------------------------- servers


class CollectorHTTPServer(ThreadingHTTPServer):
    """Threaded server that knows its Collector and never lets one request kill it."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], collector: Collector):
        self.collector = collector
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_idle_connections(self) -> None:
        """Wake keep-alive handler threads blocked on a read so they end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("collector: request from %s failed", client_address, exc_info=True)


class _BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aiecs-tracing-collector"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this
    server: CollectorHTTPServer

    @property
    def collector(self) -> Collector:
        return self.server.collector

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("collector %s: " + format, self.address_string(), *args)

    def respond(
        self, status: int, body: bytes, content_type: str, close: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        """Headers and body in one write (no Nagle/delayed-ACK stall on keep-alive)."""
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Server: " + self.server_version)
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if close:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.log_request(status, len(body))
        try:
            self.wfile.write(head + body if self.command != "HEAD" else head)
        except OSError:
            self.close_connection = True

    def respond_json(self, status: int, document: Any, close: bool = False) -> None:
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.respond(status, body, "application/json; charset=utf-8", close=close)


class OtlpHandler(_BaseHandler):
    """``POST /v1/traces`` with protobuf or JSON bodies, gzip or not."""

    RECEIVER = "otlp_http"

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = urlsplit(self.path).path.rstrip("/")
        if path != "/v1/traces":
            self._discard_body()
            self.respond_json(404, {"code": 5, "message": f"unknown path {path}; OTLP traces go to /v1/traces"})
            return
        stats = self.collector.stats
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        as_json = content_type == JSON
        try:
            body = self._read_body()
            rows, rejected, reason = self._decode(body, content_type)
        except ApiError as exc:
            stats.reject_payload(self.RECEIVER)
            self._respond_status(exc.status, exc.message, as_json, close=exc.status in (411, 413))
            return
        except OtlpDecodeError as exc:
            stats.reject_payload(self.RECEIVER)
            self._respond_status(400, str(exc), as_json)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. text protobuf cannot hold; never a dead handler
            stats.reject_payload(self.RECEIVER)
            self._respond_status(400, f"cannot store this request: {type(exc).__name__}: {exc}", as_json)
            return
        if rejected:
            stats.reject_spans(self.RECEIVER, rejected)
        if rows and not self.collector.store.submit_packed(rows):
            stats.reject_spans(self.RECEIVER, len(rows))
            self._respond_status(503, "collector backlog is full; retry later", as_json, headers={"Retry-After": "1"})
            return
        stats.receive(self.RECEIVER, len(rows))
        if as_json:
            self.respond(200, encode_response_json(rejected, reason), JSON)
        else:
            self.respond(200, encode_response_protobuf(rejected, reason), PROTOBUF)

    def _decode(self, body: bytes, content_type: str) -> tuple[list[Any], int, str]:
        if content_type == PROTOBUF:
            return pack_protobuf(body)
        if content_type == JSON:
            records, rejected, reason = decode_json(body)
            return [pack_record(record) for record in records], rejected, reason
        raise ApiError(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}")

    def _read_body(self) -> bytes:
        limit = self.collector.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked(limit)
        else:
            length_text = self.headers.get("Content-Length")
            if length_text is None:
                raise ApiError(411, "Content-Length required")
            try:
                length = int(length_text)
            except ValueError:
                raise ApiError(400, "invalid Content-Length") from None
            if length < 0:  # read(-1) would read until the client closes: unbounded
                self.close_connection = True
                raise ApiError(400, "invalid Content-Length")
            if length > limit:
                raise ApiError(413, f"request body of {length} bytes exceeds the {limit} byte limit")
            body = self.rfile.read(length)
            if len(body) != length:
                self.close_connection = True
                raise ApiError(400, "request body shorter than Content-Length")
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            return gunzip_limited(body, limit)
        if encoding not in ("identity", ""):
            raise ApiError(415, f"unsupported Content-Encoding {encoding!r}")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, "malformed chunked body") from None
            if size < 0:
                self.close_connection = True
                raise ApiError(400, "malformed chunked body")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise ApiError(413, f"request body exceeds the {limit} byte limit")
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _discard_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= self.collector.max_body_bytes:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _respond_status(
        self, status: int, message: str, as_json: bool, close: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        code = {503: GRPC_UNAVAILABLE, 413: GRPC_RESOURCE_EXHAUSTED}.get(status, GRPC_INVALID_ARGUMENT)
        if as_json:
            self.respond(status, encode_status_json(code, message), JSON, close=close, headers=headers)
        else:
            self.respond(status, encode_status_protobuf(code, message), PROTOBUF, close=close, headers=headers)

    def do_GET(self) -> None:  # noqa: N802
        self.respond_json(405, {"code": 12, "message": "OTLP/HTTP accepts POST /v1/traces"})


def gunzip_limited(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing (413) to produce more than ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        result = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, f"invalid gzip body: {exc}") from None
    if len(result) > limit or inflater.unconsumed_tail:
        raise ApiError(413, f"decompressed body exceeds the {limit} byte limit")
    if not inflater.eof:
        raise ApiError(400, "truncated gzip body")
    return result


class QueryHandler(_BaseHandler):
    """Jaeger's HTTP JSON query API under ``/api`` and the web UI everywhere else."""

    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        path = url.path
        try:
            if path.startswith("/api/"):
                self._api(path, parse_qs(url.query, keep_blank_values=True))
            elif path.startswith("/static/"):
                self._static(unquote(path[len("/static/") :]))
            elif _is_client_route(path):
                self._index()
            else:
                self.respond(404, b"not found\n", "text/plain; charset=utf-8")
        except ApiError as exc:
            self.respond_json(exc.status, error_envelope(exc.status, exc.message))
        except Exception as exc:  # noqa: BLE001 - one bad query must not take the server down
            logger.warning("collector: %s failed: %s", path, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
            self.respond_json(500, error_envelope(500, f"{type(exc).__name__}: {exc}"))

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self.respond_json(405, error_envelope(405, "the query API is read-only; send spans to the OTLP port"), True)

    # ---------------------------------------------------------------- API routes

    def _api(self, path: str, params: dict[str, list[str]]) -> None:
        store = self.collector.store
        parts = [unquote(part) for part in path.strip("/").split("/")]  # ["api", ...]
        route = parts[1:]
        if route == ["services"]:
            services = store.services()
            self.respond_json(200, envelope(services))
        elif len(route) == 3 and route[0] == "services" and route[2] == "operations":
            names = sorted({name for name, _kind in store.operations(route[1])})
            self.respond_json(200, envelope(names))
        elif route == ["operations"]:
            service = _first(params, "service")
            if not service:
                raise ApiError(400, "parameter 'service' is required")
            operations = [
                {"name": name, "spanKind": kind}
                for name, kind in store.operations(service, _first(params, "spanKind") or None)
            ]
            self.respond_json(200, envelope(operations))
        elif route == ["traces"]:
            self._search(params)
        elif len(route) == 2 and route[0] == "traces":
            self._trace(route[1])
        elif route == ["dependencies"]:
            self._dependencies(params)
        elif route == ["stats"]:
            self.respond_json(200, self.collector.stats_snapshot())
        elif route == ["sampling"]:  # Jaeger's remote sampling, also on the query port
            from .sampling import respond_strategy  # imports this module: late

            respond_strategy(self, urlsplit(self.path).query)
        else:
            raise ApiError(404, f"unknown API path {path}")

    def _search(self, params: dict[str, list[str]]) -> None:
        store = self.collector.store
        trace_id_params = params.get("traceID", [])
        if trace_id_params:
            ids = []
            for text in trace_id_params:
                trace_id = normalize_trace_id(text)
                if trace_id is None:
                    raise ApiError(400, f"cannot parse traceID param: {text!r}")
                ids.append(trace_id)
        else:
            query = parse_trace_query(params, int(time.time() * 1_000_000))
            ids = store.find_trace_ids(query)
        rendered = traces_json(store.get_records(ids))
        self.respond_traces([rendered[trace_id] for trace_id in ids if trace_id in rendered])

    def _trace(self, text: str) -> None:
        trace_id = normalize_trace_id(text)
        if trace_id is None:
            raise ApiError(400, f"malformed trace id {text!r}")
        rendered = traces_json(self.collector.store.get_records([trace_id]))
        if not rendered:
            raise ApiError(404, "trace not found")
        self.respond_traces(list(rendered.values()))

    def respond_traces(self, traces: list[str]) -> None:
        """The envelope around traces already rendered as JSON text."""
        body = f'{{"data":[{",".join(traces)}],"total":{len(traces)},"limit":0,"offset":0,"errors":null}}'
        self.respond(200, body.encode("utf-8", "replace"), "application/json; charset=utf-8")

    def _dependencies(self, params: dict[str, list[str]]) -> None:
        end_ms = _int_param(params, "endTs")
        if end_ms is None:
            end_ms = int(time.time() * 1000)
        lookback_ms = _int_param(params, "lookback")
        if lookback_ms is None:
            lookback_ms = DEFAULT_DEPENDENCY_LOOKBACK_MS
        links = self.collector.store.dependencies((end_ms - lookback_ms) * 1000, end_ms * 1000)
        self.respond_json(200, envelope([{"parent": p, "child": c, "callCount": n} for p, c, n in links]))

    # ---------------------------------------------------------------- UI

    def _index(self) -> None:
        index = UI_DIR / "index.html"
        try:
            body = index.read_bytes()
        except OSError:
            body = PLACEHOLDER_PAGE
        self.respond(200, body, CONTENT_TYPES[".html"], headers={"Cache-Control": "no-cache"})

    def _static(self, relative: str) -> None:
        target = resolve_static(UI_DIR, relative)
        if target is None:
            self.respond(404, b"not found\n", "text/plain; charset=utf-8")
            return
        content_type = CONTENT_TYPES.get(target.suffix.lower()) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        self.respond(200, target.read_bytes(), content_type, headers={"Cache-Control": "no-cache"})


def resolve_static(root: Path, relative: str) -> Path | None:
    """The file under ``root`` named by ``relative``, or None (missing, or outside root)."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    try:
        base = root.resolve(strict=True)
        target = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def _is_client_route(path: str) -> bool:
    """Paths the single-page UI routes itself: "/", "/search", "/trace/<id>", "/dependencies"."""
    if path in ("/", "/index.html"):
        return True
    last_segment = path.rstrip("/").rsplit("/", 1)[-1]
    return "." not in last_segment


def enlarge_socket_buffers(server: ThreadingHTTPServer) -> None:
    """Larger buffers: OTLP batches are ~100 KiB each."""
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            server.socket.setsockopt(socket.SOL_SOCKET, option, 1 << 20)
        except OSError:
            pass
