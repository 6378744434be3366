"""Agent status survives an engine restart: set through the admin API or by max-no-answer, written
to PostgreSQL, and the next engine on the same database starts with it (over the file's status)."""
from __future__ import annotations

import json
import urllib.request
from dataclasses import replace

import psycopg
import pytest

from engine.acd.model import AgentStatus
from engine.app import Engine
from engine.config import ApiSettings, Secret
from tests.acd.test_service_e2e import acd_file, scenario
from tests.engine.conftest import centre_factory  # noqa: F401 - fixture
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
TOKEN = "persist-token"


@pytest.fixture
def database(pg_dsn, request):
    name = "acd_" + request.node.name.lower()[-40:]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)


@pytest.fixture
def engines():
    running: list[Engine] = []

    def run(config) -> Engine:
        engine = Engine(config, with_metrics=False)
        running.append(engine)
        engine.start()
        return engine

    yield run
    for engine in running:
        engine.stop(grace=0)


def restartable(centre, tmp_path, database, acd: dict):
    config = centre.config(tmp_path, greeting="silence_stream://100", acd=acd)
    return replace(config, database_dsn=Secret(database), api=ApiSettings(port=0, token=Secret(TOKEN)))


def restart(engines, engine: Engine) -> Engine:
    engine.stop(grace=0)
    return engines(engine.config)


def test_a_break_set_through_the_api_survives_a_restart(centre_factory, tmp_path, database, engines):
    centre = centre_factory(scenario([(600, "sales")], ['  - {ids: ["1001", "1002"], ring: 0.1}']))  # no call
    engine = engines(restartable(centre, tmp_path, database, acd_file(
        {"sales": {}}, {"1001": {}, "1002": {}}, [("1001", "sales", 1), ("1002", "sales", 1)])))
    request = urllib.request.Request(
        f"http://127.0.0.1:{engine.api.port}/agents/status?agent=1001&status=On+Break&reason=lunch",
        method="POST", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["status"] == "On Break"
    engine.acd.set_status("1002", AgentStatus.LOGGED_OUT)
    engine.acd.set_status("1002", AgentStatus.AVAILABLE_ON_DEMAND)

    engine = restart(engines, engine)
    agents = engine.acd.router.agents
    assert (agents["1001"].status, agents["1001"].break_reason) == (AgentStatus.ON_BREAK, "lunch")
    assert agents["1002"].status is AgentStatus.AVAILABLE_ON_DEMAND, "the last of two quick changes wins"


def test_an_agent_put_on_break_by_max_no_answer_is_still_on_break_after_a_restart(centre_factory, tmp_path,
                                                                                 database, engines):
    centre = centre_factory(scenario([(0.2, "sales")], [
        '  - {ids: ["1001"], ring: 0.2, answer_probability: 0.0}',
        '  - {ids: ["1002"], ring: 0.2, answer_probability: 1.0, talk: 0.5, hangup_share: 1.0}']))
    config = restartable(centre, tmp_path, database, acd_file(
        {"sales": {"strategy": "top-down"}}, {"1001": {"max_no_answer": 1}, "1002": {}},
        [("1001", "sales", 1), ("1002", "sales", 2)]))
    engine = engines(replace(config, acd=replace(config.acd, ring_seconds=1)))
    wait_until(lambda: engine.acd.router.agents["1001"].status is AgentStatus.ON_BREAK, timeout=20,
               what="1001 to miss the call and go On Break")
    wait_until(lambda: centre.truth.count == 1, timeout=20, what="the call to finish with 1002")

    engine = restart(engines, engine)
    agent = engine.acd.router.agents["1001"]
    assert (agent.status, agent.break_reason) == (AgentStatus.ON_BREAK, "no-answer")
    assert engine.acd.router.agents["1002"].status is AgentStatus.AVAILABLE
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT status, reason FROM acd_agent_status WHERE agent = '1001'").fetchone() == \
            ("On Break", "no-answer")
