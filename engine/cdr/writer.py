"""`RecordWriter`: gets CDRs and queue events into PostgreSQL without ever making call handling
wait, and without losing them when PostgreSQL is away.

- `submit(record)` appends to a bounded in-memory queue and returns; when the queue is full the
  record goes straight to the spool (a buffered file append, no fsync, no database).
- One greenlet takes batches (up to `batch_size`, or what arrived within `flush_interval`) and
  writes them in one transaction per batch: COPY into a temporary table, then
  INSERT ... SELECT ... ON CONFLICT (natural key) DO NOTHING, so a batch written twice lands once.
- A failed or timed-out write (connection refused, `write_timeout` exceeded, server gone) sends
  the batch to the spool and retries the database with exponential backoff. While the spool holds
  anything, new records are appended behind it, so records reach the database in submit order
  (except records that overflowed a full queue, which go ahead of those still queued); the
  oldest segment is replayed first and deleted only after all its rows are committed.
- When the spool's own disk is full too (the embedded PostgreSQL and the spool share data_dir),
  the records wait in memory, in order, for whichever takes them first: the spool is tried again
  every `retry_max`, the database as above. Memory is then the only bound (the queue grows past
  `queue_size`): nothing is dropped while the process lives.
- A record the database rejects as data (a constraint or type error, never a connectivity
  problem) is isolated from its batch and written to `rejected.jsonl` beside the spool, so one bad
  record can neither block the others nor be lost silently.
- `stop()` writes what is queued if the database takes it within the grace time, and spools the
  rest; nothing is dropped on a clean stop.

What a crash (kill -9, power loss) can lose: the records submitted but not yet committed nor
fsync'd — in normal operation those of the last `flush_interval` plus the batch being written;
while spooling, those appended in the last `fsync_interval`; while the spool's disk is full, all
those waiting in memory (as does a stop then). Everything committed or fsync'd survives, and the
replay after a restart writes it exactly once.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gevent
import psycopg
from gevent.event import Event
from psycopg import sql

from engine.cdr import records
from engine.cdr.retention import prune
from engine.cdr.spool import Spool

log = logging.getLogger(__name__)

REJECTED_FILE = "rejected.jsonl"


@dataclass(frozen=True)
class WriterSettings:
    queue_size: int = 20_000  # records held in memory before submit() spools directly
    batch_size: int = 2_000
    flush_interval: float = 0.5  # seconds a record may wait in memory before a write is attempted
    fsync_interval: float = 1.0  # seconds between fsyncs of the spool while appending to it
    segment_bytes: int = 4 * 1024 * 1024
    connect_timeout: float = 3.0
    write_timeout: float = 5.0  # one batch's transaction, client side (statement_timeout server side)
    retry_initial: float = 0.5
    retry_max: float = 10.0
    retention_days: int | None = None  # prune records older than this once a day; None keeps all


@dataclass(frozen=True)
class WriterStats:
    """Counters for metrics: gauges (queue_depth, spool_*) and totals since start."""

    queue_depth: int
    spool_bytes: int
    spool_segments: int
    rows_written: int  # new rows committed
    rows_duplicate: int  # rows skipped on their natural key (replays)
    records_spooled: int
    records_replayed: int
    records_rejected: int
    write_errors: int
    spool_errors: int  # appends the spool's disk refused (the records stayed in memory)
    database_up: bool


# The database refuses these records as data: retrying cannot help, isolating them can.
_REFUSED = (psycopg.DataError, psycopg.IntegrityError)


class _WriteTimeout(Exception):
    pass


class _Transient(Exception):
    """The database could not take the batch now (away, slow, restarting): try again later."""


class RecordWriter:
    def __init__(self, dsn: str, spool_dir: Path, settings: WriterSettings = WriterSettings(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dsn = dsn
        self.settings = settings
        self.clock = clock
        self.spool = Spool(spool_dir, settings.segment_bytes)
        self._rejected_path = spool_dir / REJECTED_FILE
        self._queue: deque[Any] = deque()
        self._wakeup = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._conn: psycopg.Connection | None = None
        self._stopping = False
        self._inflight: list[Any] = []  # a batch taken from memory whose commit is not confirmed
        self._retry_at = 0.0
        self._backoff = settings.retry_initial
        self._spool_retry_at = 0.0  # while the spool's disk refuses appends, records wait in memory
        self._next_sync = 0.0
        self._next_prune = 0.0
        self._counts = dict.fromkeys(("rows_written", "rows_duplicate", "records_spooled", "records_replayed",
                                      "records_rejected", "write_errors", "spool_errors"), 0)

    # --- the interface for call handling ----------------------------------------------------------
    def submit(self, record: Any) -> None:
        """Hand over one record (CdrRecord, QueueEvent). Never waits on the database."""
        if (self._stopping or len(self._queue) >= self.settings.queue_size) and self._to_spool([record]):
            return
        self._queue.append(record)
        if len(self._queue) >= self.settings.batch_size:
            self._wakeup.set()

    def stats(self) -> WriterStats:
        return WriterStats(queue_depth=len(self._queue), spool_bytes=self.spool.bytes,
                           spool_segments=self.spool.segments, database_up=self._retry_at <= self.clock(),
                           **self._counts)

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if _psycopg_blocks_the_loop():
            log.warning("psycopg was imported before gevent patched select: its waits block every greenlet "
                        "and the write timeout cannot fire; patch gevent before anything imports psycopg")
        if self.spool:
            log.info("CDR spool holds %d segments (%d bytes) from before; replaying them first",
                     self.spool.segments, self.spool.bytes)
        self._greenlet = gevent.spawn(self._run)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued within `timeout` if the database takes it, spool the rest."""
        self._stopping = True
        self._wakeup.set()
        if self._greenlet is not None and not self._greenlet.join(timeout):
            self._greenlet.kill()  # stuck on the database: what it held goes to the spool below
        leftover = self._inflight + self._take(len(self._queue))
        self._inflight = []
        self._spool_retry_at = 0.0  # the last chance to keep them
        if not self._to_spool(leftover):
            log.error("%d CDR and queue-log records lost at stop: neither PostgreSQL nor the spool took them",
                      len(self._queue))
        self._sync_spool(close=True)
        self._disconnect()

    # --- the writer greenlet -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            self._wakeup.wait(self._next_wake())
            self._wakeup.clear()
            self._step()
            self._housekeeping()
        self._drain()

    def _next_wake(self) -> float:
        # At once only when there is work that can be done now: never spin on a full batch that
        # neither the database nor the spool will take yet.
        full = len(self._queue) >= self.settings.batch_size
        if self._database_due() and (full or self.spool):
            return 0
        if full and self._spool_due():
            return 0
        return self.settings.flush_interval

    def _step(self) -> None:
        if self.spool or not self._database_due():
            if self._spool_due():
                self._to_spool(self._take(len(self._queue)))  # keep submit order: memory goes behind the spool
            if self._database_due():
                self._replay_oldest()
        elif self._queue:
            self._write_from_memory(self._take(self.settings.batch_size))

    def _drain(self) -> None:
        while self._queue and not self.spool and self._database_due():
            self._write_from_memory(self._take(self.settings.batch_size))
        self._to_spool(self._take(len(self._queue)))

    def _housekeeping(self) -> None:
        now = self.clock()
        if now >= self._next_sync:
            self._sync_spool()
            self._next_sync = now + self.settings.fsync_interval
        if self.settings.retention_days and now >= self._next_prune and self._database_due():
            try:
                self._with_connection(lambda conn: prune(conn, self.settings.retention_days))
                self._next_prune = now + 86_400
            except _Transient:
                pass

    def _take(self, count: int) -> list[Any]:
        return [self._queue.popleft() for _ in range(min(count, len(self._queue)))]

    def _to_spool(self, batch: list[Any]) -> bool:
        """Append to the spool; if its disk refuses, put the batch back at the head of the queue
        (whence it was taken, or ahead of it for a record that overflowed) and say so."""
        if not batch:
            return True
        if self._spool_due():
            try:
                self.spool.append(batch)
            except OSError as exc:
                self._counts["spool_errors"] += 1
                self._spool_retry_at = self.clock() + self.settings.retry_max
                log.error("the CDR spool could not take %d records (%s); they wait in memory (%d in all), "
                          "spool retry in %.0f s", len(batch), exc, len(batch) + len(self._queue),
                          self.settings.retry_max)
            else:
                self._counts["records_spooled"] += len(batch)
                return True
        self._queue.extendleft(reversed(batch))
        return False

    def _spool_due(self) -> bool:
        return self.clock() >= self._spool_retry_at

    def _sync_spool(self, close: bool = False) -> None:
        try:
            if close:
                self.spool.close()
            else:
                self.spool.sync()
        except OSError as exc:
            log.error("the CDR spool could not be synced to disk (%s): records appended since the last sync "
                      "survive a stop but maybe not a crash", exc)

    def _write_from_memory(self, batch: list[Any]) -> None:
        self._inflight = batch  # if this greenlet is killed mid-write, stop() spools it
        try:
            self._write(batch)
        except _Transient:
            self._to_spool(batch)
        self._inflight = []

    def _replay_oldest(self) -> None:
        path = self.spool.oldest()
        if path is None:
            return
        batch = self.spool.read(path)
        try:
            for start in range(0, len(batch), self.settings.batch_size):
                self._write(batch[start:start + self.settings.batch_size])
        except _Transient:
            return  # the segment stays; what was committed of it is skipped on its natural key next time
        self.spool.remove(path)
        self._counts["records_replayed"] += len(batch)
        if not self.spool:
            log.info("CDR spool replayed; writing directly again")

    # --- the database ------------------------------------------------------------------------------------
    def _database_due(self) -> bool:
        return self.clock() >= self._retry_at

    def _write(self, batch: list[Any]) -> None:
        """Commit one batch, or raise _Transient. Records the database refuses as data are set aside."""
        try:
            self._count(len(batch), self._with_connection(lambda conn: self._insert(conn, batch)))
        except _REFUSED as exc:
            log.warning("a batch of %d records was refused (%s); writing them one by one", len(batch), exc)
            for record in batch:
                try:
                    self._count(1, self._with_connection(lambda conn: self._insert(conn, [record])))
                except _REFUSED as refused:
                    self._reject(record, refused)

    def _count(self, submitted: int, written: int) -> None:
        self._counts["rows_written"] += written
        self._counts["rows_duplicate"] += submitted - written

    def _with_connection(self, work: Callable[[psycopg.Connection], Any]) -> Any:
        try:
            with gevent.Timeout(self.settings.connect_timeout + self.settings.write_timeout, _WriteTimeout):
                conn = self._connection()
                with conn.transaction():
                    result = work(conn)
        except _REFUSED:
            raise
        except (psycopg.Error, OSError, _WriteTimeout) as exc:
            self._counts["write_errors"] += 1
            self._disconnect()
            delay = self._backoff
            self._backoff = min(self._backoff * 2, self.settings.retry_max)
            self._retry_at = self.clock() + delay
            log.warning("PostgreSQL did not take the records (%s); spooling, retry in %.1f s",
                        str(exc).strip() or type(exc).__name__, delay)
            raise _Transient() from None
        self._backoff = self.settings.retry_initial
        return result

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.dsn, autocommit=True,
                                   connect_timeout=max(2, int(self.settings.connect_timeout)),
                                   application_name="callrouter-cdr")
            conn.execute(sql.SQL("SET statement_timeout = {}").format(int(self.settings.write_timeout * 1000)))
            for kind in records.RECORD_KINDS.values():
                conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                                     "ON COMMIT DELETE ROWS").format(_staging(kind), sql.Identifier(kind.TABLE)))
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _insert(self, conn: psycopg.Connection, batch: list[Any]) -> int:
        """COPY + INSERT ... ON CONFLICT DO NOTHING; the number of new rows."""
        written = 0
        for kind, group in itertools.groupby(sorted(batch, key=lambda r: type(r).TABLE), key=type):
            cols = sql.SQL(", ").join(map(sql.Identifier, records.columns(kind)))
            key = sql.SQL(", ").join(map(sql.Identifier, kind.KEY))
            with conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(_staging(kind), cols)) as copy:
                    for record in group:
                        copy.write_row(records.row(record))
                cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) DO NOTHING").format(
                    sql.Identifier(kind.TABLE), cols, cols, _staging(kind), key))
                written += max(cur.rowcount, 0)
        return written

    def _reject(self, record: Any, exc: Exception) -> None:
        self._counts["records_rejected"] += 1
        log.error("PostgreSQL refused a %s record (%s); kept in %s", record.TABLE, str(exc).strip(),
                  self._rejected_path)
        with open(self._rejected_path, "a", encoding="utf-8") as out:
            out.write(records.to_json(record) + "\n")


def _psycopg_blocks_the_loop() -> bool:
    # psycopg picks its wait function once, at import: the C one unless gevent had patched select.
    from gevent import monkey
    from psycopg import waiting

    return monkey.is_module_patched("select") and waiting.wait is getattr(waiting, "wait_c", None)


def _staging(kind: type) -> sql.Identifier:
    return sql.Identifier(f"incoming_{kind.TABLE}")
