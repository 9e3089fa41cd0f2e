"""The OTLP/HTTP receiver: admission from the head, decoding, and "200 means committed".

A request is judged before its body is read (:func:`admit_otlp`, run by the selector as
soon as the head is complete): wrong Host or token, wrong path, no length, a length over
the body limit (413), a full backlog or no room in the bytes-in-flight budget (503 with
``Retry-After``). Only then is the body read, decoded in a worker, and handed to the
store, and the answer waits for the store's commit: 200 means the spans are in SQLite
(WAL; see :mod:`.store` for the synchronous level); 503 + ``Retry-After`` when they could
not be committed in time (nothing was written: retrying cannot duplicate), 507 when the
disk is full.
"""

from __future__ import annotations

import zlib
from typing import Any
from urllib.parse import urlsplit

from .exposure import refusal_reason
from .http_base import BaseHandler, render_response
from .http_head import Refusal, RequestHead, content_length
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
from .params import ApiError
from .runtime import BytesInFlight as BytesInFlight  # defined there; importable from here as before
from .runtime import QueryPriority as QueryPriority

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
GRPC_INVALID_ARGUMENT = 3
GRPC_RESOURCE_EXHAUSTED = 8
GRPC_UNAUTHENTICATED = 16
GRPC_UNAVAILABLE = 14
RETRY_AFTER = {"Retry-After": "1"}
RECEIVER = "otlp_http"


def status_body(status: int, message: str, as_json: bool) -> tuple[bytes, str]:
    code = {503: GRPC_UNAVAILABLE, 507: GRPC_RESOURCE_EXHAUSTED, 413: GRPC_RESOURCE_EXHAUSTED}.get(
        status, GRPC_UNAUTHENTICATED if status == 401 else GRPC_INVALID_ARGUMENT
    )
    if as_json:
        return encode_status_json(code, message), JSON
    return encode_status_protobuf(code, message), PROTOBUF


def _refusal(status: int, message: str, as_json: bool, headers: dict[str, str] | None = None, close: bool = False) -> Refusal:
    body, content_type = status_body(status, message, as_json)
    return Refusal(render_response(status, body, content_type, headers, close))


def admit_otlp(server: Any, head: RequestHead) -> None:
    """Decide from the head alone; raise Refusal, or reserve the body's bytes and return."""
    collector = server.collector
    headers = head.headers
    as_json = headers.get("content-type", "").split(";")[0].strip().lower() == JSON
    refused = refusal_reason(collector, head)
    if refused is not None:
        collector.stats.reject_payload(RECEIVER)
        extra = {"WWW-Authenticate": 'Bearer realm="aiecs-tracing"'} if refused[0] == 401 else None
        raise _refusal(refused[0], refused[1], as_json, extra)
    if head.method != "POST":
        return  # the handler answers 405; such requests have no body worth budgeting
    path = urlsplit(head.target).path.rstrip("/")
    if path != "/v1/traces":
        raise _refusal(404, f"unknown path {path}; OTLP traces go to /v1/traces", as_json)
    limit = collector.max_body_bytes
    chunked = "chunked" in headers.get("transfer-encoding", "").lower()
    if chunked:
        size = limit
    elif "content-length" not in headers:
        collector.stats.reject_payload(RECEIVER)
        raise _refusal(411, "Content-Length required", as_json, close=True)
    else:
        size = content_length(headers)
        if size < 0:
            collector.stats.reject_payload(RECEIVER)
            raise _refusal(400, "invalid Content-Length", as_json, close=True)
        if size > limit:
            collector.stats.reject_payload(RECEIVER)
            raise _refusal(413, f"request body of {size} bytes exceeds the {limit} byte limit", as_json, close=True)
    if collector.store.backlog_full():
        collector.stats.reject_payload(RECEIVER)
        raise _refusal(503, "collector backlog is full; retry later", as_json, RETRY_AFTER)
    if not collector.in_flight.reserve(size):
        collector.stats.reject_payload(RECEIVER)
        raise _refusal(503, "collector is receiving its limit of request bytes; retry later", as_json, RETRY_AFTER)
    head.reserved = size


def release_otlp(server: Any, head: RequestHead) -> None:
    server.collector.in_flight.release(head.reserved)


class OtlpHandler(BaseHandler):
    """``POST /v1/traces`` with protobuf or JSON bodies, gzip or not."""

    RECEIVER = RECEIVER

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        stats = self.collector.stats
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        as_json = content_type == JSON
        try:
            self.collector.query_priority.yield_to_queries()
            with self.collector.decode_slots:  # decoding holds the GIL: more at once only adds switching
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
        del body
        if rejected:
            stats.reject_spans(self.RECEIVER, rejected)
        outcome = self.collector.store.commit(rows, timeout=self.collector.commit_timeout)
        if outcome.status != "committed":
            stats.reject_spans(self.RECEIVER, len(rows))
            if outcome.status == "disk_full":
                self._respond_status(507, "the collector's disk is full; spans not stored", as_json)
            else:
                self._respond_status(503, f"spans not stored: {outcome.message}; retry later", as_json, headers=RETRY_AFTER)
            return
        if outcome.failed:
            stats.reject_spans(self.RECEIVER, outcome.failed)
            rejected += outcome.failed
            reason = reason or "spans that could not be stored were rejected"
        stats.receive(self.RECEIVER, len(rows) - outcome.failed)
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
            length = int(self.headers.get("Content-Length") or 0)  # checked by admit_otlp
            body = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            return gunzip_limited(body, limit)
        if encoding not in ("identity", ""):
            raise ApiError(415, f"unsupported Content-Encoding {encoding!r}")
        return body

    def _read_chunked(self, limit: int) -> bytes:
        """The selector buffered the whole chunked body and checked its framing and size."""
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _respond_status(
        self, status: int, message: str, as_json: bool, close: bool = False, headers: dict[str, str] | None = None
    ) -> None:
        body, content_type = status_body(status, message, as_json)
        self.respond(status, body, content_type, close=close, headers=headers)

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
