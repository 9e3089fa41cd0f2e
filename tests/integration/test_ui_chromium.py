"""End-to-end test of the collector's web UI in real headless Chromium.

Seeds the embedded collector with one OTLP/JSON trace, then drives Debian's
Chromium through the DevTools protocol (plain websocket, no Playwright or
Selenium) the way a user would: pick the service, search, open the trace,
inspect the waterfall and the details of the failing span. The tests after
those open each view by the URLs Jaeger's UI writes, against a gallery of
traces (OTLP/JSON and the project's own Jaeger UDP exporter). One Chromium
serves the whole module.

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
import urllib.parse
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


@pytest.fixture(scope="module")
def chromium_binary() -> str:
    binary = find_chromium()
    if binary is None:
        missing_service(
            "a chromium binary", "run scripts/ensure_chromium.sh (or apt-get install -y chromium)"
        )
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
def browser(shared_page):
    """The module's one Chromium page, its recorded events and storage cleared."""
    shared_page.events.clear()
    shared_page.send("Page.navigate", {"url": "about:blank"})
    yield shared_page


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


# --------------------------------------------------------------------- the Jaeger-compatible views
#
# One collector and one Chromium for the tests below (module scope): a gallery of traces
# written through the exporters (OTLP/JSON over HTTP, and the project's own Jaeger UDP
# exporter), each test opening its page by URL the way a Jaeger bookmark would.

VARIANT_ID = "7c0ffee0000000000000000000000b0b"
OLD_ID = "01d0000000000000000000000000a0a0"
SKEW_ID = "5c3e0000000000000000000000005c3e"
BIG_ID = "b1600000000000000000000000000b16"
UPLOAD_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SKEW_PARENT, SKEW_CHILD = "5c3e00000000000a", "5c3e00000000000b"
BIG_SPANS = 1500


def variant_trace(t0_ns: int) -> dict:
    """The checkout trace again, changed: two SELECT cart, no send_receipt, a new fraud_check."""
    doc = json.loads(json.dumps(otlp_trace(t0_ns)).replace(TRACE_ID, VARIANT_ID))
    checkout, billing = doc["resourceSpans"]
    extra = dict(checkout["scopeSpans"][0]["spans"][1], spanId="dddd9b7ec3c1b178")
    checkout["scopeSpans"][0]["spans"].append(extra)
    fraud = dict(billing["scopeSpans"][0]["spans"][1], spanId="eeee9b7ec3c1b179", name="fraud_check")
    billing["scopeSpans"][0]["spans"][1] = fraud
    billing["scopeSpans"][0]["spans"][0]["status"] = {"code": 1}
    billing["scopeSpans"][0]["spans"][0].pop("events")
    return doc


def simple_trace(trace_id: str, service: str, spans: list[tuple], t0_ns: int) -> dict:
    """spans: (span_id, parent_id, name, kind, start_ms, duration_ms)."""
    ms = 1_000_000
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", service)]},
                "scopeSpans": [
                    {
                        "scope": {"name": "aiecs-ui-test"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": sid,
                                **({"parentSpanId": parent} if parent else {}),
                                "name": name,
                                "kind": kind,
                                "startTimeUnixNano": str(t0_ns + start * ms),
                                "endTimeUnixNano": str(t0_ns + (start + dur) * ms),
                                "attributes": [_attr("n", i)],
                                "status": {"code": 1},
                            }
                            for i, (sid, parent, name, kind, start, dur) in enumerate(spans)
                        ],
                    }
                ],
            }
        ]
    }


def big_trace(t0_ns: int) -> dict:
    spans = [(f"{1:016x}", None, "root", 2, 0, 3000)]
    for i in range(2, BIG_SPANS + 1):
        parent = f"{max(1, i // 4):016x}"
        spans.append((f"{i:016x}", parent, f"step-{i % 7}", 1, (i % 50) * 10, 100))
    return simple_trace(BIG_ID, "batch-runner", spans, t0_ns)


