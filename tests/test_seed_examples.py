"""Every example of the seed document (TRACING_MANAGER.md sections 4.1-4.5, 7.1, 8.1), run
as written, with spans received on a real UDP socket and decoded by jaeger-client's own
thrift code."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

from aiecs_tracing import TracingManager
from tests.wire import JaegerUDPSink, unreceived_udp_port


@pytest.fixture
def seed_env(monkeypatch, sink: JaegerUDPSink):
    """Section 7.1's environment, pointed at our fake agent."""
    monkeypatch.setenv("JAEGER_AGENT_HOST", "127.0.0.1")
    monkeypatch.setenv("JAEGER_AGENT_PORT", str(sink.port))
    monkeypatch.setenv("JAEGER_ENABLE_TRACING", "true")
    monkeypatch.setenv("SERVICE_NAME", "task_executor")
    return sink


def make(**kw: Any) -> TracingManager:
    return TracingManager(set_global_provider=False, set_default_manager=False, schedule_delay_millis=50, **kw)


def test_4_1_manual_span_and_decorators(seed_env):
    tracing = make(service_name="task_executor")

    async def process_request():
        return {"ok": True}

    async def flow():
        span = tracing.start_span("process_user_request", tags={"user_id": "123"})
        try:
            result = await process_request()
            tracing.finish_span(span, tags={"success": True})
        except Exception as e:
            tracing.finish_span(span, error=e)
            raise
        return result

    @tracing.with_tracing("parse_user_intent", tags={"component": "nlp"})
    async def parse_user_intent(user_input: str) -> dict[str, Any]:
        return {"intent": "summarise", "input": user_input}

    @tracing.with_tracing("generate_task_plan", tags={"component": "planner"})
    async def generate_task_plan(intent: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"step": 1}]

    async def main():
        await flow()
        intent = await parse_user_intent("summarise my mail")
        return await generate_task_plan(intent)

    assert asyncio.run(main()) == [{"step": 1}]
    tracing.flush()
    spans = {s.operation: s for s in seed_env.wait_for(3)}
    req = spans["process_user_request"]
    assert req.service == "task_executor"
    assert req.tags["user_id"] == "123" and req.tags["success"] is True
    assert "span.kind" not in req.tags  # an internal span, not the seed's blanket "server"
    assert spans["parse_user_intent"].tags["component"] == "nlp"
    assert spans["parse_user_intent"].tags["arg_0"] == "summarise my mail"
    assert spans["generate_task_plan"].tags["component"] == "planner"
    assert spans["generate_task_plan"].tags["success"] is True


def test_4_1_failure_keeps_user_exception(seed_env):
    tracing = make(service_name="task_executor")

    async def process_request():
        raise ValueError("bad request")

    async def flow():
        span = tracing.start_span("process_user_request", tags={"user_id": "123"})
        try:
            await process_request()
            tracing.finish_span(span, tags={"success": True})
        except Exception as e:
            tracing.finish_span(span, error=e)
            raise

    with pytest.raises(ValueError, match="bad request"):
        asyncio.run(flow())
    tracing.flush()
    (span,) = seed_env.wait_for(1)
    assert span.tags["error"] is True
    assert span.tags["error.kind"] == "ValueError" and span.tags["error.message"] == "bad request"
    assert any("Traceback" in str(log.get("exception.stacktrace", "")) for log in span.logs)


def test_4_2_database_operations(seed_env):
    tracing = make(service_name="task_executor")

    class FakeDB:
        async def fetch_all(self, q):
            return [{"id": 1, "status": "pending"}]

        async def execute(self, q):
            return 7

    db = FakeDB()

    @tracing.trace_database_operation("SELECT", table="tasks", query="SELECT * FROM tasks WHERE status = 'pending'")
    async def get_pending_tasks() -> list[dict[str, Any]]:
        return await db.fetch_all("SELECT * FROM tasks WHERE status = 'pending'")

    @tracing.trace_database_operation("INSERT", table="task_results")
    async def save_task_result(result: dict[str, Any]) -> int:
        return await db.execute("INSERT INTO task_results ...")

    async def main():
        return await get_pending_tasks(), await save_task_result({"password": "x", "v": 1})

    assert asyncio.run(main()) == ([{"id": 1, "status": "pending"}], 7)
    tracing.flush()
    spans = {s.operation: s for s in seed_env.wait_for(2)}
    select = spans["SELECT tasks"]
    assert select.kind == "client"
    assert select.tags["db.statement.type"] == "SELECT" and select.tags["db.table"] == "tasks"
    assert select.tags["db.statement"] == "SELECT * FROM tasks WHERE status = 'pending'"
    assert select.tags["db.query.text"] == select.tags["db.statement"]
    assert "db.type" not in select.tags and "db.system" not in select.tags  # no invented postgresql
    insert = spans["INSERT task_results"]
    assert '"password":"[REDACTED]"' in insert.tags["arg_0"]


