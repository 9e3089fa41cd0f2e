"""Who may talk to the collector, and what the command line says when something is wrong.

* off loopback: a token (bearer on OTLP, query API and sampling; the UI's one-time
  ``/?token=`` turned into an HttpOnly cookie) or an explicit ``--insecure-no-auth`` (a
  warning); nothing at all is refused before a port is bound;
* on loopback: a Host header naming another host is a 421 (DNS rebinding);
* every bad ``serve`` value is one line naming the option, the value and why (exit 2);
  a bad ``--db`` names the path and the reason; a port in use names the receiver and port.
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from aiecs_tracing import cli
from aiecs_tracing.collector.exposure import ExposureError, host_header_is_loopback
from aiecs_tracing.collector.server import Collector
from tests.integration.test_collector import otlp_batch, request

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROTOBUF = {"Content-Type": "application/x-protobuf"}
TOKEN = "s3cret token;=%"  # characters a cookie cannot hold as they are


def test_non_loopback_bind_needs_a_token_or_an_explicit_opt_out():
    with pytest.raises(ExposureError, match="auth token"):
        Collector(host="0.0.0.0", otlp_port=0, udp_port=None, ui_port=0)
    with Collector(host="0.0.0.0", otlp_port=0, udp_port=None, ui_port=0, insecure_no_auth=True) as c:
        assert c.bound_host == "0.0.0.0" and c.insecure_no_auth
        assert request(c.ui_port, "GET", "/api/services", headers={"Host": "traces.example.com"})[0] == 200


def test_token_guards_otlp_query_and_sampling_and_the_ui_takes_it_once_as_a_cookie():
    with Collector(
        host="0.0.0.0", otlp_port=0, udp_port=None, ui_port=0, sampling_port=0, auth_token=TOKEN
    ) as c:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        body = otlp_batch("guarded", 2, time.time_ns())
        status, headers, _ = request(c.otlp_port, "POST", "/v1/traces", body, PROTOBUF)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        wrong = {**PROTOBUF, "Authorization": "Bearer nope"}
        assert request(c.otlp_port, "POST", "/v1/traces", body, wrong)[0] == 401
        assert request(c.otlp_port, "POST", "/v1/traces", body, {**PROTOBUF, **bearer})[0] == 200

        assert request(c.ui_port, "GET", "/api/services")[0] == 401
        assert request(c.ui_port, "GET", "/")[0] == 401
        assert request(c.sampling_port, "GET", "/sampling?service=x")[0] == 401
        assert request(c.sampling_port, "GET", "/sampling?service=x", headers=bearer)[0] == 200
        status, _headers, body = request(c.ui_port, "GET", "/api/services", headers=bearer)
        assert status == 200 and b"guarded" in body

        status, headers, _ = request(c.ui_port, "GET", f"/search?service=guarded&token={urllib.parse.quote(TOKEN)}")
        assert status == 303 and headers["location"] == "/search?service=guarded"
        cookie = headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = {"Cookie": cookie.split(";")[0]}
        assert request(c.ui_port, "GET", "/search", headers=jar)[0] == 200
        assert request(c.ui_port, "GET", "/api/services", headers=jar)[0] == 200
        assert request(c.ui_port, "GET", "/?token=wrong")[0] == 401


def test_loopback_collector_refuses_other_host_names():
    assert all(map(host_header_is_loopback, ["127.0.0.1", "127.0.0.1:16686", "localhost", "LOCALHOST:1", "[::1]:80", "[::1]", "127.9.9.9"]))
    assert not any(map(host_header_is_loopback, ["evil.example", "evil.example:16686", "10.0.0.1", "[::2]", "127.0.0.1.evil.com", ""]))
    with Collector(otlp_port=0, udp_port=None, ui_port=0) as c:
        status, _headers, body = request(c.ui_port, "GET", "/api/services", headers={"Host": "rebind.attacker.example"})
        assert status == 421 and b"loopback" in body
        body = otlp_batch("rebound", 2, time.time_ns())
        assert request(c.otlp_port, "POST", "/v1/traces", body, {**PROTOBUF, "Host": "evil:4318"})[0] == 421
        assert request(c.ui_port, "GET", "/api/services", headers={"Host": f"localhost:{c.ui_port}"})[0] == 200
        assert request(c.ui_port, "GET", "/api/services")[0] == 200


# --------------------------------------------------------------------------- the command line


def serve_error(capsys, *args: str) -> str:
    """``serve`` with bad arguments: exit 2 and exactly one line on stderr, returned."""
    try:
        code = cli.main(["serve", "--otlp-port", "0", "--udp-port", "0", "--ui-port", "0", "--sampling-port", "0", *args])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--ui-port", "70000"), r"--ui-port: .*'70000' is not a port number"),
        (("--ui-port", "-5"), r"--ui-port: .*'-5' is not a port number"),
        (("--otlp-port", "http"), r"--otlp-port: .*'http' is not a port number"),
        (("--max-body-mb", "-3"), r"--max-body-mb: .*'-3' is not a positive number"),
        (("--max-spans", "-1"), r"--max-spans: .*'-1' is not a whole number of at least 1"),
        (("--max-db-mb", "0"), r"--max-db-mb: .*'0' is not a positive number"),
        (("--max-age", "forever"), r"--max-age 'forever' is not a duration"),
        (("--sampling-adaptive", "-1"), r"--sampling-adaptive: .*'-1' is not a positive number"),
        (("--host", "0.0.0.0"), r"--host 0\.0\.0\.0: .*--auth-token .*--insecure-no-auth"),
    ],
)
def test_bad_serve_values_are_one_line_naming_option_value_and_reason(capsys, monkeypatch, args, expected):
    monkeypatch.delenv("AIECS_TRACING_TOKEN", raising=False)
    assert re.search(expected, serve_error(capsys, *args))


def test_serve_bogus_prints_serves_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: aiecs-tracing serve") and "unrecognized arguments: --bogus" in err


def test_bad_db_is_one_line_naming_path_and_reason(capsys, tmp_path):
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello, not a database\n" * 20)
    corrupt = tmp_path / "corrupt.sqlite3"
    db = sqlite3.connect(corrupt)
    db.execute("CREATE TABLE spans (x)")
    db.executemany("INSERT INTO spans VALUES (?)", [("x" * 500,)] * 200)
    db.commit()
    db.close()
    data = bytearray(corrupt.read_bytes())
    data[4096:12288] = b"\xde\xad\xbe\xef" * 2048  # table pages overwritten, header intact
    corrupt.write_bytes(bytes(data))
    missing = tmp_path / "no" / "such" / "dir" / "x.sqlite3"
    cases = [
        (tmp_path, "is a directory"),
        (not_sqlite, "is not an SQLite database"),
        (corrupt, "corrupt"),
        (missing, "does not exist"),
    ]
    for path, reason in cases:
        err = serve_error(capsys, "--db", str(path))
        assert str(path) in err and reason in err, err
    assert not (tmp_path / "no").exists()  # an explicit --db's directory is never created


def test_read_only_db_and_directory_are_named(tmp_path):
    # As root every file is writable, so the collector runs as nobody in a world-readable directory.
    base = Path(tempfile.mkdtemp(prefix="aiecs-ro-"))
    try:
        os.chmod(base, 0o755)
        writable_db = base / "ro.sqlite3"
        sqlite3.connect(writable_db).close()
        os.chmod(writable_db, 0o444)
        ro_dir = base / "ro-dir"
        ro_dir.mkdir(mode=0o555)
        os.chmod(ro_dir, 0o555)
        for path, reason in ((writable_db, "read-only"), (ro_dir / "new.sqlite3", "read-only")):
            err = run_serve_as_unprivileged("--db", str(path))
            assert err.count("\n") == 0 and str(path) in err and reason in err, err
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def run_serve_as_unprivileged(*args: str) -> str:
    """``serve`` in a forked child that drops to nobody first when run as root; its stderr."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 99
        try:
            os.dup2(write_end, 2)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            code = cli.main(["serve", "--otlp-port", "0", "--udp-port", "0", "--ui-port", "0", "--sampling-port", "0", *args])
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        err = stream.read()
    _pid, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2, err
    return err.strip()


def test_port_in_use_names_the_receiver_and_the_port(capsys):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = cli.main(["serve", "--otlp-port", "0", "--udp-port", "0", "--ui-port", str(port), "--sampling-port", "0", "--db", ":memory:"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "query API and UI" in err and f"127.0.0.1:{port}" in err and "--ui-port 0" in err


def test_insecure_bind_warns_and_the_banner_shows_the_bound_address(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("AIECS_TRACING_TOKEN", None)
    command = [sys.executable, "-m", "aiecs_tracing", "serve", "--host", "0.0.0.0", "--insecure-no-auth"]
    command += ["--otlp-port", "0", "--udp-port", "0", "--ui-port", "0", "--sampling-port", "0", "--db", ":memory:"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = process.stdout.readline()
            assert line, banner
            banner += line
        assert re.search(r"OTLP/HTTP\s+http://0\.0\.0\.0:\d+/v1/traces", banner)
        assert re.search(r"UI \+ API\s+http://0\.0\.0\.0:\d+", banner)
        assert "auth        NONE" in banner
        process.terminate()
        _out, err = process.communicate(timeout=30)
        assert "WARNING" in err and "without authentication" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
