"""Celery: one trace from the code that publishes a task to the worker that runs it.

``install_celery_tracing(app)`` connects Celery's signals for *that* app only and wraps
that app instance's ``send_task`` (every publish - ``delay``, ``apply_async``, signatures,
canvas, retries, beat, ``send_task`` by name - goes through it). Nothing global is patched.

Why the design looks like this (the OpenTelemetry instrumentation's known failures):

* ``before_task_publish`` is sent with the task *name* as sender and no app, and the task
  may not be registered in the publishing process (``send_task("acc.add")`` to a worker
  with its own registry, OpenTelemetry issue 609). So the publish span does not depend on
  the registry: the ``send_task`` wrapper marks "this app is publishing" in a context
  variable, the ``before_task_publish`` receiver acts only under that mark (starts the
  PRODUCER span, writes the headers), and the wrapper ends the span when the message is
  out - or with the error when publishing raises.
* The context goes into the message headers. With task protocol 2 the worker puts them at
  the top level of ``task.request`` (and in ``task.request.headers``); with protocol 1
  only under ``task.request.headers``. The worker reads both. A retry copies the old
  request's headers into the new message: stale trace keys are replaced.
* Worker spans are keyed by ``(task id, attempt)``, made current for the task body
  (``task_prerun``/``task_postrun`` run in the same thread for prefork, solo, threads and
  eager execution) and always popped in ``task_postrun``.
* Prefork children exit with ``os._exit`` (no ``atexit``): ``worker_process_shutdown``
  flushes the manager in the dying child (OpenTelemetry issue 4916, "10 tasks in, 1 span
  out"). The core processor and the UDP exporter re-initialise themselves after ``fork``.
* What only the worker's main process learns becomes a short span there, child of the
  publish span: ``run <task>`` for a message that never ran (unknown task, rejected,
  revoked or expired), ``time limit <task>`` / ``worker lost <task>`` / ``terminate <task>``
  for an execution it killed or lost (the child's own ``run <task>`` span, when the child
  could still end it, says ``celery.state=INTERRUPTED``).

* Publishing is the hot path (the caller waits for it): the PRODUCER span carries few
  attributes and is never made current, and it is the core's cheap light span
  (``TracingManager.start_light_span``). ``bench/celery.py`` measures it.

Attributes: publish - ``messaging.system=celery``, ``messaging.operation.type=send``,
``messaging.destination.name`` (routing key/queue), ``messaging.message.id`` (task id),
``celery.task_name``, ``component=celery``, and when set ``celery.retries`` /
``messaging.celery.retries``, ``celery.eta``, ``celery.exchange``. Run - the same names with
``process``, plus ``celery.state``, ``celery.hostname``, ``celery.retry.reason``, and for
outcomes ``celery.terminated``, ``celery.time_limit_exceeded``, ``celery.revoked.reason``.

Eager execution (``task_always_eager`` or ``task.apply()``) publishes nothing, so there is
no PRODUCER span: the execution is an INTERNAL ``run <task>`` span, child of the caller.
"""

from __future__ import annotations

import collections
import functools
import sys
import threading
import time
from contextvars import ContextVar
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
from ._contract import Installation, install_once, installation_of, require_framework, uninstall_installed

if TYPE_CHECKING:
    from ..core.instrumentation import Span
    from ..core.manager import TracingManager

__all__ = ["install_celery_tracing", "uninstall_celery_tracing", "is_celery_tracing_installed"]

_FRAMEWORK = "celery"
_TRACE_KEYS = ("traceparent", "tracestate", "baggage", "uber-trace-id")
_UBERCTX = "uberctx-"
#: Tasks with a hard time limit remembered by the worker's main process (task id -> context),
#: so a kill it performs can be reported under the right parent. Bounded: oldest dropped first.
_MAX_WATCHED = 10_000


class _Publish:
    """One ``send_task`` call in flight: the app publishing it and its PRODUCER span."""

    __slots__ = ("state", "tracing", "span")

    def __init__(self, state: _CeleryTracing, tracing: TracingManager) -> None:
        self.state = state
        self.tracing = tracing
        self.span: Span | None = None

    def finish(self) -> None:
        if self.span is not None:
            self.span.finish()

    def fail(self, exc: BaseException) -> None:
        span = self.span
        if span is not None:
            span.record_exception(exc)
            span.finish()


