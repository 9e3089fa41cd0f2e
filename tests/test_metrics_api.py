"""metrics_api: the one-pass /api/dependencies and the Monitor page's RED metrics."""

from __future__ import annotations

import pytest

from aiecs_tracing.collector import metrics_api
from aiecs_tracing.collector.model import BOOL, Process, SpanRecord
from aiecs_tracing.collector.store import SpanStore

pytestmark = pytest.mark.timeout(30)

S = 1_000_000  # µs


def span(trace, span_id, parent, service, start, dur, op="op", kind="server", error=False):
    tags = [("error", BOOL, True)] if error else []
    return SpanRecord(
        trace_id=trace * 32 if len(trace) == 1 else trace,
        span_id=span_id * 16 if len(span_id) == 1 else span_id,
        parent_span_id=parent * 16 if parent else "",
        operation=op,
        process=Process(service),
        start_us=start,
        duration_us=dur,
        tags=tags,
        kind=kind,
        error=error,
    )


@pytest.fixture()
def store():
    st = SpanStore(":memory:").start()
    try:
        yield st
    finally:
        st.stop()


def put(store, records):
    assert store.submit(records)
    assert store.flush(10)


def test_dependencies_one_pass_matches_the_self_join(store):
    t0 = 1_000 * S
    put(
        store,
        [
            span("a", "1", None, "web", t0, 100),
            span("a", "2", "1", "api", t0 + 1, 50),
            span("a", "3", "2", "db", t0 + 2, 10),
            span("a", "4", "2", "db", t0 + 3, 10),
            span("a", "5", "2", "api", t0 + 4, 10),  # same service: no link
            # Span ids repeat across traces: the map is per trace.
            span("b", "1", None, "api", t0, 100),
            span("b", "2", "1", "web", t0 + 1, 10),
            span("c", "9", "8", "db", t0 + 5, 1),  # parent never received
        ],
    )
    db = metrics_api.connect_read_only(store.path)
    try:
        links = metrics_api.dependencies(db, t0, t0 + 10 * S)
        assert links == store.dependencies(t0, t0 + 10 * S)
        assert links == [("api", "db", 2), ("api", "web", 1), ("web", "api", 1)]
        # A parent that started before the window is still found.
        late = metrics_api.dependencies(db, t0 + 2, t0 + 10 * S)
        assert late == store.dependencies(t0 + 2, t0 + 10 * S) == [("api", "db", 2)]
    finally:
        db.close()


def test_red_metrics_rate_errors_percentiles_and_series(store):
    end = 10_000 * S
    # 100 entry spans over the last 100 s, 1 ms .. 100 ms, every 10th fails
    records = [
        span(
            f"{i:032x}",
            f"{i + 1:016x}",
            None,
            "web",
            end - 100 * S + i * S,
            (i + 1) * 1000,
            "GET /",
            "server",
            i % 10 == 0,
        )
        for i in range(100)
    ]
    records.append(span("f", "a", "1", "web", end - 5 * S, 5, "SELECT", "client"))  # not an entry span
    put(store, records)
    data = metrics_api.with_read_only(store.path, metrics_api.red_metrics, "web", end, 100 * S, 10 * S)
    assert [op["name"] for op in data["operations"]] == ["GET /"]
    op = data["operations"][0]
    assert op["calls"] == 100 and op["errors"] == 10
    assert op["errorPct"] == pytest.approx(10.0)
    assert op["rate"] == pytest.approx(1.0)
    assert (op["p50"], op["p95"], op["p99"]) == (50_000, 95_000, 99_000)
    assert len(data["timestamps"]) == 10 and len(op["series"]["rate"]) == 10
    assert op["series"]["rate"] == [pytest.approx(1.0)] * 10
    assert sum(1 for v in op["series"]["errorPct"] if v) == 10
    everything = metrics_api.with_read_only(
        store.path, metrics_api.red_metrics, "web", end, 100 * S, 10 * S, "all"
    )
    assert {o["name"] for o in everything["operations"]} == {"GET /", "SELECT"}
    nothing = metrics_api.with_read_only(store.path, metrics_api.red_metrics, "nope", end, 100 * S)
    assert nothing["operations"] == [] and nothing["total"]["calls"] == 0


def test_query_parameters():
    with pytest.raises(ValueError, match="service"):
        metrics_api.query("/nonexistent", "monitor", {}, 0)
    with pytest.raises(ValueError, match="lookback"):
        metrics_api.query("/nonexistent", "monitor", {"service": ["x"], "lookback": ["abc"]}, 0)
    assert metrics_api.percentile([], 0.5) is None
    assert metrics_api.percentile([1, 2, 3, 4], 0.5) == 2
