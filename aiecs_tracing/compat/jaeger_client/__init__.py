"""jaeger-client's ``Config`` on aiecs-tracing: swap ``from jaeger_client import Config`` for
``from aiecs_tracing.compat.jaeger_client import Config`` and keep the dict.

``jaeger_client.config.Config`` spellings work too (this package has a ``config`` module).
"""

from .config import Config

__all__ = ["Config"]
