"""``JaegerUDPExporter``: OpenTelemetry spans to a Jaeger agent's compact-thrift UDP port (6831).

UDP because an agent on localhost / a sidecar costs the app one ``sendto`` per ~64 KB of spans and
never blocks on a slow backend. The price is that the exporter itself must respect the datagram
size (the agent rejects packets above its max, 65000 by default), so :meth:`export` packs spans into
as many datagrams as needed and squeezes a span that cannot fit on its own instead of losing it.

Nothing here ever raises into the caller: resolution/socket/send failures are reported through
:func:`aiecs_tracing.core.guard.report_error` and turn into ``SpanExportResult.FAILURE``.
"""

from __future__ import annotations

import errno
import itertools
import operator
import os
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..guard import report_error
from ..resources import jaeger_process_tags
from .jaeger_thrift import (
    MESSAGE_OVERHEAD_MAX,
    encode_emit_batch,
    encode_process,
    encode_span,
    encode_span_truncated,
)

__all__ = ["JaegerUDPExporter"]

#: Largest UDP payload over IPv4; a bigger ``max_packet_size`` would only earn EMSGSIZE.
UDP_MAX_PAYLOAD = 65507
#: Below this a datagram cannot hold a process plus one (truncated) span in any useful form.
MIN_PACKET_SIZE = 1024
#: How long a failed DNS lookup is trusted before the next export tries again.
RESOLVE_RETRY_SECONDS = 5.0
#: Re-resolve a working address now and then: the agent's IP may move (k8s service, DNS failover).
RESOLVE_REFRESH_SECONDS = 300.0
_PROCESS_CACHE_MAX = 32

_EXPORT_ERROR = "jaeger-udp export"
# ReadableSpan's public property, read per span in C (map) to see whether a batch has one resource.
_RESOURCE = operator.attrgetter("resource")
#: ``sendto`` flag that fails with EAGAIN instead of blocking (0 where the platform has none).
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_ENCODE_ERROR = "jaeger-udp encode"