def emit_udp_trace(collector) -> None:
    """A demo-like ml-service trace through the project's own Jaeger UDP exporter."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind

    from aiecs_tracing.core.exporters.jaeger_udp import JaegerUDPExporter

    providers = []
    for service in ("frontend", "ml-service"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(JaegerUDPExporter("127.0.0.1", collector.udp_port)))
        providers.append(provider)
    front, ml = (p.get_tracer("aiecs-ui-test") for p in providers)
    with front.start_as_current_span("POST /predict", kind=SpanKind.SERVER):
        with ml.start_as_current_span("predict", kind=SpanKind.CONSUMER):
            with ml.start_as_current_span("load-model"):
                time.sleep(0.002)
    for provider in providers:
        provider.shutdown()


@pytest.fixture(scope="module")
def gallery():
    from aiecs_tracing.collector.server import Collector

    c = Collector(host="127.0.0.1", otlp_port=0, udp_port=0, ui_port=0, db_path=":memory:").start()
    now = time.time_ns()
    docs = [
        otlp_trace(now - 5_000_000_000),
        variant_trace(now - 4_000_000_000),
        otlp_trace(now - 30 * 3600 * 10**9),  # 30 hours ago: only a 2d (or longer) lookback finds it
        simple_trace(
            SKEW_ID,
            "clock-app",
            [
                (SKEW_PARENT, None, "parent", 2, 0, 50),
                (SKEW_CHILD, SKEW_PARENT, "outlives parent", 1, 10, 70),
            ],
            now - 3_000_000_000,
        ),
        big_trace(now - 2_000_000_000),
    ]
    docs[2] = json.loads(json.dumps(docs[2]).replace(TRACE_ID, OLD_ID))
    try:
        with httpx.Client(trust_env=False, timeout=20) as client:
            for doc in docs:
                resp = client.post(
                    c.otlp_endpoint, content=json.dumps(doc), headers={"Content-Type": "application/json"}
                )
                assert resp.status_code == 200, resp.text
        emit_udp_trace(c)
        c.wait_for_spans(4 + 5 + 4 + 2 + BIG_SPANS + 3, timeout=20)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def shared_page(chromium_binary, tmp_path_factory):
    """One Chromium for the module (a tab's state is reset by each test's fixture)."""
    chrome = Chromium(chromium_binary, tmp_path_factory.mktemp("chromium"))
    try:
        yield chrome.open_page()
    finally:
        chrome.close()


@pytest.fixture()
def ui(gallery, shared_page):
    """(page, base URL); the page's JS errors are checked after each test."""
    shared_page.events.clear()
    yield shared_page, f"http://127.0.0.1:{gallery.ui_port}"
    assert shared_page.js_errors() == []


def result_ids(page) -> list[str]:
    return page.wait_for(
        """(() => { if (document.querySelector('#results .empty-loading')) return null;
                   if (document.querySelector('#results .empty-state h3')?.textContent === 'No traces found') return {ids: []};
                   const ids = [...document.querySelectorAll('#trace-list .trace-item')].map(li => li.dataset.traceId);
                   return ids.length ? {ids} : null; })()""",
        "search results or the no-results state",
    )["ids"]


def open_trace(page, url: str, rows: int | None = None) -> None:
    navigate(page, url)
    page.wait_for(
        "document.querySelectorAll('#wf-rows .span-row').length > 0"
        + (f" && document.querySelectorAll('#wf-rows .span-row').length === {rows}" if rows else ""),
        "the waterfall",
    )


