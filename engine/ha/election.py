"""Leader election and fencing through PostgreSQL: which engine process acts on the calls.

The leader holds a session-level advisory lock on a connection of its own. PostgreSQL releases
it when that session ends (the process killed, the connection lost), and a standby polling
pg_try_advisory_lock takes it over. Each takeover increments ha_leader.term: the fencing token.

Fencing is the leader's side. Every poll it reads the term back on the lock's session: an error,
no answer within fence_after of the last confirmation, or a term that is no longer its own, and
it must assume another engine may lead, so it stops acting (on_lost) at once. The session asks
the server for TCP keepalives that detect a vanished leader only after fence_after has passed
(SERVER_DETECTS_AFTER), so a leader cut off from PostgreSQL has fenced itself before the server
frees the lock for a standby.
"""
from __future__ import annotations

import enum
import logging
import time
from typing import Callable

import gevent
import psycopg

from engine.config import HaSettings
from engine.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_KEY = 0x6C656164  # "lead"; the migrations' lock ("call") is another key
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 1, 3
SERVER_DETECTS_AFTER = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT  # seconds, at the least
_FAILURES = (psycopg.Error, OSError, gevent.Timeout)


class Role(enum.Enum):
    STANDBY = "standby"
    ACTIVE = "active"
    FENCED = "fenced"  # lost the lead: acts no more; the process is to be restarted as a standby


class LeaderElection:
    """Campaigns for the lead in the background; `on_elected(term)` once it leads, then
    `on_lost(reason)` once it may no longer. Both run in the election's greenlet."""

    def __init__(self, dsn: Callable[[], str], instance_id: str, settings: HaSettings, *,
                 on_elected: Callable[[int], None], on_lost: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if settings.fence_after >= SERVER_DETECTS_AFTER:
            raise ConfigError(f"ha.fence_after must be under {SERVER_DETECTS_AFTER} s, when PostgreSQL frees the lock")
        self._dsn = dsn
        self.instance_id = instance_id
        self.settings = settings
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._clock = clock
        self.role = Role.STANDBY
        self.term: int | None = None
        self._conn: psycopg.Connection | None = None
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Give the lead up (closing the session frees the lock for a standby at once)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2.0)
        self._disconnect()

    def status(self) -> dict[str, object]:
        return {"role": self.role.value, "term": self.term}

    # --- the campaign ---------------------------------------------------------------------------
    def _run(self) -> None:
        while (term := self._try_to_lead()) is None:
            gevent.sleep(self.settings.poll_interval)
        self.role, self.term = Role.ACTIVE, term
        log.warning("this engine leads now (term %d)", term)
        self._on_elected(term)
        reason = self._hold()
        self.role = Role.FENCED
        self._disconnect()
        log.error("this engine lost the lead (%s): it stops acting on calls", reason)
        self._on_lost(reason)

    def _try_to_lead(self) -> int | None:
        try:
            with gevent.Timeout(self.settings.fence_after):
                conn = self._connection()
                if not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
                    return None
                row = conn.execute("UPDATE ha_leader SET term = term + 1, instance_id = %s, elected_at = now() "
                                   "WHERE id = 1 RETURNING term", (self.instance_id,)).fetchone()
        except _FAILURES as exc:
            log.warning("cannot campaign for the lead: %s", _describe(exc))
            self._disconnect()  # the lock, if it was taken, goes with the session
            return None
        return int(row[0])

    def _hold(self) -> str:
        """Confirm the lead every poll until it cannot be confirmed; returns why."""
        confirmed = self._clock()
        while True:
            gevent.sleep(self.settings.poll_interval)
            left = confirmed + self.settings.fence_after - self._clock()
            if left <= 0:  # this process stalled past the bound: a standby may lead already
                return f"lead not confirmed for {self.settings.fence_after:g} s"
            try:
                with gevent.Timeout(left):
                    term = self._connection().execute("SELECT term FROM ha_leader WHERE id = 1").fetchone()[0]
            except _FAILURES as exc:
                return f"lead not confirmed: {_describe(exc)}"
            if term != self.term:
                return f"another engine leads with term {term}"
            confirmed = self._clock()

    # --- the lock's session -----------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._dsn(), autocommit=True, application_name="callrouter-ha",
                connect_timeout=max(2, int(self.settings.fence_after)),
                options=(f"-c tcp_keepalives_idle={KEEPALIVE_IDLE} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL}"
                         f" -c tcp_keepalives_count={KEEPALIVE_COUNT}"))
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass


def _describe(exc: BaseException) -> str:
    if isinstance(exc, gevent.Timeout):
        return "PostgreSQL did not answer in time"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
