"""Reading a request off a non-blocking socket: head, admission, body framing, refusals.

The selector side of :mod:`.connections`: :class:`RequestReader` (mixed into the server)
advances each connection's state machine as bytes arrive. A head is complete within
``HEAD_TIMEOUT`` and ``MAX_HEAD_BYTES``; then the port's ``admit`` hook judges it, and a
refusal is written before any of the body is read: a small body is then skipped and the
connection kept, a large one is drained for ``DRAIN_SECONDS`` (so the client reads the
answer rather than a reset) and the connection closed.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from .http_head import (
    ChunkError,
    Refusal,
    RequestHead,
    content_length,
    parse_head,
    plain_response,
    scan_chunks,
)

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 10.0  # from a request's first byte to the end of its head
BODY_TIMEOUT = 60.0  # from the end of the head to the end of the body
IDLE_TIMEOUT = 120.0  # a keep-alive connection with nothing asked
DRAIN_SECONDS = 2.0  # after a refusal the unread body is read and discarded this long, then closed
DISCARD_KEEP_ALIVE_BYTES = 1 << 20  # a refused body up to this size is skipped and the connection kept
RECV_BYTES = 256 * 1024


class Connection:
    __slots__ = (
        "sock", "address", "buffer", "state", "deadline", "head", "head_end", "body_end",
        "chunk_at", "chunk_total", "discard", "keep_alive_after_discard", "scanned", "last_active", "head_started", "served",
    )  # fmt: skip

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.buffer = bytearray()
        self.state = "idle"  # idle -> head -> body -> busy (in a worker) -> idle | discard | drain
        self.deadline = time.monotonic() + IDLE_TIMEOUT
        self.head: RequestHead | None = None
        self.head_end = 0
        self.body_end = 0
        self.chunk_at = -1  # chunked bodies: offset of the next chunk-size line, -1 if not chunked
        self.chunk_total = 0
        self.discard = 0
        self.keep_alive_after_discard = False
        self.scanned = 0
        self.last_active = time.monotonic()
        self.head_started = self.last_active
        self.served = False


class RequestReader:
    """The reading half of BoundedHTTPServer (which supplies the methods declared here)."""

    admit: Any
    max_body_bytes: int
    on_refused: Any

    def _close(self, connection: Connection) -> None:
        raise NotImplementedError

    def _dispatch(self, connection: Connection) -> None:
        raise NotImplementedError

    def _release(self, connection: Connection) -> None:
        raise NotImplementedError

    def _send(self, connection: Connection, data: bytes) -> None:
        raise NotImplementedError

    def _readable(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        connection.last_active = time.monotonic()
        if connection.state == "drain":
            return
        if connection.state == "discard":
            if len(data) < connection.discard:
                connection.discard -= len(data)
                return
            data = data[connection.discard :]
            connection.discard = 0
            connection.state = "idle"
            if not connection.keep_alive_after_discard:
                self._close(connection)
                return
        connection.buffer += data
        self._advance(connection)

    def _advance(self, connection: Connection) -> None:
        if connection.state == "idle":
            connection.state = "head"
            connection.head_started = time.monotonic()
            connection.deadline = connection.head_started + HEAD_TIMEOUT
            connection.scanned = 0
        if connection.state == "head":
            buffer = connection.buffer
            while buffer[:2] == b"\r\n":  # stray line ends between requests
                del buffer[:2]
            end = buffer.find(b"\r\n\r\n", max(0, connection.scanned - 3))
            if end < 0:
                connection.scanned = len(buffer)
                if len(buffer) > MAX_HEAD_BYTES:
                    self._refuse(connection, plain_response(431, "Request Header Fields Too Large", "head too long"))
                elif not buffer:
                    connection.state = "idle"
                return
            if end > MAX_HEAD_BYTES:
                self._refuse(connection, plain_response(431, "Request Header Fields Too Large", "head too long"))
                return
            head = parse_head(bytes(buffer[:end]))
            if head is None:
                self._refuse(connection, plain_response(400, "Bad Request", "malformed request head"))
                return
            connection.head = head
            connection.head_end = end + 4
            if not self._frame(connection, head):
                return
        if connection.state == "body":
            done = self._body_complete(connection)
            if done:
                self._dispatch(connection)

    def _frame(self, connection: Connection, head: RequestHead) -> bool:
        """Admission, then how the body ends; False when the request was answered already."""
        headers = head.headers
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = 0
        if self.admit is not None:
            try:
                self.admit(self, head)
            except Refusal as refusal:
                self._refuse(connection, refusal.response, -1 if chunked else content_length(headers), admitted=True)
                return False
        if not chunked and "content-length" in headers:
            length = content_length(headers)
            if length < 0:
                self._refuse(connection, plain_response(400, "Bad Request", "invalid Content-Length"))
                return False
            if length > self.max_body_bytes:  # ports without an admission budget: never buffered
                message = f"request body of {length} bytes exceeds this port's {self.max_body_bytes} byte limit"
                self._refuse(connection, plain_response(413, "Content Too Large", message))
                return False
        if "100-continue" in headers.get("expect", "").lower():
            self._send(connection, b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.state = "body"
        connection.deadline = time.monotonic() + BODY_TIMEOUT
        connection.chunk_at = connection.head_end if chunked else -1
        connection.chunk_total = 0
        connection.body_end = connection.head_end + (0 if chunked else length)
        return True

    def _body_complete(self, connection: Connection) -> bool:
        if connection.chunk_at < 0:
            return len(connection.buffer) >= connection.body_end
        try:
            at, total, end = scan_chunks(connection.buffer, connection.chunk_at, connection.chunk_total, self.max_body_bytes)
        except ChunkError as exc:
            reason = "Content Too Large" if exc.status == 413 else "Bad Request"
            self._refuse(connection, plain_response(exc.status, reason, str(exc)))
            return False
        connection.chunk_at, connection.chunk_total = at, total
        if end < 0:
            return False
        connection.body_end = end
        return True

    def _refuse(self, connection: Connection, response: bytes, unread: int = -1, admitted: bool = False) -> None:
        """Answer without reading the body: skip a small one, else drain briefly and close.

        ``admitted``: the refusal came from the port's admit hook (which counts its own).
        """
        self._release(connection)
        if not admitted and connection.head is not None and self.on_refused is not None:
            self.on_refused(response)
        self._send(connection, response)
        closes = b"\r\nConnection: close\r\n" in response.split(b"\r\n\r\n", 1)[0] + b"\r\n"
        head_parsed = connection.head is not None
        connection.head = None
        connection.served = True
        if head_parsed and 0 <= unread <= DISCARD_KEEP_ALIVE_BYTES and not closes:
            buffered = len(connection.buffer) - connection.head_end
            if buffered >= unread:  # the body (and maybe the next request) is here already
                del connection.buffer[: connection.head_end + unread]
                connection.state = "idle"
                connection.deadline = time.monotonic() + IDLE_TIMEOUT
                return
            connection.buffer.clear()
            connection.state = "discard"
            connection.discard = unread - buffered
            connection.keep_alive_after_discard = True
            connection.deadline = time.monotonic() + BODY_TIMEOUT
            return
        connection.buffer.clear()
        try:  # lingering close: the client reads the answer instead of a reset
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(connection)
            return
        connection.state = "drain"
        connection.deadline = time.monotonic() + DRAIN_SECONDS
