"""One rule for tests that need a service the machine may lack (a broker, Chromium, Go).

Outside CI such a test skips, saying what is missing and how to provide it (pytest's ``-ra``
summary lists every skip with its reason). Under CI (``CI`` set, as ``.ci/run`` is run)
it fails in one line instead: a green CI must never hide a test that did not run.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_service(what: str, how: str) -> NoReturn:
    """Skip (locally) or fail (in CI) a test because ``what`` is unavailable; ``how`` fixes it."""
    message = f"{what} is not available: {how}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
