"""Leader election and fencing against a real PostgreSQL, in process: who leads, when a standby
takes over, and when a leader must stop acting."""
from __future__ import annotations

import gevent
import psycopg
import pytest
from gevent.event import AsyncResult

from engine.config import HaSettings
from engine.db import migrate
from engine.ha import LeaderElection, Role
from tests.ha.harness import wait_until
from tests.postgres import OwnServer

pytestmark = pytest.mark.timeout(60)
SETTINGS = HaSettings(enabled=True, poll_interval=0.2, fence_after=1.0)


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        migrate(conn)
    yield server
    server.server.cleanup()


class Candidate:
    def __init__(self, dsn: str, name: str) -> None:
        self.elected, self.lost = AsyncResult(), AsyncResult()
        self.election = LeaderElection(lambda: dsn, name, SETTINGS, on_elected=self.elected.set, on_lost=self.lost.set)
        self.election.start()


def test_one_leads_the_other_takes_over_when_its_session_ends_with_a_new_term(pg):
    first = Candidate(pg.dsn, "first")
    first_term = first.elected.get(timeout=10)
    second = Candidate(pg.dsn, "second")
    gevent.sleep(SETTINGS.poll_interval * 5)
    assert not second.elected.ready() and second.election.role is Role.STANDBY
    first.election.stop()
    assert second.elected.get(timeout=5) == first_term + 1
    assert not first.lost.ready(), "a leader that steps down is not fenced"
    second.election.stop()


def test_a_leader_whose_term_was_taken_fences_itself(pg):
    leader = Candidate(pg.dsn, "leader")
    term = leader.elected.get(timeout=10)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("UPDATE ha_leader SET term = term + 1")
    assert "another engine leads" in leader.lost.get(timeout=5)
    assert leader.election.role is Role.FENCED and leader.election.term == term
    leader.election.stop()


def test_a_leader_cut_off_from_postgresql_fences_itself_and_campaigns_again_only_when_restarted(pg):
    leader = Candidate(pg.dsn, "leader")
    leader.elected.get(timeout=10)
    pg.stop()
    try:
        assert "not confirmed" in leader.lost.get(timeout=SETTINGS.fence_after + 5)
    finally:
        pg.start()
    wait_until(lambda: pg.backends("callrouter-ha") == 0, 5, "the fenced session gone")
    gevent.sleep(SETTINGS.poll_interval * 3)
    assert leader.election.role is Role.FENCED, "a fenced engine never leads again in the same process"
    with psycopg.connect(pg.dsn) as conn:
        assert not conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0]
