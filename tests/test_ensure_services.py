"""``make test`` sets up Redis and RabbitMQ itself; where it cannot, CI stops at once with one line.

Here Redis "cannot be started": a ``redis-server`` on PATH that dies on start (as a real one
does when its port is taken), on a port nothing answers. RabbitMQ is the machine's own (the
suite's set-up started it).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broken_redis(tmp_path: Path) -> dict[str, str]:
    fake = tmp_path / "bin" / "redis-server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Could not create server TCP listening socket: bind: Address already in use' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}", REDIS_PORT=str(free_port()))
    env.pop("CI", None)
    return env


def test_a_redis_that_cannot_start_is_one_line_naming_it_and_how_to_start_it(tmp_path: Path) -> None:
    env = broken_redis(tmp_path)
    result = subprocess.run(
        ["bash", "scripts/ensure_services.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"Redis could not be started on 127.0.0.1:{env['REDIS_PORT']}" in lines[0]
    assert "Address already in use" in lines[0] and f"redis-server --port {env['REDIS_PORT']}" in lines[0]


def test_ci_make_test_stops_at_the_services_step_and_elsewhere_goes_on(tmp_path: Path) -> None:
    env = broken_redis(tmp_path)
    ci = subprocess.run(
        ["make", "-s", "services"], cwd=ROOT, env=dict(env, CI="true"), capture_output=True, text=True, timeout=120
    )
    assert ci.returncode != 0
    assert [line for line in ci.stderr.splitlines() if line.startswith("ensure_services:")] == [
        ci.stderr.splitlines()[0]
    ]
    assert "Redis could not be started" in ci.stderr.splitlines()[0]
    local = subprocess.run(["make", "-s", "services"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert local.returncode == 0, local.stderr
    assert "Redis could not be started" in local.stderr and "skip" in local.stderr
