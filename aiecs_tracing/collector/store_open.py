"""Opening the SQLite file: the checks that turn a bad ``--db`` into one clear sentence.

A directory, a parent directory that does not exist (never created for an explicit
path), a file that is not SQLite, a corrupt one, one that cannot be written: each is a
:class:`StoreOpenError` naming the path and the reason, raised before any port is bound.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024  # the WAL is truncated back to this after a checkpoint


class StoreOpenError(RuntimeError):
    """The database cannot be used; ``str()`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def check_path(path: str) -> None:
    """Refuse what SQLite would turn into a confusing error, or silently create."""
    target = Path(path)
    if target.is_dir():
        raise StoreOpenError(path, "is a directory, not a database file")
    parent = target.parent
    if not parent.exists():
        raise StoreOpenError(path, f"directory {parent} does not exist (it is not created for --db)")
    if not parent.is_dir():
        raise StoreOpenError(path, f"{parent} is not a directory")
    if target.exists():
        if not target.is_file():
            raise StoreOpenError(path, "is not a regular file")
        try:
            with open(target, "rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise StoreOpenError(path, f"cannot be read ({exc.strerror or exc})") from None
        if header and header != SQLITE_HEADER:
            raise StoreOpenError(path, "is not an SQLite database")
        if not os.access(target, os.W_OK):
            raise StoreOpenError(path, "is read-only (the collector writes to its database)")
    if not os.access(parent, os.W_OK):
        raise StoreOpenError(path, f"directory {parent} is read-only (SQLite writes its -wal and -shm files there)")


def explain(path: str, exc: BaseException) -> StoreOpenError:
    """An sqlite3 error met while opening, as a StoreOpenError with a human reason."""
    text = str(exc)
    lowered = text.lower()
    if "malformed" in lowered or "corrupt" in lowered:
        reason = f"the database is corrupt ({text})"
    elif "not a database" in lowered or "file is encrypted" in lowered:
        reason = "is not an SQLite database"
    elif "readonly" in lowered or "read-only" in lowered:
        reason = "is read-only (the collector writes to its database)"
    elif "unable to open" in lowered:
        reason = f"cannot be opened for writing ({text}); check the directory's permissions"
    elif "disk is full" in lowered or "disk i/o" in lowered:
        reason = f"cannot be written ({text})"
    else:
        reason = text
    return StoreOpenError(path, reason)


def connect(path: str, *, writer: bool, durable: bool) -> sqlite3.Connection:
    """A connection in WAL mode; ``durable``: synchronous=NORMAL (a commit survives the process), else OFF."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    try:
        if writer:  # takes effect only on a new file (before its first page is written): retention shrinks it
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL" if durable else "PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-65536")  # 64 MiB
        db.execute("PRAGMA temp_store=MEMORY")
        if writer:
            db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        else:
            db.execute("PRAGMA query_only=1")
    except BaseException:
        db.close()
        raise
    return db


def initialise(db: sqlite3.Connection, schema: str, version: int, path: str) -> int:
    """Create or check the schema; return the row count."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        raise StoreOpenError(
            path, f"was written by a newer aiecs-tracing (schema {found} > {version}); upgrade, or use another --db"
        )
    db.executescript(schema)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute("BEGIN IMMEDIATE")  # proves the file is writable now, not at the first span
    db.execute("ROLLBACK")
    count: int = db.execute("SELECT count(*) FROM spans").fetchone()[0]
    return count
