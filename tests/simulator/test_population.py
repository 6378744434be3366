"""The simulated population against the real simulated Switch, in process on a VirtualClock:
what a caller, an agent and a PSTN destination do, and what the ground truth says about it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import gevent
import pytest

from engine.simulator.clock import VirtualClock
from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from engine.simulator.truth import CallRecord

T0 = 1_767_258_000.0  # some Thursday morning; only differences matter

pytestmark = pytest.mark.timeout(60)


def build(tmp_path: Path, text: str, seed: int = 1) -> tuple[Simulation, VirtualClock]:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    clock = VirtualClock(start=T0)
    sim = Simulation(load_scenario(path), clock=clock, serve=False, seed=seed)
    sim.start()
    return sim, clock


def by_uuid(sim: Simulation) -> dict[str, CallRecord]:
    return {r.uuid: r for r in sim.recorder.finished}


NO_ENGINE = """
nodes: [{name: sim1, port: 0}]
duration: 10800
park_variables: {park_timeout: "30:NORMAL_TEMPORARY_FAILURE"}
inbound:
  arrivals: {per_hour: 600}
  numbers: ["+1555XXXXXXX"]
  dnis: "+12125550100"
  kinds:
    waiter: {patience: {exponential: {mean: 60}}}
"""


def test_without_an_engine_calls_end_by_patience_or_park_timeout(tmp_path: Path) -> None:
    sim, clock = build(tmp_path, NO_ENGINE)
    clock.run_until(T0 + 3 * 3600 + 60)
    switch = sim.nodes["sim1"].switch
    records = sim.recorder.finished
    assert sim.population.placed == len(records) == pytest.approx(1800, rel=0.1)
    assert not switch.channels
    for r in records:
        waited = r.hangup_at - r.arrived_at
        if r.hung_up_by == "switch":
            assert r.hangup_cause == "NORMAL_TEMPORARY_FAILURE"  # the cause the dialplan gave park_timeout
            assert waited == pytest.approx(30, abs=0.5)
        else:
            assert (r.hung_up_by, r.hangup_cause) == ("caller", "ORIGINATOR_CANCEL")
            assert waited < 30.5
        assert r.answered_at is None and r.agent is None
    # patience ~ exponential(mean 60): P(patience < 30 s) = 1 - e^-0.5
    abandoned = sum(r.hung_up_by == "caller" for r in records) / len(records)
    assert abandoned == pytest.approx(1 - math.exp(-0.5), abs=0.04)


CONTACT_CENTRE = """
nodes: [{name: sim1, port: 0}]
park_variables: {park_timeout: "600", hangup_after_bridge: "true"}
inbound:
  arrivals:
    calls: [{at: 1, kind: presser}, {at: 2, kind: fumbler}]
  numbers: ["+1555XXXXXXX"]
  dnis: "+12125550100"
  kinds:
    presser: {digits: "12", think: 0.5, patience: 300, talk: 7}
    fumbler: {digits: ["9", none], think: 0.5, patience: 300, talk: 7}
agents:
  - ids: "1001-1002"
    ring: 2
    talk: 40
    hangup_share: {share}
"""


class Driver:
    """The smallest in-process "engine": answer, ask for digits, bridge to the agents in turn."""

    def __init__(self, sim: Simulation) -> None:
        self.switch = sim.nodes["sim1"].switch
        self.agents = [a.user_id for a in sim.population.agents]
        self.taken = 0
        sim.population.arrival_listeners.append(self.take)

    def take(self, caller) -> None:
        uuid = caller.leg.uuid
        agent = self.agents[self.taken % len(self.agents)]
        self.taken += 1
        for app, arg in (("answer", ""),
                         ("play_and_get_digits", "1 2 1 3000 # menu.wav invalid.wav choice \\d+"),
                         ("bridge", f"user/{agent}")):
            self.switch.execute(uuid, app, arg, event_lock=True)


@pytest.mark.parametrize("share,ender", [(1.0, "agent"), (0.0, "caller")])
def test_caller_presses_its_digits_and_talks_to_the_agent(tmp_path: Path, share: float, ender: str) -> None:
    sim, clock = build(tmp_path, CONTACT_CENTRE.replace("{share}", str(share)))
    Driver(sim)
    clock.run_until(T0 + 200)
    presser, fumbler = sorted(sim.recorder.finished, key=lambda r: r.arrived_at)
    assert presser.pressed == ["12"] and fumbler.pressed == ["9"]
    for r in (presser, fumbler):
        assert [h.kind for h in r.heard][:1] == ["prompt"] and r.heard[0].detail == "menu.wav"
        assert r.answered_at == pytest.approx(r.arrived_at, abs=0.1)
    first = presser
    assert first.agent == "1001" and first.bridged_at is not None
    assert first.hung_up_by == ender and first.hangup_cause == "NORMAL_CLEARING"
    talked = first.hangup_at - first.bridged_at
    # the agent's handling time (40 s) decides how long the conversation lasts, whoever ends it
    assert talked == pytest.approx(40, abs=0.5)
    assert fumbler.agent == "1002"


AGENTS = """
nodes: [{name: sim1, port: 0}]
agents:
  - {ids: "2001", ring: 1, answer_probability: 1}
  - {ids: "2002", answer_probability: 0, busy_probability: 1}
  - {ids: "2003", answer_probability: 0, busy_probability: 0}
