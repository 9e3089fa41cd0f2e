"""The demo's services as processes: start them with their tracing set-up, wait until they answer, stop them and their pools."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import common
from .backend import Backend
from .options import DEFAULT_HOST, STARTUP_TIMEOUT


# --- the demo services ----------------------------------------------------------------
@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    pass_fds: tuple[int, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=self.pass_fds,
                start_new_session=True,  # its own process group: Ctrl-C is ours to handle
            )

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the service and its children; False once none is left."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return False

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _service_env(base: dict[str, str], service_name: str, backend: Backend, transport: str) -> dict[str, str]:
    """The environment a deployment would give the service: the seed's variables or OTel's."""
    env = {k: v for k, v in base.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_TRACING_"))}
    env["SERVICE_NAME"] = service_name
    env["JAEGER_ENABLE_TRACING"] = "true"
    if transport == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = backend.otlp_url
    else:
        env["JAEGER_AGENT_HOST"] = backend.udp[0]
        env["JAEGER_AGENT_PORT"] = str(backend.udp[1])
    return env


class Services:
    """The three demo processes: started together, stopped together, no orphans."""

    def __init__(self, args: argparse.Namespace, backend: Backend, workdir: Path, run_id: str) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.api_sock = _listening_socket(DEFAULT_HOST, args.api_port)
        self.ml_sock = _listening_socket(DEFAULT_HOST, args.ml_port)
        self.api_url = f"http://{DEFAULT_HOST}:{self.api_sock.getsockname()[1]}"
        self.ml_url = f"http://{DEFAULT_HOST}:{self.ml_sock.getsockname()[1]}"
        self.broker = args.broker
        self.concurrency = args.concurrency
        package_root = str(Path(__file__).resolve().parents[2])
        base = dict(os.environ)
        base.update(
            {
                common.ENV_DIR: str(workdir),
                common.ENV_DB: str(workdir / "aiecs.db"),
                common.ENV_API_URL: self.api_url,
                common.ENV_ML_URL: self.ml_url,
                common.ENV_BROKER: args.broker,
                common.ENV_PARENT: str(os.getpid()),
                common.ENV_RUN_ID: run_id,
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (package_root, base.get("PYTHONPATH", "")) if p),
            }
        )
        python = sys.executable
        self.ml = Service(
            "ml-service",
            [python, "-m", "aiecs_tracing.demo.ml_service", "--fd", str(self.ml_sock.fileno())],
            _service_env(base, "ml-service", backend, "otlp"),
            self.logs / "ml-service.log",
            (self.ml_sock.fileno(),),
        )
        self.api = Service(
            "aiecs-api",
            [python, "-m", "aiecs_tracing.demo.api", "--fd", str(self.api_sock.fileno())],
            _service_env(base, "aiecs-api", backend, "udp"),
            self.logs / "aiecs-api.log",
            (self.api_sock.fileno(),),
        )
        self.worker = Service(
            "aiecs-worker",
            [
                python,
                "-m",
                "celery",
                "-A",
                "aiecs_tracing.demo.worker",
                "worker",
                "--pool=prefork",
                f"--concurrency={args.concurrency}",
                "-Q",
                f"{common.FAST_QUEUE},{common.HEAVY_QUEUE}",
                "-n",
                f"aiecs-worker-{run_id[:8]}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            _service_env(base, "aiecs-worker", backend, "udp"),
            self.logs / "aiecs-worker.log",
        )
        self.all = (self.ml, self.api, self.worker)

    def start(self) -> None:
        for service in self.all:
            service.start(self.workdir)
        # The children hold their own copies of the listening sockets now.
        self.api_sock.close()
        self.ml_sock.close()

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> Service | None:
        """Wait until every service answers; the first service that died, if any."""
        import httpx

        deadline = time.monotonic() + timeout
        pending = {"ml": f"{self.ml_url}/healthz", "api": f"{self.api_url}/healthz", "worker": None}
        ready_file = self.workdir / "worker.ready"
        with httpx.Client(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                for service in self.all:
                    if service.exited() is not None:
                        return service
                for key, url in list(pending.items()):
                    if url is None:
                        if ready_file.exists():
                            del pending[key]
                        continue
                    try:
                        if client.get(url).status_code == 200:
                            del pending[key]
                    except httpx.HTTPError:
                        pass
                time.sleep(0.1)
        if pending:
            names = {"ml": self.ml, "api": self.api, "worker": self.worker}
            return names[next(iter(pending))]
        return None

    def stop(self, timeout: float = 8.0) -> list[str]:
        """SIGTERM every process group, SIGKILL what is left at ``timeout``; names of those killed."""
        for sock in (self.api_sock, self.ml_sock):
            sock.close()
        # SIGTERM to each main process only: Celery's warm shutdown stops its pool processes
        # itself (each flushes its spans); a signal to the whole group would kill them first.
        for service in self.all:
            if service.proc is not None and service.proc.poll() is None:
                service.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = []
        for service in self.all:
            if service.proc is None:
                continue
            try:
                service.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                pass
        # Pool processes may outlive their parent by a moment; wait for the whole group.
        while time.monotonic() < deadline and any(s.signal_group(0) for s in self.all):
            time.sleep(0.1)
        for service in self.all:
            if service.signal_group(signal.SIGKILL):
                killed.append(service.name)
            if service.proc is not None:
                try:
                    service.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        return killed


def wait_for_urls(urls: list[str], timeout: float) -> bool:
    """Whether every URL answered 200 within ``timeout`` (services still starting up)."""
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(urls)
    with httpx.Client(timeout=2.0) as client:
        while pending and time.monotonic() < deadline:
            try:
                if client.get(pending[0]).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return not pending


