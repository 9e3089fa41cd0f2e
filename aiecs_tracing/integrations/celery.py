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
  request's headers into the new message: stale trace keys are replaced. The header rules
  are in :mod:`.celery_headers`.
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
  could still end it, says ``celery.state=INTERRUPTED``). The worker's receivers are in
  :mod:`.celery_worker`; this module adds the publishing side and installs both.

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

import functools
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..core.instrumentation import SpanKind, guarded_hook, start_span
from ._contract import install_once, installation_of, require_framework, uninstall_installed
from .celery_headers import (
    TRACE_KEYS,
    UBERCTX_PREFIX,
    header_carrier,
    message_carrier,
    parent_from_carrier,
    request_carrier,
    strip_trace_headers,
    write_trace_headers,
)
from .celery_worker import CeleryWorkerTracing

if TYPE_CHECKING:
    from ..core.instrumentation import Span
    from ..core.manager import TracingManager

__all__ = [
    "install_celery_tracing",
    "uninstall_celery_tracing",
    "is_celery_tracing_installed",
    # the header rules, re-exported from .celery_headers
    "TRACE_KEYS",
    "UBERCTX_PREFIX",
    "header_carrier",
    "message_carrier",
    "parent_from_carrier",
    "request_carrier",
    "strip_trace_headers",
    "write_trace_headers",
]

_FRAMEWORK = "celery"


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


class _CeleryTracing(CeleryWorkerTracing):
    """The per-app installation: signal receivers, the ``send_task`` wrapper, open spans."""

    def __init__(self, app: Any, tracing: TracingManager | None) -> None:
        super().__init__(app, tracing)
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
        self.end_open_spans()

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
        span = start_span(tracing, f"send {sender}", attributes, SpanKind.PRODUCER, fast=True)
        publish.span = span
        write_trace_headers(tracing, span, headers)  # replaces a context a retry copied over


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