def test_4_3_external_calls(seed_env):
    tracing = make(service_name="task_executor")

    class Resp:
        def __init__(self, code, body):
            self.status_code = code
            self._body = body

        def json(self):
            return self._body

    @tracing.trace_external_call("ml_service", endpoint="/api/predict")
    async def call_ml_service(data: dict[str, Any]) -> dict[str, Any]:
        response = Resp(200, {"label": "cat"})  # stands in for httpx.AsyncClient().post(...)
        return response.json()

    @tracing.trace_external_call("notification_service", endpoint="/api/send")
    async def send_notification(user_id: str, message: str) -> bool:
        response = Resp(202, None)
        return response.status_code == 200

    @tracing.trace_external_call("billing", endpoint="/api/charge")
    async def charge() -> Resp:
        return Resp(502, None)

    async def main():
        return await call_ml_service({"x": 1}), await send_notification("u1", "hi"), await charge()

    result = asyncio.run(main())
    assert result[0] == {"label": "cat"} and result[1] is False
    tracing.flush()
    spans = {s.operation: s for s in seed_env.wait_for(3)}
    ml = spans["ml_service /api/predict"]
    assert ml.kind == "client" and ml.tags["peer.service"] == "ml_service" and ml.tags["http.url"] == "/api/predict"
    assert "http.status_code" not in ml.tags  # it returned a dict: no invented 200
    billing = spans["billing /api/charge"]
    assert billing.tags["http.status_code"] == 502 and billing.is_error


def test_4_4_tool_execution(seed_env):
    tracing = make(service_name="task_executor")

    @tracing.trace_tool_execution("data_processor", "clean_data")
    async def clean_data(raw_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in raw_data if r]

    @tracing.trace_tool_execution("ml_model", "train")
    async def train_model(training_data: list[dict[str, Any]]) -> dict[str, Any]:
        raise RuntimeError("diverged")

    async def main():
        cleaned = await clean_data([{"a": 1}, {}, {"b": 2}])
        with pytest.raises(RuntimeError):
            await train_model(cleaned)

    asyncio.run(main())
    tracing.flush()
    spans = {s.operation: s for s in seed_env.wait_for(2)}
    clean = spans["data_processor.clean_data"]
    assert clean.tags["tool.name"] == "data_processor" and clean.tags["tool.operation"] == "clean_data"
    assert clean.tags["tool.success"] is True and clean.tags["tool.result_size"] == 2
    train = spans["ml_model.train"]
    assert train.tags["tool.success"] is False and train.is_error


