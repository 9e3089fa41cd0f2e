"""The demo's command line: its options, defaults and the scenarios it sends."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

from . import common

DEFAULT_HOST = "127.0.0.1"
DEFAULT_OTLP_PORT = 4318
DEFAULT_UDP_PORT = 6831
DEFAULT_UI_PORT = 16686
STARTUP_TIMEOUT = 40.0
TASK_TIMEOUT = 20.0


@dataclass(frozen=True)
class Scenario:
    label: str
    request: dict[str, Any]
    expect: str = "completed"  # "completed", "failed" or "rejected"
    why: str = ""  # what goes wrong on purpose


SCENARIOS = (
    Scenario("summarize", {"kind": "summarize", "texts": ["Quarterly revenue grew 12% on cloud demand."]}),
    Scenario(
        "classify",
        {"kind": "classify", "texts": ["Invoice 0042: net 30, EUR 1,200"], "fail_ml": True},
        "failed",
        "ml-service answers 500",
    ),
    Scenario(
        "summarize",
        {"kind": "summarize", "texts": ["Release notes for 2.4"], "warmup_attempts": 1},
        "completed",
        "ml-service 503 while loading: Celery retries",
    ),
    Scenario(
        "analyze_document",
        {"kind": "analyze_document", "document": "scan-0042.pdf", "corrupt_document": True},
        "failed",
        "the document parser tool raises",
    ),
    Scenario("analyze_document", {"kind": "analyze_document", "document": "contract.pdf"}),
    Scenario("classify", {"kind": "classify", "texts": ["Dear customer, your contract renews on 1 May."]}),
    Scenario(
        "translate", {"kind": "translate", "texts": ["Hallo Welt"]}, "rejected", "unknown task kind: 400"
    ),
)


# --- command line ---------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="aiecs-tracing demo",
        description="Start a small AIECS (task API, Celery worker, ML service), send it work and print every "
        "trace as a tree. Traces go to the embedded collector (started if none is running) or to a "
        "Jaeger already listening on the query port.",
    )
    parser.add_argument(
        "--duration", type=float, default=None, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--requests", type=int, default=None, metavar="N", help="stop after N requests")
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="pause between requests"
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="collector address (default %(default)s)")
    parser.add_argument(
        "--otlp-port", type=int, default=DEFAULT_OTLP_PORT, help="OTLP/HTTP port (0: any free)"
    )
    parser.add_argument(
        "--udp-port", type=int, default=DEFAULT_UDP_PORT, help="Jaeger UDP port (0: any free)"
    )
    parser.add_argument(
        "--ui-port", type=int, default=DEFAULT_UI_PORT, help="query API and UI port (0: any free)"
    )
    parser.add_argument(
        "--db",
        default=None,
        metavar="PATH",
        help="collector store (default: the one `aiecs-tracing serve` uses; :memory: keeps nothing)",
    )
    parser.add_argument("--api-port", type=int, default=0, help="task API port (default: any free)")
    parser.add_argument("--ml-port", type=int, default=0, help="ml-service port (default: any free)")
    parser.add_argument(
        "--broker",
        default=os.environ.get(common.ENV_BROKER) or "filesystem://",
        help="Celery broker URL (default: $CELERY_BROKER_URL, else files in the work directory)",
    )
    parser.add_argument("--concurrency", type=int, default=2, help="Celery prefork pool size")
    parser.add_argument(
        "--api-url",
        default=None,
        metavar="URL",
        help="drive an aiecs-api that is already running (e.g. docker compose's) instead of starting the services",
    )
    parser.add_argument(
        "--query-url",
        default=None,
        metavar="URL",
        help="read traces from this Jaeger-compatible query API instead of finding or starting the collector",
    )
    parser.add_argument(
        "--jaeger",
        nargs="?",
        const="",
        default=None,
        metavar="BINARY",
        help="send the traces to a real Jaeger v2 started for this run: BINARY, else the one "
        "scripts/ensure_jaeger.sh builds, else `jaeger` on PATH",
    )
    parser.add_argument("--viewer-url", default=None, metavar="URL", help="base of the trace links printed")
    parser.add_argument(
        "--workdir", default=None, help="where logs, broker files and SQLite go (default: a temp dir)"
    )
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args(argv)
    for name in ("otlp_port", "udp_port", "ui_port", "api_port", "ml_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be 0-65535")
    if args.requests is not None and args.requests < 1:
        parser.error("--requests must be at least 1")
    return args


