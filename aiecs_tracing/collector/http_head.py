"""One HTTP request as the selector sees it: a parsed head, and the handler that answers it.

:class:`RequestHead` is what admission hooks judge (a :class:`Refusal` carries the
response they decided on); :class:`BufferedRequestHandler` runs an ordinary
``BaseHTTPRequestHandler`` on a request the selector has already read in full.
"""

from __future__ import annotations

import io
import socket
from http.server import BaseHTTPRequestHandler
from socketserver import _SocketWriter  # type: ignore[attr-defined]
from typing import Any


class Refusal(Exception):
    """An answer decided from the head alone: ``response`` bytes, written before the body is read."""

    def __init__(self, response: bytes) -> None:
        super().__init__("refused")
        self.response = response


class RequestHead:
    """The parsed head of a request (names of headers lower-cased)."""

    __slots__ = ("method", "target", "version", "headers", "reserved")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.reserved = 0  # bytes admission reserved for this request, released when it is answered


def parse_head(raw: bytes) -> RequestHead | None:
    """``METHOD target HTTP/1.x`` and headers; None when malformed."""
    lines = raw.decode("latin-1").split("\r\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            return None
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers and name != "content-length" else value
    return RequestHead(words[0], words[1], words[2], headers)


def plain_response(status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> bytes:
    """A small text/plain response that closes the connection."""
    body = (message + "\n").encode("utf-8")
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ChunkError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def scan_chunks(buffer: bytearray, at: int, total: int, limit: int) -> tuple[int, int, int]:
    """Walk the chunk-size lines of a chunked body that have arrived, from offset ``at``.

    Returns ``(next offset, body bytes so far, end of the body or -1 if not complete)``;
    raises ChunkError (400 malformed, 413 over ``limit``).
    """
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            if len(buffer) - at > 1024:
                raise ChunkError(400, "malformed chunked body")
            return at, total, -1
        try:
            size = int(bytes(buffer[at:line_end]).split(b";")[0].strip(), 16)
        except ValueError:
            size = -1
        if size < 0:
            raise ChunkError(400, "malformed chunked body")
        if size == 0:
            if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                return at, total, line_end + 4
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            return (at, total, -1) if trailer_end < 0 else (at, total, trailer_end + 4)
        if total + size > limit:
            raise ChunkError(413, f"request body exceeds the {limit} byte limit")
        next_at = line_end + 2 + size + 2
        if len(buffer) < next_at:
            return at, total, -1
        at, total = next_at, total + size


def content_length(headers: dict[str, str]) -> int:
    """Content-Length, 0 when absent, -1 when not a number >= 0."""
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return -1
    return length if length >= 0 else -1


class BufferedRequestHandler(BaseHTTPRequestHandler):
    """A BaseHTTPRequestHandler for one request whose bytes were read by the selector."""

    server: Any

    def __init__(self, sock: socket.socket, address: Any, server: Any, data: bytes) -> None:
        self._data = data
        super().__init__(sock, address, server)

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BytesIO(self._data)
        self.wfile = _SocketWriter(self.request)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()

    def handle_expect_100(self) -> bool:
        return True  # the selector already said 100 Continue

    def finish(self) -> None:
        pass
