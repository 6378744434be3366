"""Many nodes and active/standby engines as deployed: three simulated FreeSWITCH nodes (agents on
two, callers on all three, the third reaching agents through the inter-node gateway), two
`callrouter run` processes sharing one PostgreSQL; the simulator's ground truth against the
engines' CDRs."""
from __future__ import annotations

import time

import psycopg
import pytest

from tests.ha.harness import (NODES, STRANDED, AgentPhones, EngineProcess, inbound, start_simulation,
                              wait_for_traffic_to_end, wait_until)
from tests.postgres import OwnServer

pytestmark = pytest.mark.timeout(120)
TAKEOVER_BOUND = 10.0  # "within a few seconds": poll 0.5 s, fence_after 2 s, and a busy 2-core machine


def cdrs(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT uuid, hangup_cause FROM cdr").fetchall())


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    yield server
    server.server.cleanup()


def test_a_node_that_dies_takes_only_its_own_calls(tmp_path, pg):
    duration = 16
    simulation = start_simulation(tmp_path, duration=duration, seed=21)
    phones = AgentPhones(simulation)
    placing_ends = time.time() + duration
    engines = []
    try:
        active = EngineProcess(tmp_path, "a", simulation, pg.dsn)
        engines.append(active)
        wait_until(lambda: active.role() == "active", 15, "engine a to lead")
        engines.append(standby := EngineProcess(tmp_path, "b", simulation, pg.dsn))
        sim3 = simulation.nodes["sim3"]
        # Its callers reach agents registered on sim1 and sim2 through the inter-node gateway.
        wait_until(lambda: phones.answered_through_gateway, 15, "an agent answering a call from another node")
        time.sleep(0.5)  # bridged and talking
        in_progress = set(sim3.switch.channels)
        sim3.server.stop()
        sim3.switch.shutdown()  # the node dies, and its calls with it
        died_at = time.time()
        wait_for_traffic_to_end(simulation, placing_ends, 60, nodes=("sim1", "sim2"))
        time.sleep(4)  # node_lost_after (3 s): the engine writes sim3's calls off
        assert standby.role() == "standby"
        assert active.terminate() == 0, active.output()
    finally:
        simulation.stop()
        for engine in engines:
            engine.ensure_dead()
    records = cdrs(pg.dsn)
    assert any(r.node == "sim3" and r.agent for r in inbound(simulation)), "sim3's callers talked to agents"
    survivors = [r for r in inbound(simulation) if r.node != "sim3"]
    assert survivors and all(r.hangup_cause != STRANDED for r in survivors), "a call on a live node was stranded"
    assert {r.uuid for r in survivors} <= records.keys(), "every call on the live nodes has its CDR"
    assert any(r.arrived_at > died_at and r.agent for r in survivors), "routing carried on without sim3"
    lost = {uuid for uuid in in_progress if records.get(uuid) == "LOST_DURING_OUTAGE"}
    assert lost, f"sim3's calls in progress end with LOST CDRs: {[records.get(u) for u in in_progress]}"
    assert not phones.second_calls, "an agent was offered a second call while on one"


def test_standby_takes_over_a_killed_leader_which_comes_back_as_standby(tmp_path, pg):
    duration = 18
    simulation = start_simulation(tmp_path, duration=duration, seed=42)
    phones = AgentPhones(simulation)
    placing_ends = time.time() + duration
    engines = []
    try:
        old = EngineProcess(tmp_path, "a", simulation, pg.dsn)
        engines.append(old)
        wait_until(lambda: old.role() == "active", 15, "engine a to lead")
        engines.append(new := EngineProcess(tmp_path, "b", simulation, pg.dsn))
        assert new.role() == "standby"
        assert not any(node["up"] for node in new.status()["nodes"]), "a standby leaves the switches alone"
        wait_until(lambda: sum(1 for r in inbound(simulation) if r.agent) >= 2, 30, "calls answered by agents")
        wait_until(lambda: any(ch for n in NODES for ch in simulation.nodes[n].switch.channels), 10, "calls up")
        old.kill()
        killed_at = time.time()
        wait_until(lambda: new.role() == "active", TAKEOVER_BOUND, "the standby to take over")
        wait_until(lambda: all(node["up"] for node in new.status()["nodes"]), 10, "the new leader on every node")
        assert new.status()["ha"]["term"] > 1, "each takeover is a new term"

        old.start()  # the old active comes back (a supervisor restarting it)
        wait_until(lambda: old.role() is not None, 10, "the restarted engine's API")
        time.sleep(1.5)  # three of its election polls
        assert old.role() == "standby", "the old active must not lead a second time"
        assert not any(node["up"] for node in old.status()["nodes"])

        wait_for_traffic_to_end(simulation, placing_ends, 60)
        time.sleep(0.5)  # the last CDRs' flush_interval
        assert new.terminate() == 0, new.output()
        adopted = new.output().count("adopting call")
    finally:
        simulation.stop()
        for engine in engines:
            engine.ensure_dead()
    assert adopted, "the new leader adopted the calls in progress"
    calls = inbound(simulation)
    assert all(r.hangup_cause != STRANDED for r in calls), "a call was left to FreeSWITCH's park_timeout"
    assert not phones.second_calls, "an agent was offered a second call while on one"
    records = cdrs(pg.dsn)
    # A crash loses the CDRs still in memory: those of calls that ended within flush_interval (0.1 s)
    # of the SIGKILL (engine/cdr/README.md); every other call has its CDR.
    missing = [r for r in calls if r.uuid not in records and not killed_at - 0.5 < (r.hangup_at or 0) <= killed_at]
    assert not missing, f"{len(missing)} calls without a CDR: {missing[:3]}"
