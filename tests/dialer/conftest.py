"""The dialer tests' own database: a fresh, migrated PostgreSQL database per test."""
from __future__ import annotations

import psycopg
import pytest

from engine.db import migrate


@pytest.fixture
def database(pg_dsn, request):
    name = "dialer_" + request.node.name.split("[")[0][-28:].lower()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn
