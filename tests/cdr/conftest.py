"""CDR tests: a fresh, migrated database per test module on the session's PostgreSQL."""
from __future__ import annotations

import psycopg
import pytest

from engine.db import migrate


def fresh_database(pg_dsn: str, name: str) -> str:
    """DSN of an empty database `name` (dropped first if a previous run left it), migrated."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn


@pytest.fixture(scope="module")
def cdr_dsn(pg_dsn, request):
    return fresh_database(pg_dsn, "cdr_" + request.module.__name__.rsplit(".", 1)[-1])
