"""Agent status persistence: the `acd_agent_status` table (migration 0020_acd.sql), written after
each status change and read at start to seed the ACD, so a restart keeps who is logged in, on
break and for what reason.

Writes run in their own greenlet (a status change comes from the admin API or the dispatcher,
never from a caller's greenlet, but a slow database must still delay neither); each carries the
time of the change and only a newer row replaces an older one, so two writes racing land in the
order the changes happened.
"""
from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Callable

import gevent

from engine.acd.model import Agent, AgentStatus

log = logging.getLogger(__name__)

Connect = Callable[[], AbstractContextManager]  # a psycopg connection (Database.connect)

_UPSERT = ("INSERT INTO acd_agent_status (agent, status, reason, state, changed_at) VALUES (%s, %s, %s, %s, %s)"
           " ON CONFLICT (agent) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason,"
           " state = EXCLUDED.state, changed_at = EXCLUDED.changed_at"
           " WHERE acd_agent_status.changed_at <= EXCLUDED.changed_at")


class AgentStatusStore:
    def __init__(self, connect: Connect) -> None:
        self.connect = connect
        self._pending: set[gevent.Greenlet] = set()

    def load(self) -> dict[str, tuple[AgentStatus, str]]:
        """agent id -> (status, reason) as last saved; a status this version does not know is skipped."""
        with self.connect() as conn:
            rows = conn.execute("SELECT agent, status, reason FROM acd_agent_status").fetchall()
        statuses = {}
        for agent, status, reason in rows:
            try:
                statuses[agent] = (AgentStatus(status), reason)
            except ValueError:
                log.warning("agent %s: unknown saved status %r ignored", agent, status)
        return statuses

    def save(self, agent: Agent) -> None:
        """Store the agent's status as it is now, in the background."""
        params = (agent.id, agent.status.value, agent.break_reason, agent.state.value, datetime.now(timezone.utc))

        def write() -> None:
            try:
                with self.connect() as conn:
                    conn.execute(_UPSERT, params)
                    conn.commit()
            except Exception as exc:  # the ACD goes on with the status; a restart would lose it, say so
                log.error("agent status not stored (%s): %s", exc, params[:3])

        greenlet = gevent.spawn(write)
        self._pending.add(greenlet)
        greenlet.link(self._pending.discard)

    def flush(self, timeout: float = 5.0) -> None:
        """Wait for the writes in flight (shutdown, tests)."""
        gevent.joinall(list(self._pending), timeout=timeout)
