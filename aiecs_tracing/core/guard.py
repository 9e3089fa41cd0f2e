"""One place for "tracing never breaks the host app".

Every instrumentation path funnels its internal failures through :func:`report_error`
(or the :func:`guarded` context manager). The first failure of each *kind* is logged
with its traceback; later ones are only counted, so a broken backend or a bug in an
adapter costs a log line, not a log flood, and never an exception in user code.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger("aiecs_tracing")

_lock = threading.Lock()
_seen: dict[str, int] = {}
_last_error: str | None = None


def report_error(kind: str, exc: BaseException | None = None, message: str | None = None) -> None:
    """Record an internal failure of ``kind``; log it the first time only."""
    global _last_error
    try:
        text = message or (f"{type(exc).__name__}: {exc}" if exc is not None else kind)
        with _lock:
            count = _seen.get(kind, 0) + 1
            _seen[kind] = count
            _last_error = f"{kind}: {text}"
        if count == 1:
            logger.warning(
                "aiecs_tracing: %s failed (%s); further failures of this kind are counted, not logged",
                kind,
                text,
                exc_info=exc if exc is not None and logger.isEnabledFor(logging.DEBUG) else None,
            )
    except Exception:  # pragma: no cover - logging itself failed; nothing left to do
        pass


@contextmanager
def guarded(kind: str) -> Iterator[None]:
    """Swallow and report any exception raised inside the block."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - that is the point
        report_error(kind, exc)


def error_counts() -> dict[str, int]:
    """How many internal failures of each kind happened in this process."""
    with _lock:
        return dict(_seen)


def last_error() -> str | None:
    with _lock:
        return _last_error


def _reinit_lock_after_fork() -> None:
    # A fork while another thread held the lock would leave the child's copy locked forever.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_lock_after_fork)


def _reset_for_tests() -> None:
    global _last_error
    with _lock:
        _seen.clear()
        _last_error = None
