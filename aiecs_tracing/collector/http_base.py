"""What every collector port's handler shares: single-write responses and the head checks.

Handlers run in a port's worker pool on a request the selector already read in full
(:mod:`.connections`); refusals decided from the head (Host, token) never get that far.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from typing import Any, Protocol

from .exposure import refusal_reason
from .http_head import BufferedRequestHandler, Refusal, RequestHead
from .runtime import BytesInFlight, QueryPriority, ReceiverStats

logger = logging.getLogger("aiecs_tracing.collector")


def render_response(
    status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None, close: bool = False
) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}"]
    lines.append(f"Content-Length: {len(body)}")
    lines.append("Server: aiecs-tracing-collector")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_refusal(status: int, document: Any, headers: dict[str, str] | None = None) -> Refusal:
    body = json.dumps(document, separators=(",", ":")).encode("utf-8")
    return Refusal(render_response(status, body, "application/json; charset=utf-8", headers))


def admit_exposed(server: Any, head: RequestHead, *, browser: bool = False) -> None:
    """Host and token checks for the query and sampling ports (raise Refusal)."""
    refused = refusal_reason(server.collector, head, browser=browser)
    if refused is not None:
        status, message = refused
        headers = {"WWW-Authenticate": 'Bearer realm="aiecs-tracing"'} if status == 401 else None
        document = {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": status, "msg": message}]}
        raise json_refusal(status, document, headers)


class StrategySource(Protocol):
    """The sampling strategies a handler answers with (:class:`.sampling.SamplingStrategies`)."""

    def response_body(self, service: str) -> bytes: ...


class CollectorContext(Protocol):
    """What a port's handler uses of the collector serving it.

    The collector (:class:`.server.Collector`, above this module) hands itself down to its
    servers; handlers see it through this, so nothing here imports the server. Members are
    read-only properties: a protocol's plain attributes would have to match types exactly.
    """

    @property
    def auth_token(self) -> str | None: ...
    @property
    def store(self) -> Any: ...  # a started SpanStore
    @property
    def stats(self) -> ReceiverStats: ...
    @property
    def sampling(self) -> StrategySource: ...
    @property
    def in_flight(self) -> BytesInFlight: ...
    @property
    def query_priority(self) -> QueryPriority: ...
    @property
    def decode_slots(self) -> threading.BoundedSemaphore: ...
    @property
    def commit_timeout(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...

    def stats_snapshot(self) -> dict[str, Any]: ...


class BaseHandler(BufferedRequestHandler):
    """What every port's handler shares: the collector it serves, logging and one-write responses."""

    protocol_version = "HTTP/1.1"
    server_version = "aiecs-tracing-collector"
    sys_version = ""

    @property
    def collector(self) -> CollectorContext:
        collector: CollectorContext = self.server.collector
        return collector

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("collector %s: " + format, self.address_string(), *args)

    def respond(
        self, status: int, body: bytes, content_type: str, close: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        """Headers and body in one write (no Nagle/delayed-ACK stall on keep-alive)."""
        if close:
            self.close_connection = True
        response = render_response(status, body, content_type, headers, close)
        if self.command == "HEAD":
            response = response[: len(response) - len(body)]
        self.log_request(status, len(body))
        try:
            self.wfile.write(response)
        except OSError:
            self.close_connection = True

    def respond_json(self, status: int, document: Any, close: bool = False) -> None:
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.respond(status, body, "application/json; charset=utf-8", close=close)
