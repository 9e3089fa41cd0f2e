"""What happens to managers at process boundaries: fork, ``multiprocessing`` children, exit.

Also the registration point of optional add-ons that the manager offers but core does not
import (the OpenTracing shim registers itself here), so core's imports stay one-way.
"""

from __future__ import annotations

import atexit
import time
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from . import guard


class ManagedTracer(Protocol):
    """The part of a manager this module drives."""

    @property
    def config(self) -> Any: ...  # its shutdown_timeout

    @property
    def processor(self) -> Any: ...  # prepare_shutdown() or None

    @property
    def closed(self) -> bool: ...

    @property
    def enabled(self) -> bool: ...

    def flush(self, timeout: float = 30.0) -> bool: ...

    def close_by(self, deadline: float) -> None: ...


class OpenTracingSupport(NamedTuple):
    """The OpenTracing shim's entry points (``aiecs_tracing.compat.opentracing``)."""

    tracer_for: Callable[[Any], Any]  # an OpenTracing Tracer on a manager's spans
    install_global: Callable[[Any], Any]  # as ``opentracing.tracer``, unless one is set
    restore_global: Callable[[Any], None]  # undo install_global at close


#: Set by the shim when it is imported (the package does so when ``opentracing`` is installed).
opentracing_support: OpenTracingSupport | None = None


def register_opentracing(support: OpenTracingSupport) -> None:
    global opentracing_support
    opentracing_support = support


def install_opentracing_global(manager: Any) -> None:
    """``opentracing.tracer`` as jaeger-client set it; nothing without the shim."""
    if opentracing_support is not None:
        try:
            opentracing_support.install_global(manager)
        except Exception as exc:
            guard.report_error("opentracing global tracer", exc)


def restore_opentracing_global(manager: Any) -> None:
    if opentracing_support is not None:
        try:
            opentracing_support.restore_global(manager)
        except Exception as exc:
            guard.report_error("opentracing global tracer", exc)


_open: weakref.WeakSet[Any] = weakref.WeakSet()


def track(manager: ManagedTracer) -> None:
    """Close ``manager`` at exit, and flush it in ``multiprocessing`` children."""
    _open.add(manager)
    try:
        import multiprocessing.util

        multiprocessing.util.register_after_fork(manager, _register_child_finalizer)
    except Exception as exc:
        guard.report_error("after fork", exc)


def _register_child_finalizer(manager: ManagedTracer) -> None:
    """A child's ``Process._bootstrap`` clears the finalizers it inherited, then runs the
    after-fork hooks: the exit flush is registered here, since the child leaves with
    ``os._exit`` (no atexit)."""
    try:
        import multiprocessing.util

        multiprocessing.util.Finalize(None, _flush_ref, args=(weakref.ref(manager),), exitpriority=10)
    except Exception as exc:
        guard.report_error("after fork", exc)


def _flush_ref(ref: weakref.ref[ManagedTracer]) -> None:
    manager = ref()
    if manager is not None and manager.enabled:
        manager.flush(timeout=manager.config.shutdown_timeout)


@atexit.register
def close_all_at_exit() -> None:
    """One exit hook for every manager: all flushed in parallel against one deadline.

    The deadline is the longest ``shutdown_timeout`` among open managers (2 s by default),
    counted once for the whole process: three managers whose backend hangs cost 2 s, not 6.
    Every manager's export thread is asked for its final flush first, then each is waited
    for with what is left of the deadline; no thread is started (Python 3.12.0-3.12.1 refuse
    new threads in exit hooks).
    """
    managers = [m for m in list(_open) if not m.closed]
    if not managers:
        return
    deadline = time.monotonic() + max(m.config.shutdown_timeout for m in managers)
    for manager in managers:
        try:
            if manager.processor is not None:
                manager.processor.prepare_shutdown()
        except Exception as exc:
            guard.report_error("close at exit", exc)
    for manager in managers:
        try:
            manager.close_by(deadline)
        except Exception as exc:
            guard.report_error("close at exit", exc)
