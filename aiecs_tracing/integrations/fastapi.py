"""FastAPI: the ASGI :class:`TracingMiddleware`, and a one-line installer.

    app.add_middleware(TracingMiddleware, tracing=tracing)
    # or
    install_fastapi_tracing(app, tracing)      # alias: instrument_fastapi

FastAPI needs nothing beyond the generic ASGI middleware: its router publishes the matched
route in ``scope["route"]``, which names the span (``GET /tasks/{task_id}``).
"""

from __future__ import annotations

from typing import Any

from ..core.manager import TracingManager
from ._contract import require_framework
from .asgi import (
    TracingMiddleware,
    disable_fastapi_native_tracing,
    install_asgi_tracing,
    uninstall_asgi_tracing,
)

__all__ = [
    "TracingMiddleware",
    "install_fastapi_tracing",
    "uninstall_fastapi_tracing",
    "instrument_fastapi",
    "uninstrument_fastapi",
    "disable_fastapi_native_tracing",
]


def install_fastapi_tracing(app: Any, tracing: TracingManager | None = None, **options: Any) -> Any:
    """Add :class:`TracingMiddleware` to ``app`` (once; a second call changes nothing); returns ``app``.

    ``options`` are the middleware's (``excluded_urls``, ``capture_request_headers``,
    ``traceresponse``...). Call it before the app starts serving, as any ``add_middleware``.
    FastAPI's own native request tracing (FastAPI >= 0.130, on whenever a global tracer
    provider exists) is switched off for ``app``, as it would duplicate every server span;
    ``fastapi_native_tracing=True`` keeps it. Needs FastAPI: ``pip install 'aiecs-tracing[fastapi]'``.
    """
    require_framework("fastapi")
    require_framework("starlette")
    options.setdefault("component", "fastapi")
    return install_asgi_tracing(app, tracing, **options)


def uninstall_fastapi_tracing(app: Any) -> Any:
    """Remove the middleware added by :func:`install_fastapi_tracing` (before the app starts). Idempotent."""
    return uninstall_asgi_tracing(app)


#: The names before the one verb pair; they still work.
instrument_fastapi = install_fastapi_tracing
uninstrument_fastapi = uninstall_fastapi_tracing
