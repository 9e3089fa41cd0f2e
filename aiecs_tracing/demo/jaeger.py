"""A real Jaeger v2 process, for ``aiecs-tracing demo --jaeger`` and the test suite.

The binary is the one ``scripts/ensure_jaeger.sh`` builds from the Go module proxy, pinned
in ``tools/jaeger/go.mod`` (:data:`JAEGER_VERSION`), and cached once per machine. It runs
from ``jaeger-v2.yaml`` beside this file: in-memory storage, OTLP/HTTP, the Jaeger
receiver's UDP thrift_compact, the query API, and remote sampling from a strategies file.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

JAEGER_VERSION = "v1.76.0"  # the module version in tools/jaeger/go.mod (a test pins the two together)
CONFIG = Path(__file__).with_name("jaeger-v2.yaml")
DEFAULT_STRATEGIES: dict[str, Any] = {"default_strategy": {"type": "probabilistic", "param": 1.0}}
# Jaeger's usual ports, used when free so that its URLs are the familiar ones.
USUAL_PORTS = {
    "JAEGER_QUERY_PORT": 16686,
    "JAEGER_QUERY_GRPC_PORT": 16685,
    "JAEGER_OTLP_HTTP_PORT": 4318,
    "JAEGER_SAMPLING_PORT": 5778,
    "JAEGER_THRIFT_COMPACT_PORT": 6831,
}


class JaegerStartError(RuntimeError):
    """Jaeger did not come up; the message ends with the tail of its log."""


def cached_binary_path(version: str = JAEGER_VERSION) -> Path:
    """Where ``scripts/ensure_jaeger.sh`` puts the binary it builds."""
    base = os.environ.get("AIECS_TRACING_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "aiecs-tracing"
    )
    return Path(base) / f"jaeger-{version}" / "jaeger"


def find_binary(explicit: str | None = None) -> Path | None:
    """An explicit path, else the cached build, else ``jaeger`` on PATH; None if none exists."""
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    cached = cached_binary_path()
    if cached.is_file():
        return cached
    on_path = shutil.which("jaeger")
    return Path(on_path) if on_path else None


def _free_port(kind: int, preferred: int = 0) -> int:
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            bound: int = sock.getsockname()[1]
            return bound
    raise OSError("no free port on 127.0.0.1")


class JaegerProcess:
    """One Jaeger v2 on 127.0.0.1 with its own ports, strategies file and log."""

    def __init__(self, binary: Path, workdir: Path, *, usual_ports: bool = False) -> None:
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.strategies_path = self.workdir / "sampling-strategies.json"
        self.log_path = self.workdir / "jaeger.log"
        self.usual_ports = usual_ports
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        if not self.strategies_path.exists():
            self.set_strategies(DEFAULT_STRATEGIES)

    # --- addresses ------------------------------------------------------------------
    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['JAEGER_QUERY_PORT']}"

    @property
    def otlp_url(self) -> str:
        """The OTLP/HTTP traces endpoint (with ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.ports['JAEGER_OTLP_HTTP_PORT']}/v1/traces"

    @property
    def udp_port(self) -> int:
        return self.ports["JAEGER_THRIFT_COMPACT_PORT"]

    @property
    def sampling_url(self) -> str:
        """The remote_sampling extension's HTTP endpoint (``GET ...?service=NAME``)."""
        return f"http://127.0.0.1:{self.ports['JAEGER_SAMPLING_PORT']}/sampling"

    # --- life -----------------------------------------------------------------------
    def start(self, attempts: int = 3, timeout: float = 30.0) -> JaegerProcess:
        """Start on free ports; a port taken between picking and binding means another try."""
        for attempt in range(attempts):
            self.ports = {
                name: _free_port(
                    socket.SOCK_DGRAM if name == "JAEGER_THRIFT_COMPACT_PORT" else socket.SOCK_STREAM,
                    usual if self.usual_ports and attempt == 0 else 0,
                )
                for name, usual in USUAL_PORTS.items()
            }
            env = {**os.environ, **{name: str(port) for name, port in self.ports.items()}}
            env["JAEGER_SAMPLING_STRATEGIES"] = str(self.strategies_path)
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    [str(self.binary), "--config", str(CONFIG)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            if self._wait_ready(timeout):
                return self
            self.stop()
        raise JaegerStartError(f"Jaeger did not start in {attempts} attempts; its log ends:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if b"Everything is ready" in self.log_path.read_bytes():
                try:
                    with urllib.request.urlopen(f"{self.query_url}/api/services", timeout=2) as response:
                        if response.status == 200:
                            return True
                except OSError:
                    pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> JaegerProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- remote sampling ------------------------------------------------------------
    def set_strategies(self, strategies: dict[str, Any]) -> None:
        """Rewrite the strategies file in one step; Jaeger re-reads it every second."""
        tmp = self.strategies_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(strategies))
        os.replace(tmp, self.strategies_path)