def test_every_jaeger_lookback_in_the_url(ui):
    page, base = ui
    for lookback in ("1h", "2h", "3h", "6h", "12h", "24h", "2d", "7d", "48h"):
        navigate(page, f"{base}/search?service=checkout-api&lookback={lookback}&limit=20")
        ids = result_ids(page)
        assert page.js("document.getElementById('lookback-select').value") == lookback
        old_found = OLD_ID in ids
        assert old_found == (lookback in ("2d", "7d", "48h")), (lookback, ids)
        assert TRACE_ID in ids and VARIANT_ID in ids, (lookback, ids)
    # Jaeger's custom range: start and end in µs since the epoch.
    now_us = time.time_ns() // 1000
    start, end = now_us - 31 * 3600 * 10**6, now_us - 29 * 3600 * 10**6
    navigate(page, f"{base}/search?service=checkout-api&lookback=custom&start={start}&end={end}")
    assert result_ids(page) == [OLD_ID]
    assert page.js("document.getElementById('lookback-select').value") == "custom"
    assert page.js("document.getElementById('custom-range').hidden") is False
    # Jaeger's search by trace ids.
    navigate(page, f"{base}/search?traceID={TRACE_ID}&traceID={SKEW_ID}")
    assert sorted(result_ids(page)) == sorted([TRACE_ID, SKEW_ID])


NOT_FAILED = '{"error":"false"}'


def test_tags_in_jaeger_json_and_logfmt_forms(ui):
    page, base = ui
    for tags in ('{"error":"true"}', "error=true", '{"payment.provider":"acme","error":true}'):
        navigate(page, f"{base}/search?service=billing-worker&lookback=1h&tags={urllib.parse.quote(tags)}")
        assert result_ids(page) == [TRACE_ID], tags  # the variant's charge_card did not fail
        assert "error=true" in page.js("document.getElementById('tags-input').value")
    navigate(
        page,
        f"{base}/search?service=billing-worker&lookback=1h&tags={urllib.parse.quote(NOT_FAILED)}",
    )
    assert result_ids(page) == []


def test_trace_deep_links_uifind_and_span(ui):
    page, base = ui
    open_trace(page, f"{base}/trace/{TRACE_ID}?uiFind=charge", rows=4)
    assert page.js("document.getElementById('span-filter').value") == "charge"
    assert page.js("document.getElementById('filter-count').textContent") == "1 of 4 spans match"
    matched = page.js(
        "[...document.querySelectorAll('#wf-rows .span-row.is-match')].map(r => r.dataset.spanId)"
    )
    assert matched == [CHARGE]
    # uiFind with a span ID (what Jaeger's "copy link" to a span writes).
    open_trace(page, f"{base}/trace/{TRACE_ID}?uiFind={RECEIPT}", rows=4)
    assert page.js(
        "[...document.querySelectorAll('#wf-rows .span-row.is-match')].map(r => r.dataset.spanId)"
    ) == [RECEIPT]
    # span= opens that span's details; selecting another span rewrites the URL in place.
    open_trace(page, f"{base}/trace/{TRACE_ID}?span={CHARGE}")
    page.wait_for(
        f"document.getElementById('span-detail')?.dataset.spanId === '{CHARGE}'", "the deep-linked span"
    )
    length = page.js("history.length")
    page.click(f'#wf-rows .span-row[data-span-id="{DB}"] .span-op')
    page.wait_for(f"document.getElementById('span-detail')?.dataset.spanId === '{DB}'", "the clicked span")
    assert page.js("new URLSearchParams(location.search).get('span')") == DB
    assert page.js("history.length") == length  # replaceState, not a new history entry
    page.type_into("#span-filter", "receipt")
    assert page.js("new URLSearchParams(location.search).get('uiFind')") == "receipt"
    page.js("window.__beforeReload = true; location.reload()")
    page.wait_for(
        f"!window.__beforeReload && document.getElementById('span-detail')?.dataset.spanId === '{DB}'",
        "the span after a reload",
    )
    assert page.js("document.getElementById('span-filter').value") == "receipt"


