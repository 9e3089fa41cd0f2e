"""The app that hosts the ASGI middleware: its middleware list, and FastAPI's own tracing.

A Starlette/FastAPI app keeps its middleware in ``user_middleware`` and builds the stack on
its first request; :class:`StackInstallation` adds or removes the middleware there (through
the shared install marker). FastAPI >= 0.130 also traces requests natively, which would
duplicate the middleware's server span: :func:`disable_fastapi_native_tracing` switches that
off, and :func:`app_building_its_stack` finds the app early enough to do it before its first
request. The middleware's class is a parameter, so this module sits below
:mod:`.asgi` and imports nothing of it.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from ..core.instrumentation import guarded
from ..core.manager import TracingManager
from ._contract import Installation, install_once, installation_of, uninstall_installed

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "FRAMEWORK",
    "StackInstallation",
    "app_building_its_stack",
    "disable_fastapi_native_tracing",
    "has_middleware_stack",
    "install_on_stack",
    "uninstall_from_stack",
]

logger = logging.getLogger("aiecs_tracing")

FRAMEWORK = "asgi"  # the marker's name, shared with the FastAPI installer
_STACK_GUARD = guarded("asgi middleware stack lookup")


def app_building_its_stack() -> Any:
    """The Starlette/FastAPI app whose ``build_middleware_stack`` constructs the calling middleware.

    Call it from the middleware's ``__init__`` itself: it counts frames from there.

    ``app.add_middleware(TracingMiddleware, ...)`` gives the middleware no reference to the
    app, and FastAPI (>= 0.130) decides whether to trace a request natively before it builds
    the stack for the first request, but reads that decision after: looking up one caller's
    frame is the only moment to switch its native tracing off in time, so that even the first
    request after startup (without a lifespan) is one trace with one server span. Anything
    unexpected returns None and the middleware falls back to deciding on the first request.
    """
    with _STACK_GUARD:  # never let the lookup break the app's start
        frame: FrameType | None = sys._getframe(2)  # this helper <- __init__ <- the caller that built us
        for _ in range(3):  # tolerate a wrapper or two (Middleware.__iter__, a factory)
            if frame is None:
                return None
            if frame.f_code.co_name == "build_middleware_stack":
                return frame.f_locals.get("self")
            frame = frame.f_back
    return None


def disable_fastapi_native_tracing(app: Any) -> bool:
    """Turn off the request spans of FastAPI's native telemetry for ``app``; True if it changed.

    Duck-typed on ``app._telemetry`` (FastAPI >= 0.130), so it is a no-op for Starlette,
    older FastAPI versions and any other ASGI app.
    """
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict) and config.get("tracing"):
        config["tracing"] = False
        logger.info(
            "aiecs_tracing: FastAPI's native request tracing is off for this app; TracingMiddleware "
            "traces its requests (pass fastapi_native_tracing=True to keep both)"
        )
        return True
    return False


def has_middleware_stack(app: Any) -> bool:
    """A Starlette/FastAPI app: one whose middleware list is ours to add to (before it starts)."""
    return callable(getattr(app, "add_middleware", None)) and isinstance(getattr(app, "user_middleware", None), list)


class StackInstallation(Installation):
    """The middleware class ``middleware`` added to a Starlette/FastAPI app's middleware list."""

    def __init__(self, app: Any, middleware: type[Any], tracing: TracingManager | None, options: dict[str, Any]) -> None:
        self.app = app
        self.middleware = middleware
        self.tracing = tracing
        self.options = options

    def install(self) -> StackInstallation:
        app = self.app
        if not self.options.get("fastapi_native_tracing", False):
            disable_fastapi_native_tracing(app)  # now, so not even the first request is traced twice
        if not any(getattr(m, "cls", None) is self.middleware for m in app.user_middleware):
            app.add_middleware(self.middleware, tracing=self.tracing, **self.options)
        return self

    def retarget(self, tracing: Any) -> None:  # the middleware list is read when the app starts
        self.tracing = tracing
        for middleware in self.app.user_middleware:
            if getattr(middleware, "cls", None) is self.middleware and "tracing" in getattr(middleware, "kwargs", {}):
                middleware.kwargs["tracing"] = tracing

    def uninstall(self) -> None:
        app = self.app
        kept = [m for m in app.user_middleware if getattr(m, "cls", None) is not self.middleware]
        if len(kept) != len(app.user_middleware):
            app.user_middleware[:] = kept
            app.middleware_stack = None


def install_on_stack(app: Any, middleware: type[Any], tracing: TracingManager | None, options: dict[str, Any]) -> None:
    """Add ``middleware`` to ``app``'s list once, kept under the shared marker (a second call retargets)."""
    install_once(app, FRAMEWORK, tracing, lambda: StackInstallation(app, middleware, tracing, options).install())


def uninstall_from_stack(app: Any, middleware: type[Any]) -> None:
    """Undo :func:`install_on_stack`; a ``middleware`` added by hand is removed all the same."""
    if installation_of(app, FRAMEWORK) is not None:
        uninstall_installed(app, FRAMEWORK)
    elif isinstance(getattr(app, "user_middleware", None), list):
        StackInstallation(app, middleware, None, {}).uninstall()
