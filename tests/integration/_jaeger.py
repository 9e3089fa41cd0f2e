"""A real Jaeger v2 for the tests (the process itself: :mod:`aiecs_tracing.demo.jaeger`).

The binary is built once per machine by ``scripts/ensure_jaeger.sh`` (``make test`` runs it;
so does :func:`jaeger_binary` when it is missing and Go is there). Without Go the real-Jaeger
tests skip with one line saying how to enable them: the only skip CI allows, since the
project cannot install Go itself. With Go, a failed build or start is a failure.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiecs_tracing.demo.jaeger import JaegerProcess, JaegerStartError, cached_binary_path

ROOT = Path(__file__).resolve().parents[2]
ENABLE_HINT = "install Go >= 1.24 and run scripts/ensure_jaeger.sh (make test does) to enable them"


def go_mod_version() -> str:
    """The Jaeger version tools/jaeger/go.mod pins."""
    for line in (ROOT / "tools" / "jaeger" / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "github.com/jaegertracing/jaeger":
            return parts[1]
    raise AssertionError("tools/jaeger/go.mod names no github.com/jaegertracing/jaeger version")


def jaeger_binary() -> Path:
    """The built binary; builds it when Go is there, skips (one line) when Go is not."""
    path = cached_binary_path()
    if path.exists():
        return path
    if shutil.which("go") is None:
        pytest.skip(f"real-Jaeger tests need Go: {ENABLE_HINT}")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure_jaeger.sh")], capture_output=True, text=True, timeout=1200
    )
    if result.returncode != 0 or not path.exists():
        pytest.fail(f"building Jaeger failed: {(result.stdout + result.stderr).strip()[-2000:]}", pytrace=False)
    return path


class RealJaeger(JaegerProcess):
    """A :class:`JaegerProcess` with the query-API reads the tests make."""

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.query_url}{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def services(self) -> list[str]:
        return sorted(self.get("/api/services")["data"] or [])

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """``/api/traces/{id}``'s one trace, or None while Jaeger does not have it."""
        response = httpx.get(f"{self.query_url}/api/traces/{trace_id}", timeout=10)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()["data"]
        return data[0] if data else None

    def wait_trace(self, trace_id: str, spans: int, timeout: float = 20.0) -> dict[str, Any]:
        """The trace once it holds at least ``spans`` spans; fails naming what did arrive."""
        deadline = time.monotonic() + timeout
        trace: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            trace = self.trace(trace_id)
            if trace is not None and len(trace["spans"]) >= spans:
                return trace
            time.sleep(0.1)
        got = [] if trace is None else sorted(s["operationName"] for s in trace["spans"])
        pytest.fail(f"Jaeger holds {len(got)} of {spans} spans of trace {trace_id}: {got}", pytrace=False)


@contextmanager
def running_jaeger(workdir: Path) -> Iterator[RealJaeger]:
    jaeger = RealJaeger(jaeger_binary(), workdir)
    try:
        jaeger.start()
    except JaegerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield jaeger
    finally:
        jaeger.stop()
