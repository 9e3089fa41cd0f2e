"""The Jaeger-compatible query API and web UI (the query port's handler).

Served by :mod:`.connections` (a selector reads requests, a small pool of its own answers
them, so queries never queue behind ingest). Handlers stay thin: parameters are parsed by
the pure functions of :mod:`.params`. This module also re-exports the names other modules
and tests have always imported from here.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .exposure import TOKEN_COOKIE, query_token, token_matches, without_token
from .http_base import BaseHandler, admit_exposed
from .http_head import RequestHead
from .jaeger_json import traces_json
from .model import normalize_trace_id
from .otlp_http import JSON, PROTOBUF, OtlpHandler, admit_otlp, gunzip_limited, release_otlp
from .params import (
    DEFAULT_DEPENDENCY_LOOKBACK_MS,
    DEFAULT_TRACE_LOOKBACK_US,
    MAX_US,
    ApiError,
    envelope,
    error_envelope,
    first_param,
    int_param,
    parse_duration_us,
    parse_logfmt,
    parse_lookback_us,
    parse_tags,
    parse_trace_query,
)
from .sampling import respond_strategy

__all__ = [
    "DEFAULT_DEPENDENCY_LOOKBACK_MS",
    "DEFAULT_TRACE_LOOKBACK_US",
    "JSON",
    "PROTOBUF",
    "ApiError",
    "BaseHandler",
    "OtlpHandler",
    "QueryHandler",
    "admit_otlp",
    "admit_query",
    "envelope",
    "error_envelope",
    "gunzip_limited",
    "parse_duration_us",
    "parse_logfmt",
    "parse_lookback_us",
    "parse_tags",
    "parse_trace_query",
    "release_otlp",
    "resolve_static",
]

logger = logging.getLogger("aiecs_tracing.collector")

UI_DIR = Path(__file__).parent / "ui"

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


def admit_query(server: Any, head: RequestHead) -> None:
    """The query port's head check: Host, and the token (bearer, the UI's cookie or ?token=)."""
    admit_exposed(server, head, browser=True)


class QueryHandler(BaseHandler):
    """Jaeger's HTTP JSON query API under ``/api`` and the web UI everywhere else."""

    def do_GET(self) -> None:  # noqa: N802
        with self.collector.query_priority:  # decodes wait while a query is answered
            self._get()

    def _get(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        token = self.collector.auth_token
        offered = query_token(self.path) if token else None
        if token and offered is not None and token_matches(offered, token):
            # The UI's one-time token: keep it in a cookie the page's scripts cannot read.
            cookie = f"{TOKEN_COOKIE}={quote(token, safe='')}; HttpOnly; SameSite=Strict; Path=/"
            headers = {"Location": without_token(self.path), "Set-Cookie": cookie, "Cache-Control": "no-store"}
            self.respond(303, b"", "text/plain; charset=utf-8", headers=headers)
            return
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
            service = first_param(params, "service")
            if not service:
                raise ApiError(400, "parameter 'service' is required")
            operations = [
                {"name": name, "spanKind": kind}
                for name, kind in store.operations(service, first_param(params, "spanKind") or None)
            ]
            self.respond_json(200, envelope(operations))
        elif route == ["traces"]:
            self._search(params)
        elif len(route) == 2 and route[0] == "traces":
            self._trace(route[1])
        elif route in (["dependencies"], ["monitor"]):  # aggregates for the UI: metrics_api.py
            from . import metrics_api

            for name in ("endTs", "lookback"):  # a window SQLite can hold, or a 400 naming the parameter
                int_param(params, name, MAX_US // 2000)

            try:
                data = metrics_api.query(store.path, route[0], params, time.time())
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
            self.respond_json(200, envelope(data))
        elif route == ["stats"]:
            self.respond_json(200, self.collector.stats_snapshot())
        elif route == ["sampling"]:  # Jaeger's remote sampling, also on the query port
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
    if path.startswith("/trace/") and path.count("/") == 2:  # also Jaeger's comparison URL /trace/A...B
        return True
    last_segment = path.rstrip("/").rsplit("/", 1)[-1]
    return "." not in last_segment