_publishing: ContextVar[_Publish | None] = ContextVar("aiecs_celery_publishing", default=None)


def _header_carrier(source: Any) -> dict[str, Any] | None:
    """The trace headers found in a mapping (message headers or a request's ``__dict__``)."""
    if not isinstance(source, dict):
        return None
    carrier = {key: source[key] for key in _TRACE_KEYS if key in source}
    if "traceparent" not in carrier and "uber-trace-id" not in carrier:
        return None
    if "baggage" not in carrier:
        for key, value in source.items():
            if isinstance(key, str) and key.startswith(_UBERCTX):
                carrier[key] = value
    return carrier


def _request_carrier(request: Any) -> dict[str, Any] | None:
    """Trace headers of a task request: top level (protocol 2), else ``request.headers``."""
    values = getattr(request, "__dict__", None)
    if not isinstance(values, dict):
        return None
    return _header_carrier(values) or _header_carrier(values.get("headers"))


def _run_attributes(name: str, retries: Any) -> dict[str, Any]:
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


def _strip_trace_headers(headers: dict[str, Any]) -> None:
    """Drop trace keys a retry copied from the previous attempt's request."""
    for key in [k for k in headers if isinstance(k, str) and (k in _TRACE_KEYS or k.startswith(_UBERCTX))]:
        del headers[key]


