"""Redaction everywhere a span can carry a secret, checked on the spans and on the wire.

Unit tests name each shape a secret arrives in; the property test feeds a corpus of them
through every path (decorator arguments, tags, log_kv, errors, status, headers, URLs) and
greps the exported bytes, Jaeger UDP thrift datagrams and OTLP/HTTP protobuf bodies, for
the secret.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiecs_tracing import TracingManager
from aiecs_tracing.core.attributes import capture_arguments, to_attribute_value
from aiecs_tracing.core.redaction import (
    REDACTED,
    is_secret_key,
    is_sensitive_header,
    may_hold_secret,
    redact_query,
    scrub_text,
)
from aiecs_tracing.integrations.asgi import TracingMiddleware
from aiecs_tracing.integrations.httpx import instrument_httpx_client, redact_url
from tests.test_decorators import by_name, finished
from tests.test_export_lifecycle import OTLPReceiver
from tests.wire import make_manager

S = "Zq7SecretValue9x"


# --- names ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "password", "db_pass", "DB_PASS", "jwt", "jwt_token", "bearer", "access_key", "x_access_key",
        "accessKey", "encryptionKey", "encryption_key", "signature", "X-Amz-Signature", "signing_key",
        "apiKey", "x-api-key", "xapikey", "accessToken", "refresh-token", "dbpassword", "password2",
        "sessionid", "session_id", "credentials", "client_secret", "AWS_SECRET_ACCESS_KEY", "auth",
        "private_key", "PrivateKey", "cookie", "Set-Cookie",
    ],
)
def test_secret_names(name):
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    [
        "passenger", "passage", "bypass", "author", "authority", "oauth_provider", "tokenizer",
        "tokenizer_name", "max_tokens", "input_tokens", "username", "user_id", "key", "cache_key",
        "primary_key", "keyboard", "query", "compass", "design", "signal",
    ],
)
def test_not_secret_names(name):
    assert not is_secret_key(name)


def test_extra_secret_keys_extend_the_list():
    t = TracingManager("extra", exporter="memory", extra_secret_keys=["tenant_pin"],
                       set_global_provider=False, set_default_manager=False)
    try:
        assert "password" in t.config.secret_keys and "tenant_pin" in t.config.secret_keys
        assert is_secret_key("tenantPin", t.config.secret_keys) and not is_secret_key("tenantPin")
        assert is_sensitive_header("x-tenant-pin")  # the integrations learn it too

        @t.with_tracing("login")
        def login(tenant_pin, note):
            return 1

        login("1234", f"tenant_pin={S}")
        span = by_name(t, "login")
        assert span.attributes["arg_0"] == REDACTED and S not in span.attributes["arg_1"]
    finally:
        t.close_tracer()


# --- values --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, kept",
    [
        (f"https://h/?api_key={S}", "https://h/?api_key="),
        (f"https://h/p?a=1;token={S};b=2", ";b=2"),
        (f"a=1&password={S}&b=2", "a=1&password="),
        (f"password={S} host=db.internal port=5432 dbname=app", "host=db.internal port=5432"),
        (f"host=db password='{S}' user=app", "user=app"),
        (f"Server=tcp:db,1433;Database=app;User Id=app;Password={S};", "Database=app;User Id=app;"),
        (f"postgresql://app:{S}@db:5432/x", "postgresql://app:[REDACTED]@db:5432/x"),
        (f"redis://:{S}@cache:6379/0", "@cache:6379/0"),
        (f"could not connect to postgresql://app:{S}@db", "could not connect to"),
        (f"Authorization: Bearer {S}", "Authorization: Bearer [REDACTED]"),
        (f"sent header authorization={S}", "sent header authorization="),
        (f"{{'password': '{S}', 'user': 'bob'}}", "'user': 'bob'"),
        (f'{{"api_key": "{S}", "n": 1}}', '"n": 1'),
        (f"got Bearer {S} from upstream", "from upstream"),
        (f"https://s3/b/k?X-Amz-Signature={S}&X-Amz-Date=1", "X-Amz-Date=1"),
        (f"https://h/?sig={S}", "https://h/?sig="),
    ],
)
def test_scrub_text_shapes(text, kept):
    out = scrub_text(text)
    assert S not in out and kept in out, out


def test_clean_text_is_returned_as_is_and_cheaply():
    for text in ("hello world", "GET /tasks/{task_id}", "SELECT * FROM t", "12", ""):
        assert not may_hold_secret(text) and scrub_text(text) is text
    for text in ("a=1", "user: bob", "https://example.com/a@b", "a=1&b=2"):
        assert scrub_text(text) == text  # looked at, nothing secret


def test_redact_query_splits_on_ampersand_and_semicolon():
    assert redact_query("a=1&token=x") == "a=1&token=REDACTED"
    assert redact_query("a=1;token=x;b=2") == "a=1;token=REDACTED;b=2"
    assert redact_query("a=1;b=2") == "a=1;b=2"
    assert redact_url(httpx.URL(f"https://u:p@h/p?a=1;api_key={S}")) == "https://h/p?a=1;api_key=REDACTED"


def test_argument_values_and_nested_strings():
    tags = capture_arguments(
        (f"https://h/?api_key={S}", {"db": f"postgresql://admin:{S}@db/x"}, [f"a=1&password={S}"]),
        {"url": f"https://h/x?token={S}", "opts": {"list": [{"dsn": f"password={S} host=h"}]}},
    )
    text = json.dumps(tags)
    assert S not in text
    assert json.loads(tags["arg_1"]) == {"db": "postgresql://admin:[REDACTED]@db/x"}


@pytest.mark.parametrize("name", ["db_pass", "jwt", "bearer", "access_key", "encryption_key", "signature"])
def test_unrecognised_before_argument_names(name):
    assert capture_arguments((), {name: S})[name] == REDACTED


def test_header_shapes():
    shapes = [
        {"Authorization": S},
        [("authorization", S)],
        [("Authorization", S, "extra")],
        (("cookie", f"sid={S}"),),
        [{"name": "Authorization", "value": S}],
        [{"Key": "X-Api-Key", "Value": S}],
        {"request": {"headers": {"Authorization": f"Bearer {S}"}}},
        [["set-cookie", S]],
        [("referer", f"https://app/page?token={S}")],
    ]
    for shape in shapes:
        text = to_attribute_value(shape, 10_000)
        assert S not in text, (shape, text)
    kept = to_attribute_value([{"name": "Accept", "value": "json"}, ("Accept", "json", "x")], 10_000)
    assert json.loads(kept) == [{"name": "Accept", "value": "json"}, ["Accept", "json", "x"]]


def test_tags_set_tag_log_kv_and_status():
    t = TracingManager("tags", exporter="memory", set_global_provider=False, set_default_manager=False)
    try:
        span = t.start_span("op", tags={"request": {"headers": {"Authorization": S}}, "password": S,
                                        "url": f"https://h/?api_key={S}", "n": 1})
        span.set_tag("db_pass", S)
        span.set_tag("dsn", f"password={S} host=db")
        span.set_tag("payload", {"jwt": S})
        span.log_kv({"password": S, "event": f"login token={S}", "note": f"Bearer {S}"})
        t.finish_span(span, tags={"encryption_key": S, "nested": {"x": [{"access_key": S}]}},
                      logs={"signature": S})
        other = t.start_span("status")
        other.set_status_error(f"HTTP 500 from postgresql://app:{S}@db")
        other.finish()
        text = _dump(t)
        assert S not in text
        attrs = by_name(t, "op").attributes
        assert attrs["password"] == REDACTED and attrs["db_pass"] == REDACTED and attrs["n"] == 1
        assert attrs["url"] == "https://h/?api_key=[REDACTED]"
    finally:
        t.close_tracer()


def test_exception_message_stack_and_status_description():
    t = TracingManager("errors", exporter="memory", set_global_provider=False, set_default_manager=False)
    try:
        span = t.start_span("direct")
        try:
            raise ConnectionError(f"could not connect to postgresql://app:{S}@db/x")
        except ConnectionError as exc:
            t.finish_span(span, error=exc)

        @t.with_tracing("decorated")
        def fail():
            dsn = f"password={S} host=db"  # noqa: F841 - the source line lands in the stack trace
            raise RuntimeError(f"login failed: {{'password': '{S}'}}")

        with pytest.raises(RuntimeError):
            fail()
        with pytest.raises(ValueError):
            with t.span("ctx"):
                raise ValueError(f"bad header Authorization: Bearer {S}")
        text = _dump(t)
        assert S not in text
        direct = by_name(t, "direct")
        assert direct.attributes["error.message"] == "could not connect to postgresql://app:[REDACTED]@db/x"
        assert "[REDACTED]" in direct.status.description
        stack = direct.events[0].attributes["exception.stacktrace"]
        assert "ConnectionError" in stack and "[REDACTED]" in stack
    finally:
        t.close_tracer()


def test_captured_headers_query_and_referer_in_asgi():
    t = TracingManager("asgi", exporter="memory", set_global_provider=False, set_default_manager=False)

    scope = {
        "type": "http", "method": "GET", "path": "/p", "scheme": "http", "http_version": "1.1",
        "query_string": f"a=1;token={S}&b=2".encode(),
        "headers": [
            (b"host", b"h"),
            (b"referer", f"https://app.example/page?api_key={S}&x=1".encode()),
            (b"authorization", f"Bearer {S}".encode()),
            (b"x-db-pass", S.encode()),
            (b"x-forwarded-url", f"https://u:{S}@h/".encode()),
            (b"accept", b"json"),
        ],
    }

    try:
        _serve_one(
            t, [(b"set-cookie", f"sid={S}".encode()), (b"x-trace", b"ok")], scope,
            capture_request_headers=["referer", "authorization", "x-db-pass", "x-forwarded-url", "accept"],
            capture_response_headers=["set-cookie", "x-trace"],
        )
        text = _dump(t)
        assert S not in text
        attrs = by_name(t, "GET").attributes
        assert list(attrs["http.request.header.referer"]) == ["https://app.example/page?api_key=[REDACTED]&x=1"]
        assert list(attrs["http.request.header.accept"]) == ["json"]
        assert attrs["url.query"] == "a=1;token=REDACTED&b=2"
    finally:
        t.close_tracer()


# --- on the wire ---------------------------------------------------------------------------
SHAPES = [
    "https://h/?api_key={S}",
    "https://h/p?a=1;token={S};b=2",
    "a=1&password={S}&b=2",
    "password={S} host=db port=5432",
    "Server=db;User Id=app;Password={S};",
    "postgresql://app:{S}@db/x",
    "{{'password': '{S}'}}",
    '{{"client_secret": "{S}"}}',
    "Authorization: Bearer {S}",
    "Bearer {S}",
]
NAMES = ["password", "db_pass", "jwt", "bearer", "access_key", "encryption_key", "signature", "x-api-key"]


def _structures(secret: str) -> list:
    return [
        {"Authorization": secret},
        {"headers": {"Authorization": f"Bearer {secret}"}},
        [("authorization", secret)],
        [("Cookie", secret, "x")],
        [{"name": "X-Api-Key", "value": secret}],
        {"db": f"postgresql://admin:{secret}@db/x"},
        [f"a=1&token={secret}"],
    ]


def _exercise(t: TracingManager, secret: str, marker: str) -> None:
    """Every path a secret can take into a span, with ``secret`` in every shape."""
    texts = [shape.format(S=secret) for shape in SHAPES]
    structures = _structures(secret)

    @t.with_tracing("decorated")
    def decorated(*args, **kwargs):
        return None

    @t.trace_database_operation("SELECT", table="t")
    def db(dsn, password):
        raise RuntimeError(f"cannot connect {dsn}")

    for value in texts + structures:
        decorated(value, value=value, nested={"v": value})
    decorated(**{name: secret for name in NAMES})
    with pytest.raises(RuntimeError):
        db(f"postgresql://app:{secret}@db", secret)
    span = t.start_span("tagged", tags={"marker": marker, **{f"t{i}": v for i, v in enumerate(texts + structures)},
                                        **{name: secret for name in NAMES}})
    for i, value in enumerate(texts + structures):
        span.set_tag(f"s{i}", value)
        span.log_kv({"event": texts[i % len(texts)], "payload": value, NAMES[i % len(NAMES)]: secret})
    span.set_status_error(texts[0])
    t.finish_span(span, tags={name: secret for name in NAMES}, logs={"data": structures[1]},
                  error=ValueError(" | ".join(texts)))
    for text in texts:
        with pytest.raises(KeyError):
            with t.span("errored"):
                raise KeyError(text)


def _exercise_http(t: TracingManager, secret: str) -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": f"a=1;token={secret}".encode(),
             "headers": [(b"host", b"h"), (b"referer", f"https://r/?api_key={secret}".encode()),
                         (b"authorization", f"Bearer {secret}".encode()), (b"x-jwt", secret.encode())]}
    _serve_one(t, [(b"set-cookie", secret.encode())], scope,
               capture_request_headers=["referer", "authorization", "x-jwt"], capture_response_headers=["set-cookie"])
    client = instrument_httpx_client(httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))),
                                     tracing=t)
    client.get(f"https://u:{secret}@api.example/x?a=1;api_key={secret}&b=2")
    client.close()


@pytest.fixture
def otlp():
    receiver = OTLPReceiver()
    yield receiver
    receiver.close()


def _otlp_bytes(receiver: OTLPReceiver) -> bytes:
    """The POST bodies as protobuf bytes (every field, unknown ones included, as received)."""
    return b"".join(request.SerializeToString() for request in list(receiver.requests))


# token characters (base64url, JWT dots, padding); "/" and "," would end a URL password or a
# k=v list, which is where a real secret has to be percent-encoded or quoted anyway
secrets = st.text(alphabet="abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789-._~+=", min_size=8, max_size=24)


def test_no_secret_reaches_the_wire(sink, otlp):
    udp = make_manager(sink, "wire-udp")
    otel = TracingManager("wire-otlp", otlp_endpoint=f"http://127.0.0.1:{otlp.port}/v1/traces", set_global_provider=False, set_default_manager=False)
    counter = [0]

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(secret=secrets)
    def check(secret):
        secret = "Sx" + secret  # never a word the spans carry anyway
        counter[0] += 1
        marker = f"marker-{counter[0]}-ok"
        for t in (udp, otel):
            _exercise(t, secret, marker)
            _exercise_http(t, secret)
            assert t.flush(10)
        sink.wait_for(1, where=lambda s: s.tags.get("marker") == marker)
        udp_bytes = b"".join(sink.packets)
        otlp_bytes = _otlp_bytes(otlp)
        assert marker.encode() in udp_bytes and marker.encode() in otlp_bytes  # the capture works
        assert secret.encode() not in udp_bytes
        assert secret.encode() not in otlp_bytes

    try:
        check()
    finally:
        udp.close_tracer()
        otel.close_tracer()


# --- helpers -------------------------------------------------------------------------------
async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message):
    pass


def _serve_one(t: TracingManager, response_headers: list, scope: dict, **options) -> None:
    """One request through the ASGI middleware, no server: the app answers 200 with ``response_headers``."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send({"type": "http.response.body", "body": b""})

    asyncio.run(TracingMiddleware(app, tracing=t, **options)(scope, _receive, _send))


