"""The demo, as a newcomer runs it: one command, trace trees on the terminal, a clean exit.

``aiecs-tracing demo`` runs in a subprocess with free ports and an in-memory store; its
output must show, for each request, one trace that crosses the API, the Celery worker
and the ML service (with database and tool spans, and the failures it causes on
purpose marked as errors), and no process of the run may outlive it.
Also: the tree printer on a hand-made Jaeger trace, and ``docker-compose.yml``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiecs_tracing.demo.tree import Style, build_tree, render_trace, trace_summary

ROOT = Path(__file__).resolve().parents[2]
TREE_LINE = re.compile(
    r"^ {5}(?P<prefix>[│├└─ ]*?)(?P<service>[a-z][\w-]*) +(?P<label>.+?) {2,}(?P<duration>[\d.]+ (?:s|ms|µs))"
)
HEADER = re.compile(r"^#(?P<n>\d+)\s+(?P<kind>\w+)\s+(?P<mark>[✓✗?]) (?P<status>\w+)")


def _demo_command() -> list[str]:
    script = Path(sys.executable).parent / "aiecs-tracing"
    if script.exists():
        return [str(script), "demo"]
    return [sys.executable, "-m", "aiecs_tracing.demo"]


def _processes_of_run(workdir: Path) -> list[int]:
    """Pids of live processes of this run: their environment names its work directory, or
    they run in it (Celery's setproctitle, when installed, overwrites what /proc shows of
    the environment, but not the working directory the demo starts its services in)."""
    marker = f"AIECS_DEMO_DIR={workdir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in environ.split(b"\0") or cwd == str(workdir):
            pids.append(int(entry.name))
    return pids


def _blocks(output: str) -> dict[int, list[str]]:
    """Each request's lines, by request number."""
    blocks: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        match = HEADER.match(line)
        if match:
            current = blocks.setdefault(int(match["n"]), [])
        elif not line.strip() or not line.startswith("     "):
            current = None if not line.strip() else current
        if current is not None:
            current.append(line)
    return blocks


def _tree(block: list[str]) -> list[dict]:
    """Tree lines as dicts with depth and the index of the parent line."""
    rows: list[dict] = []
    stack: list[int] = []
    for line in block:
        match = TREE_LINE.match(line)
        if not match or match["service"] in ("trace", "progress") or line.lstrip().startswith("http"):
            continue
        depth = len(match["prefix"]) // 3
        del stack[depth:]
        rows.append(
            {
                "depth": depth,
                "service": match["service"],
                "label": match["label"].strip(),
                "error": "✗" in line,
                "parent": stack[-1] if stack else None,
                "line": line,
            }
        )
        stack.append(len(rows) - 1)
    return rows


def _ancestors(rows: list[dict], index: int) -> list[dict]:
    chain = []
    parent = rows[index]["parent"]
    while parent is not None:
        chain.append(rows[parent])
        parent = rows[parent]["parent"]
    return chain


