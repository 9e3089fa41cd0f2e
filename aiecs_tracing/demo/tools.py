"""Tools the demo worker runs, as AIECS's tool executor does: one span per execution.

``tracing.trace_tool_execution(tool, operation)`` tags each span with ``tool.name``,
``tool.operation``, ``tool.success`` and ``tool.result_size``; a tool that raises marks
its span as an error with the exception and stack, and the exception goes on unchanged.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

from aiecs_tracing import TracingManager


class DocumentParseError(ValueError):
    """A document the parser cannot read (the demo's failing tool)."""


def _work(low_ms: float, high_ms: float) -> None:
    time.sleep(random.uniform(low_ms, high_ms) / 1000.0)


class ToolBox:
    """The worker's tools, wrapped once with the process's tracing manager."""

    def __init__(self, tracing: TracingManager) -> None:
        tool = tracing.trace_tool_execution
        self.search = tool("web_search", "search")(_search)
        self.parse_document = tool("document_parser", "parse")(_parse_document)
        self.chunk_text = tool("text_splitter", "chunk")(_chunk_text)


def _search(query: str, max_results: int = 3) -> list[dict[str, Any]]:
    _work(15, 45)
    digest = hashlib.sha1(query.encode()).hexdigest()
    return [
        {"url": f"https://example.org/{digest[i * 6 : i * 6 + 6]}", "snippet": f"{query} - result {i + 1}"}
        for i in range(max_results)
    ]


def _parse_document(name: str, corrupt: bool = False) -> str:
    _work(10, 30)
    if corrupt:
        raise DocumentParseError(f"cannot parse {name!r}: corrupt xref table at byte 48213")
    return f"Text of {name}. " * 40


def _chunk_text(text: str, size: int = 200) -> list[str]:
    _work(2, 8)
    return [text[i : i + size] for i in range(0, len(text), size)]
