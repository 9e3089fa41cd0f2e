"""Celery, the worker's side: a span per task execution, and the outcomes only a worker sees.

:class:`CeleryWorkerTracing` holds the signal receivers that run in worker processes; the
per-app installation in :mod:`.celery` adds the publishing side and connects them.

* Executions are keyed by ``(task id, attempt)``, made current for the task body
  (``task_prerun``/``task_postrun`` run in the same thread for prefork, solo, threads and
  eager execution) and always popped in ``task_postrun``.
* What only the worker's main process learns becomes a short span there, child of the
  publish span (a "stand-in"): ``run <task>`` for a message that never ran (unknown task,
  rejected, revoked or expired), ``time limit <task>`` / ``worker lost <task>`` /
  ``terminate <task>`` for an execution it killed or lost.
* Prefork children exit with ``os._exit`` (no ``atexit``): ``worker_process_shutdown``
  flushes the manager in the dying child.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..core.instrumentation import (
    NEW_TRACE,
    SpanKind,
    active_manager,
    attach,
    detach,
    guarded,
    guarded_hook,
    integration_secret_keys,
    scrub_text,
    start_span,
)
from ..core.manager import get_tracing_manager
from ._contract import Installation
from .celery_headers import header_carrier, message_carrier, parent_from_carrier, request_carrier

if TYPE_CHECKING:
    from ..core.instrumentation import Span
    from ..core.manager import TracingManager

__all__ = ["CeleryWorkerTracing", "MAX_WATCHED", "run_attributes"]

#: Tasks with a hard time limit remembered by the worker's main process (task id -> context),
#: so a kill it performs can be reported under the right parent. Bounded: oldest dropped first.
MAX_WATCHED = 10_000


def run_attributes(name: str, retries: Any) -> dict[str, Any]:
    """What every ``run <task>`` span (an execution, or a stand-in for one) starts with."""
    retries = int(retries or 0)
    return {
        "component": "celery",
        "messaging.system": "celery",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "celery.action": "run",
        "celery.task_name": name,
        "celery.retries": retries,
        "messaging.celery.retries": retries,
    }


class CeleryWorkerTracing(Installation):
    """The worker-side receivers of one app's installation, and the spans they keep open."""

    def __init__(self, app: Any, tracing: TracingManager | None) -> None:
        self.app = app
        self.tracing = tracing
        self.active = False
        #: (task id, attempt) -> (span, context token, manager) for executions in this process
        self.running: dict[tuple[Any, Any], tuple[Span, object, TracingManager]] = {}
        self.watched: collections.OrderedDict[str, tuple[dict[str, Any] | None, str, Any, float]] = (
            collections.OrderedDict()
        )
        self._watch_lock = threading.Lock()

    def manager(self) -> TracingManager | None:
        return active_manager(self.tracing)

    def end_open_spans(self) -> None:
        """Uninstalled mid-task: end what is still running, forget what is watched."""
        for span, _token, _tracing in list(self.running.values()):
            span.finish()
        self.running.clear()
        self.watched.clear()

    # --- execution ------------------------------------------------------------------------
    @guarded_hook("celery prerun")
    def on_prerun(self, sender: Any = None, task_id: Any = None, task: Any = None, **_: Any) -> None:
        task = task if task is not None else sender
        if task is None or not self.active:
            return
        if task.app is not self.app:
            return
        tracing = self.manager()
        if tracing is None:
            return
        request = task.request
        retries = request.retries or 0
        name = task.name
        eager = bool(request.is_eager)
        parent: Any  # None (the current span), a remote SpanContext or NEW_TRACE
        attributes = run_attributes(str(name), retries)
        if task_id is not None:
            attributes["messaging.message.id"] = str(task_id)
        if eager:
            attributes["celery.eager"] = True
            parent = None
            kind = SpanKind.INTERNAL
        else:
            parent = parent_from_carrier(tracing, request_carrier(request))
            if parent is None:
                parent = NEW_TRACE  # an untraced publisher: a new trace, whatever is current here
            kind = SpanKind.CONSUMER
            delivery = request.delivery_info
            if isinstance(delivery, dict) and delivery.get("routing_key"):
                attributes["messaging.destination.name"] = str(delivery["routing_key"])
            if request.hostname:
                attributes["celery.hostname"] = str(request.hostname)
        span = start_span(tracing, "run " + str(name), attributes, kind, parent)
        token = attach(tracing, span)
        self.running[(task_id, retries)] = (span, token, tracing)

    def _entry_key(self, task: Any, task_id: Any) -> tuple[Any, Any] | None:
        request = getattr(task, "request", None)
        if request is None or request.id != task_id:
            return None
        return (task_id, request.retries or 0)

    @guarded_hook("celery postrun")
    def on_postrun(
        self, sender: Any = None, task_id: Any = None, task: Any = None, state: Any = None, **_: Any
    ) -> None:
        if self.watched:  # solo and threads pools: the main process ran it, nothing to stand in for
            with self._watch_lock:
                self.watched.pop(task_id, None)
        if not self.running:
            return
        task = task if task is not None else sender
        key = self._entry_key(task, task_id)
        entry = self.running.pop(key, None) if key is not None else None
        if entry is None:
            return
        span, token, tracing = entry
        detach(tracing, token)
        if state:
            span.otel_span.set_attribute("celery.state", str(state))
        if (not state or state == "FAILURE") and span.otel_span.status.is_ok:  # type: ignore[attr-defined]  # an SDK span (ReadableSpan.status)
            # No task_failure: an exception is escaping Celery's handling - eager with
            # task_eager_propagates, or SystemExit when the worker terminates the child
            # (hard time limit, revoke with terminate=True). postrun runs in a finally.
            escaping = sys.exc_info()[1]
            if escaping is not None:
                if not state:
                    interrupted = isinstance(escaping, (SystemExit, KeyboardInterrupt))
                    span.otel_span.set_attribute("celery.state", "INTERRUPTED" if interrupted else "FAILURE")
                span.record_exception(escaping)
            elif state == "FAILURE":
                span.set_status_error("task failed")
        span.finish()

    @guarded_hook("celery failure")
    def on_failure(
        self, sender: Any = None, task_id: Any = None, exception: Any = None, einfo: Any = None, **_: Any
    ) -> None:
        if sender is None or sender.app is not self.app:
            return
        key = self._entry_key(sender, task_id)
        entry = self.running.get(key) if key is not None else None
        if entry is not None:
            span = entry[0]
            span.otel_span.set_attribute("celery.state", "FAILURE")
            if isinstance(exception, BaseException):
                span.record_exception(exception)
            else:
                span.set_status_error("task failed")
            return
        # Not running in this process: the worker's main process learnt of a hard
        # time-limit kill or a lost child. The child's own span never ended.
        carrier, name, retries, started = self._forget(task_id, sender)
        if carrier is None and key is not None:  # a lost child: the request was pushed
            carrier = request_carrier(sender.request)
        kind = type(exception).__name__
        extra: dict[str, Any] = {"celery.state": "FAILURE"}
        if kind == "TimeLimitExceeded":
            extra["celery.time_limit_exceeded"] = True
            extra["celery.terminated"] = True
            operation = "time limit "
        elif kind == "WorkerLostError":
            extra["celery.terminated"] = True
            operation = "worker lost "
        else:  # e.g. Reject(requeue=False), recorded by the main process
            operation = "failure "
        # The execution's own span (if the child could end it) is "run <task>"; this one
        # is what the worker's main process did about it, beside it under the publish span.
        self._stand_in(name, task_id, retries, carrier, extra, exception=exception, start=started, operation=operation)

    @guarded_hook("celery retry")
    def on_retry(self, sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
        if request is None or not self.running:
            return
        entry = self.running.get((request.id, request.retries or 0))
        if entry is None:
            return
        span = entry[0]
        span.otel_span.set_attribute("celery.state", "RETRY")
        text = scrub_text(str(reason)[:1280], integration_secret_keys())[:1024]  # an error text may hold a DSN
        span.otel_span.set_attribute("celery.retry.reason", text)
        span.otel_span.add_event("retry", {"celery.retry.reason": text})

    # --- outcomes only the worker's main process sees -------------------------------------
    @guarded_hook("celery received")
    def on_received(self, sender: Any = None, request: Any = None, **_: Any) -> None:
        """Remember each received task's trace context (the last :data:`MAX_WATCHED`).

        The main process reports what it alone learns - a time-limit kill, a lost child, a
        ``Reject`` - in ``task_failure``, whose arguments carry no request: the stand-in span
        finds its publish span here.
        """
        if request is None or not self.active:
            return
        task = getattr(request, "task", None)
        if task is None or task.app is not self.app or self.manager() is None:
            return
        headers = getattr(request, "request_dict", None)
        carrier = message_carrier(headers)
        retries = (headers or {}).get("retries", 0)
        with self._watch_lock:
            self.watched[request.id] = (carrier, request.name, retries, time.time())
            while len(self.watched) > MAX_WATCHED:
                self.watched.popitem(last=False)

    def _forget(self, task_id: Any, task: Any) -> tuple[dict[str, Any] | None, str, Any, float | None]:
        with self._watch_lock:
            found = self.watched.pop(task_id, None)
        if found is None:
            request = getattr(task, "request", None)
            retries = request.retries if request is not None and request.id == task_id else 0
            return None, str(getattr(task, "name", "?")), retries, None
        return found

    @guarded_hook("celery revoked")
    def on_revoked(
        self,
        sender: Any = None,
        request: Any = None,
        terminated: Any = False,
        signum: Any = None,
        expired: Any = False,
        **_: Any,
    ) -> None:
        if sender is None or request is None or sender.app is not self.app:
            return
        attributes: dict[str, Any] = {"celery.state": "REVOKED"}
        if terminated:
            attributes["celery.terminated"] = True
            if signum is not None:
                attributes["celery.terminated.signal"] = str(signum)
        if expired:
            attributes["celery.revoked.reason"] = "expired"
        description = "expired" if expired else ("terminated" if terminated else None)
        entry = self.running.get((request.id, request.retries or 0))
        if entry is not None:  # solo/threads: the execution's own span, ended by postrun
            span = entry[0]
            for key, value in attributes.items():
                span.otel_span.set_attribute(key, value)
            if description:
                span.set_status_error(f"task {description}")
            return
        carrier, name, retries, started = self._forget(request.id, sender)
        if carrier is None:
            carrier = request_carrier(request)
        # Revoked before it ran: this is its run span. Terminated while running in a child:
        # the child ends its own run span; this records the termination beside it.
        operation = "terminate " if terminated else "run "
        self._stand_in(
            name, request.id, retries, carrier, attributes, description=description, start=started, operation=operation
        )

    def on_unknown(self, sender: Any = None, message: Any = None, name: Any = None, id: Any = None, **_: Any) -> None:
        self._on_bad_message(sender, message, name, id, "unknown task", "UNKNOWN")

    def on_rejected(self, sender: Any = None, message: Any = None, **_: Any) -> None:
        self._on_bad_message(sender, message, None, None, "message rejected", "REJECTED")

    @guarded_hook("celery bad message")
    def _on_bad_message(self, consumer: Any, message: Any, name: Any, task_id: Any, why: str, state: str) -> None:
        if consumer is None or getattr(consumer, "app", None) is not self.app:
            return
        headers = getattr(message, "headers", None) or {}
        carrier = header_carrier(headers)
        if not isinstance(headers, dict):
            headers = {}
        name = name or headers.get("task") or "unknown"
        task_id = task_id or headers.get("id")
        self._stand_in(str(name), task_id, headers.get("retries", 0), carrier, {"celery.state": state}, description=why)

    def _stand_in(
        self,
        name: str,
        task_id: Any,
        retries: Any,
        carrier: dict[str, Any] | None,
        extra: dict[str, Any],
        *,
        exception: Any = None,
        description: str | None = None,
        start: float | None = None,
        operation: str = "run ",
    ) -> None:
        """A span for an outcome the execution itself could not report (``run <task>`` by default)."""
        tracing = self.manager()
        if tracing is None:
            return
        parent = parent_from_carrier(tracing, carrier)
        attributes = run_attributes(name, retries)
        attributes.update(extra)
        if task_id is not None:
            attributes["messaging.message.id"] = str(task_id)
        # A stand-in without a publish context would start a new trace from nowhere; keep it
        # as a root span anyway: a lost task must be visible.
        span = start_span(
            tracing,
            operation + name,
            attributes,
            SpanKind.CONSUMER,
            parent if parent is not None else NEW_TRACE,
            start_time=int(start * 1e9) if start is not None else None,
        )
        if isinstance(exception, BaseException):
            span.record_exception(exception)
        elif description:
            span.set_status_error(description)
        span.finish()

    # --- process lifecycle ----------------------------------------------------------------
    def on_process_shutdown(self, **_: Any) -> None:
        """A prefork child is about to ``os._exit``: export what it finished."""
        self._flush("celery child flush")

    def on_worker_shutdown(self, **_: Any) -> None:
        self._flush("celery worker flush")

    def _flush(self, kind: str) -> None:
        with guarded(kind):
            tracing = self.tracing or get_tracing_manager()
            if tracing is not None:  # the user's exit deadline (shutdown_timeout, 2 s by default)
                tracing.flush(timeout=tracing.config.shutdown_timeout)
