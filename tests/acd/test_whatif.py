"""The real Router driving the simulated switch on a virtual clock: an M/M/c queue gives the
service level and ASA Erlang C predicts (so the engine neither loses nor delays calls), measured
from the simulator's ground truth; and `callrouter staffing --simulate` answers what-ifs from a
scenario file with another staffing, as a process."""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from bisect import bisect_left, bisect_right
from pathlib import Path

import pytest

from engine.acd.config import load_acd
from engine.acd.erlang import erlang_c_staffing
from engine.acd.whatif import mmc_scenario, run
from engine.simulator.scenario import load_scenario
from engine.simulator.truth import TruthRecorder

START = 1_800_000_000.0


@pytest.mark.timeout(90)
def test_an_mmc_queue_gets_the_service_level_and_asa_of_erlang_c():
    agents, aht, per_hour, within, hours = 10, 10.0, 2880.0, 5.0, 2.0  # 8 Erlangs on 10 agents
    truth = TruthRecorder()
    report = run(mmc_scenario(per_hour, aht, agents, hours, seed=7), answer_within=within, seed=7,
                 start=START, recorder=truth)
    calls = [r for r in truth.finished if r.arrived_at < START + hours * 3600]
    assert len(calls) == report.offered == pytest.approx(per_hour * hours, rel=0.05)
    assert all(r.agent and r.bridged_at is not None for r in calls)  # nobody lost: every call reached an agent
    assert report.abandoned == 0

    # First come, first served: in order of arrival, calls reach agents in order.
    by_arrival = sorted(calls, key=lambda r: r.arrived_at)
    assert all(a.bridged_at <= b.bridged_at for a, b in zip(by_arrival, by_arrival[1:]))
    # Work-conserving: whenever an agent hangs up while calls wait, one is bridged at that moment.
    arrivals = [r.arrived_at for r in by_arrival]
    bridges = sorted(r.bridged_at for r in calls)
    for freed in (r.hangup_at for r in calls):
        waiting = bisect_left(arrivals, freed) - bisect_left(bridges, freed - 1e-3)
        if waiting > 0:
            assert bisect_right(bridges, freed + 1e-3) > bisect_left(bridges, freed - 1e-3), \
                f"an agent freed at {freed} stayed idle while {waiting} call(s) waited"

    # Batch means over 15-minute slices of arrivals (waits are correlated in time; the slices,
    # many busy periods long, nearly are not), within 4.5 standard errors (t, 7 dof, 99.8 %).
    batches: dict[int, list[float]] = {}
    for r in calls:
        batches.setdefault(int((r.arrived_at - START) // 900), []).append(r.bridged_at - r.arrived_at)
    sl = [sum(w <= within for w in waits) / len(waits) for waits in batches.values()]
    asa = [sum(waits) / len(waits) for waits in batches.values()]
    theory = erlang_c_staffing(agents, per_hour / 3600, aht, within)
    for observed, expected in ((sl, theory.service_level), (asa, theory.asa_seconds)):
        error = statistics.stdev(observed) / math.sqrt(len(observed))
        assert abs(statistics.mean(observed) - expected) <= 4.5 * error, (statistics.mean(observed), expected, error)
    # the driver's own figures are those of the ground truth
    waits = [r.bridged_at - r.arrived_at for r in calls]
    assert report.service_level == pytest.approx(sum(w <= within for w in waits) / len(waits), abs=0.005)
    assert report.asa_seconds == pytest.approx(statistics.mean(waits), abs=0.05)
    assert report.occupancy == pytest.approx(theory.occupancy, abs=0.05)


SCENARIO = """
nodes: [{name: sim1, port: 0}]
seed: 7
duration: 1800
park_variables: {park_timeout: "-1"}
inbound:
  arrivals: {per_hour: 240}
  numbers: ["+1555XXXXXXX"]
  dnis: "+12125550100"
  kinds:
    caller: {patience: {exponential: {mean: 90}}, talk: 60}
agents:
  - ids: "2001-2003"
    ring: {uniform: {min: 1, max: 3}}
    talk: {exponential: {mean: 60}}
    hangup_share: 1
"""


def staffing(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "engine", "staffing", *args, "--json"], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.timeout(150)
def test_what_if_a_recorded_scenario_had_more_agents(tmp_path):
    path = tmp_path / "centre.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    as_planned = staffing("--simulate", "--scenario", str(path), "--answer-within", "20")
    doubled = staffing("--simulate", "--scenario", str(path), "--agents", "6", "--answer-within", "20")
    assert as_planned["model"] == "simulation" and as_planned["agents"] == 3 and doubled["agents"] == 6
    # 4 Erlangs on 3 agents cannot keep up: callers abandon; on 6 agents nearly all are answered
    assert as_planned["abandon_rate"] > 0.2 > doubled["abandon_rate"]
    assert doubled["service_level"] > as_planned["service_level"] + 0.2
    assert doubled["asa_seconds"] < as_planned["asa_seconds"]
    # the same seed places the same calls whatever the staffing
    assert doubled["offered"] == as_planned["offered"]


TWO_QUEUES_ACD = """
queues:
  sales: {priority: 5, service_level: {seconds: 20}}
  support: {skills: {tech: 5}, service_level: {seconds: 60}}
agents:
  "3001": {skills: {tech: 8}}
  "3002": {skills: {tech: 6}}
  "3003": {skills: {tech: 2}}
tiers:
  - {agent: "3001", queue: sales}
  - {agent: "3001", queue: support}
  - {agent: "3002", queue: sales}
  - {agent: "3002", queue: support}
  - {agent: "3003", queue: sales}
  - {agent: "3003", queue: support}
"""

TWO_QUEUES_SCENARIO = """
nodes: [{name: sim1, port: 0}]
seed: 11
duration: 7200
park_variables: {park_timeout: "-1"}
inbound:
  arrivals: {per_hour: 150}
  numbers: ["+1555XXXXXXX"]
  dnis: {"100": 1, "200": 1}
  kinds:
    caller: {patience: {exponential: {mean: 600}}}
agents:
  - ids: "3001-3003"
    ring: 1
    talk: {exponential: {mean: 60}}
    hangup_share: 1
"""


@pytest.mark.timeout(60)
def test_several_queues_with_skills_and_priorities_where_the_formulas_stop(tmp_path):
    (tmp_path / "acd.yaml").write_text(TWO_QUEUES_ACD, encoding="utf-8")
    (tmp_path / "centre.yaml").write_text(TWO_QUEUES_SCENARIO, encoding="utf-8")
    truth = TruthRecorder()
    report = run(load_scenario(tmp_path / "centre.yaml"), answer_within=20, acd=load_acd(tmp_path / "acd.yaml"),
                 routes={"100": "sales", "200": "support"}, recorder=truth, start=START)
    sales, support = report.queues["sales"], report.queues["support"]
    assert sales.offered + support.offered == report.offered > 200
    # sales outranks support on the agents they share; support calls reach only its tech agents
    assert sales.asa_seconds < support.asa_seconds / 2
    support_agents = {r.agent for r in truth.finished if r.destination == "200" and r.agent}
    assert support_agents == {"3001", "3002"}
    assert any(r.agent == "3003" for r in truth.finished if r.destination == "100")
