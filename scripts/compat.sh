#!/usr/bin/env bash
# The suite against the oldest and the newest release of every supported range in
# pyproject.toml (OpenTelemetry API/SDK, FastAPI/Starlette, Celery, httpx, python-socketio,
# websockets): the unit tests, plus the web, WebSocket, Socket.IO and in-process Celery
# integration tests. Each side gets a virtual environment of its own (.venv-compat-*).
# The span engine's fast paths check the SDK's shape at start-up and fall back otherwise;
# tests/test_engine_fallback.py runs those fallbacks on purpose, on both sides.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OLDEST=(
  "opentelemetry-api==1.27.0" "opentelemetry-sdk==1.27.0" "opentelemetry-exporter-otlp-proto-http==1.27.0"
  "opentelemetry-proto==1.27.0" "fastapi==0.100.0" "starlette==0.27.0" "httpx==0.24.1" "celery[redis]==5.3.0"
  "python-socketio==5.13.0" "websockets==15.0" "opentracing==2.4.0"
)
NEWEST=(
  "opentelemetry-api<2" "opentelemetry-sdk<2" "opentelemetry-exporter-otlp-proto-http<2" "opentelemetry-proto<2"
  "fastapi<1" "starlette<1" "httpx<1" "celery[redis]<6" "python-socketio<6" "websockets<18" "opentracing"
)
# what the tests themselves use (not part of the ranges under test)
TOOLS=(pytest pytest-timeout hypothesis "jaeger-client==4.8.0" "thrift>=0.16" six tornado mock pyyaml aiohttp uvicorn)
TESTS=(tests/test_*.py
       tests/integration/test_asgi.py tests/integration/test_httpx.py tests/integration/test_fastapi_native.py
       tests/integration/test_socketio.py tests/integration/test_websocket_manager.py
       tests/integration/test_celery_inprocess.py)
status=0
for side in oldest newest; do
  venv=".venv-compat-$side"
  test -x "$venv/bin/python" || "$PY" -m venv "$venv"
  if [ "$side" = oldest ]; then pins=("${OLDEST[@]}"); else pins=(--upgrade "${NEWEST[@]}"); fi
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${pins[@]}" "${TOOLS[@]}"
  "$venv/bin/python" -m pip install -q --no-deps -e .
  echo "== $side: $("$venv/bin/python" -m pip list --format=freeze 2>/dev/null \
    | grep -i -E '^(opentelemetry-sdk|fastapi|starlette|httpx|celery|python-socketio|websockets)==' | tr '\n' ' ')"
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}" || status=1
done
exit $status
