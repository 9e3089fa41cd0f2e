"""The embedded collector: Jaeger's ports and query API in one Python object.

What SQLite is to a database server, this is to Jaeger: a local backend with the same
protocols (OTLP/HTTP on 4318, the agent's UDP thrift-compact ``emitBatch`` on 6831) and
the same HTTP JSON query API and UI port (16686), so tests, demos and laptops need no
Docker. Use it from Python::

    with Collector(otlp_port=0, udp_port=0, ui_port=0) as collector:
        ...export spans to collector.otlp_endpoint...
        collector.wait_for_spans(3, timeout=5)
        requests.get(collector.query_url + "/api/services")

or from a shell with ``aiecs-tracing serve``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from .api import OtlpHandler, QueryHandler, admit_otlp, admit_query, release_otlp
from .connections import BoundedHTTPServer
from .exposure import ExposureError, is_loopback_address
from .http_base import CollectorContext, admit_exposed
from .runtime import BytesInFlight, QueryPriority, ReceiverStats
from .sampling import DEFAULT_ADAPTIVE_WINDOW, SamplingHandler, SamplingStrategies
from .store import MEMORY, SpanStore
from .thrift_compact import ThriftDecodeError, decode_emit_batch

logger = logging.getLogger("aiecs_tracing.collector")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_OTLP_PORT = 4318
DEFAULT_UDP_PORT = 6831
DEFAULT_UI_PORT = 16686
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024
DEFAULT_COMMIT_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 512
QUERY_MAX_BODY_BYTES = 64 * 1024  # the query and sampling ports take GETs: no body worth buffering
UDP_RECEIVER = "jaeger_udp"
MAX_DATAGRAM = 65_535
RECEIVER_NAMES = {"otlp": "OTLP/HTTP receiver", "query": "query API and UI", "sampling": "sampling endpoint"}


class BindError(OSError):
    """A port that could not be bound, naming the receiver (``--otlp-port``...) and the address."""

    def __init__(self, receiver: str, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, f"cannot bind the {receiver} to {host}:{port}: {cause.strerror or cause}")
        self.receiver = receiver
        self.port = port
        self.cause = cause


class Collector:
    """OTLP/HTTP + Jaeger UDP receivers, SQLite storage, Jaeger query API and web UI.

    Port 0 picks a free port; the ports actually bound are on :attr:`otlp_port`,
    :attr:`udp_port` and :attr:`ui_port` after :meth:`start`. ``None`` disables a receiver.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        otlp_port: int | None = DEFAULT_OTLP_PORT,
        udp_port: int | None = DEFAULT_UDP_PORT,
        ui_port: int | None = DEFAULT_UI_PORT,
        db_path: str | os.PathLike[str] = MEMORY,
        *,
        max_spans: int | None = None,
        max_age_seconds: float | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sampling_port: int | None = None,
        sampling_strategies: str | os.PathLike[str] | None = None,
        sampling_adaptive: float | None = None,
        sampling_adaptive_window: float = DEFAULT_ADAPTIVE_WINDOW,
        max_db_bytes: int | None = None,
        auth_token: str | None = None,
        insecure_no_auth: bool = False,
        max_bytes_in_flight: int = DEFAULT_MAX_BYTES_IN_FLIGHT,
        commit_timeout: float = DEFAULT_COMMIT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        # Exposure rules (see exposure.py): off loopback, a token or an explicit opt-out.
        self.loopback_only = is_loopback_address(host)
        self.auth_token = auth_token or None
        if not self.loopback_only and not self.auth_token and not insecure_no_auth:
            raise ExposureError(
                f"binding to {host or 'all interfaces'} exposes traces to the network: "
                "give an auth token (--auth-token or AIECS_TRACING_TOKEN) or --insecure-no-auth"
            )
        self.insecure_no_auth = insecure_no_auth and not self.auth_token and not self.loopback_only
        self.max_db_bytes = max_db_bytes
        self.in_flight = BytesInFlight(max_bytes_in_flight)
        self.decode_slots = threading.BoundedSemaphore(2)
        self.query_priority = QueryPriority()
        self.commit_timeout = commit_timeout
        self.max_connections = max_connections
        self.host = host
        self.otlp_port = otlp_port
        self.udp_port = udp_port
        self.ui_port = ui_port
        self.db_path = db_path
        self.max_spans = max_spans
        self.max_age_seconds = max_age_seconds
        self.max_body_bytes = max_body_bytes
        # Remote sampling: /api/sampling on the query port always; its own port when sampling_port is set
        # (the CLI's default is Jaeger's 5778). A bad strategies file raises here, before any port is bound.
        self.sampling_port = sampling_port
        self.sampling = SamplingStrategies(
            sampling_strategies, adaptive_target=sampling_adaptive, window=sampling_adaptive_window
        )
        self.stats = ReceiverStats()
        self.store: SpanStore | Any = None
        self._http_servers: list[BoundedHTTPServer] = []
        self._udp_socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Collector:
        """Bind every port, start the background threads, return self."""
        if self._started:
            return self
        self.store = SpanStore(
            self.db_path,
            max_spans=self.max_spans,
            max_age_seconds=self.max_age_seconds,
            max_db_bytes=self.max_db_bytes,
        ).start()
        self.sampling.store = self.store
        try:
            if self.otlp_port is not None:
                server = self._bind_http(self.otlp_port, OtlpHandler, "otlp", admit_otlp, release_otlp, workers=32)
                self.otlp_port = server.server_address[1]
            if self.ui_port is not None:
                server = self._bind_http(self.ui_port, QueryHandler, "query", admit_query)
                self.ui_port = server.server_address[1]
            if self.sampling_port is not None:
                server = self._bind_http(self.sampling_port, SamplingHandler, "sampling", admit_exposed, workers=2)
                self.sampling_port = server.server_address[1]
            if self.udp_port is not None:
                try:
                    self._udp_socket = self._bind_udp(self.udp_port)
                except OSError as exc:
                    raise BindError("Jaeger UDP receiver", self.host, self.udp_port, exc) from exc
                self.udp_port = self._udp_socket.getsockname()[1]
                self._spawn(self._udp_loop, "aiecs-collector-udp")
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def stop(self) -> None:
        """Stop receiving, write what is queued, close the database."""
        self._stopping.set()
        # shutdown() waits for the serve loop's next poll; wait for all servers at once.
        stoppers = [threading.Thread(target=server.shutdown, daemon=True) for server in self._http_servers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join(5)
        for server in self._http_servers:
            server.server_close()
            server.close_idle_connections()
        if self._udp_socket is not None:
            self._udp_socket.close()
        for thread in self._threads:
            thread.join(5)
        self._http_servers.clear()
        self._threads.clear()
        if self.store is not None:
            self.store.stop()
        self._started = False

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _bind_http(
        self, port: int, handler: type, name: str, admit: Any, release: Any = None, workers: int = 4
    ) -> BoundedHTTPServer:
        handlers_see: CollectorContext = self  # what the handlers use of it (mypy checks it is all there)
        try:
            server = BoundedHTTPServer(
                (self.host, port),
                handler,
                handlers_see,
                name=name,
                workers=workers,
                max_connections=self.max_connections,
                admit=admit,
                release=release,
                max_body_bytes=self.max_body_bytes if name == "otlp" else QUERY_MAX_BODY_BYTES,
            )
        except (OSError, OverflowError) as exc:
            cause = exc if isinstance(exc, OSError) else OSError(None, str(exc))
            raise BindError(RECEIVER_NAMES[name], self.host, port, cause) from exc
        if name == "otlp":
            server.on_refused = lambda _response: self.stats.reject_payload("otlp_http")
        self._http_servers.append(server)
        self._spawn(lambda: server.serve_forever(poll_interval=0.1), f"aiecs-collector-{name}")
        return server

    def _bind_udp(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        except OSError:
            pass
        sock.bind((self.host, port))
        sock.settimeout(0.1)
        return sock

    # ------------------------------------------------------------------ UDP receiver

    def _udp_loop(self) -> None:
        sock = self._udp_socket
        assert sock is not None
        while not self._stopping.is_set():
            try:
                datagram = sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            self.ingest_jaeger_datagram(datagram)

    def ingest_jaeger_datagram(self, datagram: bytes) -> int:
        """Decode and queue one ``emitBatch`` datagram; returns spans accepted (0 if rejected)."""
        try:
            records = decode_emit_batch(datagram)
            accepted = self.store.submit(records) if records else True
        except ThriftDecodeError as exc:
            self.stats.reject_payload(UDP_RECEIVER)
            logger.debug("collector: rejected a %d-byte UDP datagram: %s", len(datagram), exc)
            return 0
        except Exception as exc:  # noqa: BLE001 - garbage must never stop the receiver
            self.stats.reject_payload(UDP_RECEIVER)
            logger.debug("collector: UDP datagram could not be stored: %r", exc)
            return 0
        if not accepted:
            self.stats.reject_spans(UDP_RECEIVER, len(records))
            return 0
        self.stats.receive(UDP_RECEIVER, len(records))
        return len(records)

    # ------------------------------------------------------------------ helpers

    @property
    def query_url(self) -> str:
        return f"http://{self._url_host}:{self.ui_port}"

    @property
    def sampling_url(self) -> str:
        """Where clients poll strategies: the sampling port's ``/sampling``, else the query port's."""
        if self.sampling_port is not None:
            return f"http://{self._url_host}:{self.sampling_port}/sampling"
        return f"{self.query_url}/api/sampling"

    @property
    def otlp_endpoint(self) -> str:
        return f"http://{self._url_host}:{self.otlp_port}/v1/traces"

    @property
    def bound_host(self) -> str:
        """The address the ports are bound to, as given (``0.0.0.0`` means every interface)."""
        return f"[{self.host}]" if ":" in self.host else (self.host or "0.0.0.0")

    @property
    def _url_host(self) -> str:
        host = self.host
        if host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host else host

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> int:
        """Block until ``count`` spans have been stored since start (or timeout); return how many."""
        return self.store.wait_for_stored(count, timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every span received so far is stored."""
        return self.store.flush(timeout)

    def stats_snapshot(self) -> dict[str, Any]:
        """What ``/api/stats`` returns."""
        receivers = ("otlp_http", UDP_RECEIVER)
        snapshot: dict[str, Any] = self.stats.snapshot(receivers)
        counters = self.store.counters()
        snapshot["stored"] = counters["stored"]
        snapshot["queued"] = counters["queued"]
        snapshot["dropped"] = counters["dropped"]
        snapshot["write_errors"] = counters["write_errors"]
        snapshot["store"] = {
            "path": self.store.display_path,
            "spans": counters["spans"],
            "bytes": self.store.size_bytes(),
            "max_spans": self.max_spans,
            "max_age_seconds": self.max_age_seconds,
            "max_db_bytes": self.max_db_bytes,
            "disk_full": counters["disk_full"],
            "clamped_future": counters["clamped_future"],
        }
        snapshot["http"] = {
            "bytes_in_flight": self.in_flight.used,
            "max_bytes_in_flight": self.in_flight.limit,
            "connections": {server.name: server.connection_count() for server in self._http_servers},
            "max_connections": self.max_connections,
        }
        snapshot["ports"] = {"otlp_http": self.otlp_port, "jaeger_udp": self.udp_port, "query": self.ui_port}
        if self.sampling_port is not None:
            snapshot["ports"]["sampling"] = self.sampling_port
        snapshot["sampling"] = self.sampling.info()
        return snapshot
