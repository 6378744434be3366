"""A pytest plugin (`-p tests.geventpatch`, set in pyproject): patch gevent before any conftest
or test module imports the engine, as the daemon does (engine.cli patches at import).

It must run before the initial conftests load: psycopg picks its wait function at import (a
blocking C one unless select is already patched), and tests/*/conftest.py import the engine.
Only where tests run: xdist's controller needs execnet's real blocking I/O, and threads stay real
for execnet's own reader thread in the workers.
"""
from __future__ import annotations

import os

from gevent import monkey


def pytest_load_initial_conftests(early_config, parser, args):
    is_worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    distributes = bool(getattr(early_config.known_args_namespace, "numprocesses", None))
    if is_worker or not distributes:
        monkey.patch_all(thread=False)
