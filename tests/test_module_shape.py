"""The package's shape, pinned: modules a newcomer reads in one sitting, imports as layers.

- No module of ``aiecs_tracing/`` is over :data:`MAX_LINES` lines (the UI's JavaScript is not Python).
- The imports between the package's modules draw no circle, counting imports inside functions
  and under ``TYPE_CHECKING`` too: each is a dependency a reader has to follow.
- No module imports another module's underscore name: a module's ``_names`` are its own.
- Only ``core/sdk_internals.py`` imports OpenTelemetry private names.

Each check reads the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aiecs_tracing"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400
OTEL_PRIVATE_ALLOWED = {"core/sdk_internals.py"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


NAMES = {module_name(p): p for p in MODULES}


def _absolute(path: Path, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    base = module_name(path).split(".")
    if path.name != "__init__.py":
        base.pop()  # a module's relative imports start at its package
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(path: Path) -> list[tuple[str, str, int]]:
    """(imported package module, imported name or "", line) for each import of a package module."""
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _absolute(path, node.module, node.level)
            if target.split(".")[0] != "aiecs_tracing":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in NAMES:
                    found.append((submodule, "", node.lineno))
                else:
                    found.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "aiecs_tracing":
                    found.append((alias.name, "", node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in NAMES}
    for name, path in NAMES.items():
        for target, _, _ in imports_of(path):
            if target in NAMES and target != name:
                graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_short_enough_to_read_in_one_sitting(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines (limit {MAX_LINES}): split it by concept"


def test_package_imports_draw_no_circle() -> None:
    assert circles(import_graph()) == []


def test_no_module_imports_another_modules_private_name() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line} imports {name} from {target}"
        for path in MODULES
        for target, name, line in imports_of(path)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert found == []


def test_only_sdk_internals_imports_opentelemetry_private_names() -> None:
    found = []
    for path in MODULES:
        rel = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "opentelemetry":
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private and rel not in OTEL_PRIVATE_ALLOWED:
                    found.append(f"{rel}:{node.lineno} imports {private} from {node.module}")
    assert found == []


def test_the_checks_find_what_they_look_for(tmp_path: Path, monkeypatch) -> None:
    """A circle, a private import and an OpenTelemetry private name are each reported."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    core = PACKAGE / "core"
    fake = core / "manager.py"
    source = "from .light import _ROOT\nfrom opentelemetry.trace.propagation import _SPAN_KEY\n"
    monkeypatch.setattr(Path, "read_text", lambda self: source if self == fake else Path.read_bytes(self).decode())
    assert ("aiecs_tracing.core.light", "_ROOT", 1) in imports_of(fake)
    with pytest.raises(AssertionError, match="_SPAN_KEY"):
        test_only_sdk_internals_imports_opentelemetry_private_names()
