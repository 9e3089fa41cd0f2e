"""aiecs-tracing: end-to-end distributed tracing into Jaeger for Celery + FastAPI services.

One :class:`TracingManager` (the seed's API, on OpenTelemetry), one line per framework
in :mod:`aiecs_tracing.integrations`.
"""

from .core.manager import TracingManager, get_tracing_manager, set_tracing_manager
from .core.span import NoopSpan, Span, SpanContext
from .version import __version__

try:  # the OpenTracing shim registers itself with the manager (tracing.opentracing_tracer)
    import opentracing as _opentracing  # noqa: F401
except ImportError:
    pass
else:
    from .compat import opentracing as _opentracing_shim  # noqa: F401

__all__ = [
    "TracingManager",
    "Span",
    "SpanContext",
    "NoopSpan",
    "get_tracing_manager",
    "set_tracing_manager",
    "__version__",
]
