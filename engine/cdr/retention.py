"""Retention: CDRs and queue events older than the configured number of days are deleted.

Pruning (rather than date partitions) keeps one natural-key index per table, which is what makes
replays idempotent; it deletes in bounded chunks so it never holds long locks on a busy table.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

_CHUNK = 10_000

# CDRs go by their end (a long call started before the cut-off but ended after it is kept).
_TARGETS = (("cdr", "uuid", "coalesce(end_stamp, start_stamp)"), ("queue_log", "event_id", "time"))


def prune(conn: psycopg.Connection, keep_days: int, *, now: datetime | None = None) -> dict[str, int]:
    """Delete records older than `keep_days` days; return how many rows per table."""
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1")
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=keep_days)
    deleted: dict[str, int] = {}
    for table, key, stamp in _TARGETS:
        total = 0
        while True:
            cur = conn.execute(f"DELETE FROM {table} WHERE {key} IN "
                               f"(SELECT {key} FROM {table} WHERE {stamp} < %s LIMIT {_CHUNK})", (cutoff,))
            total += cur.rowcount
            if cur.rowcount < _CHUNK:
                break
        deleted[table] = total
    return deleted
