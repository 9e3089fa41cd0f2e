"""FastAPI: the ASGI :class:`TracingMiddleware`, and a one-line installer.

    app.add_middleware(TracingMiddleware, tracing=tracing)
    # or
    instrument_fastapi(app, tracing)

FastAPI needs nothing beyond the generic ASGI middleware: its router publishes the matched
route in ``scope["route"]``, which names the span (``GET /tasks/{task_id}``).
"""

from __future__ import annotations

from typing import Any

from ..core.manager import TracingManager
from .asgi import TracingMiddleware, disable_fastapi_native_tracing

__all__ = ["TracingMiddleware", "instrument_fastapi", "uninstrument_fastapi", "disable_fastapi_native_tracing"]


def _require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "aiecs_tracing.integrations.fastapi needs FastAPI: pip install 'aiecs-tracing[fastapi]'"
        ) from exc


def instrument_fastapi(app: Any, tracing: TracingManager | None = None, **options: Any) -> Any:
    """Add :class:`TracingMiddleware` to ``app`` (once; a second call changes nothing).

    ``options`` are the middleware's (``excluded_urls``, ``capture_request_headers``,
    ``traceresponse``...). Call it before the app starts serving, as any ``add_middleware``.
    FastAPI's own native request tracing (FastAPI >= 0.130, on whenever a global tracer
    provider exists) is switched off for ``app``, as it would duplicate every server span;
    ``fastapi_native_tracing=True`` keeps it.
    """
    _require_fastapi()
    if not options.get("fastapi_native_tracing", False):
        disable_fastapi_native_tracing(app)  # now, so not even the first request is traced twice
    for middleware in getattr(app, "user_middleware", ()):
        if getattr(middleware, "cls", None) is TracingMiddleware:
            return app
    options.setdefault("component", "fastapi")
    app.add_middleware(TracingMiddleware, tracing=tracing, **options)
    return app


def uninstrument_fastapi(app: Any) -> Any:
    """Remove the middleware added by :func:`instrument_fastapi` (before the app starts)."""
    kept = [m for m in getattr(app, "user_middleware", ()) if getattr(m, "cls", None) is not TracingMiddleware]
    if len(kept) != len(getattr(app, "user_middleware", ())):
        app.user_middleware[:] = kept
        app.middleware_stack = None
    return app
