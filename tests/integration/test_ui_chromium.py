"""End-to-end test of the collector's web UI in real headless Chromium.

Seeds the embedded collector with one OTLP/JSON trace, then drives Debian's
Chromium through the DevTools protocol (plain websocket, no Playwright or
Selenium) the way a user would: pick the service, search, open the trace,
inspect the waterfall and the details of the failing span.

Set AIECS_SAVE_SCREENSHOTS=1 to also keep the screenshots under
tests/artifacts/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.services import missing_service

httpx = pytest.importorskip("httpx")
sync_client = pytest.importorskip("websockets.sync.client")

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


# --------------------------------------------------------------------- DevTools client


class CDPError(RuntimeError):
    pass


class Page:
    """Minimal synchronous Chrome DevTools Protocol client for one page target."""

    def __init__(self, ws_url: str, timeout: float = 10.0) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            sync_client.connect(ws_url, max_size=64 * 2**20, open_timeout=timeout)
        )
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        self._stack.close()

    def send(self, method: str, params: dict | None = None, timeout: float = 10.0) -> dict:
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no DevTools reply to {method} within {timeout}s")
            msg = json.loads(self.ws.recv(timeout=remaining))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def js(self, expression: str, timeout: float = 10.0):
        """Evaluate an expression in the page and return its JSON value."""
        res = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"JS error evaluating {expression!r}: {text}")
        return res["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                body = self.js("document.body ? document.body.innerText.slice(0, 1500) : ''")
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; page text:\n{body}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """Click the centre of the element like a user would (real mouse events).

        Fails if the element is missing, invisible or covered by another element.
        """
        box = self.js(
            f"""(() => {{
              const el = document.querySelector({json.dumps(selector)});
              if (!el) return null;
              el.scrollIntoView({{block: 'center', inline: 'nearest'}});
              const r = el.getBoundingClientRect();
              if (!r.width || !r.height) return {{hidden: true}};
              const x = r.left + r.width / 2, y = r.top + r.height / 2;
              const top = document.elementFromPoint(x, y);
              return {{x, y, hit: !!top && (top === el || el.contains(top))}};
            }})()"""
        )
        assert box, f"no element matches {selector!r}"
        assert not box.get("hidden"), f"element {selector!r} is not visible"
        assert box["hit"], f"element {selector!r} is covered by another element"
        base = {"x": box["x"], "y": box["y"], "button": "left", "clickCount": 1}
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box["x"], "y": box["y"]})
        self.send("Input.dispatchMouseEvent", {"type": "mousePressed", **base})
        self.send("Input.dispatchMouseEvent", {"type": "mouseReleased", **base})

    def type_into(self, selector: str, text: str) -> None:
        """Replace an input's value by typing, as a user would (focus, select all, insert text)."""
        found = self.js(
            f"""(() => {{ const el = document.querySelector({json.dumps(selector)});
                       if (!el) return false; el.focus(); el.select(); return true; }})()"""
        )
        assert found, f"no element matches {selector!r}"
        if text:
            self.send("Input.insertText", {"text": text})
        else:
            key = {"key": "Delete", "code": "Delete", "windowsVirtualKeyCode": 46}
            self.send("Input.dispatchKeyEvent", {"type": "keyDown", **key})
            self.send("Input.dispatchKeyEvent", {"type": "keyUp", **key})
        value = self.js(f"document.querySelector({json.dumps(selector)}).value")
        assert value == text, f"typing into {selector!r} left {value!r}, wanted {text!r}"

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, timeout=20)["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def js_errors(self) -> list[str]:
        out = []
        for ev in self.events:
            if ev["method"] == "Runtime.exceptionThrown":
                d = ev["params"]["exceptionDetails"]
                out.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif ev["method"] == "Runtime.consoleAPICalled" and ev["params"].get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in ev["params"]["args"]))
        return out


