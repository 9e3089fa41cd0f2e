"""Tasks only tests/integration/test_coverage_celery.py sends, on the integration tests' Celery app.

The worker imports this module through ``celery worker --include`` (``CELERY_WORKER_INCLUDE``
in its environment), so the shared app in celery_app.py stays as it is.
"""

from __future__ import annotations

from celery.exceptions import Reject

from tests.integration.celery_app import app


@app.task(name="itest.reject")
def reject(reason: str) -> None:
    """Rejects its own message without requeueing it: it will never run again."""
    raise Reject(reason, requeue=False)
