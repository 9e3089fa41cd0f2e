#!/usr/bin/env bash
# The UI tests drive Debian's headless Chromium; install it when it is missing and we may.
# Exits non-zero, with one line, when Chromium is still missing afterwards.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    >/tmp/ensure_chromium.apt.log 2>&1 || true
fi
if ! command -v chromium >/dev/null 2>&1; then
  echo "ensure_chromium: chromium is not installed (apt-get install chromium); the UI tests need it" >&2
  exit 1
fi
