"""Print a trace from a Jaeger-compatible query API as a tree in the terminal.

Works against the embedded collector and a real Jaeger alike: it reads only Jaeger's
HTTP JSON model (``GET /api/traces/{traceID}``: ``spans`` with ``references``,
``startTime``/``duration`` in microseconds, ``tags`` as ``{key, type, value}``, and
``processes`` naming each span's service).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

_RESET = "\033[0m"
_STYLES = {
    "bold": "\033[1m",
    "dim": "\033[2m",
    "red": "\033[31m",
    "green": "\033[32m",
    "yellow": "\033[33m",
    "blue": "\033[34m",
    "magenta": "\033[35m",
    "cyan": "\033[36m",
}
_SERVICE_COLORS = ("cyan", "magenta", "yellow", "blue", "green")


class Style:
    """ANSI styling, off when the output is not a terminal or ``NO_COLOR`` is set."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._service_colors: dict[str, str] = {}

    @classmethod
    def for_stream(cls, stream: TextIO, force: bool | None = None) -> Style:
        if force is not None:
            return cls(force)
        isatty = getattr(stream, "isatty", lambda: False)
        return cls(bool(isatty()) and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb")

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles:
            return text
        return "".join(_STYLES[s] for s in styles) + text + _RESET

    def service(self, name: str, text: str | None = None) -> str:
        color = self._service_colors.get(name)
        if color is None:
            color = _SERVICE_COLORS[len(self._service_colors) % len(_SERVICE_COLORS)]
            self._service_colors[name] = color
        return self(name if text is None else text, color)


@dataclass
class TreeSpan:
    span_id: str
    parent_id: str | None
    service: str
    operation: str
    start_us: int
    duration_us: int
    kind: str | None
    tags: dict[str, Any]
    error: str | None  # None: no error; otherwise a short description ("" if none given)
    children: list[TreeSpan] = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        return self.error is not None


def _tag_map(tags: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {t.get("key"): t.get("value") for t in tags or () if isinstance(t, dict)}  # type: ignore[misc]  # Jaeger tags have a key


def _error_of(tags: dict[str, Any], logs: list[dict[str, Any]] | None) -> str | None:
    failed = tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"
    if not failed:
        return None
    for log in logs or ():
        fields = _tag_map(log.get("fields"))
        if fields.get("event") in ("exception", "error") or "exception.message" in fields:
            kind = fields.get("exception.type") or fields.get("error.kind") or ""
            message = fields.get("exception.message") or fields.get("message") or ""
            kind = str(kind).rsplit(".", 1)[-1]
            return f"{kind}: {message}" if kind and message else str(kind or message)
    for key in ("error.message", "otel.status_description", "error.type"):
        if tags.get(key):
            return str(tags[key])
    status = tags.get("http.response.status_code") or tags.get("http.status_code")
    return f"HTTP {status}" if status else ""


def build_tree(trace: dict[str, Any]) -> list[TreeSpan]:
    """The root spans of ``trace`` (Jaeger JSON), children sorted by start time.

    A span whose parent is not in the trace (not arrived, or sampled out) is shown as a
    root, so nothing that did arrive is hidden.
    """
    processes = trace.get("processes") or {}
    spans: dict[str, TreeSpan] = {}
    for raw in trace.get("spans") or ():
        parent_id = None
        for ref in raw.get("references") or ():
            if ref.get("refType", "CHILD_OF") == "CHILD_OF":
                parent_id = ref.get("spanID")
                break
        tags = _tag_map(raw.get("tags"))
        process = processes.get(raw.get("processID"), {})
        span = TreeSpan(
            span_id=str(raw.get("spanID")),
            parent_id=parent_id,
            service=str(process.get("serviceName") or raw.get("process", {}).get("serviceName") or "?"),
            operation=str(raw.get("operationName", "")),
            start_us=int(raw.get("startTime") or 0),
            duration_us=int(raw.get("duration") or 0),
            kind=tags.get("span.kind"),
            tags=tags,
            error=_error_of(tags, raw.get("logs")),
        )
        spans[span.span_id] = span
    roots: list[TreeSpan] = []
    for span in spans.values():
        parent = spans.get(span.parent_id) if span.parent_id else None
        if parent is None or parent is span:
            roots.append(span)
        else:
            parent.children.append(span)
    for span in spans.values():
        span.children.sort(key=lambda s: s.start_us)
    roots.sort(key=lambda s: s.start_us)
    return roots


def walk(roots: list[TreeSpan]) -> list[tuple[str, TreeSpan]]:
    """(tree prefix, span) in display order, e.g. ``"│  ├─ "``."""
    out: list[tuple[str, TreeSpan]] = []

    def visit(span: TreeSpan, lead: str, branch: str) -> None:
        out.append((lead + branch, span))
        child_lead = lead + ("" if not branch else ("   " if branch == "└─ " else "│  "))
        for index, child in enumerate(span.children):
            visit(child, child_lead, "└─ " if index == len(span.children) - 1 else "├─ ")

    for root in roots:
        visit(root, "", "")
    return out


def format_duration(us: int) -> str:
    if us >= 1_000_000:
        return f"{us / 1_000_000:.2f} s"
    if us >= 1_000:
        return f"{us / 1_000:.1f} ms"
    return f"{us} µs"


_KIND_MARK = {"client": "→", "producer": "⇢", "server": "", "consumer": "", "internal": ""}


def render_trace(trace: dict[str, Any], style: Style, width: int = 120, indent: str = "    ") -> list[str]:
    """Lines for ``trace``: a tree of ``service  operation  duration`` with a timeline bar.

    Failed spans are marked ``✗`` with their error; the bar shows where each span sits
    in the trace's time.
    """
    roots = build_tree(trace)
    rows = walk(roots)
    if not rows:
        return [indent + style("(no spans)", "dim")]
    start = min(span.start_us for _, span in rows)
    end = max(span.start_us + span.duration_us for _, span in rows)
    total = max(end - start, 1)
    service_width = max(len(span.service) for _, span in rows)
    label_width = max(len(prefix) + len(_label(span)) for prefix, span in rows)
    bar_width = 24 if width >= 100 else 0
    label_width = min(label_width, max(width - len(indent) - service_width - bar_width - 16, 30))
    lines = []
    for prefix, span in rows:
        label = _label(span)
        room = label_width - len(prefix)
        if len(label) > room:
            label = label[: max(room - 1, 1)] + "…"
        text = style(prefix, "dim") + style.service(span.service, span.service.ljust(service_width)) + "  "
        text += style(label, "red") if span.is_error else label
        text += " " * (label_width - len(prefix) - len(label))
        text += "  " + format_duration(span.duration_us).rjust(9)
        if bar_width:
            text += "  " + _bar(span, start, total, bar_width, style)
        used = len(indent) + len(prefix) + service_width + 2 + label_width - len(prefix) + 11
        used += bar_width + 2 if bar_width else 0
        if span.is_error:
            room = width - used - 4
            if room >= 30:
                text += "  " + style("✗ " + _shorten(span.error or "error", room), "red", "bold")
            else:  # no room on the line: the error goes underneath
                lines.append(indent + text)
                under = prefix.replace("├─ ", "│  ").replace("└─ ", "   ") + (
                    "│  " if span.children else "   "
                )
                room = max(width - len(indent) - len(under) - 4, 30)
                text = style(under, "dim") + style(
                    "✗ " + _shorten(span.error or "error", room), "red", "bold"
                )
        lines.append(indent + text)
    return lines


def _label(span: TreeSpan) -> str:
    mark = _KIND_MARK.get(str(span.kind or "").lower(), "")
    return f"{mark} {span.operation}" if mark else span.operation


def _bar(span: TreeSpan, start: int, total: int, width: int, style: Style) -> str:
    first = int((span.start_us - start) / total * width)
    length = max(1, round(span.duration_us / total * width))
    first = min(first, width - 1)
    length = min(length, width - first)
    cells = "·" * first + "█" * length + "·" * (width - first - length)
    return (
        style(cells[:first], "dim")
        + style(cells[first : first + length], "red" if span.is_error else "green")
        + style(cells[first + length :], "dim")
    )


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def trace_summary(trace: dict[str, Any]) -> tuple[int, list[str], int]:
    """(span count, services in order of first appearance, error count)."""
    rows = walk(build_tree(trace))
    services: list[str] = []
    for _, span in rows:
        if span.service not in services:
            services.append(span.service)
    return len(rows), services, sum(1 for _, span in rows if span.is_error)


def print_trace(
    trace: dict[str, Any], stream: TextIO = sys.stdout, style: Style | None = None, width: int = 120
) -> None:
    style = style or Style.for_stream(stream)
    for line in render_trace(trace, style, width):
        print(line, file=stream)