def test_compare_url_and_compare_from_search(ui, tmp_path):
    page, base = ui
    navigate(page, f"{base}/trace/{TRACE_ID}...{VARIANT_ID}?cohort={TRACE_ID}&cohort={VARIANT_ID}")
    page.wait_for("document.querySelectorAll('#compare-table .cmp-row').length > 0", "the comparison")
    rows = page.js(
        """Object.fromEntries([...document.querySelectorAll('#compare-table .cmp-row')].map(r =>
             [r.dataset.operation, [r.dataset.state, r.querySelector('[data-col=a]').textContent,
                                    r.querySelector('[data-col=b]').textContent]]))"""
    )
    assert rows == {
        "POST /checkout": ["same", "1", "1"],
        "SELECT cart": ["changed", "1", "2"],
        "charge_card": ["same", "1", "1"],
        "send_receipt": ["only-a", "1", "–"],
        "fraud_check": ["only-b", "–", "1"],
    }, rows
    save_artifact(page, tmp_path, "ui-compare.png")
    # From the search results: tick two traces, press Compare.
    navigate(page, f"{base}/search?service=checkout-api&lookback=1h")
    result_ids(page)
    for trace_id in (TRACE_ID, VARIANT_ID):
        page.click(f'#trace-list .trace-item[data-trace-id="{trace_id}"] .compare-tick')
    page.click("#compare-button")
    page.wait_for("document.querySelectorAll('#compare-table .cmp-row').length === 5", "the comparison")
    assert page.js("location.pathname").startswith("/trace/") and "..." in page.js("location.pathname")


def test_critical_path_and_span_table(ui, tmp_path):
    page, base = ui
    open_trace(page, f"{base}/trace/{TRACE_ID}", rows=4)
    segments = page.js(
        """(() => { const t = window.aiecsTracing.state.trace;
                   return Object.fromEntries([...t.critical].map(([id, segs]) =>
                     [id, segs.map(([a, b]) => [Math.round((a - t.start) / 1000), Math.round((b - t.start) / 1000)])])); })()"""
    )
    # Walking back from the root's end: charge_card (30-110) ends last, inside it send_receipt;
    # before charge_card started, SELECT cart (5-20).
    assert segments == {
        ROOT: [[110, 120], [20, 30], [0, 5]],
        CHARGE: [[100, 110], [30, 90]],
        RECEIPT: [[90, 100]],
        DB: [[5, 20]],
    }, segments
    assert page.js("document.querySelectorAll('#wf-rows .cp-seg').length") == 7
    page.click("#critical-toggle")
    page.wait_for("document.querySelectorAll('#wf-rows .cp-seg').length === 0", "the critical path to hide")
    page.click("#critical-toggle")
    save_artifact(page, tmp_path, "ui-critical-path.png")

    page.click("#tab-table")
    page.wait_for("document.querySelectorAll('#span-table tbody tr').length === 4", "the span table")
    stats = page.js(
        """Object.fromEntries([...document.querySelectorAll('#span-table tbody tr')].map(tr =>
             [tr.dataset.operation, Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.col, td.textContent]))]))"""
    )
    assert stats["charge_card"]["self"] == "70ms" and stats["charge_card"]["errors"] == "1", stats
    assert stats["POST /checkout"]["self"] == "25ms" and stats["POST /checkout"]["total"] == "120ms", stats
    assert stats["SELECT cart"]["count"] == "1" and stats["SELECT cart"]["avg"] == "15ms", stats
    assert {op: row["operation"] for op, row in stats.items()} == {op: op for op in EXPECTED_OPS}, stats
    assert stats["charge_card"]["service"] == "billing-worker", stats
    first = page.js("document.querySelector('#span-table tbody tr').dataset.operation")
    assert first == "charge_card"  # sorted by self time, largest first
    page.click('#span-table th[data-key="count"]')
    save_artifact(page, tmp_path, "ui-span-table.png")
    # A row leads to its spans in the timeline.
    page.click('#span-table tbody tr[data-operation="send_receipt"]')
    page.wait_for(
        "document.querySelectorAll('#wf-rows .span-row.is-match').length === 1", "the operation's spans"
    )


