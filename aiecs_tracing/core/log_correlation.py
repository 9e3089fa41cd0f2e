"""``trace_id``/``span_id`` on log records, so log lines can be found from a trace and back.

Per logger, a filter stamps each record; process-wide, a log record factory does, so a
format string such as ``%(trace_id)s`` works for every logger, including third-party ones.
Both stamp the current OpenTelemetry span, whichever tracer started it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

#: The record factory this module installed (``None``: not installed); once per process.
installed_factory: Callable[..., logging.LogRecord] | None = None


def stamp(record: logging.LogRecord) -> None:
    """Set ``record.trace_id``/``record.span_id`` (hex; empty strings outside a span)."""
    sc = trace.get_current_span().get_span_context()
    if sc.is_valid:
        record.trace_id = format(sc.trace_id, "032x")
        record.span_id = format(sc.span_id, "016x")
    else:
        record.trace_id = ""
        record.span_id = ""


class TraceIdFilter(logging.Filter):
    """A logger filter that stamps and keeps every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        stamp(record)
        return True


def install_record_factory() -> None:
    """Stamp every record in the process (idempotent); the previous factory still makes them."""
    global installed_factory
    if installed_factory is not None:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            stamp(record)
        except Exception:  # noqa: BLE001 - not a guard: a log record must be made whatever happens
            pass
        return record

    installed_factory = factory
    logging.setLogRecordFactory(factory)