class _CeleryTracing(Installation):
    """The per-app installation: signal receivers, the ``send_task`` wrapper, open spans."""

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
        self._previous_send_task: Any = None
        self._had_instance_send_task = False
        from celery import signals as _signals  # require_framework("celery") checked it

        uid = f"aiecs_tracing.celery.{id(app)}"
        self._connections = [
            (_signals.before_task_publish, self.on_before_publish, uid + ".before_publish"),
            (_signals.task_prerun, self.on_prerun, uid + ".prerun"),
            (_signals.task_postrun, self.on_postrun, uid + ".postrun"),
            (_signals.task_failure, self.on_failure, uid + ".failure"),
            (_signals.task_retry, self.on_retry, uid + ".retry"),
            (_signals.task_revoked, self.on_revoked, uid + ".revoked"),
            (_signals.task_rejected, self.on_rejected, uid + ".rejected"),
            (_signals.task_unknown, self.on_unknown, uid + ".unknown"),
            (_signals.task_received, self.on_received, uid + ".received"),
            (_signals.worker_process_shutdown, self.on_process_shutdown, uid + ".process_shutdown"),
            (_signals.worker_shutdown, self.on_worker_shutdown, uid + ".worker_shutdown"),
        ]

    # --- set-up ---------------------------------------------------------------------------
    def manager(self) -> TracingManager | None:
        return active_manager(self.tracing)

    def install(self) -> _CeleryTracing:
        for signal, receiver, uid in self._connections:
            signal.connect(receiver, weak=False, dispatch_uid=uid)
        app = self.app
        self._had_instance_send_task = "send_task" in app.__dict__
        original = app.send_task
        self._previous_send_task = original
        app.send_task = self._wrap_send_task(original)
        self.active = True
        return self

    def uninstall(self) -> None:
        self.active = False
        for signal, _receiver, uid in self._connections:
            signal.disconnect(dispatch_uid=uid)
        app = self.app
        current = app.__dict__.get("send_task")
        if getattr(current, "__aiecs_celery_state__", None) is self:
            if self._had_instance_send_task:
                app.send_task = self._previous_send_task
            else:
                del app.__dict__["send_task"]
        # else someone wrapped it after us: our wrapper stays in their chain but passes through.
        for span, _token, _tracing in list(self.running.values()):  # uninstalled mid-task
            span.finish()
        self.running.clear()
        self.watched.clear()

    def _wrap_send_task(self, original: Any) -> Any:
        state = self

        @functools.wraps(original)
        def send_task(*args: Any, **kwargs: Any) -> Any:
            if not state.active:
                return original(*args, **kwargs)
            tracing = state.manager()
            if tracing is None:
                return original(*args, **kwargs)
            publish = _Publish(state, tracing)
            token = _publishing.set(publish)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                publish.fail(exc)
                raise
            finally:
                _publishing.reset(token)
            # Ended here rather than in after_task_publish: the same moment (the message is
            # out), and one signal fewer to dispatch on every publish.
            publish.finish()
            return result

        send_task.__aiecs_celery_state__ = state  # type: ignore[attr-defined]
        return send_task

    # --- publish --------------------------------------------------------------------------
    @guarded_hook("celery publish")
    def on_before_publish(
        self,
        sender: Any = None,
        body: Any = None,
        exchange: Any = None,
        routing_key: Any = None,
        headers: Any = None,
        properties: Any = None,
        **_: Any,
    ) -> None:
        publish = _publishing.get()
        if publish is None or publish.state is not self or publish.span is not None:
            return
        if not isinstance(headers, dict):
            return
        task_id = headers.get("id")
        retries = headers.get("retries")
        eta = headers.get("eta")
        if task_id is None and isinstance(body, dict):  # task protocol 1
            task_id, retries, eta = body.get("id"), body.get("retries"), body.get("eta")
        # Few attributes on purpose: every one is paid by the caller at every publish.
        attributes: dict[str, Any] = {
            "component": "celery",
            "messaging.system": "celery",
            "messaging.operation.type": "send",
            "celery.task_name": sender if type(sender) is str else str(sender),
        }
        if task_id is not None:
            attributes["messaging.message.id"] = str(task_id)
        if routing_key:
            attributes["messaging.destination.name"] = str(routing_key)
        if exchange:
            attributes["celery.exchange"] = str(getattr(exchange, "name", exchange))
        if retries:
            attributes["celery.retries"] = int(retries)
            attributes["messaging.celery.retries"] = int(retries)
        if eta:
            attributes["celery.eta"] = str(eta)
        tracing = publish.tracing
        if "traceparent" in headers or "uber-trace-id" in headers:
            _strip_trace_headers(headers)
        span = start_span(tracing, f"send {sender}", attributes, SpanKind.PRODUCER, fast=True)
        publish.span = span
        tracing.inject_span_context(span, headers)

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
        attributes = _run_attributes(str(name), retries)
        if task_id is not None:
            attributes["messaging.message.id"] = str(task_id)
        if eager:
            attributes["celery.eager"] = True
            parent = None
            kind = SpanKind.INTERNAL
        else:
            carrier = _request_carrier(request)
            parent = tracing.extract_span_context(carrier) if carrier is not None else None
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
            carrier = _request_carrier(sender.request)
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
        """Remember the context of tasks with a hard time limit: a kill is reported here."""
        if request is None or not self.active:
            return
        task = getattr(request, "task", None)
        if task is None or task.app is not self.app:
            return
        limits = request.time_limits
        hard = (limits[0] if limits else None) or task.time_limit or self.app.conf.task_time_limit
        if not hard or self.manager() is None:
            return
        headers = getattr(request, "request_dict", None)
        carrier = _header_carrier(headers) or _header_carrier((headers or {}).get("headers"))
        retries = (headers or {}).get("retries", 0)
        with self._watch_lock:
            self.watched[request.id] = (carrier, request.name, retries, time.time())
            while len(self.watched) > _MAX_WATCHED:
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
            carrier = _request_carrier(request)
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
        carrier = _header_carrier(headers)
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
        parent = tracing.extract_span_context(carrier) if carrier is not None else None
        attributes = _run_attributes(name, retries)
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
            if tracing is not None:
                tracing.flush(timeout=5.0)


def install_celery_tracing(app: Any, tracing: TracingManager | None = None) -> Any:
    """Trace every task ``app`` publishes and runs; idempotent; returns ``app``.

    ``tracing`` defaults to the process default manager, looked up at each event, so this
    may be called before the manager exists (e.g. created in ``worker_process_init``).
    Needs Celery: ``pip install 'aiecs-tracing[celery]'``.
    """
    require_framework("celery")
    install_once(app, _FRAMEWORK, tracing, lambda: _CeleryTracing(app, tracing).install())
    return app


def uninstall_celery_tracing(app: Any) -> Any:
    """Undo :func:`install_celery_tracing` for ``app``; idempotent; returns ``app``."""
    uninstall_installed(app, _FRAMEWORK)
    return app


def is_celery_tracing_installed(app: Any) -> bool:
    state = installation_of(app, _FRAMEWORK)
    return isinstance(state, _CeleryTracing) and state.active