_live_exporters: weakref.WeakSet[JaegerUDPExporter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A lock held by another thread at fork time would stay locked forever in the child."""
    for exporter in list(_live_exporters):
        exporter._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolve(host: str, port: int) -> tuple[int, Any]:
    """``(family, sockaddr)`` for the agent, preferring IPv4 (the agent's default bind is 0.0.0.0)."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"no address for {host}:{port}")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


class JaegerUDPExporter(SpanExporter):
    """Send spans to a Jaeger agent as ``Agent.emitBatch`` (thrift compact) UDP datagrams."""

    def __init__(
        self,
        host: str = "localhost",
        port: int = 6831,
        *,
        max_packet_size: int = 65000,
        extra_process_tags: dict[str, Any] | None = None,
    ) -> None:
        self._host = host
        self._port = int(port)
        self.max_packet_size = max(MIN_PACKET_SIZE, min(int(max_packet_size), UDP_MAX_PAYLOAD))
        self._extra_process_tags = dict(extra_process_tags or {})
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._sock_pid = 0
        self._sock_family = 0
        self._address: tuple[int, Any] | None = None
        self._resolved_at = 0.0
        self._resolve_failed_at: float | None = None
        self._process_cache: dict[int, tuple[Any, bytes]] = {}
        self._seq_ids = itertools.count(1)
        self._shut_down = False
        self.packets_sent = 0
        self.spans_sent = 0
        # Datagrams the agent's host refused (ICMP port unreachable: nothing listens there).
        # UDP reports that only on the connected socket's next call, so spans handed to the
        # socket stay "unconfirmed" until a later check shows no error; refused ones move to
        # spans_refused, which the processor counts as dropped.
        self.spans_refused = 0
        self._unconfirmed = 0
        self._connected_to: Any = None
        _live_exporters.add(self)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    # --- SpanExporter ------------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._export(spans, 0)

    def export_nowait(self, spans: Sequence[ReadableSpan]) -> SpanExportResult | None:
        """Export from an event loop's thread: never blocks, or declines (``None``).

        The batch processor calls this on the thread that ended the spans when that thread runs
        an asyncio loop: exporting there costs the app the encoding CPU it pays anyway, but
        not the GIL ping-pong with an export thread (on a busy uvicorn worker that hand-off
        cost more than the encoding itself). Declines when the agent's address must be
        (re)resolved, since DNS may block; ``sendto`` is ``MSG_DONTWAIT``: a full socket buffer
        drops the batch (counted) rather than stall the loop.
        """
        if self._shut_down:
            return SpanExportResult.FAILURE
        if _DONTWAIT == 0 or self._address is None or time.monotonic() - self._resolved_at >= RESOLVE_REFRESH_SECONDS:
            return None
        return self._export(spans, _DONTWAIT)

    def _export(self, spans: Sequence[ReadableSpan], flags: int) -> SpanExportResult:
        if self._shut_down:
            return SpanExportResult.FAILURE
        try:
            ok = True
            for resource, group in self._group_by_resource(spans):
                ok = self._export_group(resource, group, flags) and ok
            return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE
        except Exception as exc:  # noqa: BLE001 - tracing must never raise into the app
            report_error(_EXPORT_ERROR, exc)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.confirm()
        self._shut_down = True
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here; settle whether the last datagrams were refused."""
        self.confirm()
        return True

    # --- packing -----------------------------------------------------------------------------------

    @staticmethod
    def _group_by_resource(spans: Sequence[ReadableSpan]) -> list[tuple[Any, list[ReadableSpan]]]:
        """One Jaeger ``Process`` per resource; a batch nearly always has a single one."""
        try:  # the usual batch: one provider's spans, checked in C (no Python loop per span)
            resources = set(map(id, map(_RESOURCE, spans)))
            if len(resources) == 1:
                return [(spans[0].resource, list(spans))]
        except AttributeError:  # a span without a resource: grouped under None below
            pass
        groups: dict[int, tuple[Any, list[ReadableSpan]]] = {}
        for span in spans:
            resource = getattr(span, "resource", None)
            entry = groups.get(id(resource))
            if entry is None:
                entry = groups[id(resource)] = (resource, [])
            entry[1].append(span)
        return list(groups.values())

    def _export_group(self, resource: Any, spans: list[ReadableSpan], flags: int = 0) -> bool:
        process = self._process_bytes(resource)
        budget = self.max_packet_size - MESSAGE_OVERHEAD_MAX - len(process)
        ok = True
        pending: list[bytes] = []
        pending_size = 0
        for span in spans:
            try:
                encoded = encode_span(span)
                if len(encoded) > budget:
                    encoded = self._encode_truncated(span, budget)
            except Exception as exc:  # noqa: BLE001 - one odd span must not sink the batch
                report_error(_ENCODE_ERROR, exc)
                ok = False
                continue
            if pending and pending_size + len(encoded) > budget:
                ok = self._send(process, pending, flags) and ok
                pending, pending_size = [], 0
            pending.append(encoded)
            pending_size += len(encoded)
        if pending:
            ok = self._send(process, pending, flags) and ok
        return ok

    @staticmethod
    def _encode_truncated(span: ReadableSpan, budget: int) -> bytes:
        """A span too big for a datagram on its own, squeezed until it fits (raises if it cannot)."""
        encoded = encode_span_truncated(span, budget)
        if len(encoded) > budget:
            raise ValueError(f"span {span.name!r} is {len(encoded)} bytes even truncated")
        return encoded

    def _process_bytes(self, resource: Any) -> bytes:
        """Encoded ``Process`` for ``resource``, cached: the SDK shares one Resource per provider."""
        cached = self._process_cache.get(id(resource))
        if cached is not None and cached[0] is resource:
            return cached[1]
        attributes = dict(getattr(resource, "attributes", None) or {})
        service_name, tags = jaeger_process_tags(attributes, self._extra_process_tags)
        process = encode_process(service_name, tags)
        # Leave at least half a datagram for spans, even with absurd resource attributes.
        room = (self.max_packet_size - MESSAGE_OVERHEAD_MAX) // 2
        if len(process) > room:
            process = encode_process(service_name, tags, max_str=128)
        if len(process) > room:
            process = encode_process(service_name, {}, max_str=128)
        if len(self._process_cache) >= _PROCESS_CACHE_MAX:
            self._process_cache.clear()
        self._process_cache[id(resource)] = (resource, process)
        return process

    # --- socket ------------------------------------------------------------------------------------

    def _send(self, process: bytes, span_bytes: list[bytes], flags: int = 0) -> bool:
        payload = encode_emit_batch(process, span_bytes, next(self._seq_ids))
        try:
            sock, _address = self._socket_and_address(resolve=not flags & _DONTWAIT)
            self._check_refused(sock)
            sock.send(payload, flags)
        except ConnectionRefusedError as exc:  # an earlier datagram was refused: so is this one
            self._write_off_unconfirmed(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - DNS, unreachable, EMSGSIZE, closed socket...
            report_error(_EXPORT_ERROR, exc)
            return False
        with self._lock:
            self.packets_sent += 1
            self.spans_sent += len(span_bytes)
            self._unconfirmed += len(span_bytes)
        return True

    def _check_refused(self, sock: socket.socket) -> None:
        """Settle the datagrams sent since the last check: refused (raise) or delivered to a listener."""
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error == errno.ECONNREFUSED:
            raise ConnectionRefusedError(error, os.strerror(error))
        with self._lock:
            self._unconfirmed = 0

    def _write_off_unconfirmed(self, exc: BaseException) -> None:
        with self._lock:
            refused, self._unconfirmed = self._unconfirmed, 0
            self.spans_refused += refused
        report_error(_EXPORT_ERROR, exc)

    def confirm(self) -> int:
        """Check for a refusal of what was sent last (flush and shutdown call it); returns spans refused so far."""
        sock = self._sock
        if sock is not None and self._unconfirmed and self._sock_pid == os.getpid():
            try:
                self._check_refused(sock)
            except ConnectionRefusedError as exc:
                self._write_off_unconfirmed(exc)
            except OSError:
                pass
        return self.spans_refused

    def _socket_and_address(self, resolve: bool = True) -> tuple[socket.socket, Any]:
        """Lazily resolve the agent and (re)create the socket, also after ``os.fork()``.

        ``resolve=False`` (the event loop's path) uses the address already known, however old:
        a lookup may block, and refreshing is the export thread's job.
        """
        with self._lock:
            if resolve or self._address is None:
                family, sockaddr = self._current_address()
            else:
                family, sockaddr = self._address
            pid = os.getpid()
            sock = self._sock
            if sock is None or self._sock_pid != pid or self._sock_family != family:
                if sock is not None:
                    # After a fork this closes only the child's copy of the descriptor.
                    sock.close()
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sock, self._sock_pid, self._sock_family = sock, pid, family
                self._connected_to, self._unconfirmed = None, 0
            if self._connected_to != sockaddr:
                # Connected, so that the kernel reports a refusal (ICMP port unreachable).
                sock.connect(sockaddr)
                self._connected_to = sockaddr
            return sock, sockaddr

    def _current_address(self) -> tuple[int, Any]:
        """Cached resolution; failures are retried at most every RESOLVE_RETRY_SECONDS."""
        now = time.monotonic()
        if self._address is not None and now - self._resolved_at < RESOLVE_REFRESH_SECONDS:
            return self._address
        if self._resolve_failed_at is not None and now - self._resolve_failed_at < RESOLVE_RETRY_SECONDS:
            if self._address is not None:
                return self._address
            raise OSError(f"cannot resolve Jaeger agent host {self._host!r} (retrying later)")
        try:
            self._address = _resolve(self._host, self._port)
        except OSError:
            self._resolve_failed_at = now
            if self._address is not None:  # keep the last good address rather than going dark
                return self._address
            raise
        self._resolved_at = now
        self._resolve_failed_at = None
        return self._address

    def __repr__(self) -> str:
        return f"JaegerUDPExporter(host={self._host!r}, port={self._port}, max_packet_size={self.max_packet_size})"