class Chromium:
    """Headless Chromium with a DevTools websocket, in a throwaway profile."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.profile = workdir / "profile"
        self.profile.mkdir()
        self.log_path = workdir / "chromium.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "--window-size=1280,900",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.page: Page | None = None

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def open_page(self, timeout: float = 20.0) -> Page:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}:\n{self.log_tail()}")
            if port_file.exists():
                lines = port_file.read_text().split()
                if lines and lines[0].isdigit():
                    port = int(lines[0])
                    break
            time.sleep(0.05)
        if port is None:
            raise RuntimeError(f"chromium did not open a DevTools port within {timeout}s:\n{self.log_tail()}")
        ws_url = None
        with httpx.Client(trust_env=False, timeout=5) as client:
            while time.monotonic() < deadline:
                targets = client.get(f"http://127.0.0.1:{port}/json/list").json()
                pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
                if pages:
                    ws_url = pages[0]["webSocketDebuggerUrl"]
                    break
                time.sleep(0.1)
        if ws_url is None:
            raise RuntimeError("chromium exposes no page target")
        self.page = Page(ws_url)
        for domain in ("Page.enable", "Runtime.enable"):
            self.page.send(domain)
        # Pin the viewport so layout (and screenshots) do not depend on window chrome.
        self.page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        return self.page

    def close(self) -> None:
        if self.page is not None:
            try:
                self.page.close()
            except Exception:  # noqa: BLE001 - best-effort teardown
                pass
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._log.close()


def navigate(page: Page, url: str, timeout: float = 15.0) -> None:
    page.send("Page.navigate", {"url": url})
    page.wait_for(
        "document.readyState === 'complete' && !!document.getElementById('app')",
        f"{url} to load",
        timeout=timeout,
    )


# --------------------------------------------------------------------- seed data

TRACE_ID = "5b8efff798038103d269b633813fc60c"
ROOT, DB, CHARGE, RECEIPT = "eee19b7ec3c1b174", "aaa19b7ec3c1b175", "bbb19b7ec3c1b176", "ccc19b7ec3c1b177"
HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
EXPECTED_OPS = {
    "POST /checkout": 0,  # operation -> depth in the span tree
    "SELECT cart": 1,
    "charge_card": 1,
    "send_receipt": 2,
}


def _attr(key: str, value) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def otlp_trace(t0_ns: int) -> dict:
    ms = 1_000_000

    def span(span_id, parent, name, kind, start_ms, dur_ms, attrs=(), **extra):
        out = {
            "traceId": TRACE_ID,
            "spanId": span_id,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(t0_ns + start_ms * ms),
            "endTimeUnixNano": str(t0_ns + (start_ms + dur_ms) * ms),
            "attributes": [_attr(k, v) for k, v in attrs],
            "status": {"code": 1},
        }
        if parent:
            out["parentSpanId"] = parent
        out.update(extra)
        return out

    def resource(service, spans):
        return {
            "resource": {
                "attributes": [_attr("service.name", service), _attr("host.name", f"{service}-host")]
            },
            "scopeSpans": [{"scope": {"name": "aiecs-ui-test"}, "spans": spans}],
        }

    return {
        "resourceSpans": [
            resource(
                "checkout-api",
                [
                    span(
                        ROOT,
                        None,
                        "POST /checkout",
                        2,
                        0,
                        120,
                        [("http.method", "POST"), ("http.status_code", 502)],
                    ),
                    span(DB, ROOT, "SELECT cart", 3, 5, 15, [("db.system", "postgresql")]),
                ],
            ),
            resource(
                "billing-worker",
                [
                    span(
                        CHARGE,
                        ROOT,
                        "charge_card",
                        5,
                        30,
                        80,
                        [("payment.provider", "acme"), ("evil.tag", HOSTILE)],
                        status={"code": 2, "message": "card declined"},
                        events=[
                            {
                                "timeUnixNano": str(t0_ns + 75 * ms),
                                "name": "exception",
                                "attributes": [
                                    _attr("exception.type", "CardDeclined"),
                                    _attr("exception.message", "card declined by issuer"),
                                ],
                            }
                        ],
                    ),
                    span(RECEIPT, CHARGE, "send_receipt", 1, 90, 10),
                ],
            ),
        ]
    }


# --------------------------------------------------------------------- fixtures


@pytest.fixture()
def chromium_binary() -> str:
    binary = find_chromium()
    if binary is None:
        missing_service("a chromium binary", "run scripts/ensure_chromium.sh (or apt-get install -y chromium)")
    return binary


@pytest.fixture()
def collector():
    from aiecs_tracing.collector.server import Collector

    c = Collector(host="127.0.0.1", otlp_port=0, udp_port=0, ui_port=0, db_path=":memory:").start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture()
def seeded(collector):
    t0_ns = time.time_ns() - 5_000_000_000
    with httpx.Client(trust_env=False, timeout=10) as client:
        resp = client.post(
            collector.otlp_endpoint,
            content=json.dumps(otlp_trace(t0_ns)),
            headers={"Content-Type": "application/json"},
        )
    assert resp.status_code == 200, resp.text
    stored = collector.wait_for_spans(len(EXPECTED_OPS), timeout=10)
    assert stored >= len(EXPECTED_OPS), f"the collector stored {stored} of {len(EXPECTED_OPS)} spans"
    return collector


@pytest.fixture()
def browser(chromium_binary, tmp_path):
    chrome = Chromium(chromium_binary, tmp_path)
    try:
        page = chrome.open_page()
        yield page
    finally:
        chrome.close()


def save_artifact(page: Page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    data = page.screenshot(shot)
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000, "screenshot is not a real PNG"
    if os.environ.get("AIECS_SAVE_SCREENSHOTS"):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, ARTIFACTS / name)
    return shot


# --------------------------------------------------------------------- the test


def test_search_open_trace_and_inspect_spans(seeded, browser, tmp_path):
    page = browser
    base = f"http://127.0.0.1:{seeded.ui_port}"
    navigate(page, base + "/")

    # Search panel: the service dropdown is filled from /api/services.
    services = page.wait_for(
        """(() => { const o = [...document.querySelectorAll('#service-select option')].map(o => o.value).filter(Boolean);
                   return o.length >= 2 ? o : null; })()""",
        "the service dropdown to list both services",
    )
    assert set(services) >= {"checkout-api", "billing-worker"}
    assert page.js("document.getElementById('collector-status').textContent") == "4 spans stored"

    # Pick the service as a user would; the operation dropdown follows.
    page.js(
        """(() => { const s = document.getElementById('service-select');
                   s.focus(); s.value = 'checkout-api';
                   s.dispatchEvent(new Event('change', {bubbles: true})); })()"""
    )
    ops = page.wait_for(
        """(() => { const o = [...document.querySelectorAll('#operation-select option')].map(o => o.value).filter(Boolean);
                   return o.length ? o : null; })()""",
        "the operation dropdown to load checkout-api's operations",
    )
    assert "POST /checkout" in ops

    page.click("#search-button")
    page.wait_for("document.querySelectorAll('#trace-list .trace-item').length === 1", "one search result")
    assert page.js("location.pathname") == "/search"
    assert "service=checkout-api" in page.js("location.search")
    item = page.js("document.querySelector('#trace-list .trace-item').innerText")
    assert "checkout-api" in item and "POST /checkout" in item, item
    assert "4 Spans" in item and "1 Error" in item, item
    assert "120ms" in item, item
    save_artifact(page, tmp_path, "ui-search.png")

    # Open the trace from the list: client-side route /trace/<id>.
    page.click("#trace-list .trace-item a.trace-link")
    page.wait_for(
        f"document.querySelectorAll('#wf-rows .span-row').length === {len(EXPECTED_OPS)}",
        "the waterfall to show every span",
    )
    assert page.js("location.pathname") == f"/trace/{TRACE_ID}"

    header = page.js("document.getElementById('trace-header').innerText")
    assert TRACE_ID in header
    stats = page.js(
        """Object.fromEntries([...document.querySelectorAll('#trace-stats .stat')]
             .map(s => [s.querySelector('dt').textContent, s.querySelector('dd').textContent]))"""
    )
    assert stats["Total Spans"] == "4" and stats["Services"] == "2" and stats["Depth"] == "3", stats
    assert stats["Duration"] == "120ms" and stats["Errors"] == "1", stats

    rows = page.js(
        """[...document.querySelectorAll('#wf-rows .span-row')].map(r => {
             const bar = r.querySelector('.span-bar');
             return {op: r.querySelector('.span-op').textContent,
                     service: r.querySelector('.span-service').textContent,
                     depth: Number(r.dataset.depth),
                     error: r.classList.contains('is-error'),
                     barColor: getComputedStyle(bar).backgroundColor,
                     barLeft: bar.getBoundingClientRect().left,
                     barWidth: bar.getBoundingClientRect().width};
           })"""
    )
    assert {r["op"]: r["depth"] for r in rows} == EXPECTED_OPS
    assert rows[0]["op"] == "POST /checkout"
    by_op = {r["op"]: r for r in rows}
    assert by_op["charge_card"]["service"] == "billing-worker"
    assert by_op["SELECT cart"]["service"] == "checkout-api"
    assert [r["op"] for r in rows if r["error"]] == ["charge_card"]

    def rgb(css: str) -> tuple[int, ...]:
        return tuple(int(float(x)) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])

    r, g, b = rgb(by_op["charge_card"]["barColor"])
    assert r > 170 and g < 90 and b < 90, f"error span bar is not red: {by_op['charge_card']['barColor']}"
    for op in ("POST /checkout", "SELECT cart", "send_receipt"):
        r, g, b = rgb(by_op[op]["barColor"])
        assert not (r > 170 and g < 90 and b < 90), f"{op} bar is red but the span did not fail"
    # Bars are positioned by start offset and sized by duration (root = 120ms).
    root_bar = by_op["POST /checkout"]
    charge_bar = by_op["charge_card"]
    assert abs(charge_bar["barWidth"] / root_bar["barWidth"] - 80 / 120) < 0.03
    offset = (charge_bar["barLeft"] - root_bar["barLeft"]) / root_bar["barWidth"]
    assert abs(offset - 30 / 120) < 0.03, offset

    # Span details of the failing span: tags, logs relative to trace start, process.
    page.click(f'#wf-rows .span-row[data-span-id="{CHARGE}"] .span-op')
    page.wait_for("!!document.getElementById('span-detail')", "the span detail panel")
    tags = page.js(
        """Object.fromEntries([...document.querySelectorAll('#span-detail .tags-table tr')]
             .map(tr => [tr.querySelector('th').textContent, tr.querySelector('td').textContent]))"""
    )
    assert tags.get("payment.provider") == "acme", tags
    assert tags.get("otel.status_code") == "ERROR", tags
    # Hostile tag text is shown verbatim, never interpreted as HTML.
    assert tags.get("evil.tag") == HOSTILE, tags
    assert page.js("document.querySelectorAll('img[src=\"x\"], #span-detail script').length") == 0
    assert page.js("typeof window.__xss") == "undefined"

    detail = page.js("document.getElementById('span-detail').innerText")
    assert "+75ms" in detail and "exception" in detail and "card declined by issuer" in detail, detail
    assert "billing-worker" in detail

    save_artifact(page, tmp_path, "ui-trace.png")

    # The span tree is collapsible.
    page.click(f'#wf-rows .span-row[data-span-id="{ROOT}"] .toggle')
    page.wait_for("document.querySelectorAll('#wf-rows .span-row').length === 1", "the tree to collapse")
    page.click(f'#wf-rows .span-row[data-span-id="{ROOT}"] .toggle')
    page.wait_for(
        f"document.querySelectorAll('#wf-rows .span-row').length === {len(EXPECTED_OPS)}",
        "the tree to expand",
    )

    # Back to the results without losing them.
    page.js("history.back()")
    page.wait_for(
        "location.pathname === '/search' && document.querySelectorAll('#trace-list .trace-item').length === 1",
        "the search results after going back",
    )

    # System architecture view: the checkout-api -> billing-worker dependency.
    page.click('.main-nav a[data-view="dependencies"]')
    page.wait_for("document.querySelectorAll('#deps-graph .node').length === 2", "the dependency graph")
    edges = page.js(
        "[...document.querySelectorAll('#deps-graph .edge')].map(e => [e.dataset.parent, e.dataset.child])"
    )
    assert edges == [["checkout-api", "billing-worker"]], edges
    calls = page.js("[...document.querySelectorAll('#deps-graph .edge-label text')].map(t => t.textContent)")
    assert calls == ["1"], calls  # only charge_card crosses services; send_receipt stays in billing-worker
    save_artifact(page, tmp_path, "ui-dependencies.png")

    assert page.js_errors() == []


def test_empty_collector_and_unknown_trace_show_clear_states(collector, browser):
    page = browser
    base = f"http://127.0.0.1:{collector.ui_port}"
    navigate(page, base + "/")
    page.wait_for(
        "document.querySelector('#results .empty-state h3')?.textContent === 'No traces received yet'",
        "the no-data empty state",
    )
    assert page.js("document.getElementById('service-select').disabled") is True
    # The empty state tells the user where to send spans: this collector's real OTLP endpoint.
    hint = page.js("document.querySelector('#results .empty-state p').textContent")
    assert collector.otlp_endpoint.replace("localhost", "127.0.0.1") in hint, hint

    navigate(page, f"{base}/trace/{'ab' * 16}")
    text = page.wait_for(
        "(t => t && !t.startsWith('Loading') && t)(document.querySelector('#trace-view .empty-state h3')?.textContent)",
        "the trace-not-found state",
    )
    assert text == "Trace not found", text
    assert "ab" * 16 in page.js("document.getElementById('trace-view').innerText")
    assert page.js_errors() == []


def test_tag_search_duration_filter_and_form_validation(seeded, browser):
    page = browser
    navigate(page, f"http://127.0.0.1:{seeded.ui_port}/")
    page.wait_for(
        "[...document.querySelectorAll('#service-select option')].some(o => o.value === 'billing-worker')",
        "the service dropdown",
    )
    page.js(
        """(() => { const s = document.getElementById('service-select'); s.value = 'billing-worker';
                   s.dispatchEvent(new Event('change', {bubbles: true})); })()"""
    )

    def search_and_count() -> int:
        page.js("document.getElementById('results').textContent = ''")
        page.click("#search-button")
        return page.wait_for(
            """(() => { if (document.querySelector('#results .empty-loading')) return null;
                       if (document.querySelector('#results .empty-state h3')?.textContent === 'No traces found') return -1;
                       const n = document.querySelectorAll('#trace-list .trace-item').length;
                       return n || null; })()""",
            "search results or the no-results state",
        )

    # key=value pairs become Jaeger's JSON tags parameter; both must hold on one span.
    page.type_into("#tags-input", "payment.provider=acme error=true")
    assert search_and_count() == 1
    params = page.js("Object.fromEntries(new URLSearchParams(location.search))")
    # Written in Jaeger's own URL form, so the link opens the same search in Jaeger.
    assert params["service"] == "billing-worker", params
    assert json.loads(params["tags"]) == {"payment.provider": "acme", "error": "true"}, params

    page.type_into("#tags-input", 'payment.provider="some other"')
    assert search_and_count() == -1, "a non-matching tag must give the no-results state"

    # Duration filters are passed through: charge_card took 80ms.
    page.type_into("#tags-input", "")
    page.type_into("#min-duration", "50ms")
    assert search_and_count() == 1
    page.type_into("#min-duration", "100ms")
    assert search_and_count() == -1

    # Quoted values may hold spaces and '='; this is the object sent as Jaeger's `tags` parameter.
    parsed = page.js("""window.aiecsTracing.parseTags('http.status_code=500 note="a b=c" empty=')""")
    assert parsed == {"http.status_code": "500", "note": "a b=c", "empty": ""}, parsed

    # Malformed input is reported in the form and sends no search.
    page.type_into("#min-duration", "")
    before = page.js("location.search")
    page.type_into("#tags-input", "justakey")
    page.click("#search-button")
    error = page.wait_for(
        "document.getElementById('form-error').hidden ? null : document.getElementById('form-error').textContent",
        "the form error",
    )
    assert "justakey" in error, error
    assert page.js("location.search") == before
    assert page.js_errors() == []