outbound:
  gateway: pstn
  destinations:
    - {match: '^1', answer: 1, answer_delay: 2, greeting: 1, patience: 3}
    - {match: '^2', busy: 1}
    - {match: '^3', invalid: 1}
    - {match: '^4', no_answer: 1}
    - {match: '^5', machine: 1, answer_delay: 2, machine_greeting: 8}
"""


def originate(sim: Simulation, clock: VirtualClock, dial: str, seconds: float = 20, node: str = "sim1") -> str:
    job = gevent.spawn(sim.nodes[node].switch.api, f"originate {{originate_timeout=5}}{dial} &park()")
    clock.run_until(clock.now() + seconds)
    return job.get(timeout=1)


def test_agents_answer_refuse_or_ring_out(tmp_path: Path) -> None:
    sim, clock = build(tmp_path, AGENTS)
    assert originate(sim, clock, "user/2001").startswith("+OK ")
    # on a call now: a second offer is refused like a phone without call waiting
    assert originate(sim, clock, "user/2001").strip() == "-ERR USER_BUSY"
    assert originate(sim, clock, "user/2002").strip() == "-ERR USER_BUSY"
    assert originate(sim, clock, "user/2003").strip() == "-ERR NO_ANSWER"


def test_outbound_destinations_behave_as_their_pattern_says(tmp_path: Path) -> None:
    sim, clock = build(tmp_path, AGENTS)
    switch = sim.nodes["sim1"].switch
    human = originate(sim, clock, "sofia/gateway/pstn/15550001", seconds=3)
    assert human.startswith("+OK ")
    assert originate(sim, clock, "sofia/gateway/pstn/25550001").strip() == "-ERR USER_BUSY"
    assert originate(sim, clock, "sofia/gateway/pstn/35550001").strip() == "-ERR UNALLOCATED_NUMBER"
    assert originate(sim, clock, "sofia/gateway/pstn/45550001").strip() == "-ERR NO_ANSWER"
    assert originate(sim, clock, "sofia/gateway/pstn/95550001").strip() == "-ERR NO_ROUTE_DESTINATION"
    machine = originate(sim, clock, "sofia/gateway/pstn/55550001", seconds=3).split()[1]
    assert switch.api(f"uuid_getvar {machine} amd_result") == "_undef_"  # still listening to the greeting
    clock.run_until(clock.now() + 8)
    assert switch.api(f"uuid_getvar {machine} amd_result") == "MACHINE"
    clock.run_until(clock.now() + 30)
    records = {r.caller: r for r in sim.recorder.finished}
    assert records["15550001"].hung_up_by == "destination"  # nobody came to the phone in time
    assert records["15550001"].hangup_at - records["15550001"].answered_at == pytest.approx(4, abs=0.1)
    assert (records["25550001"].kind, records["25550001"].hangup_cause) == ("busy", "USER_BUSY")
    assert records["45550001"].hung_up_by == "switch" and records["45550001"].answered_at is None
    assert records["55550001"].kind == "machine" and records["55550001"].hung_up_by == "destination"


def _run_truth(tmp_path: Path, seed: int) -> list[str]:
    text = CONTACT_CENTRE.replace("{share}", "0.5").replace(
        "calls: [{at: 1, kind: presser}, {at: 2, kind: fumbler}]", "per_hour: 120").replace(
        "park_variables:", "duration: 1800\npark_variables:")
    sim, clock = build(tmp_path, text, seed=seed)
    Driver(sim)
    clock.run_until(T0 + 3600)
    return [r.to_json() for r in sim.recorder.finished]


def test_same_seed_same_truth(tmp_path: Path) -> None:
    first, again, other = _run_truth(tmp_path, 5), _run_truth(tmp_path, 5), _run_truth(tmp_path, 6)
    assert len(first) > 20
    assert first == again
    assert first != other
    assert {json.loads(line)["hung_up_by"] for line in first} >= {"agent", "caller"}


TWO_NODES = """
nodes: [{name: east, port: 0}, {name: west, port: 0}]
duration: 600
park_variables: {park_timeout: "5"}
inbound:
  arrivals: {per_hour: 720}
  nodes: [east, west]
  numbers: ["+1555XXXXXXX"]
  dnis: "+12125550100"
  kinds: {k: {patience: 60}}
agents:
  - {ids: "1001", node: east, ring: 1}
  - {ids: "2001", node: west, ring: 1}
"""


def test_calls_spread_over_nodes_and_agents_register_on_their_own(tmp_path: Path) -> None:
    sim, clock = build(tmp_path, TWO_NODES)
    seen: dict[str, str] = {}

    def parked_on(name: str):
        def note(event) -> None:
            if event.name == "CHANNEL_PARK":
                seen[event.unique_id] = name
        return note

    for name, node in sim.nodes.items():
        node.switch.subscribe(parked_on(name))
    clock.run_until(T0 + 700)
    records = sim.recorder.finished
    assert {r.node for r in records} == {"east", "west"}
    assert all(seen[r.uuid] == r.node for r in records)  # each call parked on the node its record names
    assert originate(sim, clock, "user/1001", node="east").startswith("+OK ")
    assert originate(sim, clock, "user/2001", node="east").startswith("-ERR ")  # 2001 registered on west only
    assert originate(sim, clock, "user/2001", node="west").startswith("+OK ")
