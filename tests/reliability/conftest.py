"""Reliability tests: the engine and the simulated FreeSWITCH over real TCP (in this process, or
as separate processes), faults injected through the simulator's own interfaces."""
from __future__ import annotations

from tests.engine.conftest import centre_factory, engine_factory  # noqa: F401 - fixtures
