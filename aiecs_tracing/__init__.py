"""aiecs-tracing: end-to-end distributed tracing into Jaeger for Celery + FastAPI services.

One :class:`TracingManager` (the seed's API, on OpenTelemetry), one line per framework
in :mod:`aiecs_tracing.integrations`.
"""

__version__ = "0.1.0"

from .core.manager import TracingManager, get_tracing_manager, set_tracing_manager  # noqa: E402
from .core.span import NoopSpan, Span, SpanContext  # noqa: E402

__all__ = [
    "TracingManager",
    "Span",
    "SpanContext",
    "NoopSpan",
    "get_tracing_manager",
    "set_tracing_manager",
    "__version__",
]
