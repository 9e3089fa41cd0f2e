"""The demo's data layer: tasks and results in SQLite, every statement a CLIENT span.

The API and the worker share one database file (WAL mode, so they do not block each
other). Each statement goes through ``tracing.trace_database_operation`` as AIECS's
repositories do, so the spans carry ``db.system=sqlite``, the table and the query.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from aiecs_tracing import TracingManager

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT,
    payload TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS task_results (
    task_id TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

INSERT_TASK = (
    "INSERT INTO tasks (task_id, user_id, kind, status, progress, payload, created_at, updated_at) "
    "VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)"
)
SELECT_TASK = (
    "SELECT task_id, user_id, kind, status, progress, message, updated_at FROM tasks WHERE task_id = ?"
)
UPDATE_STATUS = "UPDATE tasks SET status = ?, progress = ?, message = ?, updated_at = ? WHERE task_id = ?"
INSERT_RESULT = "INSERT OR REPLACE INTO task_results (task_id, result, created_at) VALUES (?, ?, ?)"


class TaskStore:
    """Task rows and results; one SQLite connection per thread."""

    def __init__(self, path: str | Path, tracing: TracingManager) -> None:
        self.path = str(path)
        self._local = threading.local()
        with self._connect() as conn:
            conn.executescript(SCHEMA)
        db = tracing.trace_database_operation
        # Decorating plain functions (not bound methods) at construction time: the
        # decorator reads the manager's state once, when it is applied.
        self.create_task = db("INSERT", "tasks", INSERT_TASK, db_system="sqlite")(self._create_task)
        self.get_task = db("SELECT", "tasks", SELECT_TASK, db_system="sqlite")(self._get_task)
        self.update_status = db("UPDATE", "tasks", UPDATE_STATUS, db_system="sqlite")(self._update_status)
        self.save_result = db("INSERT", "task_results", INSERT_RESULT, db_system="sqlite")(self._save_result)

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _create_task(self, task_id: str, user_id: str, kind: str, payload: dict[str, Any]) -> None:
        now = time.time()
        self._connect().execute(INSERT_TASK, (task_id, user_id, kind, json.dumps(payload), now, now))

    def _get_task(self, task_id: str) -> dict[str, Any] | None:
        row = self._connect().execute(SELECT_TASK, (task_id,)).fetchone()
        if row is None:
            return None
        keys = ("task_id", "user_id", "kind", "status", "progress", "message", "updated_at")
        return dict(zip(keys, row, strict=True))

    def _update_status(self, task_id: str, status: str, progress: float, message: str = "") -> int:
        cursor = self._connect().execute(UPDATE_STATUS, (status, progress, message, time.time(), task_id))
        return cursor.rowcount

    def _save_result(self, task_id: str, result: dict[str, Any]) -> None:
        self._connect().execute(INSERT_RESULT, (task_id, json.dumps(result), time.time()))
