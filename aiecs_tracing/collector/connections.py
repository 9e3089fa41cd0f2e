"""A bounded HTTP/1.1 server: one selector thread owns every socket, a small pool runs handlers.

Why not the stdlib's ``ThreadingHTTPServer``: it spends a thread per connection, idle or
not, reads a request's body before anyone can say no, and has no cap on connections or
on bytes in flight. Here:

* the selector thread reads request heads and bodies (:mod:`.framing`) without blocking and without a
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

from .framing import IDLE_TIMEOUT, Connection, RequestReader
from .http_head import RequestHead, plain_response

logger = logging.getLogger("aiecs_tracing.collector")

SLOW_HEAD_SECONDS = 1.0  # at the connection cap, a head still incomplete after this long may be closed
WRITE_TIMEOUT = 30.0  # a response that cannot be written in this long closes the connection


class BoundedHTTPServer(RequestReader):
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
        self._connections: dict[socket.socket, Connection] = {}
        self._returned: list[tuple[Connection, bool]] = []
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
            connection = Connection(sock, address)
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

    def _send(self, connection: Connection, data: bytes) -> None:
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

    def _release(self, connection: Connection) -> None:
        head = connection.head
        if head is not None and head.reserved and self.release is not None:
            self.release(self, head)
            head.reserved = 0

    def _close(self, connection: Connection) -> None:
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

    def _dispatch(self, connection: Connection) -> None:
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

    def _handle(self, connection: Connection, data: bytes) -> None:
        keep = False
        try:
            connection.sock.setblocking(True)
            connection.sock.settimeout(WRITE_TIMEOUT)
            handler = self.handler(connection.sock, connection.address, self, data)  # type: ignore[call-arg, arg-type]  # our handler class: buffered bytes, duck-typed server
            keep = not handler.close_connection
        except Exception:  # noqa: BLE001 - one request must never take a worker down
            logger.debug("collector: request from %s failed", connection.address, exc_info=True)
        finally:
            try:
                self._release(connection)
            except Exception:  # noqa: BLE001 - the connection must go back to the selector regardless
                logger.debug("collector: releasing a request's budget failed", exc_info=True)
            connection.head = None
            if self._stopped.is_set():  # the selector is gone: nobody would close it
                self._connections.pop(connection.sock, None)
                try:
                    connection.sock.close()
                except OSError:
                    pass
            else:
                with self._returned_lock:
                    self._returned.append((connection, keep))
                self._wake()
