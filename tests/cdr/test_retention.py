"""Retention: prune deletes what ended before the cut-off, keeps the rest, in both tables."""
from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from engine.cdr.retention import prune
from tests.cdr.factories import T0, cdr, insert, queue_event


def test_prune_by_age(cdr_dsn):
    now = T0 + timedelta(days=31)
    with psycopg.connect(cdr_dsn) as conn:
        insert(conn, [
            cdr(1),                                                       # ended 30 days 23:59 ago: kept
            cdr(2, end_stamp=T0 - timedelta(days=2)),                     # ended 33 days ago: pruned
            cdr(3, start_stamp=T0 - timedelta(days=40), end_stamp=None),  # no end, started 71 days ago: pruned
            cdr(4, start_stamp=T0 - timedelta(days=40), end_stamp=T0 + timedelta(days=2)),  # a long one: kept
        ])
        insert(conn, [queue_event(1, time=T0 - timedelta(days=1)), queue_event(2, time=T0 + timedelta(hours=1))])
        assert prune(conn, 31, now=now) == {"cdr": 2, "queue_log": 1}
        assert sorted(r[0] for r in conn.execute("SELECT uuid FROM cdr")) == ["leg-000001", "leg-000004"]
        assert conn.execute("SELECT call_uuid FROM queue_log").fetchall() == [("leg-000002",)]
        assert prune(conn, 31, now=now) == {"cdr": 0, "queue_log": 0}
        conn.rollback()


def test_prune_refuses_to_delete_everything(cdr_dsn):
    with psycopg.connect(cdr_dsn) as conn, pytest.raises(ValueError):
        prune(conn, 0)
