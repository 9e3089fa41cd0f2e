"""Who and where this process is: host name, primary IPv4, this library's version.

Computed once per process and shared by the resource a manager builds (``host.name``) and
the Jaeger process tags the UDP exporter sends (``hostname``, ``ip``, ``jaeger.version``),
so the encoder stays a pure function of its inputs.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping
from typing import Any

from ..version import __version__

_host_lock = threading.Lock()
_hostname: str | None = None
_ipv4: str | None = None


def local_hostname() -> str:
    """``socket.gethostname()``, computed once."""
    global _hostname
    if _hostname is None:
        try:
            _hostname = socket.gethostname()
        except OSError:
            _hostname = "unknown"
    return _hostname


def local_ipv4() -> str:
    """Best-effort primary IPv4 of this host, computed once (UDP connect sends no packet)."""
    global _ipv4
    if _ipv4 is not None:
        return _ipv4
    with _host_lock:
        if _ipv4 is None:
            _ipv4 = _discover_ipv4()
    return _ipv4


def _discover_ipv4() -> str:
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect(("10.255.255.255", 1))
            address: str = probe.getsockname()[0]
        finally:
            probe.close()
        if address and not address.startswith("0."):
            return address
    except OSError:
        pass
    try:
        return socket.gethostbyname(local_hostname())
    except OSError:
        return "127.0.0.1"


def library_version() -> str:
    return __version__


def jaeger_process_tags(
    resource_attributes: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """Split resource attributes into Jaeger's ``(serviceName, process tags)``.

    The other resource attributes become process tags; ``hostname``, ``ip`` and ``jaeger.version`` are
    added when absent, as jaeger-client did, so the Jaeger UI shows where a span came from.
    """
    service_name = resource_attributes.get("service.name")
    if not isinstance(service_name, str) or not service_name:
        service_name = "unknown_service"
    tags: dict[str, Any] = {k: v for k, v in resource_attributes.items() if k != "service.name"}
    if extra:
        tags.update(extra)
    tags.setdefault("hostname", local_hostname())
    tags.setdefault("ip", local_ipv4())
    tags.setdefault("jaeger.version", f"Python-aiecs-tracing-{library_version()}")
    return service_name, tags