def test_4_5_cross_service_propagation(seed_env):
    upstream = make(service_name="gateway")
    tracing = make(service_name="task_executor")
    downstream_seen: dict[str, str] = {}

    async def handle_request(data):
        return {"handled": data}

    async def call_downstream_service(result, headers):
        downstream_seen.update(headers)

    async def process_request_with_context(request_data: dict[str, Any], headers: dict[str, str]):
        span_context = tracing.extract_span_context(headers)
        span = tracing.start_span("process_request", parent_span=span_context)
        try:
            result = await handle_request(request_data)
            downstream_headers: dict[str, str] = {}
            tracing.inject_span_context(span, downstream_headers)
            await call_downstream_service(result, downstream_headers)
            tracing.finish_span(span, tags={"success": True})
            return result
        except Exception as e:
            tracing.finish_span(span, error=e)
            raise

    root = upstream.start_span("gateway_request")
    incoming: dict[str, str] = {}
    upstream.inject_span_context(root, incoming)
    asyncio.run(process_request_with_context({"q": 1}, incoming))
    upstream.finish_span(root)
    upstream.flush()
    tracing.flush()
    spans = {s.operation: s for s in seed_env.wait_for(2)}
    gateway, processed = spans["gateway_request"], spans["process_request"]
    assert gateway.service == "gateway" and processed.service == "task_executor"
    assert processed.trace_id == gateway.trace_id
    assert processed.parent_id == gateway.span_id
    assert ("CHILD_OF", gateway.trace_id, gateway.span_id) in processed.references
    assert downstream_seen["traceparent"].split("-")[2] == f"{processed.span_id:016x}"
    assert downstream_seen["uber-trace-id"].startswith(f"{processed.trace_id:x}:{processed.span_id:x}:")


def test_7_1_code_configuration_and_env(seed_env, global_provider):
    tracing = TracingManager(
        service_name="task_executor",
        jaeger_host="127.0.0.1",
        jaeger_port=seed_env.port,
        enable_tracing=True,
    )
    try:
        tracing.finish_span(tracing.start_span("configured"))
        tracing.flush()
        (span,) = seed_env.wait_for(1)
        assert span.service == "task_executor"
        env_only = TracingManager(set_global_provider=False, set_default_manager=False)
        info = env_only.get_tracer_info()
        assert (info["service_name"], info["jaeger_host"], info["jaeger_port"]) == (
            "task_executor", "127.0.0.1", seed_env.port)
        env_only.close_tracer()
    finally:
        tracing.close_tracer()


def test_8_1_troubleshooting_helpers(seed_env, global_provider):
    def check_jaeger_connection(host: str, port: int) -> bool:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(1)
            sock.connect((host, port))
            sock.close()
            return True
        except Exception:
            return False

    def init_tracer_with_retry(max_retries: int = 3):
        for attempt in range(max_retries):
            try:
                tracing = TracingManager()
                if tracing.tracer:
                    return tracing
            except Exception:
                if attempt == max_retries - 1:
                    raise
                time.sleep(1)

    def validate_tracing_status(tracing: TracingManager):
        info = tracing.get_tracer_info()
        if not info["enabled"]:
            return False
        if not info["tracer_initialized"]:
            return False
        return True

    assert check_jaeger_connection("127.0.0.1", seed_env.port)
    assert not check_jaeger_connection("agent.invalid", seed_env.port)  # the name does not resolve
    # The seed's check only resolves the address: UDP "connects" to a port no agent listens on too.
    assert check_jaeger_connection("127.0.0.1", unreceived_udp_port())
    tracing = init_tracer_with_retry()
    try:
        assert tracing is not None and validate_tracing_status(tracing)
        assert not validate_tracing_status(TracingManager(enable_tracing=False))
        broken = TracingManager(jaeger_port="abc")
        assert not validate_tracing_status(broken) and broken.tracer is None
    finally:
        tracing.close_tracer()
    assert not validate_tracing_status(tracing)


def test_two_managers_keep_their_own_service_names(sink):
    a = make(service_name="svc-a", jaeger_host="127.0.0.1", jaeger_port=sink.port)
    b = make(service_name="svc-b", jaeger_host="127.0.0.1", jaeger_port=sink.port)
    a.finish_span(a.start_span("from-a"))
    b.finish_span(b.start_span("from-b"))
    a.flush()
    b.flush()
    spans = {s.operation: s.service for s in sink.wait_for(2)}
    assert spans == {"from-a": "svc-a", "from-b": "svc-b"}


def test_process_tags_from_jaeger_tags(monkeypatch, sink):
    monkeypatch.setenv("JAEGER_TAGS", "deployment=blue,region=eu")
    t = make(service_name="tagged", jaeger_host="127.0.0.1", jaeger_port=sink.port)
    t.finish_span(t.start_span("x"))
    t.flush()
    (span,) = sink.wait_for(1)
    assert span.process_tags["deployment"] == "blue" and span.process_tags["region"] == "eu"
    assert span.process_tags["hostname"] == socket.gethostname()
