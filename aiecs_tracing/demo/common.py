"""What the demo services share: settings from the environment, tracing, serving.

Every demo service is configured the way a deployed AIECS service is: through
environment variables. The tracing ones are the seed's (``SERVICE_NAME``,
``JAEGER_AGENT_HOST``, ``JAEGER_AGENT_PORT``, ``JAEGER_ENABLE_TRACING``) or
OpenTelemetry's (``OTEL_EXPORTER_OTLP_ENDPOINT``); the demo's own are below.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiecs_tracing import TracingManager

# The demo's own settings (the runner sets them for each process it starts).
ENV_DIR = "AIECS_DEMO_DIR"  # working directory: broker folders, SQLite file
ENV_DB = "AIECS_DEMO_DB"  # SQLite database path
ENV_API_URL = "AIECS_DEMO_API_URL"  # where the worker posts progress
ENV_ML_URL = "AIECS_DEMO_ML_URL"  # the ml_service base URL
ENV_PARENT = "AIECS_DEMO_PARENT_PID"  # exit when this process goes away
ENV_RUN_ID = "AIECS_DEMO_RUN_ID"  # marks every process of one run (tests look for orphans)
ENV_BROKER = "CELERY_BROKER_URL"  # the usual Celery variable; Redis when it says so

FAST_QUEUE = "fast_tasks"
HEAVY_QUEUE = "heavy_tasks"
EXECUTE_TASK = "aiecs.tasks.worker.execute_task"
EXECUTE_HEAVY_TASK = "aiecs.tasks.worker.execute_heavy_task"

logger = logging.getLogger("aiecs_tracing.demo")


@dataclass(frozen=True)
class DemoSettings:
    workdir: Path
    db_path: Path
    api_url: str
    ml_url: str
    broker_url: str

    @classmethod
    def from_env(cls) -> DemoSettings:
        workdir = Path(os.environ.get(ENV_DIR) or Path.cwd() / ".aiecs-demo")
        return cls(
            workdir=workdir,
            db_path=Path(os.environ.get(ENV_DB) or workdir / "aiecs.db"),
            api_url=os.environ.get(ENV_API_URL, "http://127.0.0.1:8000").rstrip("/"),
            ml_url=os.environ.get(ENV_ML_URL, "http://127.0.0.1:8001").rstrip("/"),
            broker_url=os.environ.get(ENV_BROKER) or "filesystem://",
        )


def celery_config(settings: DemoSettings) -> dict[str, Any]:
    """Celery settings shared by the API (producer) and the worker (consumer).

    With the default ``filesystem://`` broker, messages are files in the demo's working
    directory: no broker server to install. ``CELERY_BROKER_URL=redis://...`` uses Redis.
    """
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        "result_backend": None,
        "task_routes": {EXECUTE_TASK: {"queue": FAST_QUEUE}, EXECUTE_HEAVY_TASK: {"queue": HEAVY_QUEUE}},
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "worker_prefetch_multiplier": 1,
    }
    if settings.broker_url.startswith("filesystem"):
        queue_dir = settings.workdir / "broker" / "queue"
        processed = settings.workdir / "broker" / "processed"
        control = settings.workdir / "broker" / "control"
        for folder in (queue_dir, processed, control):
            folder.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": str(queue_dir),
            "data_folder_out": str(queue_dir),
            "processed_folder": str(processed),
            "control_folder": str(control),
            "store_processed": False,
            "polling_interval": 0.05,
        }
        # No fanout exchanges needed: the demo uses no remote control, gossip or mingle.
        config["worker_enable_remote_control"] = False
    return config


def make_tracing() -> TracingManager:
    """This process's manager, configured by the environment as in a deployment.

    Short export delay so the demo's trace trees are complete a moment after a request.
    """
    return TracingManager(schedule_delay_millis=200)


def watch_parent() -> None:
    """Terminate this process when the demo runner that started it goes away.

    The runner stops its services itself; this covers the runner being killed outright.
    """
    parent = os.environ.get(ENV_PARENT)
    if not parent or not parent.isdigit():
        return
    parent_pid = int(parent)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:
                pass

    threading.Thread(target=watch, name="aiecs-demo-parent-watch", daemon=True).start()


def serve_asgi(app: Any, fd: int | None, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run ``app`` under uvicorn on an inherited listening socket (or a port).

    The runner binds the socket (port 0: a free port, no race) and passes it down.
    """
    import uvicorn

    config = uvicorn.Config(
        app, log_level="info", access_log=True, lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    if fd is not None:
        sock = socket.socket(fileno=fd)
        server.run(sockets=[sock])
    else:
        config.host, config.port = host, port
        server.run()


def run_service(create_app: Any, description: str | None, default_port: int, argv: list[str] | None) -> None:
    """The command line of a demo web service: bind (or inherit) a socket and serve ``create_app()``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fd", type=int, default=None, help="listening socket inherited from the runner")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind without --fd (0.0.0.0 in a container)"
    )
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    watch_parent()
    serve_asgi(create_app(), args.fd, args.host, args.port)


def configure_logging(tracing: TracingManager) -> None:
    """Plain timestamped logs with trace ids: they go to the demo's log files."""
    tracing.install_log_correlation()  # %(trace_id)s on every record
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s] %(message)s",
    )
