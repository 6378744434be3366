"""A call that crosses nodes: a caller parked on sim1 put through to agent 1004, registered on sim2,
through the inter-node gateway. The simulated switches run the trunk as two FreeSWITCH nodes do
(sofia's X- headers included); the test speaks ESL over TCP to them, as the engine does, and the
CDRs of every leg, on both nodes, land in PostgreSQL naming the caller's Unique-ID."""
from __future__ import annotations

import time
import uuid as uuidlib
from pathlib import Path

import psycopg
import pytest

from engine.cdr import CallFacts, RecordWriter, WriterSettings, cdr_from_event
from engine.channelvars import VAR_PARENT_HEADER
from engine.db import migrate
from engine.esl import Node, NodeConfig, commands
from engine.ha.relay import RelayLegs
from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from engine.simulator.truth import TruthRecorder
from tests.ha.harness import PASSWORD, link_nodes, wait_until

pytestmark = pytest.mark.timeout(60)
AGENT_ON_SIM2 = "1004"
GATEWAY_TO_SIM2 = f"sofia/gateway/callrouter-sim2/callrouter-agent-{AGENT_ON_SIM2}"

# One caller arrives on sim1 and waits parked (no engine here: the test plays its part); the agent
# on sim2 answers at once and ends the conversation after a second.
SCENARIO = """
seed: 7
duration: 1
nodes: [{name: sim1, port: 0}, {name: sim2, port: 0}, {name: sim3, port: 0}]
park_variables: {callrouter_entry: "2125550100", park_timeout: "30:NORMAL_TEMPORARY_FAILURE"}
inbound:
  arrivals: {calls: [{at: 0.1}]}
  numbers: ["+15550100001"]
  dnis: "+12125550100"
  nodes: [sim1]
  kinds: {waiter: {weight: 1, patience: 30, talk: 30}}
agents:
  - {ids: ["%s"], node: sim2, ring: 0.2, talk: 1.0, hangup_share: 1.0}
""" % AGENT_ON_SIM2


class Switches:
    """The simulation plus one ESL connection per node; every CHANNEL_HANGUP_COMPLETE is kept and
    handed to a RelayLegs, as the engine's reader would, whose journal's sink is this object."""

    def __init__(self, tmp_path: Path) -> None:
        path = tmp_path / "scenario.yaml"
        path.write_text(SCENARIO)
        self.simulation = Simulation(load_scenario(path), recorder=TruthRecorder(), port=0, password=PASSWORD)
        self.simulation.start()
        link_nodes(self.simulation)
        self.records: list = []  # what RelayLegs submitted
        self.sink = self  # RelayLegs's journal, whose sink this is too
        self.relay = RelayLegs(self)
        self.finished: dict[str, object] = {}  # Unique-ID -> its CHANNEL_HANGUP_COMPLETE
        self.nodes = {name: Node(NodeConfig(name=name, port=sim.port, password=PASSWORD,
                                            events=("CHANNEL_HANGUP_COMPLETE",)), on_event=self._on_event)
                      for name, sim in self.simulation.nodes.items()}
        for node in self.nodes.values():
            node.start()
        assert all(node.wait_up(5) for node in self.nodes.values())

    def submit(self, record) -> None:
        self.records.append(record)

    def _on_event(self, event) -> None:
        if event.name == "CHANNEL_HANGUP_COMPLETE":
            self.finished[event.unique_id] = event
        self.relay.observe(event)

    def parked_caller(self) -> str:
        channels = self.simulation.nodes["sim1"].switch.channels
        wait_until(lambda: any(c.parked for c in channels.values()), 5, "the caller parked on sim1")
        return next(uuid for uuid, c in channels.items() if c.parked)

    def ring_agent(self, caller: str) -> tuple[str, str]:
        """The agent's leg as the engine originates it on the caller's node: (its Unique-ID, the job's reply)."""
        leg = str(uuidlib.uuid4())
        variables = {"origination_uuid": leg, "ignore_early_media": "true", "originate_timeout": "5",
                     "callrouter_leg": "agent", "callrouter_parent": caller, VAR_PARENT_HEADER: caller}
        reply = self.nodes["sim1"].bgapi(commands.originate(GATEWAY_TO_SIM2, variables, app="park"), timeout=15)
        return leg, reply.strip()

    def quiet(self) -> bool:
        return not any(sim.switch.channels for sim in self.simulation.nodes.values())

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.simulation.stop()


