#!/usr/bin/env bash
# Run the timing-sensitive tests RUNS times (default 20) with one busy-loop process per core,
# as a loaded CI runner would. Prints "N/RUNS passed" and exits non-zero unless all passed.
# Usage: bash scripts/stress.sh [test files...]   (RUNS=5 bash scripts/stress.sh to shorten)
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RUNS=${RUNS:-20}
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
  FILES=(
    tests/test_loop_export.py
    tests/test_light.py
    tests/integration/test_asgi.py
    tests/integration/test_socketio.py
    tests/integration/test_celery_inprocess.py
    tests/integration/test_websocket_manager.py
  )
fi

hogs=()
cleanup() {
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT INT TERM
for _ in $(seq "$(nproc)"); do
  (while :; do :; done) &
  hogs+=($!)
done

passed=0
start=$(date +%s)
for i in $(seq "$RUNS"); do
  if "$PYTHON" -m pytest -q -p no:cacheprovider "${FILES[@]}" >"${TMPDIR:-/tmp}/stress-run-$i.log" 2>&1; then
    passed=$((passed + 1))
    echo "run $i: passed ($(tail -n 1 "${TMPDIR:-/tmp}/stress-run-$i.log"))"
  else
    echo "run $i: FAILED, log in ${TMPDIR:-/tmp}/stress-run-$i.log"
    grep -E '^(FAILED|ERROR)' "${TMPDIR:-/tmp}/stress-run-$i.log" | head -n 20
  fi
done
echo "$passed/$RUNS passed in $(( $(date +%s) - start ))s under $(nproc) CPU hog(s): ${FILES[*]}"
[ "$passed" -eq "$RUNS" ]
