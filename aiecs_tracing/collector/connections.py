"""A bounded HTTP/1.1 server: one selector thread owns every socket, a small pool runs handlers.

Why not the stdlib's ``ThreadingHTTPServer``: it spends a thread per connection, idle or
not, reads a request's body before anyone can say no, and has no cap on connections or
on bytes in flight. Here:

* the selector thread reads request heads and bodies without blocking and without a
  thread per client. A head must be complete within ``HEAD_TIMEOUT`` seconds and at most
  ``MAX_HEAD_BYTES`` long, a body within ``BODY_TIMEOUT`` (slowloris costs a socket and a
  small buffer, never a thread);
* as soon as a head is complete, the port's ``admit`` hook decides from the method,
  path and headers alone (Host, credentials, Content-Length against the body limit, the
  backlog and the bytes in flight): a refusal is written at once and the body is
  discarded unread, or the connection closed;
* only a complete request goes to the worker pool (``workers`` threads), which runs an
  ordinary :class:`http.server.BaseHTTPRequestHandler` on the buffered bytes; each port
  has its own pool, so queries never wait behind ingest;
* at ``max_connections`` the oldest idle keep-alive connection makes room, else the oldest
  request head still incomplete after ``SLOW_HEAD_SECONDS`` (a client that has a request
  sends its head at once: slowloris cannot starve newcomers); when neither exists (every
  connection is mid-body or being answered) the newcomer is told 503 and closed.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
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

logger = logging.getLogger("aiecs_tracing.collector")

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 10.0  # from a request's first byte to the end of its head
SLOW_HEAD_SECONDS = 1.0  # at the connection cap, a head still incomplete after this long may be closed
BODY_TIMEOUT = 60.0  # from the end of the head to the end of the body
IDLE_TIMEOUT = 120.0  # a keep-alive connection with nothing asked
WRITE_TIMEOUT = 30.0  # a response that cannot be written in this long closes the connection
DRAIN_SECONDS = 2.0  # after a refusal the unread body is read and discarded this long, then closed
DISCARD_KEEP_ALIVE_BYTES = 1 << 20  # a refused body up to this size is skipped and the connection kept
RECV_BYTES = 256 * 1024


class _Connection:
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


class BoundedHTTPServer:
    """An HTTP/1.1 server on ``address`` with bounded connections, bytes and threads."""

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        collector: Any,
        *,
        name: str,
        workers: int = 4,
        max_connections: int = 512,
        admit: Callable[[BoundedHTTPServer, RequestHead], None] | None = None,
        release: Callable[[BoundedHTTPServer, RequestHead], None] | None = None,
        max_body_bytes: int = 20 * 1024 * 1024,
    ) -> None:
        self.collector = collector
        self.handler = handler
        self.name = name
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        self.admit = admit
        self.release = release
        self.on_refused: Callable[[bytes], None] | None = None  # counts refusals the selector decided
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    self.socket.setsockopt(socket.SOL_SOCKET, option, 1 << 20)
                except OSError:
                    pass
            self.socket.bind(address)
            self.socket.listen(512)
        except BaseException:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._connections: dict[socket.socket, _Connection] = {}
        self._returned: list[tuple[_Connection, bool]] = []
        self._returned_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"aiecs-collector-{name}")
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    # ------------------------------------------------------------------ loop

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        next_sweep = time.monotonic() + 0.5
        try:
            while not self._stopping.is_set():
                for key, _mask in self._selector.select(timeout=poll_interval):
                    if key.data is None:
                        self._accept()
                    elif key.data == "wake":
                        self._take_returned()
                    else:
                        self._readable(key.data)
                now = time.monotonic()
                if now >= next_sweep:
                    self._sweep(now)
                    next_sweep = now + 0.5
        finally:
            for connection in list(self._connections.values()):
                if connection.state != "busy":
                    self._close(connection)
            self._stopped.set()

    def shutdown(self) -> None:
        self._stopping.set()
        self._wake()
        self._stopped.wait(5)

    def server_close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for sock in (self.socket, self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass
        self._selector.close()

    def close_idle_connections(self) -> None:
        for connection in list(self._connections.values()):
            try:
                connection.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connection_count(self) -> int:
        return len(self._connections)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. EMFILE: leave it in the backlog for the next round
                return
            if len(self._connections) >= self.max_connections and not self._evict_idle():
                try:
                    sock.setblocking(False)
                    sock.send(plain_response(503, "Service Unavailable", "too many connections", {"Retry-After": "1"}))
                except OSError:
                    pass
                sock.close()
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            connection = _Connection(sock, address)
            self._connections[sock] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)

    def _evict_idle(self) -> bool:
        """Make room: close the oldest idle connection, else the oldest head slower than SLOW_HEAD_SECONDS."""
        slow = time.monotonic() - SLOW_HEAD_SECONDS
        # Idle: between requests, or connected without a byte for SLOW_HEAD_SECONDS (a brand-new
        # connection whose head is on its way is not idle).
        idle = [
            c
            for c in self._connections.values()
            if c.state == "idle" and not c.buffer and (c.served or c.head_started < slow)
        ]
        if not idle:
            idle = [c for c in self._connections.values() if c.state == "head" and c.head_started < slow]
        if not idle:
            return False
        victim = min(idle, key=lambda c: (c.state != "idle", c.last_active if c.state == "idle" else c.head_started))
        if victim.state == "head":
            self._send(victim, plain_response(408, "Request Timeout", "request head too slow; connection reused"))
        self._close(victim)
        return True

    def _sweep(self, now: float) -> None:
        for connection in list(self._connections.values()):
            if connection.state != "busy" and now >= connection.deadline:
                if connection.state in ("head", "body"):
                    self._send(connection, plain_response(408, "Request Timeout", "request not received in time"))
                self._close(connection)

    def _take_returned(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._returned_lock:
            returned, self._returned = self._returned, []
        for connection, keep in returned:
            if not keep or self._stopping.is_set():
                self._close(connection)
                continue
            connection.state = "idle"
            connection.served = True
            connection.deadline = time.monotonic() + IDLE_TIMEOUT
            connection.last_active = time.monotonic()
            connection.sock.setblocking(False)
            try:
                self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            except (ValueError, KeyError, OSError):
                self._close(connection)
                continue
            if connection.buffer:  # a pipelined request already arrived
                self._advance(connection)

    # ------------------------------------------------------------------ reading

    def _readable(self, connection: _Connection) -> None:
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

    def _advance(self, connection: _Connection) -> None:
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

    def _frame(self, connection: _Connection, head: RequestHead) -> bool:
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
        if "100-continue" in headers.get("expect", "").lower():
            self._send(connection, b"HTTP/1.1 100 Continue\r\n\r\n")
        connection.state = "body"
        connection.deadline = time.monotonic() + BODY_TIMEOUT
        connection.chunk_at = connection.head_end if chunked else -1
        connection.chunk_total = 0
        connection.body_end = connection.head_end + (0 if chunked else length)
        return True

    def _body_complete(self, connection: _Connection) -> bool:
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

    def _refuse(self, connection: _Connection, response: bytes, unread: int = -1, admitted: bool = False) -> None:
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

    def _send(self, connection: _Connection, data: bytes) -> None:
        try:
            connection.sock.setblocking(True)
            connection.sock.settimeout(1.0)
            connection.sock.sendall(data)
        except OSError:
            pass
        finally:
            try:
                connection.sock.setblocking(False)
            except OSError:
                pass

    def _release(self, connection: _Connection) -> None:
        head = connection.head
        if head is not None and head.reserved and self.release is not None:
            self.release(self, head)
            head.reserved = 0

    def _close(self, connection: _Connection) -> None:
        self._release(connection)
        self._connections.pop(connection.sock, None)
        try:
            self._selector.unregister(connection.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            connection.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ handling

    def _dispatch(self, connection: _Connection) -> None:
        end = connection.body_end
        data = bytes(connection.buffer[:end])
        del connection.buffer[:end]
        connection.state = "busy"
        try:
            self._selector.unregister(connection.sock)
        except (KeyError, ValueError):
            pass
        try:
            self._pool.submit(self._handle, connection, data)
        except RuntimeError:  # pool shut down
            self._close(connection)

    def _handle(self, connection: _Connection, data: bytes) -> None:
        keep = False
        try:
            connection.sock.setblocking(True)
            connection.sock.settimeout(WRITE_TIMEOUT)
            handler = self.handler(connection.sock, connection.address, self, data)  # type: ignore[call-arg]
            keep = not handler.close_connection
        except Exception:  # noqa: BLE001 - one request must never take a worker down
            logger.debug("collector: request from %s failed", connection.address, exc_info=True)
        finally:
            try:
                self._release(connection)
            except Exception:  # noqa: BLE001 - the connection must go back to the selector regardless
                logger.debug("collector: releasing a request's budget failed", exc_info=True)
            connection.head = None
            with self._returned_lock:
                self._returned.append((connection, keep))
            self._wake()
