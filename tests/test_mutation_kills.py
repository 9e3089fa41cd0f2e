"""Tests written to kill mutants that survived the suite: each names the change it catches.

Every test here fails with its mutation applied (checked on a copy of the package; see the
report of the suite audit), and checks behaviour through public entry points or the wire.
"""

from __future__ import annotations

from celery import Celery

from aiecs_tracing.integrations.celery import install_celery_tracing, uninstall_celery_tracing
from tests.integration._celery_util import new_queue_name
from tests.wire import make_manager, settled

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7


def test_dsn_password_nested_in_an_argument_never_reaches_the_wire(sink):
    """Mutant: attributes.py stops redacting DSN passwords in strings nested in dicts or lists."""
    tracing = make_manager(sink, "nested-dsn")

    @tracing.with_tracing("connect")
    def connect(config: dict, replicas: list) -> str:
        return "ok"

    assert connect({"db": "postgresql://admin:hunter2@db/x"}, ["mysql://root:hunter2@replica:3306/y"]) == "ok"
    (span,) = settled(sink, tracing)
    recorded = " ".join(str(value) for key, value in span.tags.items() if key.startswith("arg_"))
    assert "db" in recorded and "replica" in recorded  # the arguments were recorded...
    assert sink.packets and not any(b"hunter2" in packet for packet in sink.packets)  # ...never the password


def test_jaeger_debug_bit_is_kept_when_both_headers_name_the_same_parent(sink):
    """Mutant: propagation.extract_headers drops uber-trace-id's debug flag when traceparent agrees."""
    tracing = make_manager(sink, "debug-bit")
    traceparent = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"
    agreeing = {"traceparent": traceparent, "uber-trace-id": f"{TRACE_ID:x}:{PARENT_ID:x}:0:3"}
    context = tracing.extract_span_context(agreeing)
    assert (context.trace_id, context.span_id, context.sampled, context.debug) == (TRACE_ID, PARENT_ID, True, True)
    # and it travels on: the child's outgoing uber-trace-id says debug (flags 3) too
    child = tracing.start_span("child", parent_span=context)
    outgoing: dict[str, str] = {}
    tracing.inject_span_context(child, outgoing)
    child.finish()
    assert outgoing["uber-trace-id"].endswith(":3"), outgoing
    # a Jaeger header naming another parent is ignored, its debug bit with it (W3C wins)
    other = {"traceparent": traceparent, "uber-trace-id": f"{TRACE_ID:x}:{PARENT_ID + 1:x}:0:3"}
    assert tracing.extract_span_context(other).debug is False
    assert tracing.extract_span_context({"traceparent": traceparent}).debug is False


def test_trace_headers_copied_from_the_previous_attempt_are_replaced(sink):
    """Mutant: the Celery publish hook no longer strips the trace headers a retry copied over."""
    tracing = make_manager(sink, "retrying")
    app = Celery("retry-copy", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_default_queue=new_queue_name("copy"))
    install_celery_tracing(app, tracing)
    stale = {  # what a retry's request carries: the previous attempt's context and baggage
        "traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01",
        "uber-trace-id": f"{TRACE_ID:x}:{PARENT_ID:x}:0:1",
        "tracestate": "old=1",
        "baggage": "attempt=first",
        "uberctx-attempt": "first",
    }
    try:
        with tracing.span("retry caller") as caller:
            app.send_task("x.again", headers=dict(stale))
        with app.connection_for_read() as conn:
            queue = conn.SimpleQueue(app.conf.task_default_queue)
            try:
                message = queue.get(timeout=2)
                message.ack()
                headers = dict(message.headers)
            finally:
                queue.close()
    finally:
        uninstall_celery_tracing(app)
        app.close()
    (send,) = [s for s in settled(sink, tracing) if s.operation == "send x.again"]
    assert headers["traceparent"] == f"00-{send.trace_id:032x}-{send.span_id:016x}-01"
    assert send.trace_id == caller.context.trace_id != TRACE_ID
    assert "tracestate" not in headers and "uberctx-attempt" not in headers
    assert "attempt=first" not in headers.get("baggage", "")
    assert tracing.extract_span_context(headers).baggage == {}  # the new attempt carries no stale baggage


class _Clock:
    """``time.monotonic`` for the sampler, moved by hand: no test waits for real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def _rate_limited(monkeypatch, rate: float):
    from aiecs_tracing.core import sampling

    clock = _Clock()
    monkeypatch.setattr(sampling, "time", clock)
    return sampling.RateLimitingSampler(rate), clock


def test_rate_limiting_sampler_is_a_token_bucket_of_capacity_max_rate_1(monkeypatch):
    """Mutants: sampling.RateLimitingSampler's capacity, refill, threshold and cost (survivors of make mutate)."""
    sampler, clock = _rate_limited(monkeypatch, 0.5)  # one trace every 2 s, bursts of at most 1
    assert [sampler.take() for _ in range(3)] == [True, False, False]
    clock.now += 1.0
    assert sampler.take() is False  # half a token
    clock.now += 1.0
    assert sampler.take() is True  # exactly one token: enough
    assert sampler.take() is False
    clock.now += 3600
    assert [sampler.take() for _ in range(2)] == [True, False]  # the bucket holds 1, however long idle

    sampler, clock = _rate_limited(monkeypatch, 3)
    assert [sampler.take() for _ in range(4)] == [True, True, True, False]  # a burst of 3
    clock.now += 1 / 3 + 1e-9
    assert [sampler.take() for _ in range(2)] == [True, False]


def test_rate_limiting_sampler_of_zero_samples_nothing_and_keeps_attributes(monkeypatch):
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import TraceState

    off, _ = _rate_limited(monkeypatch, 0)
    assert not any(off.take() for _ in range(5))
    sampler, _ = _rate_limited(monkeypatch, 1)
    state = TraceState([("vendor", "v1")])
    result = sampler.should_sample(None, 0xABC, "root", attributes={"a": 1}, trace_state=state)
    assert result.decision is Decision.RECORD_AND_SAMPLE
    assert dict(result.attributes) == {"a": 1} and result.trace_state is state
    assert sampler.should_sample(None, 0xABD, "next").decision is Decision.DROP
