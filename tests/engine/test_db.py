"""The database bootstrap against a real PostgreSQL: migrations apply once, in order, and a
second engine starting at the same time does not apply them twice."""
from __future__ import annotations

import psycopg

from engine.config import Secret
from engine.db import Database, applied_versions, migrate
from engine.db.migrate import available
from engine.errors import DatabaseError


def _fresh_db(pg_dsn: str, name: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)


def test_migrations_apply_once_in_order(pg_dsn):
    dsn = _fresh_db(pg_dsn, "mig_once")
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = migrate(conn)
        again = migrate(conn)
        assert first == [f"{v:04d}_{n}" for v, n, _ in available()]
        assert again == []
        assert applied_versions(conn) == {v for v, _, _ in available()}
        assert conn.execute("SELECT to_regclass('engine_instance')").fetchone()[0] == "engine_instance"


def test_concurrent_migrations_do_not_collide(pg_dsn):
    import threading

    dsn = _fresh_db(pg_dsn, "mig_race")
    results, errors = [], []

    def run():
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                results.append(migrate(conn))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, len(available())]


def test_unreachable_database_is_a_clear_error_without_the_password(tmp_path):
    db = Database(Secret("postgresql://u:topsecret@127.0.0.1:1/x?connect_timeout=2"), tmp_path)
    try:
        db.connect()
    except DatabaseError as exc:
        assert "cannot connect to PostgreSQL" in str(exc)
        assert "topsecret" not in str(exc)
    else:
        raise AssertionError("connecting to a closed port must fail")
    assert "topsecret" not in db.describe()