def test_virtualised_waterfall_minimap_zoom_and_find(ui):
    page, base = ui
    open_trace(page, f"{base}/trace/{BIG_ID}")
    rendered = page.js("document.querySelectorAll('#wf-rows .span-row').length")
    assert 10 < rendered < 150, rendered  # only the rows in view, not all 1500
    assert page.js("document.getElementById('trace-stats').innerText").count(str(BIG_SPANS)) == 1
    # Scrolling renders the rows that come into view.
    page.js("(() => { const s = document.getElementById('wf-scroll'); s.scrollTop = s.scrollHeight; })()")
    last = page.js("window.aiecsTracing.state.trace.spans.at(-1).spanID")
    page.wait_for(f"!!document.querySelector('#wf-rows .span-row[data-span-id=\"{last}\"]')", "the last row")
    # Find reveals and counts matches across the whole trace.
    page.type_into("#span-filter", "step-3")
    expected = sum(1 for i in range(2, BIG_SPANS + 1) if i % 7 == 3)
    assert (
        page.js("document.getElementById('filter-count').textContent")
        == f"{expected} of {BIG_SPANS} spans match"
    )
    page.type_into("#span-filter", "")
    # Collapsing the root leaves one row, and it says how many spans it hides.
    page.js("document.getElementById('wf-scroll').scrollTop = 0")
    page.click('#wf-rows .span-row[data-depth="0"] .toggle')
    page.wait_for("document.querySelectorAll('#wf-rows .span-row').length === 1", "the collapsed tree")
    assert page.js("document.querySelector('#wf-rows .hidden-count').textContent") == f"+{BIG_SPANS - 1}"
    page.click("#expand-all")
    # Dragging across the minimap zooms the waterfall to that range.
    box = page.js(
        "(() => { const r = document.getElementById('minimap').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"
    )
    x0, y = box[0] + box[2] * 0.25, box[1] + box[3] / 2
    x1 = box[0] + box[2] * 0.5
    width_before = page.js(
        "document.querySelector('#wf-rows .span-row .span-bar').getBoundingClientRect().width"
    )
    for kind, x in (("mousePressed", x0), ("mouseMoved", (x0 + x1) / 2), ("mouseReleased", x1)):
        page.send(
            "Input.dispatchMouseEvent",
            {
                "type": kind,
                "x": x,
                "y": y,
                "button": "left",
                "buttons": 1 if kind != "mouseReleased" else 0,
                "clickCount": 1,
            },
        )
    zoom = page.wait_for("(z => z[0] > 0 ? z : null)(window.aiecsTracing.state.zoom)", "the zoom to apply")
    assert abs(zoom[0] - 0.25) < 0.02 and abs(zoom[1] - 0.5) < 0.02, zoom
    assert page.js("document.getElementById('zoom-reset').hidden") is False
    first_tick = page.js("document.querySelector('.wf-ticks .tick').textContent")
    assert first_tick.endswith("ms") and abs(float(first_tick[:-2]) - 750) < 40, first_tick  # ~25% of 3s
    width_after = page.js(
        "document.querySelector('#wf-rows .span-row .span-bar').getBoundingClientRect().width"
    )
    assert width_after > width_before * 3, (width_before, width_after)
    page.click("#zoom-reset")
    assert page.js("window.aiecsTracing.state.zoom") == [0, 1]
    # A narrower window redraws the minimap at its new width.
    metrics = {"height": 900, "deviceScaleFactor": 1, "mobile": False}
    page.send("Emulation.setDeviceMetricsOverride", {"width": 1000, **metrics})
    try:
        page.wait_for(
            "(c => c.width === c.clientWidth && c.width < 1000)(document.getElementById('minimap-canvas'))",
            "the minimap to follow the window",
        )
    finally:
        page.send("Emulation.setDeviceMetricsOverride", {"width": 1280, **metrics})