def _find(rows: list[dict], service: str, label_part: str) -> list[int]:
    return [i for i, r in enumerate(rows) if r["service"] == service and label_part in r["label"]]


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_demo_prints_cross_service_trace_trees_and_exits_cleanly(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_", "CELERY_"))}
    env.update({"COLUMNS": "220", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    command = _demo_command() + [
        "--requests", "4", "--duration", "45", "--interval", "0.2",
        "--db", ":memory:", "--ui-port", "0", "--udp-port", "0", "--otlp-port", "0",
        "--workdir", str(workdir), "--color", "never",
    ]  # fmt: skip
    try:
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=75)
    finally:
        leftovers = _processes_of_run(workdir)
        for pid in leftovers:  # never leave them behind, even when the assertions fail
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert leftovers == [], f"processes outlived the demo: {leftovers}\n{output}"
    assert "Stopped them." in output and "Stopped the collector." in output, output

    blocks = _blocks(result.stdout)
    assert sorted(blocks) == [1, 2, 3, 4], output
    ui = re.search(r"UI and query API (http://127\.0\.0\.1:\d+)", result.stdout)
    assert ui, output

    for block in blocks.values():
        text = "\n".join(block)
        trace = re.search(r"trace ([0-9a-f]{32}) · (\d+) spans · (.+?) · ", text)
        assert trace, text
        assert f"{ui.group(1)}/trace/{trace.group(1)}" in text, text
        rows = _tree(block)
        assert len(rows) == int(trace.group(2)), text
        # One trace from the API's request down through the worker.
        assert rows[0]["service"] == "aiecs-api" and rows[0]["label"] == "POST /api/tasks", text
        assert [r for r in rows if r["parent"] is None] == [rows[0]], text
        runs = _find(rows, "aiecs-worker", "run aiecs.tasks.worker.execute_")
        assert runs, text
        send = rows[runs[0]]["parent"]
        assert (
            rows[send]["service"] == "aiecs-api" and "send aiecs.tasks.worker.execute_" in rows[send]["label"]
        )
        # Database spans in both services, progress pushed back over HTTP and Socket.IO.
        assert _find(rows, "aiecs-api", "INSERT tasks"), text
        assert _find(rows, "aiecs-worker", "UPDATE tasks"), text
        emits = _find(rows, "aiecs-api", "socketio emit progress")
        assert emits and all(rows[rows[i]["parent"]]["label"] == "POST /internal/progress" for i in emits), (
            text
        )

    def block_rows(n: int) -> tuple[str, list[dict]]:
        return "\n".join(blocks[n]), _tree(blocks[n])

    # 1: succeeds; the ML call crosses into ml-service (sent over OTLP) under the worker.
    text, rows = block_rows(1)
    assert HEADER.match(blocks[1][0])["status"] == "completed", text
    ml = _find(rows, "ml-service", "POST /v1/")
    assert ml, text
    assert [a["service"] for a in _ancestors(rows, ml[0])][:2] == ["aiecs-worker", "aiecs-worker"], text
    assert _ancestors(rows, ml[0])[-1] is rows[0]
    assert _find(rows, "aiecs-worker", "web_search.search"), text
    assert _find(rows, "aiecs-worker", "INSERT task_results"), text
    assert not any(r["error"] for r in rows), text

    # 2: ml-service answers 500: the inference span, both HTTP spans and the task are errors.
    text, rows = block_rows(2)
    assert HEADER.match(blocks[2][0])["status"] == "failed", text
    inference = _find(rows, "ml-service", "classify aiecs-small-2")
    assert inference and rows[inference[0]]["error"] and "InferenceError" in rows[inference[0]]["line"], text
    assert all(rows[i]["error"] for i in _find(rows, "ml-service", "POST /v1/")), text
    assert rows[_find(rows, "aiecs-worker", "run aiecs.tasks.worker.execute_task")[0]]["error"], text

    # 3: a 503 makes the task retry: two runs in one trace, the second under the first.
    text, rows = block_rows(3)
    assert HEADER.match(blocks[3][0])["status"] == "completed", text
    runs = _find(rows, "aiecs-worker", "run aiecs.tasks.worker.execute_task")
    assert len(runs) == 2 and rows[runs[0]] in _ancestors(rows, runs[1]), text
    assert any(r["error"] and "503" in r["line"] for r in rows), text

    # 4: the document parser tool raises: its span and the task's are errors.
    text, rows = block_rows(4)
    assert HEADER.match(blocks[4][0])["status"] == "failed", text
    parse = _find(rows, "aiecs-worker", "document_parser.parse")
    assert parse and rows[parse[0]]["error"] and "DocumentParseError" in rows[parse[0]]["line"], text
    assert not _find(rows, "ml-service", ""), text


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """The default mode runs until Ctrl-C: SIGINT stops services, pool processes and collector."""
    import signal
    import threading
    import time

    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_", "AIECS_", "CELERY_"))}
    env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    command = _demo_command() + [
        "--db", ":memory:", "--ui-port", "0", "--udp-port", "0", "--otlp-port", "0",
        "--workdir", str(workdir), "--interval", "0.2",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    first_trace = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "/trace/" in line:
                first_trace.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert first_trace.wait(45), "".join(lines)
        time.sleep(0.5)
        workers = _processes_of_run(workdir)
        assert len(workers) >= 5, workers  # ml-service, api, celery main + 2 pool processes
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        reader.join(5)
    finally:
        if proc.poll() is None:
            proc.kill()
        leftovers = _processes_of_run(workdir)
        for pid in leftovers:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
    output = "".join(lines)
    assert code == 0, output
    assert leftovers == [], output
    assert "Interrupted." in output and "Stopped them." in output and "Stopped the collector." in output, (
        output
    )
    assert "Traceback" not in output, output


def _jaeger_trace() -> dict:
    def tag(key: str, value: object, kind: str = "string") -> dict:
        return {"key": key, "type": kind, "value": value}

    ref = lambda span_id: [{"refType": "CHILD_OF", "traceID": "t", "spanID": span_id}]  # noqa: E731
    return {
        "traceID": "t",
        "processes": {"p1": {"serviceName": "api", "tags": []}, "p2": {"serviceName": "worker", "tags": []}},
        "spans": [
            # out of order on purpose, one orphan (parent never arrived)
            {"spanID": "c", "operationName": "tool.run", "references": ref("b"), "startTime": 1_500,
             "duration": 200, "processID": "p2",
             "tags": [tag("error", True, "bool")],
             "logs": [{"timestamp": 1_600, "fields": [tag("event", "exception"), tag("exception.type", "ValueError"),
                                                      tag("exception.message", "bad input")]}]},
            {"spanID": "a", "operationName": "GET /x", "references": [], "startTime": 1_000, "duration": 2_000,
             "processID": "p1", "tags": [tag("span.kind", "server")], "logs": []},
            {"spanID": "b", "operationName": "run", "references": ref("a"), "startTime": 1_100, "duration": 1_000,
             "processID": "p2", "tags": [], "logs": []},
            {"spanID": "d", "operationName": "late", "references": ref("zz"), "startTime": 900, "duration": 10,
             "processID": "p1", "tags": [], "logs": []},
        ],
    }  # fmt: skip


def test_tree_nests_by_reference_and_marks_errors() -> None:
    trace = _jaeger_trace()
    roots = build_tree(trace)
    assert [r.span_id for r in roots] == ["d", "a"]  # the orphan is shown, not dropped
    assert [c.span_id for c in roots[1].children] == ["b"]
    assert roots[1].children[0].children[0].error == "ValueError: bad input"
    assert trace_summary(trace) == (4, ["api", "worker"], 1)

    lines = render_trace(trace, Style(False), width=160, indent="")
    assert lines[1].startswith("api     GET /x")
    assert lines[2].startswith("└─ worker  run")
    assert lines[3].startswith("   └─ worker  tool.run") and lines[3].endswith("✗ ValueError: bad input")
    assert "2.0 ms" in lines[1] and "200 µs" in lines[3]
    narrow = render_trace(trace, Style(False), width=60, indent="")
    assert any(line.strip() == "✗ ValueError: bad input" for line in narrow)  # moved under the span
    assert all("\033[" not in line for line in lines)
    assert any("\033[31m" in line for line in render_trace(trace, Style(True), width=160))


# --- docker-compose.yml -----------------------------------------------------------------
COMPOSE = ROOT / "docker-compose.yml"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_file_is_valid_and_wires_services_to_jaeger() -> None:
    cli = _compose_cli()
    text = COMPOSE.read_text()
    if cli is not None:
        result = subprocess.run(
            [*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert result.returncode == 0, result.stderr
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        config = yaml.safe_load(text)
        services = config["services"]
        assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:")
        ports = [str(p) for p in services["jaeger"]["ports"]]
        for port in ("16686:16686", "4317:4317", "4318:4318", "6831:6831/udp"):
            assert port in ports
        for name in ("api", "worker"):
            env = services[name]["environment"]
            assert env["JAEGER_AGENT_HOST"] == "jaeger" and str(env["JAEGER_AGENT_PORT"]) == "6831"
            assert str(env["JAEGER_ENABLE_TRACING"]).lower() == "true"
            assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
            assert services[name]["build"]
    # Without a compose CLI or PyYAML, at least the required pieces must be there.
    for needle in (
        "jaegertracing/jaeger:",
        '"16686:16686"',
        '"4317:4317"',
        '"4318:4318"',
        '"6831:6831/udp"',
        "JAEGER_AGENT_HOST: jaeger",
        "CELERY_BROKER_URL: redis://redis:6379/0",
        "SERVICE_NAME: aiecs-api",
        "SERVICE_NAME: aiecs-worker",
    ):
        assert needle in text, needle
