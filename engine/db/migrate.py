"""Versioned SQL migrations: migrations/NNNN_name.sql applied in order, once each, each in its
own transaction, under an advisory lock so two engines starting together do not race."""
from __future__ import annotations

import logging
import re
from importlib import resources

import psycopg

from engine.errors import DatabaseError

log = logging.getLogger(__name__)

_LOCK_KEY = 0x63616C6C  # "call": pg_advisory_lock key shared by every engine process
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("engine.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError("two migrations share a version number")
    return found


def applied_versions(conn: psycopg.Connection) -> set[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return set()
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def migrate(conn: psycopg.Connection) -> list[str]:
    """Apply what is missing; return the names applied. conn must be in autocommit mode."""
    applied: list[str] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                            version integer PRIMARY KEY,
                            name text NOT NULL,
                            applied_at timestamptz NOT NULL DEFAULT now())""")
        done = applied_versions(conn)
        for version, name, sql in available():
            if version in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            except psycopg.Error as exc:
                raise DatabaseError(f"migration {version:04d}_{name} failed: {exc}") from None
            log.info("applied migration %04d_%s", version, name)
            applied.append(f"{version:04d}_{name}")
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied
