"""Fencing as deployed: a `callrouter run` process that leads and loses its lease exits with status
75 (EX_TEMPFAIL, for its supervisor to restart it as a standby), its Event Socket connections
already cut, and never leads again meanwhile."""
from __future__ import annotations

import time

import psycopg
import pytest

from engine.ha.election import LOCK_KEY
from tests.ha.harness import EngineProcess, start_simulation, wait_until
from tests.postgres import OwnServer

pytestmark = pytest.mark.timeout(90)
EXIT_FENCED = 75
FENCE_BOUND = 15.0  # fence_after (2 s) + a poll + a clean stop of the engine on a busy machine


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    yield server
    server.server.cleanup()


@pytest.fixture
def leader(tmp_path, pg):
    simulation = start_simulation(tmp_path, duration=4, seed=5)
    engine = EngineProcess(tmp_path, "a", simulation, pg.dsn)
    try:
        wait_until(lambda: engine.role() == "active", 15, "the engine to lead")
        wait_until(lambda: all(sim.server.connections for sim in simulation.nodes.values()), 10,
                   "the leader on every node")
        yield engine, simulation
    finally:
        engine.ensure_dead()
        simulation.stop()


def exit_status(engine: EngineProcess) -> int:
    assert engine.process is not None
    return engine.process.wait(timeout=FENCE_BOUND)


def test_a_leader_whose_session_is_cut_and_lock_taken_exits_75_and_never_leads_again(leader, pg):
    engine, simulation = leader
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        cut = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'callrouter-ha'").fetchall()
        assert cut == [(True,)]
        # Another engine's session takes the lock once the backend is gone, and a new term, as a standby would.
        wait_until(lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0], 5,
                   "the lock freed with the leader's session")
        term = conn.execute("UPDATE ha_leader SET term = term + 1, instance_id = 'other' WHERE id = 1 "
                            "RETURNING term").fetchone()[0]
        assert exit_status(engine) == EXIT_FENCED, engine.output()
        assert conn.execute("SELECT term, instance_id FROM ha_leader").fetchone() == (term, "other")
    assert "lost the lead" in engine.output()
    assert engine.output().count("leads now") == 1, "it never led a second time before it exited"
    assert not any(sim.server.connections for sim in simulation.nodes.values()), "its switches are cut"


def test_a_leader_cut_off_from_postgresql_exits_75_while_postgresql_is_still_away(leader, pg):
    engine, simulation = leader
    pg.stop()
    try:
        stopped_at = time.monotonic()
        assert exit_status(engine) == EXIT_FENCED, engine.output()
        assert time.monotonic() - stopped_at < FENCE_BOUND
    finally:
        pg.start()
    assert "lost the lead" in engine.output()
    assert not any(sim.server.connections for sim in simulation.nodes.values()), "its switches are cut"
