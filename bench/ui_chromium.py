"""Benchmark of the web UI's trace page in headless Chromium, and of /api/dependencies.

Starts an in-process collector (``:memory:`` store, free ports), posts synthetic traces
over OTLP/JSON, then drives Debian's Chromium over the DevTools protocol (the helpers
of tests/integration/test_ui_chromium.py):

* first render: ``Page.navigate`` to ``/trace/{id}`` until the waterfall shows rows
  (includes fetching and parsing the trace JSON);
* click: a click on a span row (select, detail panel) until the next frame is painted;
* find: one keystroke's worth of "Find in trace" (the input event) until the next frame.

Then ``/api/dependencies`` over ``--deps-spans`` stored spans, one trace of which has
``--spans`` spans (median of 5 calls).

Usage: ``python bench/ui_chromium.py [--spans 1000 10000] [--deps-spans 100000]``
(``--no-deps`` / ``--no-ui`` skip a part).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiecs_tracing.collector.server import Collector  # noqa: E402
from tests.integration.test_ui_chromium import Chromium, find_chromium, navigate  # noqa: E402

SERVICES = ["frontend", "checkout-api", "billing-worker", "ml-service", "inventory", "notifier"]


def _attr(key: str, value: object) -> dict:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def synthetic_trace(n: int, trace_id: str, t0_ns: int, seed: int = 1) -> list[dict]:
    """``n`` OTLP spans in one tree (fan-out 2-8, depth up to ~8), a few errors."""
    rnd = random.Random(seed)
    spans: list[dict] = []
    ms = 1_000_000
    # (span_id, start_ns, end_ns, depth, service)
    frontier = [(f"{1:016x}", t0_ns, t0_ns + 5000 * ms, 0, SERVICES[0])]
    spans.append(
        _span(trace_id, frontier[0][0], None, "GET /home", t0_ns, t0_ns + 5000 * ms, SERVICES[0], False)
    )
    next_id = 2
    while len(spans) < n:
        new_frontier = []
        for parent_id, start, end, depth, service in frontier:
            kids = rnd.randint(2, 8)
            slot = max(1, (end - start) // (kids + 1))
            for k in range(kids):
                if len(spans) >= n:
                    break
                s = start + k * slot + rnd.randint(0, slot // 4)
                e = min(end, s + rnd.randint(slot // 3, slot))
                svc = service if rnd.random() < 0.6 else rnd.choice(SERVICES)
                sid = f"{next_id:016x}"
                next_id += 1
                err = rnd.random() < 0.01
                spans.append(_span(trace_id, sid, parent_id, f"op-{depth + 1}-{k}", s, e, svc, err))
                new_frontier.append((sid, s, e, depth + 1, svc))
        if not new_frontier:
            break
        frontier = new_frontier
    return spans


def _span(trace_id, span_id, parent, name, start, end, service, error):
    out = {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(end),
        "attributes": [_attr("svc", service), _attr("http.status_code", 500 if error else 200)],
        "status": {"code": 2 if error else 1},
    }
    if parent:
        out["parentSpanId"] = parent
    return out


def post_spans(collector: Collector, spans: list[dict], batch: int = 2000) -> None:
    with httpx.Client(trust_env=False, timeout=60) as client:
        for i in range(0, len(spans), batch):
            by_service: dict[str, list[dict]] = {}
            for sp in spans[i : i + batch]:
                by_service.setdefault(sp["attributes"][0]["value"]["stringValue"], []).append(sp)
            body = {
                "resourceSpans": [
                    {
                        "resource": {"attributes": [_attr("service.name", svc)]},
                        "scopeSpans": [{"scope": {"name": "bench"}, "spans": group}],
                    }
                    for svc, group in by_service.items()
                ]
            }
            resp = client.post(
                collector.otlp_endpoint,
                content=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            resp.raise_for_status()


FRAME = "new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))"


def bench_ui(collector: Collector, n: int, runs: int = 5) -> dict[str, float]:
    trace_id = f"{n:032x}"
    spans = synthetic_trace(n, trace_id, time.time_ns() - 60_000_000_000)
    post_spans(collector, spans)
    base = f"http://127.0.0.1:{collector.ui_port}"
    binary = find_chromium()
    if binary is None:
        raise SystemExit("no chromium")
    with tempfile.TemporaryDirectory() as tmp:
        chrome = Chromium(binary, Path(tmp))
        try:
            page = chrome.open_page()
            renders, clicks, finds = [], [], []
            for _ in range(runs):
                navigate(page, base + "/search")
                t0 = time.perf_counter()
                page.send("Page.navigate", {"url": f"{base}/trace/{trace_id}"})
                page.wait_for(
                    "document.querySelectorAll('#wf-rows .span-row').length > 10 && "
                    "document.readyState === 'complete'",
                    "the waterfall",
                    timeout=120,
                )
                page.js(FRAME, timeout=60)
                renders.append(time.perf_counter() - t0)
                for k in range(3):
                    clicks.append(
                        page.js(
                            f"""(async () => {{
                              const rows = document.querySelectorAll('#wf-rows .span-row');
                              const row = rows[Math.min(rows.length - 1, {3 + k * 4})];
                              const t0 = performance.now();
                              row.querySelector('.span-op').click();
                              await {FRAME};
                              return (performance.now() - t0) / 1000;
                            }})()""",
                            timeout=60,
                        )
                    )
                for text in ("o", "op", "op-", "op-3", "op-3-"):
                    finds.append(
                        page.js(
                            f"""(async () => {{
                              const el = document.getElementById('span-filter');
                              const t0 = performance.now();
                              el.value = {json.dumps(text)};
                              el.dispatchEvent(new Event('input', {{bubbles: true}}));
                              await {FRAME};
                              return (performance.now() - t0) / 1000;
                            }})()""",
                            timeout=60,
                        )
                    )
            errors = page.js_errors()
            if errors:
                print("JS errors:", errors[:3])
        finally:
            chrome.close()
    return {
        "render_s": statistics.median(renders),
        "click_s": statistics.median(clicks),
        "find_s": statistics.median(finds),
        "find_max_s": max(finds),
    }


def bench_deps(collector: Collector, total: int, big: int) -> float:
    t0_ns = time.time_ns() - 600_000_000_000
    spans = synthetic_trace(big, f"{big:032x}".replace("0", "d", 1), t0_ns, seed=7)
    post_spans(collector, spans)
    stored = big
    pending: list[dict] = []
    i = 0
    while stored < total:
        small = synthetic_trace(
            min(20, total - stored), f"{0xABC000000 + i:032x}", t0_ns + i * 1_000_000, seed=i
        )
        stored += len(small)
        i += 1
        pending.extend(small)
        if len(pending) >= 5000 or stored >= total:
            post_spans(collector, pending, batch=5000)
            pending = []
    collector.wait_for_spans(total, timeout=300)
    url = f"http://127.0.0.1:{collector.ui_port}/api/dependencies"
    times = []
    with httpx.Client(trust_env=False, timeout=120) as client:
        for _ in range(5):
            t = time.perf_counter()
            resp = client.get(url, params={"endTs": int(time.time() * 1000), "lookback": 3600_000})
            resp.raise_for_status()
            times.append(time.perf_counter() - t)
        links = resp.json()["data"]
    print(f"  dependencies: {len(links)} links, calls {sum(x['callCount'] for x in links)}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--deps-spans", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-deps", action="store_true")
    parser.add_argument("--no-ui", action="store_true")
    args = parser.parse_args()
    if not args.no_ui:
        for n in args.spans:
            with Collector(host="127.0.0.1", otlp_port=0, udp_port=None, ui_port=0, db_path=":memory:") as c:
                r = bench_ui(c, n, runs=args.runs)
            print(
                f"{n:>6} spans: first render {r['render_s']:.3f}s  click {r['click_s'] * 1000:.0f}ms  "
                f"find {r['find_s'] * 1000:.0f}ms/keystroke (max {r['find_max_s'] * 1000:.0f}ms)",
                flush=True,
            )
    if not args.no_deps:
        with Collector(host="127.0.0.1", otlp_port=0, udp_port=None, ui_port=0, db_path=":memory:") as c:
            big = max(args.spans)
            t = bench_deps(c, args.deps_spans, big)
        print(
            f"/api/dependencies over {args.deps_spans} spans (one {big}-span trace): {t * 1000:.0f}ms",
            flush=True,
        )


if __name__ == "__main__":
    main()
