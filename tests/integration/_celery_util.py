"""Shared pieces of the Celery integration tests: brokers, app config, a real worker subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REDIS_BROKER = "redis://127.0.0.1:6379/9"
REDIS_BACKEND = "redis://127.0.0.1:6379/10"
RABBIT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def broker_urls(broker: str) -> tuple[str, str] | None:
    """(broker URL, result backend URL) for ``redis``/``rabbitmq``; None when the broker is down."""
    if broker == "redis":
        return (REDIS_BROKER, REDIS_BACKEND) if port_open(6379) else None
    if broker == "rabbitmq":
        if not port_open(5672):
            return None
        return RABBIT_BROKER, (REDIS_BACKEND if port_open(6379) else "rpc://")
    raise ValueError(broker)


def new_queue_name(tag: str = "") -> str:
    """A queue of its own per worker, so leftovers and parallel runs cannot interfere."""
    return f"aiecs-itest-{tag}{uuid.uuid4().hex[:10]}"


def configure(app: Any, broker_url: str, backend_url: str, queue: str, **overrides: Any) -> Any:
    """The configuration the producers and the worker share (queue declarations must match)."""
    from kombu import Exchange, Queue

    app.conf.update(
        broker_url=broker_url,
        result_backend=backend_url,
        task_default_queue=queue,
        task_queues=[Queue(queue, Exchange(queue, type="direct"), routing_key=queue, auto_delete=True)],
        task_default_exchange=queue,
        task_default_routing_key=queue,
        result_expires=600,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 300},
        task_track_started=True,
        **overrides,
    )
    return app


def producer_app(name: str, broker_url: str, backend_url: str, queue: str, **overrides: Any) -> Any:
    """A Celery app that defines no tasks: it can only publish by name (the AIECS pattern)."""
    from celery import Celery

    app = Celery(name, set_as_current=False)
    return configure(app, broker_url, backend_url, queue, **overrides)


class Worker:
    """``celery -A tests.integration.celery_app worker`` in its own process group."""

    def __init__(
        self,
        broker_url: str,
        backend_url: str,
        queue: str,
        agent_port: int,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        max_tasks_per_child: int | None = None,
        log_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.broker_url, self.backend_url, self.queue = broker_url, backend_url, queue
        self.log_path = log_path or Path(f"/tmp/{queue}.log")
        env = dict(os.environ)
        env.update(
            CELERY_BROKER_URL=broker_url,
            CELERY_RESULT_BACKEND=backend_url,
            ITEST_CELERY_QUEUE=queue,
            ITEST_CELERY_WORKER="1",
            JAEGER_AGENT_HOST="127.0.0.1",
            JAEGER_AGENT_PORT=str(agent_port),
            SERVICE_NAME="worker",
            PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        )
        env.pop("AIECS_TRACING_EXPORTER", None)
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
        if extra_env:
            env.update(extra_env)
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.integration.celery_app",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "-l",
            "info",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{queue}@%h",
        ]
        if max_tasks_per_child:
            cmd.append(f"--max-tasks-per-child={max_tasks_per_child}")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=str(ROOT), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            if " ready." in self.log():
                return
            time.sleep(0.1)
        self.stop(timeout=5)
        raise RuntimeError(f"celery worker not ready after {timeout}s:\n{self.log()[-4000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM: running tasks finish, children exit cleanly); kill on timeout."""
        proc = self.proc
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)  # the group we created for this worker
                    except ProcessLookupError:
                        pass
                    proc.wait(timeout=10)
            # Children may linger a moment after the main process: give them the time to flush.
            try:
                deadline = time.monotonic() + 5
                while True:
                    os.killpg(proc.pid, 0)  # raises once the whole group is gone
                    if time.monotonic() > deadline:
                        os.killpg(proc.pid, signal.SIGKILL)
                        break
                    time.sleep(0.1)
            except (ProcessLookupError, PermissionError):
                pass
        finally:
            self._log.close()
        return proc.returncode
