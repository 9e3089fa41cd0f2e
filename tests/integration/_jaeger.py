"""A real Jaeger v2 for the tests: the pinned binary, started from tools/jaeger/config.yaml.

The binary is built once per machine by ``scripts/ensure_jaeger.sh`` (``make test`` runs it;
so does :func:`jaeger_binary` when it is missing and Go is there). Without Go the real-Jaeger
tests skip with one line saying how to enable them - the only skip that CI allows, since
the project cannot install Go itself.

Each :class:`RealJaeger` gets its own free ports on 127.0.0.1, its own strategies file and
its own log; if Jaeger cannot bind (a port taken between picking and binding), it is
started again on other ports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL_DIR = ROOT / "tools" / "jaeger"
CONFIG = TOOL_DIR / "config.yaml"
ENABLE_HINT = "install Go >= 1.24 and run scripts/ensure_jaeger.sh (make test does) to enable them"
DEFAULT_STRATEGIES: dict[str, Any] = {"default_strategy": {"type": "probabilistic", "param": 1.0}}


def jaeger_version() -> str:
    for line in (TOOL_DIR / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "github.com/jaegertracing/jaeger":
            return parts[1]
    raise RuntimeError("tools/jaeger/go.mod names no github.com/jaegertracing/jaeger version")


def cached_binary_path() -> Path:
    base = os.environ.get("AIECS_TRACING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "aiecs-tracing"
    )
    return Path(base) / f"jaeger-{jaeger_version()}" / "jaeger"


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


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealJaeger:
    """One running Jaeger v2 process and the addresses of its receivers and APIs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.strategies_path = workdir / "sampling-strategies.json"
        self.log_path = workdir / "jaeger.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.version = jaeger_version()
        self.set_strategies(DEFAULT_STRATEGIES)

    # --- addresses ----------------------------------------------------------------
    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['JAEGER_QUERY_PORT']}"

    @property
    def otlp_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['JAEGER_OTLP_HTTP_PORT']}/v1/traces"

    @property
    def udp_port(self) -> int:
        return self.ports["JAEGER_THRIFT_COMPACT_PORT"]

    @property
    def sampling_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['JAEGER_SAMPLING_PORT']}/sampling"

    # --- life -----------------------------------------------------------------------
    def start(self, attempts: int = 3) -> RealJaeger:
        binary = jaeger_binary()
        last = ""
        for _ in range(attempts):
            self.ports = {
                "JAEGER_QUERY_PORT": _free_tcp_port(),
                "JAEGER_QUERY_GRPC_PORT": _free_tcp_port(),
                "JAEGER_OTLP_HTTP_PORT": _free_tcp_port(),
                "JAEGER_SAMPLING_PORT": _free_tcp_port(),
                "JAEGER_THRIFT_COMPACT_PORT": _free_udp_port(),
            }
            env = {**os.environ, **{k: str(v) for k, v in self.ports.items()}}
            env["JAEGER_SAMPLING_STRATEGIES"] = str(self.strategies_path)
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [str(binary), "--config", str(CONFIG)], stdout=log, stderr=subprocess.STDOUT, env=env
                )
            if self._wait_ready(timeout=30):
                return self
            last = self.log_tail()
            self.stop()
        pytest.fail(f"Jaeger did not start in {attempts} attempts; its log ends:\n{last}", pytrace=False)

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            if b"Everything is ready" in self.log_path.read_bytes():
                try:
                    if httpx.get(f"{self.query_url}/api/services", timeout=2).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- remote sampling ----------------------------------------------------------
    def set_strategies(self, strategies: dict[str, Any]) -> None:
        """Rewrite the strategies file (atomically); Jaeger reloads it every second."""
        tmp = self.strategies_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(strategies))
        os.replace(tmp, self.strategies_path)

    # --- the query API ------------------------------------------------------------
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
    jaeger = RealJaeger(workdir)
    jaeger.start()
    try:
        yield jaeger
    finally:
        jaeger.stop()