def test_collapsed_errors_clock_skew_and_warnings(ui):
    page, base = ui
    open_trace(page, f"{base}/trace/{TRACE_ID}", rows=4)
    page.click(f'#wf-rows .span-row[data-span-id="{ROOT}"] .toggle')
    page.wait_for("document.querySelectorAll('#wf-rows .span-row').length === 1", "the collapsed root")
    assert page.js("document.querySelector('#wf-rows .hidden-errors').textContent") == "! 1"
    open_trace(page, f"{base}/trace/{SKEW_ID}", rows=2)
    marks = page.js(
        "[...document.querySelectorAll('#wf-rows .span-row .skew-mark')].map(m => m.closest('.span-row').dataset.spanId)"
    )
    assert marks == [SKEW_CHILD]
    page.click(f'#wf-rows .span-row[data-span-id="{SKEW_CHILD}"] .span-op')
    warnings = page.wait_for(
        "document.querySelector('#span-detail .sd-warnings')?.innerText", "the span's warnings"
    )
    raw = httpx.get(f"{base}/api/traces/{SKEW_ID}", trust_env=False).json()["data"][0]
    api_warnings = [
        w for sp in raw["spans"] if sp["spanID"] == SKEW_CHILD for w in (sp.get("warnings") or [])
    ]
    for text in api_warnings:  # the collector's Jaeger warnings are shown as they are
        assert text in warnings, (text, warnings)
    assert "parent" in warnings


def test_download_and_upload_json(ui, tmp_path):
    page, base = ui
    open_trace(page, f"{base}/trace/{TRACE_ID}", rows=4)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    page.send("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    page.click("#download-json")
    deadline = time.monotonic() + 10
    target = downloads / f"trace-{TRACE_ID}.json"
    while not (target.exists() and target.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    doc = json.loads(target.read_text())
    assert doc["data"][0]["traceID"] == TRACE_ID and len(doc["data"][0]["spans"]) == 4

    # Upload an OTLP JSON file of a trace the collector never received.
    otlp_file = tmp_path / "otlp-trace.json"
    otlp_file.write_text(
        json.dumps(json.loads(json.dumps(otlp_trace(time.time_ns())).replace(TRACE_ID, UPLOAD_ID)))
    )
    navigate(page, f"{base}/search")
    root = page.send("DOM.getDocument")["root"]["nodeId"]
    node = page.send("DOM.querySelector", {"nodeId": root, "selector": "#upload-input"})["nodeId"]
    page.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(otlp_file)]})
    assert result_ids(page) == [UPLOAD_ID]
    assert "not stored" in page.js("document.getElementById('results-count').textContent")
    page.click("#trace-list .trace-item a.trace-link")
    page.wait_for("document.querySelectorAll('#wf-rows .span-row').length === 4", "the uploaded trace")
    assert page.js("document.querySelectorAll('#wf-rows .span-row.is-error').length") == 1
    assert httpx.get(f"{base}/api/traces/{UPLOAD_ID}", trust_env=False).status_code == 404
    # The downloaded Jaeger JSON opens the same way, and so does OTLP JSON lines (the
    # OpenTelemetry file exporter's format: one request per line, a trace across lines).
    lines = tmp_path / "otlp-trace.jsonl"
    doc = json.loads(otlp_file.read_text())
    lines.write_text("\n".join(json.dumps({"resourceSpans": [rs]}) for rs in doc["resourceSpans"]) + "\n")
    for path, expected in ((target, TRACE_ID), (lines, UPLOAD_ID)):
        navigate(page, f"{base}/search")
        root = page.send("DOM.getDocument")["root"]["nodeId"]
        node = page.send("DOM.querySelector", {"nodeId": root, "selector": "#upload-input"})["nodeId"]
        page.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(path)]})
        assert result_ids(page) == [expected], path
    assert "4 Spans" in page.js("document.querySelector('#trace-list .trace-item').innerText")


