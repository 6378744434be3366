"""Waiting for something to become true, on gevent's loop, without timed assertions: the bound
only decides how long a broken promise takes to fail the test."""
from __future__ import annotations

import time

import gevent


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        gevent.sleep(0.02)
