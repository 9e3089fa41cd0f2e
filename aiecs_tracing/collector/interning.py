"""The writer's ids for services, operations and processes: each stored once, referred to by id.

Spans name their service, operation and process by id (the schema is in :mod:`.store`).
The writer thread, the only one that writes, keeps the ids it has given out
in memory so that a span costs no lookup; when a transaction is rolled back the ids it
gave out are gone, and :meth:`InternedIds.reload` reads back what the database holds.
"""

from __future__ import annotations

import sqlite3
from typing import Any, cast


class InternedIds:
    """Id caches of the writer thread (only it calls these), filled as it inserts."""

    def __init__(self) -> None:
        self.service_ids: dict[str, int] = {}
        self.operation_ids: dict[tuple[int, str, str], int] = {}
        self.process_ids: dict[tuple[int, str, str], int] = {}

    def service_id(self, db: sqlite3.Connection, name: str) -> int:
        found = self.service_ids.get(name)
        if found is None:
            found = cast(int, db.execute("INSERT INTO services (name) VALUES (?)", (name,)).lastrowid)  # an INSERT's row id
            self.service_ids[name] = found
        return found

    def operation_id(self, db: sqlite3.Connection, service_id: int, name: str, kind: str) -> int:
        key = (service_id, name, kind)
        found = self.operation_ids.get(key)
        if found is None:
            found = cast(int, db.execute("INSERT INTO operations (service_id, name, kind) VALUES (?, ?, ?)", key).lastrowid)
            self.operation_ids[key] = found
        return found

    def process_id(self, db: sqlite3.Connection, service_id: int, key: Any) -> int:
        interned = (service_id, key[1], key[2])
        found = self.process_ids.get(interned)
        if found is None:
            found = cast(int, db.execute(
                "INSERT INTO processes (service_id, tags, span_tags) VALUES (?, ?, ?)", interned
            ).lastrowid)
            self.process_ids[interned] = found
        return found

    def reload(self, db: sqlite3.Connection) -> None:
        """Read back the ids the database holds (at start, and after a rollback)."""
        self.service_ids = {name: sid for sid, name in db.execute("SELECT id, name FROM services")}
        self.operation_ids = {
            (sid, name, kind): oid for oid, sid, name, kind in db.execute("SELECT id, service_id, name, kind FROM operations")
        }
        self.process_ids = {
            (sid, tags, span_tags): pid
            for pid, sid, tags, span_tags in db.execute("SELECT id, service_id, tags, span_tags FROM processes")
        }
