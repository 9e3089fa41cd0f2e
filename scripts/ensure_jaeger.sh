#!/usr/bin/env bash
# Build the pinned Jaeger v2 (tools/jaeger/go.mod) once per machine and print its path.
# Cached outside the repository, keyed by version: a second run costs nothing.
# Without Go it prints one line and exits 0 (the real-Jaeger tests then skip, saying so);
# with Go, a failed build is an error (exit 1), never a silent skip.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(awk '$1 == "github.com/jaegertracing/jaeger" {print $2; exit}' tools/jaeger/go.mod)
if [ -z "$version" ]; then
  echo "ensure_jaeger: no github.com/jaegertracing/jaeger requirement in tools/jaeger/go.mod" >&2
  exit 1
fi
cache="${AIECS_TRACING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/aiecs-tracing}/jaeger-$version"
bin="$cache/jaeger"
if [ -x "$bin" ]; then
  echo "jaeger $version: $bin (cached)"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "ensure_jaeger: Go not found; real-Jaeger tests will skip (install Go >= 1.24 and rerun make test to enable them)"
  exit 0
fi
mkdir -p "$cache"
echo "jaeger $version: building $bin from the Go module proxy (once per machine, a few minutes)..."
start=$(date +%s)
(cd tools/jaeger && go build -trimpath -o "$bin.tmp.$$" github.com/jaegertracing/jaeger/cmd/jaeger)
mv -f "$bin.tmp.$$" "$bin"
echo "jaeger $version: built in $(( $(date +%s) - start )) s: $bin"
