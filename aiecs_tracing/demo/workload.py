"""The demo's workload and its printer: send tasks, follow their progress, fetch each trace and print it as a tree."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TextIO

from .backend import Backend
from .options import SCENARIOS, TASK_TIMEOUT, Scenario
from .tree import Style, render_trace, trace_summary


# --- the workload ---------------------------------------------------------------------
@dataclass
class Outcome:
    number: int
    scenario: Scenario
    status: str  # completed, failed, rejected, timeout, error
    seconds: float
    trace_id: str | None = None
    spans: int = 0
    services: list[str] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)


class Workload:
    """Send tasks, follow progress over Socket.IO, print each trace from the query API."""

    def __init__(self, api_url: str, backend: Backend, out: TextIO, style: Style, interval: float) -> None:
        self.api_url = api_url
        self.backend = backend
        self.out = out
        self.style = style
        self.interval = interval
        self.outcomes: list[Outcome] = []
        self._events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._done: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._sio: Any = None
        self.progress_via = "Socket.IO"

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    async def _connect_progress(self) -> None:
        try:
            import socketio

            sio = socketio.AsyncClient(reconnection=True, logger=False, engineio_logger=False)

            @sio.on("progress")
            async def on_progress(data: dict[str, Any]) -> None:
                task_id = data.get("task_id")
                if not task_id:
                    return
                self._events[task_id].append(data)
                if data.get("status") in ("completed", "failed"):
                    self._done[task_id].set()

            await sio.connect(self.api_url, auth={"user_id": "demo-user"}, wait_timeout=10)
            self._sio = sio
        except Exception as exc:  # e.g. aiohttp missing: poll the task status instead
            self.progress_via = f"polling (Socket.IO client unavailable: {type(exc).__name__})"
            self._sio = None

    async def run(self, deadline: float | None, max_requests: int | None) -> None:
        import httpx

        await self._connect_progress()
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                number = 0
                while max_requests is None or number < max_requests:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    scenario = SCENARIOS[number % len(SCENARIOS)]
                    number += 1
                    outcome = await self._one(client, number, scenario, deadline)
                    self.outcomes.append(outcome)
                    if max_requests is not None and number >= max_requests:
                        break
                    if deadline is not None and time.monotonic() + self.interval >= deadline:
                        break
                    await asyncio.sleep(self.interval)
        finally:
            # Also when cancelled (Ctrl-C, SIGTERM): an open Socket.IO session would
            # otherwise be torn down noisily after the event loop is gone.
            if self._sio is not None:
                try:
                    await asyncio.wait_for(self._sio.disconnect(), 3)
                except BaseException:
                    pass

    async def _one(self, client: Any, number: int, scenario: Scenario, deadline: float | None) -> Outcome:
        started = time.monotonic()
        outcome = Outcome(number, scenario, "error", 0.0)
        try:
            response = await client.post(f"{self.api_url}/api/tasks", json=scenario.request)
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            outcome.trace_id = _trace_id_of(response.headers.get("traceresponse"))
            if response.status_code >= 400:
                outcome.status = "rejected"
                outcome.progress = [f"HTTP {response.status_code}: {body.get('detail', '')}"]
            else:
                task_id = body["task_id"]
                limit = TASK_TIMEOUT
                if deadline is not None:
                    limit = max(min(limit, deadline - time.monotonic()), 0.5)
                outcome.status = await self._wait_task(client, task_id, limit)
                outcome.progress = [
                    _first_line(e.get("message") or e.get("status")) for e in self._events.pop(task_id, [])
                ]
                self._done.pop(task_id, None)
        except Exception as exc:
            outcome.status = "error"
            outcome.progress = [f"{type(exc).__name__}: {exc}"]
        outcome.seconds = time.monotonic() - started
        trace = await self._settled_trace(client, outcome.trace_id) if outcome.trace_id else None
        self._print(outcome, trace)
        return outcome

    async def _wait_task(self, client: Any, task_id: str, limit: float) -> str:
        if self._sio is not None:
            try:
                await asyncio.wait_for(self._done[task_id].wait(), limit)
            except asyncio.TimeoutError:
                return "timeout"
            events = self._events.get(task_id, [])
            return str(events[-1].get("status")) if events else "completed"
        stop = time.monotonic() + limit
        while time.monotonic() < stop:
            response = await client.get(f"{self.api_url}/api/tasks/{task_id}")
            if response.status_code == 200:
                row = response.json()
                if row.get("status") in ("completed", "failed"):
                    self._events[task_id].append(row)
                    return str(row["status"])
            await asyncio.sleep(0.2)
        return "timeout"

    async def _settled_trace(self, client: Any, trace_id: str, limit: float = 10.0) -> dict[str, Any] | None:
        """The trace once every span has arrived (see :func:`_looks_complete`) and the count is stable.

        Each service exports on its own schedule, so spans arrive over a few hundred
        milliseconds; on a loaded machine, longer. At ``limit`` whatever arrived is shown.
        """
        url = f"{self.backend.query_url}/api/traces/{trace_id}"
        stop = time.monotonic() + limit
        last_count, stable, trace = -1, 0, None
        await asyncio.sleep(0.3)
        while time.monotonic() < stop:
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    data = response.json().get("data") or []
                    trace = data[0] if data else trace
            except Exception:
                pass
            count = len(trace.get("spans") or []) if trace else 0
            if count and count == last_count and _looks_complete(trace):
                stable += 1
                if stable >= 1:
                    break
            else:
                stable = 0
            last_count = count
            await asyncio.sleep(0.25)
        return trace

    def _print(self, outcome: Outcome, trace: dict[str, Any] | None) -> None:
        s, scenario = self.style, outcome.scenario
        expected = outcome.status == scenario.expect
        marks = {"completed": ("✓", "green"), "failed": ("✗", "red"), "rejected": ("✗", "yellow")}
        mark, color = marks.get(outcome.status, ("?", "yellow"))
        status = s(f"{mark} {outcome.status}".ljust(12), color, "bold")
        why = f"  {s('(on purpose: ' + scenario.why + ')', 'dim')}" if scenario.why and expected else ""
        if not expected:
            why = "  " + s(f"(expected {scenario.expect})", "yellow")
        head = f"{s(f'#{outcome.number:<3}', 'bold')} {scenario.label:<17} {status}  {outcome.seconds:5.2f} s{why}"
        self.say(head)
        width = shutil.get_terminal_size((160, 24)).columns
        if outcome.progress:
            pushed = _first_line("progress: " + " → ".join(outcome.progress), max(width - 6, 40))
            self.say("     " + s(pushed, "dim"))
        if trace is None:
            if outcome.trace_id:
                self.say("     " + s(f"trace {outcome.trace_id}: not found in the collector", "yellow"))
            self.say()
            return
        count, services, errors = trace_summary(trace)
        outcome.spans, outcome.services = count, services
        error_text = s(f"{errors} with errors", "red") if errors else "no errors"
        self.say(
            f"     trace {outcome.trace_id} · {count} span{'' if count == 1 else 's'} · {' → '.join(services)} · {error_text}"
        )
        self.say("     " + s(self.backend.trace_url(outcome.trace_id or ""), "blue"))
        if not _looks_complete(trace):
            self.say(
                "     " + s("(some spans had not arrived yet: the viewer shows the whole trace)", "yellow")
            )
        for line in render_trace(trace, s, width=width, indent="     "):
            self.say(line)
        self.say()


def _trace_id_of(traceresponse: str | None) -> str | None:
    """The trace id in a W3C ``traceresponse`` header (``00-<trace id>-<span id>-<flags>``)."""
    parts = (traceresponse or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def _first_line(text: Any, limit: int = 90) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _looks_complete(trace: dict[str, Any] | None) -> bool:
    """No span's parent is missing, and every call to another process has its other side.

    That is: each outgoing HTTP request (a CLIENT span with an HTTP method) and each
    Celery publish (a PRODUCER span of messaging system celery) has a child span from
    the receiving service. Socket.IO emits go to an untraced browser and have none.
    """
    if not trace:
        return False
    spans = trace.get("spans") or ()
    ids = {span.get("spanID") for span in spans}
    parents: set[str] = set()
    for span in spans:
        for ref in span.get("references") or ():
            if ref.get("refType", "CHILD_OF") == "CHILD_OF":
                if ref.get("spanID") not in ids:
                    return False
                parents.add(ref.get("spanID"))
    for span in spans:
        tags = {t.get("key"): t.get("value") for t in span.get("tags") or ()}
        kind = tags.get("span.kind")
        remote_call = (kind == "client" and ("http.request.method" in tags or "http.method" in tags)) or (
            kind == "producer" and tags.get("messaging.system") == "celery"
        )
        answered = kind == "producer" or "http.response.status_code" in tags or "http.status_code" in tags
        if remote_call and answered and span.get("spanID") not in parents:
            return False  # (a request that got no answer, e.g. connection refused, has no other side)
    return True


async def run_workload(workload: Workload, deadline: float | None, max_requests: int | None) -> None:
    """Run ``workload``; SIGTERM cancels it like Ctrl-C does."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
    except (NotImplementedError, RuntimeError):
        pass
    try:
        await workload.run(deadline, max_requests)
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError):
            pass


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


