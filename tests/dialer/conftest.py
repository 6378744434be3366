"""The dialer tests' own database: a fresh, migrated PostgreSQL database per test."""
from __future__ import annotations

import pytest

from tests.cdr.conftest import fresh_database


@pytest.fixture
def database(pg_dsn, request):
    return fresh_database(pg_dsn, "dialer_" + request.node.name.split("[")[0][-28:].lower())
