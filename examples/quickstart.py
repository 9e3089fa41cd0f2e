"""Quickstart: the seed's API in twenty lines, spans printed to the terminal.

Run: ``.venv/bin/python examples/quickstart.py`` (no Jaeger needed: console exporter).
Point it at a Jaeger agent instead with ``JAEGER_AGENT_HOST``/``JAEGER_AGENT_PORT`` and
``AIECS_TRACING_EXPORTER=udp``, or at any OTLP endpoint with ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

import asyncio
import os

from aiecs_tracing import TracingManager

os.environ.setdefault("AIECS_TRACING_EXPORTER", "console")
tracing = TracingManager(service_name="quickstart")


@tracing.trace_database_operation("SELECT", table="tasks", query="SELECT * FROM tasks", db_system="sqlite")
async def get_pending_tasks():
    return [{"id": 1}, {"id": 2}]


@tracing.trace_tool_execution("data_processor", "clean_data")
def clean(rows):
    return [r for r in rows if r]


@tracing.with_tracing("handle_request", tags={"component": "api"})
async def handle_request(user_id: str, password: str):
    tasks = await get_pending_tasks()
    return clean(tasks)


async def main():
    with tracing.span("quickstart", tags={"user_id": "123"}) as root:
        await handle_request("123", password="never-recorded")
        headers = {}
        tracing.inject_span_context(root, headers)
        print("headers a downstream service would receive:", headers)


asyncio.run(main())
tracing.close_tracer()
print(tracing.get_tracer_info())
