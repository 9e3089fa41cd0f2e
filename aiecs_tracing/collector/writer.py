"""The store's write side: one writer thread, group commit, and what a commit promises.

Receivers hand over packed rows as a :class:`Ticket`; the writer drains every ticket
waiting (up to ``WRITE_BATCH_ROWS`` rows) into one transaction, so concurrent requests
share one commit (group commit) and committed throughput does not fall when clients
wait for their commit. :meth:`StoreWriter.commit` is what the OTLP receiver calls: it
returns once the rows are committed, or with the reason they were not:

* ``busy``: the backlog was full, or the writer did not take the rows within the
  timeout (they are then withdrawn, so nothing of them is written later: a retry cannot
  duplicate spans);
* ``disk_full``: SQLite said "database or disk is full"; ``error``: another write failure;
* ``committed`` with ``failed`` > 0: single spans SQLite refused (retried one by one).

Spans dated more than ``FUTURE_LIMIT_US`` ahead are stored at the time they arrived,
with the original start in an ``aiecs.original_start_us`` tag, so ``--max-age`` can
age them out like any other.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from typing import Any, NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from .interning import InternedIds
from .otlp_depth import varint as _varint
from .packing import PackedSpan

logger = logging.getLogger("aiecs_tracing.collector")

WRITE_BATCH_ROWS = 20_000
RETENTION_CHECK_SECONDS = 5.0
FUTURE_LIMIT_US = 24 * 3600 * 1_000_000
ORIGINAL_START_TAG = "aiecs.original_start_us"
INSERT_SPAN = "INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SPAN_ATTRIBUTES_FIELD = b"\x4a"  # Span.attributes: field 9, length-delimited


class CommitOutcome(NamedTuple):
    status: str  # committed | busy | disk_full | error | closed
    failed: int = 0
    message: str = ""


class Ticket:
    """Rows on their way to the database, and (for a waiting receiver) how it went."""

    __slots__ = ("rows", "done", "outcome", "taken", "cancelled")

    def __init__(self, rows: list[PackedSpan], wait: bool) -> None:
        self.rows = rows
        self.done = threading.Event() if wait else None
        self.outcome = CommitOutcome("committed")
        self.taken = False
        self.cancelled = False


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in str(exc)  # SQLITE_FULL
    )


def clamp_future(row: PackedSpan, now_us: int) -> PackedSpan:
    """A span dated beyond now + FUTURE_LIMIT_US, moved to now with its original start as a tag."""
    tag = KeyValue(key=ORIGINAL_START_TAG, value=AnyValue(int_value=min(row.start_us, (1 << 63) - 1)))
    encoded = tag.SerializeToString()
    # Appending a field to serialised protobuf bytes is appending it to the message.
    payload = row.payload + _SPAN_ATTRIBUTES_FIELD + _varint(len(encoded)) + encoded
    return row._replace(start_us=now_us, payload=payload)


class StoreWriter:
    """Mixed into SpanStore: ingest, the writer loop, retention, counters."""

    path: str
    max_spans: int | None
    max_age_seconds: float | None
    max_db_bytes: int | None
    max_pending_spans: int
    _closed: bool
    _writer_db: sqlite3.Connection

    def _init_writer(self) -> None:
        self._queue: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self._counter_lock = threading.Lock()
        self._stored_changed = threading.Condition(self._counter_lock)
        self._pending = 0
        self._stored = 0
        self._dropped = 0
        self._write_errors = 0
        self._disk_full = 0
        self._clamped = 0
        self._row_count = 0
        self._last_write_warning = 0.0
        self._interned = InternedIds()  # only the writer thread uses it

    # ------------------------------------------------------------------ ingest

    def submit(self, records: list[Any]) -> bool:
        """Pack and queue SpanRecords (UDP: nobody to answer); False when the backlog is full."""
        from .packing import pack_record, process_key

        keys: dict[int, Any] = {}
        rows = []
        for record in records:
            key = keys.get(id(record.process))
            if key is None:
                key = keys[id(record.process)] = process_key(record.process)
            rows.append(pack_record(record, key))
        return self.submit_packed(rows)

    def submit_packed(self, rows: list[PackedSpan]) -> bool:
        """Queue packed spans without waiting; False (nothing queued) when the backlog is full or closed."""
        return not rows or self._enqueue(rows, wait=False) is not None

    def backlog_full(self) -> bool:
        with self._counter_lock:
            return self._pending >= self.max_pending_spans

    def commit(self, rows: list[PackedSpan], timeout: float) -> CommitOutcome:
        """Queue the rows and wait until they are committed (or say why they were not)."""
        if not rows:
            return CommitOutcome("committed")
        ticket = self._enqueue(rows, wait=True)
        if ticket is None:
            return CommitOutcome("closed" if self._closed else "busy", message="the collector's backlog is full")
        assert ticket.done is not None
        if ticket.done.wait(timeout):
            return ticket.outcome
        with self._counter_lock:
            if not ticket.taken:  # withdrawn: it will never be written
                ticket.cancelled = True
                self._pending -= len(rows)
                self._dropped += len(rows)
                return CommitOutcome("busy", message=f"not committed within {timeout:g}s")
        # Being written now: one batch, bounded by SQLite's own busy timeout.
        if ticket.done.wait(120):
            return ticket.outcome
        return CommitOutcome("error", message="the write did not finish")

    def _enqueue(self, rows: list[PackedSpan], wait: bool) -> Ticket | None:
        if self._closed:
            return None
        count = len(rows)
        horizon = int(time.time() * 1_000_000) + FUTURE_LIMIT_US
        clamped = 0
        for index, row in enumerate(rows):
            if row.start_us > horizon:
                rows[index] = clamp_future(row, horizon - FUTURE_LIMIT_US)
                clamped += 1
        with self._counter_lock:
            self._clamped += clamped
            if self._pending + count > self.max_pending_spans:
                self._dropped += count
                return None
            self._pending += count
        ticket = Ticket(rows, wait)
        self._queue.put(ticket)
        return ticket

    # ------------------------------------------------------------------ the writer thread

    def _writer_loop(self) -> None:
        stop = False
        next_retention = time.monotonic()
        while not stop:
            try:
                first = self._queue.get(timeout=0.5)
            except queue.Empty:
                first = False  # type: ignore[assignment]
            tickets: list[Ticket] = []
            rows = 0
            item = first
            while True:
                if item is None:
                    stop = True
                    break
                if item:
                    with self._counter_lock:
                        if not item.cancelled:
                            item.taken = True
                            tickets.append(item)
                            rows += len(item.rows)
                if rows >= WRITE_BATCH_ROWS:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if tickets:
                self._write(tickets)
            due = bool(tickets) and (self.max_age_seconds is not None or self.max_db_bytes is not None)
            if due or self._over_span_limit() or time.monotonic() >= next_retention:
                self._apply_retention()
                next_retention = time.monotonic() + RETENTION_CHECK_SECONDS

    def _write(self, tickets: list[Ticket]) -> None:
        rows = [row for ticket in tickets for row in ticket.rows]
        try:
            self._insert(rows)
        except sqlite3.OperationalError as exc:  # disk full, I/O error, locked: nothing of the batch is in
            status = "disk_full" if is_disk_full(exc) else "error"
            for ticket in tickets:
                ticket.outcome = CommitOutcome(status, len(ticket.rows), str(exc))
            self._warn(f"collector: writing {len(rows)} spans failed: {exc}")
        except (sqlite3.Error, ValueError, OverflowError, TypeError) as exc:
            # One unstorable span must not cost the other spans of the batch: retry one by one.
            logger.warning("collector: writing %d spans failed (%s); retrying one by one", len(rows), exc)
            for ticket in tickets:
                ticket.outcome = self._write_one_by_one(ticket.rows)
        with self._stored_changed:
            for ticket in tickets:
                outcome = ticket.outcome
                written = len(ticket.rows) - outcome.failed if outcome.status == "committed" else 0
                self._pending -= len(ticket.rows)
                self._stored += written
                self._row_count += written
                self._write_errors += len(ticket.rows) - written
                if outcome.status == "disk_full":
                    self._disk_full += len(ticket.rows)
            self._stored_changed.notify_all()
        for ticket in tickets:
            if ticket.done is not None:
                ticket.done.set()

    def _write_one_by_one(self, rows: list[PackedSpan]) -> CommitOutcome:
        failed = 0
        for row in rows:
            try:
                self._insert([row])
            except sqlite3.OperationalError as exc:
                return CommitOutcome("disk_full" if is_disk_full(exc) else "error", len(rows), str(exc))
            except (sqlite3.Error, ValueError, OverflowError, TypeError):
                failed += 1
        return CommitOutcome("committed", failed)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_write_warning >= 10:
            self._last_write_warning = now
            logger.warning(message)

    def _insert(self, rows: list[PackedSpan]) -> None:
        """One transaction; on failure it is rolled back and the interning caches reloaded."""
        db = self._writer_db
        db.execute("BEGIN")
        try:
            interned = self._interned
            service_id = interned.service_id
            operation_id = interned.operation_id
            process_id = interned.process_id
            resolved: list[tuple[Any, ...]] = []
            append = resolved.append
            for row in rows:
                sid = service_id(db, row.service)
                append(
                    (
                        row.trace_id,
                        row.span_id,
                        row.parent_id,
                        sid,
                        operation_id(db, sid, row.operation, row.kind),
                        process_id(db, sid, row.process),
                        row.start_us,
                        row.duration_us,
                        row.payload,
                    )
                )
            db.executemany(INSERT_SPAN, resolved)
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._load_interned()  # ids interned in the rolled-back transaction are gone
            raise

    def _load_interned(self) -> None:
        self._interned.reload(self._writer_db)

    # ------------------------------------------------------------------ retention

    def _over_span_limit(self) -> bool:
        return self.max_spans is not None and self._row_count > self.max_spans

    def used_bytes(self) -> int:
        """Bytes of the database file in use (pages not on the free list), from the writer's view."""
        db = self._writer_db
        pages: int = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        page_size: int = db.execute("PRAGMA page_size").fetchone()[0]
        return pages * page_size

    def _apply_retention(self) -> None:
        """Drop spans older than max_age, then the oldest beyond max_spans, then beyond max_db_bytes."""
        db = self._writer_db
        deleted = 0
        try:
            service_ids = self._interned.service_ids
            if self.max_age_seconds is not None and service_ids:
                cutoff = int((time.time() - self.max_age_seconds) * 1_000_000)
                services = ",".join(str(int(sid)) for sid in service_ids.values())
                deleted += db.execute(f"DELETE FROM spans WHERE service_id IN ({services}) AND start_us < ?", (cutoff,)).rowcount
            if self.max_spans is not None:
                deleted += self._delete_oldest(self._row_count - deleted - self.max_spans)
            if self.max_db_bytes is not None:
                used = self.used_bytes()
                if used > self.max_db_bytes:
                    rows = self._row_count - deleted
                    # Down to 90% of the limit, so deletes come in batches rather than per write.
                    share = (used - 0.9 * self.max_db_bytes) / used
                    deleted += self._delete_oldest(max(1, int(rows * share) + 1))
            if deleted:
                db.execute("PRAGMA incremental_vacuum")  # files created by this version give the pages back
        except sqlite3.Error as exc:
            logger.warning("collector: retention failed: %s", exc)
        if deleted:
            with self._counter_lock:
                self._row_count -= deleted

    def _delete_oldest(self, count: int) -> int:
        if count <= 0:
            return 0
        return self._writer_db.execute(
            "DELETE FROM spans WHERE rowid IN (SELECT rowid FROM spans ORDER BY rowid LIMIT ?)", (count,)
        ).rowcount

    # ------------------------------------------------------------------ waiting / stats

    def wait_for_stored(self, count: int, timeout: float) -> int:
        """Block until ``count`` spans were stored since start (or timeout); return the number."""
        deadline = time.monotonic() + timeout
        with self._stored_changed:
            while self._stored < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._stored_changed.wait(remaining)
            return self._stored

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is written; True if it was."""
        deadline = time.monotonic() + timeout
        with self._stored_changed:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._stored_changed.wait(remaining)
        return True

    def counters(self) -> dict[str, int]:
        """Spans stored since start, queued, dropped (backlog full), failed, refused for a full disk,
        moved from the far future, and now kept."""
        with self._counter_lock:
            return {
                "stored": self._stored,
                "queued": self._pending,
                "dropped": self._dropped,
                "write_errors": self._write_errors,
                "disk_full": self._disk_full,
                "clamped_future": self._clamped,
                "spans": self._row_count,
            }
