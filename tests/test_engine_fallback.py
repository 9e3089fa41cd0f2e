"""The span engine's fallbacks, run on purpose.

Two fast paths lean on OpenTelemetry's private shapes, each checked when first used: the
light span (built from the provider's processor, sampler and scope) and the context
variable behind OpenTelemetry's runtime context. If a release renames them, the manager
falls back to the SDK's own spans and to the public context API. Here both are broken
before the package is used, in a fresh process, and the spans that come out must be the
same as on the fast paths: names, kinds, parents, attributes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    if sys.argv[1] == "broken":
        from opentelemetry import context as otel_context
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext

        class RenamedRuntimeContext(ContextVarsRuntimeContext):  # not the shape the fast path knows
            pass

        otel_context._RUNTIME_CONTEXT = RenamedRuntimeContext()
        import aiecs_tracing.core.light as light

        def renamed(self, *args):
            raise TypeError("light spans need an EngineProvider, not TracerProvider")

        light.LightSource.__init__ = renamed

    from aiecs_tracing import TracingManager
    from aiecs_tracing.core import sdk_internals
    from aiecs_tracing.integrations.asgi import TracingMiddleware

    tracing = TracingManager("fallback", exporter="memory", set_global_provider=False, set_default_manager=False)

    async def app(scope, receive, send):
        with tracing.span("handler-step", tags={"n": 1}):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    scope = {"type": "http", "method": "GET", "path": "/orders/7", "raw_path": b"/orders/7", "query_string": b"",
             "headers": [(b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "http_version": "1.1"}
    asyncio.run(TracingMiddleware(app, tracing=tracing)(scope, receive, send))
    tracing.flush()
    spans = tracing.exporter.get_finished_spans()
    by_id = {s.context.span_id: s.name for s in spans}
    light_used = tracing.light_spans
    print(json.dumps({
        "fast_context": sdk_internals.FAST_CONTEXT,
        "light": light_used,
        "spans": sorted([s.name, s.kind.name, by_id.get(s.parent.span_id, format(s.parent.span_id, "x")),
                         format(s.context.trace_id, "x"), {k: v for k, v in s.attributes.items()
                         if k in ("http.request.method", "http.route", "url.path", "n")}] for s in spans),
    }))
    """
)


def run(mode: str) -> dict:
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_fallbacks_give_the_same_spans_as_the_fast_paths() -> None:
    fast, fallback = run("fast"), run("broken")
    assert fast["fast_context"] and fast["light"]  # the fast paths are really taken normally
    assert not fallback["fast_context"] and not fallback["light"]  # and really not here
    assert fallback["spans"] == fast["spans"]
    names = [span[0] for span in fast["spans"]]
    assert len(names) == 2 and "handler-step" in names
    server = next(span for span in fast["spans"] if span[1] == "SERVER")
    assert server[2] == "b7ad6b7169203331" and server[3] == "af7651916cd43dd8448eb211c80319c"


def test_span_context_shortcut_falls_back_when_the_layout_differs(monkeypatch) -> None:
    """A ``SpanContext`` whose tuple layout is not the one verified gets the real constructor."""
    from opentelemetry import trace

    from aiecs_tracing.core import sdk_internals

    class Reordered(trace.SpanContext):
        @property
        def trace_id(self) -> int:  # another release's field order, say
            return self[1]

    monkeypatch.setattr(sdk_internals.trace, "SpanContext", Reordered)
    builder = sdk_internals._span_context_builder()
    assert builder is sdk_internals._checked_span_context
    made = builder(0xABC, 0xDEF, trace.TraceFlags(1), trace.TraceState())
    assert isinstance(made, Reordered) and made.span_id == 0xDEF
