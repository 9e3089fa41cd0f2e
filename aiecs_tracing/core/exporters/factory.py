"""Build the span exporter the configuration asks for: UDP, OTLP/HTTP, console or memory."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace.export import SpanExporter

if TYPE_CHECKING:
    from ..config import TracingConfig


class _ThroughGuard(logging.Filter):
    """The OTLP exporter's warnings and errors as one of ours: logged once, then counted.

    It logs every failed batch, every retry and its own aborted retries at shutdown; a
    backend that is down must cost one line (plus the drop count), with the cause in
    ``get_tracer_info()["last_error"]``. Its messages are scrubbed (an endpoint URL may hold
    credentials).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            from ..guard import report_error
            from ..redaction import scrub_text

            report_error("OTLP export", message=scrub_text(record.getMessage())[:500])
        except Exception:
            pass
        return False


_otlp_filter_installed = False


def _quiet_otlp_logger() -> None:
    """The OTLP exporter logs every failed batch; a down backend must cost one line."""
    global _otlp_filter_installed
    if not _otlp_filter_installed:
        _otlp_filter_installed = True
        for name in (
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "opentelemetry.exporter.otlp.proto.http",
        ):
            logging.getLogger(name).addFilter(_ThroughGuard())


def build_exporter(config: TracingConfig) -> tuple[SpanExporter | None, str]:
    """(exporter, a human-readable endpoint) for ``config.exporter``."""
    kind = config.exporter
    if kind == "udp":
        from .jaeger_udp import JaegerUDPExporter

        return JaegerUDPExporter(config.jaeger_host, config.jaeger_port), f"udp://{config.jaeger_host}:{config.jaeger_port}"
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        _quiet_otlp_logger()
        endpoint = config.otlp_endpoint or "http://localhost:4318/v1/traces"
        exporter = OTLPSpanExporter(
            endpoint=endpoint,
            headers=config.otlp_headers or None,
            timeout=max(1, config.export_timeout_millis // 1000),
        )
        return exporter, endpoint
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(), "console"
    if kind == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        return InMemorySpanExporter(), "memory"
    return None, "none"