def test_monitor_page(ui, tmp_path):
    page, base = ui
    navigate(page, f"{base}/monitor?service=billing-worker&lookback=1h")
    page.wait_for("document.querySelectorAll('#monitor-table tbody tr').length > 0", "the monitor table")
    rows = page.js(
        """Object.fromEntries([...document.querySelectorAll('#monitor-table tbody tr')].map(tr =>
             [tr.dataset.operation, [...tr.querySelectorAll('td')].map(td => td.textContent)]))"""
    )
    # Entry spans of billing-worker in the last hour: charge_card (consumer) twice, one failed.
    assert list(rows) == ["charge_card"], rows
    assert rows["charge_card"][1] == "2" and rows["charge_card"][3] == "50%", rows
    assert page.js("document.querySelectorAll('#chart-latency path.series').length") == 3
    assert page.js("document.querySelectorAll('#chart-rate path.series').length") == 1
    save_artifact(page, tmp_path, "ui-monitor.png")
    page.click('#monitor-table tbody tr[data-operation="charge_card"]')
    page.wait_for(
        "document.getElementById('monitor-title').textContent.includes('charge_card')", "one operation"
    )
    assert page.js("new URLSearchParams(location.search).get('operation')") == "charge_card"
    # Every span kind, on another service, from the URL.
    navigate(page, f"{base}/monitor?service=checkout-api&lookback=2h&spanKind=all")
    page.wait_for("document.querySelectorAll('#monitor-table tbody tr').length === 2", "both operations")
    assert page.js("document.getElementById('monitor-kind').value") == "all"
    assert page.js("document.getElementById('monitor-lookback').value") == "2h"


def fnv_colour(service: str) -> str:
    palette = page_palette()
    h = 0x811C9DC5  # FNV-1a over the name's characters, as app.js hashes it
    for ch in service:
        h ^= ord(ch)
        h = (h * 0x01000193) & 0xFFFFFFFF
    return palette[h % len(palette)]


def page_palette() -> list[str]:
    source = (REPO / "aiecs_tracing" / "collector" / "ui" / "app.js").read_text()
    block = source[source.index("const PALETTE = [") : source.index("];", source.index("const PALETTE = ["))]
    return [part.strip().strip("'") for part in block.split("[", 1)[1].split(",") if part.strip()]


def test_one_colour_per_service_on_every_page(ui):
    page, base = ui
    css = "(c => { const d = document.createElement('div'); d.style.color = c; document.body.append(d); const v = getComputedStyle(d).color; d.remove(); return v; })"
    want = page.js(f"{css}('{fnv_colour('ml-service')}')")
    navigate(page, f"{base}/search?service=ml-service&lookback=1h")
    result_ids(page)
    chips = page.js(
        """[...document.querySelectorAll('#trace-list .svc-chip')].filter(c => c.title === 'ml-service')
             .map(c => getComputedStyle(c.querySelector('.svc-dot')).backgroundColor)"""
    )
    assert chips and set(chips) == {want}, (chips, want)
    page.click("#trace-list .trace-item a.trace-link")
    page.wait_for("document.querySelectorAll('#wf-rows .span-row').length === 3", "the ml-service trace")
    spans = page.js(
        """[...document.querySelectorAll('#wf-rows .span-service')].filter(s => s.textContent === 'ml-service')
             .map(s => getComputedStyle(s).color)"""
    )
    assert spans and set(spans) == {want}, (spans, want)
    navigate(page, f"{base}/dependencies?lookback=2d")
    page.wait_for("document.querySelectorAll('#deps-graph .node').length >= 3", "the dependency graph")
    accent = page.js(
        """getComputedStyle(document.querySelector('#deps-graph .node[data-service="ml-service"] .node-accent')).fill"""
    )
    assert accent == want
    assert page.js("document.getElementById('deps-lookback').value") == "2d"
    assert page.js("new URLSearchParams(location.search).get('lookback')") == "2d"
    # Nothing in the graph overlaps: node boxes and call-count labels.
    boxes = page.js(
        """[...document.querySelectorAll('#deps-graph .node rect:not(.node-accent), #deps-graph .edge-label rect')]
             .map(r => { const b = r.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; })"""
    )
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1 and b[1] < a[3] - 1), (a, b)
    page.js(
        """(() => { const s = document.getElementById('deps-lookback'); s.value = '7d';
                   s.dispatchEvent(new Event('change')); })()"""
    )
    page.wait_for("new URLSearchParams(location.search).get('lookback') === '7d'", "the lookback in the URL")
