"""Instructions per request under uvicorn, bare vs TracingMiddleware: the noise-free cross-check.

``bench/asgi.py`` measures requests/s, which on a shared 2-vCPU machine moves by several
per cent from one run to the next. Here each server (the same ``--serve`` variants as
``bench/asgi.py``) runs under ``valgrind --tool=callgrind``, which counts instructions
executed, the same on every run whatever else the machine does. A server is loaded twice
(warm-up only, then warm-up plus ``--requests``); the difference divided by the request
count is the per-request cost, start-up and shutdown cancelling out (the export timer is set
far out, so spans go out in full batches as on a busy server, the rest at exit in both runs
alike). Instructions are not
time (cache misses and the GIL are not counted), so this complements, not replaces, the
throughput table.

Run: ``.venv/bin/python bench/asgi_instructions.py`` (about three minutes; needs valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asgi  # noqa: E402  (bench/asgi.py: the server variants and the load client)

WARM_UP = 256


def instructions(kind: str, requests: int) -> int:
    """Total instructions of one server run: start, warm-up, ``requests`` more, shutdown."""
    port = asgi.free_port()
    proc = subprocess.Popen(
        [
            "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
            sys.executable, str(Path(asgi.__file__)), "--serve", kind, "--port", str(port),
        ],
        env={**os.environ, "PYTHONPATH": str(asgi.PROJECT), "BENCH_SCHEDULE_DELAY_MS": "600000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        asgi.wait_listening(port, proc, timeout=300)
        asyncio.run(asgi.load(port, WARM_UP, 2))
        if requests:
            asyncio.run(asgi.load(port, requests, 2))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise RuntimeError(f"callgrind printed no total for {kind}:\n{err[-2000:]}")
    return int(found.group(1))


def per_request(kind: str, requests: int) -> float:
    return (instructions(kind, requests) - instructions(kind, 0)) / requests


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1024)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    kinds = ("bare", "ours-noexport", "ours")
    with ThreadPoolExecutor(max_workers=2) as pool:  # one server per core
        counts = dict(zip(kinds, pool.map(lambda kind: per_request(kind, args.requests), kinds), strict=True))
    bare = counts["bare"]
    print(f"uvicorn + FastAPI GET {asgi.PATH}: instructions per request (callgrind, {args.requests} requests)")
    print(f"{'variant':<44}{'instructions':>14}{'added':>10}{'bare / variant':>16}")
    labels = {
        "bare": "bare FastAPI",
        "ours-noexport": "  TracingMiddleware, spans not exported",
        "ours": "TracingMiddleware (UDP export)",
    }
    for kind in kinds:
        count = counts[kind]
        print(f"{labels[kind]:<44}{count:>14,.0f}{count - bare:>10,.0f}{bare / count:>16.3f}")
    ratio = bare / counts["ours"]
    print(f"throughput bound by instructions, ours / bare = {ratio:.3f}   (target >= 0.85: {'OK' if ratio >= 0.85 else 'MISSED'})")


if __name__ == "__main__":
    main()