def _dump(t) -> str:
    return "\n".join(span.to_json() for span in finished(t))


def test_celery_task_failure_is_scrubbed(sink):
    from celery import Celery

    from aiecs_tracing.integrations.celery import install_celery_tracing, uninstall_celery_tracing

    t = make_manager(sink, "celery-redaction")
    app = Celery("redaction", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(task_always_eager=True, task_eager_propagates=True)
    install_celery_tracing(app, t)

    @app.task(name="redaction.flaky", bind=True, max_retries=1)
    def flaky(self, dsn):
        if self.request.retries == 0:
            raise self.retry(exc=ConnectionError(f"cannot reach {dsn}"), countdown=0)
        raise ConnectionError(f"still cannot reach {dsn}")

    try:
        with pytest.raises(Exception, match="reach"):  # eager mode: Retry itself propagates
            flaky.delay(f"postgresql://app:{S}@db/x")
        t.flush()
        sink.wait_for(1, where=lambda s: s.operation == "run redaction.flaky")
        assert S.encode() not in b"".join(sink.packets)
        (run,) = sink.named("run redaction.flaky")
        assert run.is_error and "[REDACTED]" in run.tags["error.message"], run.tags
    finally:
        uninstall_celery_tracing(app)
        app.close()
        t.close_tracer()


def test_light_spans_scrub_what_opentelemetry_callers_record(sink):
    """An OpenTelemetry API caller recording on the integrations' light span (it is the current span)."""
    t = make_manager(sink, "light-redaction")
    try:
        span = t.start_light_span("light", {"k": "v"})
        otel = span.otel_span
        try:
            raise ConnectionError(f"postgresql://app:{S}@db")
        except ConnectionError as exc:
            otel.record_exception(exc)
        from opentelemetry.trace import StatusCode

        otel.set_status(StatusCode.ERROR, f"token={S}")
        span.finish()
        t.flush()
        sink.wait_for(1, where=lambda s: s.operation == "light")
        assert S.encode() not in b"".join(sink.packets)
    finally:
        t.close_tracer()
