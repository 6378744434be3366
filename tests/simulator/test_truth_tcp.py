"""Over TCP, as the engine will see it: an ESL client (greenswitch) takes a parked call of the
simulated population, answers it and bridges it to a registered simulated agent; the truth
file, read while the simulation runs, says exactly that."""
from __future__ import annotations

import json
from pathlib import Path

import gevent
import pytest
from gevent.queue import Queue
from greenswitch.esl import InboundESL

from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from engine.simulator.truth import TruthRecorder

pytestmark = pytest.mark.timeout(30)

SCENARIO = """
nodes: [{name: sim1, port: 0, password: s3cret}]
park_variables: {park_timeout: "20", hangup_after_bridge: "true"}
inbound:
  arrivals:
    calls: [{at: 0.2, number: "+15551230001", kind: patient}, {at: 0.4, number: "+15551230002", kind: quick}]
  numbers: ["+1555XXXXXXX"]
  dnis: "+12125550100"
  kinds:
    patient: {patience: 15}
    quick: {patience: 0.8}
agents:
  - {ids: "1001", ring: 0.2, talk: 0.6, hangup_share: 1}
"""


def read_truth(path: Path, count: int) -> list[dict]:
    """The first `count` lines of the truth file, waiting for them while the simulation runs."""
    with gevent.Timeout(10):
        while True:
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) >= count:
                return [json.loads(line) for line in lines]
            gevent.sleep(0.05)


def test_engine_bridges_a_parked_call_to_an_agent_and_truth_shows_it(tmp_path: Path) -> None:
    scenario_file = tmp_path / "scenario.yaml"
    scenario_file.write_text(SCENARIO, encoding="utf-8")
    truth_file = tmp_path / "truth.jsonl"
    with truth_file.open("w", encoding="utf-8") as sink:
        sim = Simulation(load_scenario(scenario_file), recorder=TruthRecorder(sink), seed=3)
        sim.start()
        esl = InboundESL("127.0.0.1", sim.nodes["sim1"].port, "s3cret")
        try:
            esl.connect()
            parked: Queue = Queue()
            esl.register_handle("CHANNEL_PARK", lambda event: parked.put(event.headers))
            assert esl.send("event plain CHANNEL_PARK").data.startswith("+OK")
            first = parked.get(timeout=5)
            assert first["Caller-Caller-ID-Number"] == "+15551230001"
            uuid = first["Unique-ID"]
            assert esl.send(f"api uuid_answer {uuid}").data.startswith("+OK")
            reply = esl.send(f"sendmsg {uuid}\ncall-command: execute\nexecute-app-name: bridge\n"
                             "execute-app-arg: user/1001")
            assert reply.data.startswith("+OK")
            # nobody takes the second caller: it gives up after its patience
            records = {r["caller"]: r for r in read_truth(truth_file, 2)}
        finally:
            esl.stop()
            sim.stop()
    bridged, abandoned = records["+15551230001"], records["+15551230002"]
    assert bridged["uuid"] == uuid
    assert bridged["agent"] == "1001"
    assert bridged["arrived_at"] <= bridged["answered_at"] <= bridged["bridged_at"] < bridged["hangup_at"]
    assert (bridged["hung_up_by"], bridged["hangup_cause"]) == ("agent", "NORMAL_CLEARING")
    assert abandoned["agent"] is None and abandoned["answered_at"] is None
    assert (abandoned["hung_up_by"], abandoned["hangup_cause"]) == ("caller", "ORIGINATOR_CANCEL")
