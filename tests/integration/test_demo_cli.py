"""The demo's command line when things are not as expected: one line, at once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from aiecs_tracing.demo.backend import broker_unreachable, serve_command
from aiecs_tracing.demo.options import parse_args
from tests.integration.test_demo import _demo_command


def test_unreachable_broker_fails_within_seconds_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_", "CELERY_"))}
    command = [*_demo_command(), "--broker", "redis://:s3cret@127.0.0.1:1/0", "--requests", "1", "--db", ":memory:",
               "--ui-port", "0", "--udp-port", "0", "--otlp-port", "0", "--color", "never"]  # fmt: skip
    started = time.monotonic()
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "broker" in line]
    assert lines == ["cannot reach the broker redis://***@127.0.0.1:1/0 (127.0.0.1:1: Connection refused); "
                     "start it, or omit --broker"], result.stdout  # fmt: skip
    assert "s3cret" not in result.stdout + result.stderr
    assert took < 5, took


@pytest.mark.parametrize(
    ("url", "reachable"),
    [("filesystem://", True), ("memory://", True), ("redis://127.0.0.1:1/0", False), ("amqp://u:p@127.0.0.1:1//", False)],
)
def test_broker_check_looks_only_at_network_brokers(url: str, reachable: bool) -> None:
    assert (broker_unreachable(url, timeout=1) is None) is reachable


def test_closing_hint_repeats_the_options_the_demo_was_run_with() -> None:
    assert serve_command(parse_args([])) == "aiecs-tracing serve"
    assert serve_command(parse_args(["--db", "/tmp/my traces.db", "--ui-port", "17000"])) == (
        "aiecs-tracing serve --db '/tmp/my traces.db' --ui-port 17000"
    )
