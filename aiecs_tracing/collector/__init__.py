"""The embedded trace collector: Jaeger's ports, storage and query API in one process.

``from aiecs_tracing.collector import Collector`` (or ``aiecs_tracing.collector.server``);
``aiecs-tracing serve`` runs it from a shell. Imported lazily so that importing the
package costs nothing until a collector is wanted.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Collector"]


def __getattr__(name: str) -> Any:
    if name == "Collector":
        from .server import Collector

        return Collector
    raise AttributeError(name)