@pytest.fixture
def switches(tmp_path):
    switches = Switches(tmp_path)
    yield switches
    switches.stop()


def test_every_leg_of_a_call_through_the_gateway_has_its_cdr_naming_the_caller(switches, pg_dsn, tmp_path):
    caller = switches.parked_caller()
    agent_leg, reply = switches.ring_agent(caller)
    assert reply == f"+OK {agent_leg}"
    switches.nodes["sim1"].api(commands.uuid_bridge(caller, agent_leg))
    wait_until(lambda: agent_leg in switches.finished, 10, "the agent to end the conversation")
    switches.nodes["sim1"].api(commands.kill(caller, "NORMAL_CLEARING"))
    wait_until(switches.quiet, 10, "every channel gone")
    time.sleep(0.2)  # the last CHANNEL_HANGUP_COMPLETE over the socket

    # On sim2: the trunk's inbound leg and the leg to the agent's phone, both relay legs.
    relayed = {record.uuid: record for record in switches.records}
    sim2 = {uuid for uuid, event in switches.finished.items() if event.node == "sim2"}
    assert set(relayed) == sim2 and len(sim2) == 2
    assert {(r.node, r.role, r.call_uuid) for r in relayed.values()} == {("sim2", "relay", caller)}
    assert {r.direction for r in relayed.values()} == {"inbound", "outbound"}
    phone = next(r for r in relayed.values() if r.direction == "outbound")
    assert phone.destination_number == AGENT_ON_SIM2 and phone.answer_stamp is not None

    # On sim1: the caller's and the agent's legs are the engine's own; their call writes them.
    engine_legs = [cdr_from_event(switches.finished[uuid], CallFacts(node="sim1")) for uuid in (caller, agent_leg)]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
    writer = RecordWriter(pg_dsn, tmp_path / "spool", WriterSettings(flush_interval=0.05))
    writer.start()
    for record in engine_legs + list(relayed.values()):
        writer.submit(record)
    writer.stop()
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT uuid, node, bleg_uuid FROM cdr WHERE call_uuid = %s", (caller,)).fetchall()
    assert sorted((uuid == caller, uuid == agent_leg, node) for uuid, node, _ in rows) == [
        (False, False, "sim2"), (False, False, "sim2"), (False, True, "sim1"), (True, False, "sim1")]
    assert dict((uuid, bleg) for uuid, _, bleg in rows)[caller] == agent_leg


def test_a_busy_agent_and_a_dead_node_fail_the_ring_with_their_cause(switches):
    caller = switches.parked_caller()
    agent = switches.simulation.nodes["sim2"].switch.users[AGENT_ON_SIM2]
    first, reply = switches.ring_agent(caller)
    assert reply == f"+OK {first}"
    # The phone refuses a second call (USER_BUSY); sim2's bridge fails and hangs its leg up with
    # that cause, which reaches sim1 as the originate's answer.
    _, busy = switches.ring_agent(caller)
    assert busy == "-ERR USER_BUSY"
    switches.nodes["sim1"].api(commands.kill(first, "NORMAL_CLEARING"))
    wait_until(lambda: not agent._legs, 5, "the agent's phone free again")

    switches.simulation.nodes["sim2"].server.stop()
    switches.simulation.nodes["sim2"].switch.shutdown()
    leg, down = switches.ring_agent(caller)
    assert down == "-ERR GATEWAY_DOWN"
    assert leg not in switches.simulation.nodes["sim1"].switch.channels
