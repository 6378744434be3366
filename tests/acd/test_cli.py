"""`callrouter agents` and `callrouter queues` as separate processes against a running engine's
admin API (the engine on this test's loop, reaching the simulator over TCP): a supervisor sees why
a caller waits, logs the agent in, and the caller reaches it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from engine.acd.model import AgentStatus
from engine.app import Engine
from engine.config import ApiSettings, Secret
from tests.acd.test_service_e2e import acd_file, scenario, start
from tests.engine.conftest import centre_factory  # noqa: F401 - fixture
from tests.engine.test_cli_processes import ROOT, free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)
TOKEN = "cli-token"


def callrouter(config_file, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args, "--config", str(config_file)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "200"})  # rich's tables unwrapped


@pytest.fixture
def api_engine(tmp_path):
    """(a factory like engine_factory's whose engine also serves the admin API, the CLI's config file)."""
    port = free_port()
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(f'api: {{listen: "127.0.0.1:{port}", token: {TOKEN}}}\n')
    made: list[Engine] = []

    def make(config):
        engine = Engine(replace(config, api=ApiSettings(port=port, token=Secret(TOKEN))), with_database=False,
                        with_metrics=False)
        made.append(engine)
        engine.start()
        assert all(node.wait_up(10) for node in engine.nodes), "engine did not connect to the simulator"
        return engine

    yield make, config_file
    for engine in made:
        engine.stop(grace=0)


def test_a_supervisor_sees_why_a_caller_waits_logs_the_agent_in_and_the_caller_reaches_it(
        centre_factory, api_engine, tmp_path):
    engine_factory, config_file = api_engine
    centre = centre_factory(scenario([(0.2, "sales")], [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 0.5, hangup_share: 1.0}']))
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {"max_wait_no_agent": 60}}, {"1001": {"status": "On Break"}, "1002": {"status": "Logged Out"}},
        [("1001", "sales", 1), ("1002", "sales", 1)]))

    result = callrouter(config_file, "agents", "status", "1001", "on-break", "--reason", "lunch", "--json")
    assert result.returncode == 0, result.stderr
    assert [(a["agent"], a["status"], a["reason"]) for a in json.loads(result.stdout)] == [
        ("1001", "On Break", "lunch")]
    listed = callrouter(config_file, "agents", "list")
    assert listed.returncode == 0 and "lunch" in listed.stdout and "Logged Out" in listed.stdout

    wait_until(lambda: log.of("ENTER"), what="the caller to join sales")
    caller = log.of("ENTER")[0].call_uuid
    queues = json.loads(callrouter(config_file, "queues", "list", "--json").stdout)
    sales = next(q for q in queues if q["queue"] == "sales")
    assert (sales["waiting"], sales["available"], sales["staffed"]) == (1, 0, 0)
    why = callrouter(config_file, "queues", "why", caller, "--json")
    assert why.returncode == 0, why.stderr
    reasons = {a["agent"]: a["reasons"] for a in json.loads(why.stdout)["agents"]}
    assert any("On Break (lunch)" in r for r in reasons["1001"]) and any("Logged Out" in r for r in reasons["1002"])
    table = callrouter(config_file, "queues", "why", caller)
    assert table.returncode == 0 and "On Break (lunch)" in table.stdout

    assert callrouter(config_file, "agents", "login", "1001").returncode == 0
    wait_until(lambda: log.of("CONNECT", agent="1001"), what="the caller to reach 1001 once logged in")
    assert callrouter(config_file, "agents", "logout", "1002").returncode == 0
    assert engine.acd.router.agents["1002"].status is AgentStatus.LOGGED_OUT


def test_refusals_exit_1_with_the_reason(centre_factory, api_engine, tmp_path):
    engine_factory, config_file = api_engine
    centre = centre_factory(scenario([(600, "sales")], ['  - {ids: ["1001"], ring: 0.1}']))
    start(centre, engine_factory, tmp_path, acd_file({"sales": {}}, {"1001": {}}, [("1001", "sales", 1)]))
    unknown = callrouter(config_file, "agents", "login", "9999")
    assert unknown.returncode == 1 and "9999" in unknown.stderr and "Traceback" not in unknown.stderr
    no_call = callrouter(config_file, "queues", "why", "no-such-call")
    assert no_call.returncode == 1 and "no-such-call" in no_call.stderr
    bad_status = callrouter(config_file, "agents", "status", "1001", "sleeping")
    assert bad_status.returncode == 2 and "on-break" in bad_status.stderr
