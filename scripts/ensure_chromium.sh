#!/usr/bin/env bash
# The UI test drives Debian's headless Chromium; install it when it is missing and we may.
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "ensure_chromium: could not install chromium; the UI test will be skipped" >&2
fi
exit 0
