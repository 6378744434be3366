"""The ACD driving real calls: the engine over TCP against the simulated FreeSWITCH, asserted from
the simulator's truth, the queue log the journal writes, and the Router's view of the agents."""
from __future__ import annotations

import pytest

from engine.acd.model import AgentState, AgentStatus
from tests.engine.conftest import HOLD_MUSIC, centre_factory, engine_factory  # noqa: F401 - fixtures
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
seed: 5
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "60"}}
inbound:
  arrivals:
    calls:
{calls}
  numbers: ["+15550100001", "+15550100002", "+15550100003"]
  names: ["Jane O'Hara"]
  dnis: "+18005550100"
  kinds:
    sales: {{digits: "1", think: 0.1, patience: 40, talk: 60}}
    impatient: {{digits: "1", think: 0.1, patience: 1.5, talk: 60}}
agents:
{agents}
"""


def scenario(calls: list[tuple[float, str]], agents: list[str]) -> str:
    lines = "\n".join(f"      - {{at: {at}, kind: {kind}}}" for at, kind in calls)
    return SCENARIO.format(calls=lines, agents="\n".join(agents))


class QueueLog:
    """Stands in for the RecordWriter: the queue-log events exactly as the journal submits them."""

    def __init__(self) -> None:
        self.events = []

    def submit(self, record) -> None:
        if type(record).__name__ == "QueueEvent":
            self.events.append(record)

    def of(self, kind: str, **fields) -> list:
        return [e for e in self.events if e.event == kind and all(getattr(e, k) == v for k, v in fields.items())]


def start(centre, engine_factory, tmp_path, acd: dict, **settings):
    engine = engine_factory(centre.config(tmp_path, greeting="silence_stream://100", acd=acd, **settings))
    log = QueueLog()
    engine.journal.sink = log
    return engine, log


def acd_file(queues: dict, agents: dict, tiers: list[tuple[str, str, int]]) -> dict:
    return {"queues": {name: {"moh": HOLD_MUSIC, **q} for name, q in queues.items()},
            "agents": {a: {"status": "Available", **spec} for a, spec in agents.items()},
            "tiers": [{"agent": a, "queue": q, "position": p} for a, q, p in tiers]}


def test_agent_missing_calls_goes_on_break_and_the_next_agent_takes_the_caller(centre_factory, engine_factory,
                                                                               tmp_path):
    centre = centre_factory(scenario([(0.2, "sales")], [
        '  - {ids: ["1001"], ring: 0.2, answer_probability: 0.0}',
        '  - {ids: ["1002"], ring: 0.2, answer_probability: 1.0, talk: 0.5, hangup_share: 1.0}']))
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {"strategy": "top-down"}},
        {"1001": {"max_no_answer": 1}, "1002": {}},
        [("1001", "sales", 1), ("1002", "sales", 2)]), ring_seconds=1)
    wait_until(lambda: centre.truth.count == 1, what="the call to finish")
    assert centre.truth.finished[0].agent == "1002", "the caller reached the agent who answers"
    wait_until(lambda: log.of("COMPLETE_AGENT"), what="the end of the conversation in the queue log")
    kinds = [(e.event, e.agent) for e in log.events if e.call_uuid]
    assert kinds[:5] == [("ENTER", ""), ("RING_AGENT", "1001"), ("RING_NO_ANSWER", "1001"),
                         ("RING_AGENT", "1002"), ("CONNECT", "1002")]
    assert log.of("RING_NO_ANSWER")[0].reason == "NO_ANSWER"
    brk = log.of("STATUS", agent="1001")
    assert [(e.status, e.reason) for e in brk] == [("On Break", "no-answer")]
    agent = engine.acd.router.agents["1001"]
    assert agent.status is AgentStatus.ON_BREAK and agent.break_reason == "no-answer"


def test_no_agent_overflows_to_the_next_queue_and_a_caller_abandons(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales"), (0.3, "impatient")], [
        '  - {ids: ["1001"], ring: 0.2, answer_probability: 1.0, talk: 4, hangup_share: 1.0}']))
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {"overflow": "queue:general"}, "general": {}},
        {"1001": {}}, [("1001", "general", 1)]))
    wait_until(lambda: centre.truth.count == 2, timeout=30, what="both calls to finish")
    first, second = sorted(centre.truth.finished, key=lambda r: r.arrived_at)
    assert first.agent == "1001" and second.agent is None and second.hung_up_by == "caller"
    wait_until(lambda: log.of("ABANDON"), what="the abandon in the queue log")
    for record in (first, second):
        assert [e.queue for e in log.events if e.call_uuid == record.uuid and e.event in ("ENTER", "OVERFLOW")] == \
            ["sales", "sales", "general"], "nobody serves sales: both overflowed to general"
    abandon = log.of("ABANDON")[0]
    assert abandon.call_uuid == second.uuid and abandon.queue == "general" and abandon.position == 1
    assert log.of("OVERFLOW")[0].target == "queue:general"
    assert not engine.acd.router.members or all(m.queue == "general" for m in engine.acd.router.members.values())


def test_wrap_up_delays_the_agents_next_call(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales"), (0.3, "sales")], [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 0.5, hangup_share: 1.0}']))
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {"wrap_up_time": 2}}, {"1001": {}}, [("1001", "sales", 1)]))
    wait_until(lambda: len(log.of("CONNECT")) == 2, timeout=30, what="both calls to reach the agent")
    first_end = log.of("COMPLETE_AGENT")[0].time
    second_connect = log.of("CONNECT")[1].time
    assert (second_connect - first_end).total_seconds() >= 2.0, "the second call waited out the wrap-up"
    wait_until(lambda: log.of("WRAP_UP", agent="1001"), what="the wrap-up's end in the queue log")
    assert log.of("WRAP_UP")[0].wrap_up_seconds == pytest.approx(2.0, abs=0.2)


def test_callers_hear_the_queue_announcement_with_music_between(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "impatient")], [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0}']))
    centre.switch.default_file_seconds = 0.1
    start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {"max_wait_no_agent": 10, "announcements": {"every": 0.5, "sound": "ivr/your_position.wav"}}}, {"1001": {"status": "On Break"}},
        [("1001", "sales", 1)]))
    wait_until(lambda: centre.truth.count == 1, what="the caller to give up")
    heard = [h.detail for h in centre.truth.finished[0].heard]
    assert heard.count("ivr/your_position.wav") >= 1
    at = heard.index("ivr/your_position.wav")
    assert heard[at - 1] == HOLD_MUSIC and HOLD_MUSIC in heard[at + 1:], "music before and after the announcement"


def test_agent_leg_vanishing_while_the_engine_is_cut_off_frees_the_agent(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales")], [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}']))
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {}}, {"1001": {}}, [("1001", "sales", 1)]))
    router = engine.acd.router
    wait_until(lambda: router.agents["1001"].state is AgentState.IN_A_QUEUE_CALL, what="the bridge")
    call = engine.registry.calls[0]
    agent_leg = next(leg for leg in call.legs.values() if leg.role == "agent")
    cut = list(centre.server.connections)
    for connection in cut:
        connection.close()
    centre.switch.api(f"uuid_kill {agent_leg.uuid}")  # its hangup events go to nobody
    wait_until(lambda: any(c not in cut for c in centre.server.connections) and engine.nodes[0].up,
               timeout=10, what="the engine to reconnect")
    wait_until(lambda: router.agents["1001"].state in (AgentState.WAITING, AgentState.WRAP_UP), timeout=10,
               what="the Router to learn the agent's call is gone")
    assert router.agents["1001"].status is AgentStatus.AVAILABLE
    assert not router.agents["1001"].calls and not router.agents["1001"].offers


def test_agent_transfers_a_talking_call_blind_to_another_queue_and_the_next_agent_takes_it(
        centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales")], [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}',
        '  - {ids: ["1002"], ring: 0.1, answer_probability: 1.0, talk: 0.5, hangup_share: 1.0}']))
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {}, "billing": {}}, {"1001": {}, "1002": {}}, [("1001", "sales", 1), ("1002", "billing", 1)]))
    router = engine.acd.router
    wait_until(lambda: router.agents["1001"].state is AgentState.IN_A_QUEUE_CALL, what="the first agent to talk")
    call = engine.registry.calls[0]
    with pytest.raises(ValueError):
        engine.acd.transfer(call.uuid, "queue:nowhere")

    assert engine.acd.transfer(call.uuid, "queue:billing")["agent"] == "1001"

    wait_until(lambda: log.of("COMPLETE_AGENT"), what="the second agent to finish the call")
    kinds = [(e.event, e.queue, e.agent) for e in log.events if e.call_uuid == call.uuid and e.event in (
        "ENTER", "CONNECT", "TRANSFER", "COMPLETE_AGENT", "COMPLETE_CALLER")]
    assert kinds == [("ENTER", "sales", ""), ("CONNECT", "sales", "1001"), ("TRANSFER", "sales", "1001"),
                     ("ENTER", "billing", ""), ("CONNECT", "billing", "1002"), ("COMPLETE_AGENT", "billing", "1002")]
    transfer = log.of("TRANSFER")[0]
    assert transfer.target == "queue:billing" and transfer.talk_seconds > 0
    assert router.agents["1001"].state in (AgentState.WRAP_UP, AgentState.WAITING)


def test_the_caller_channels_variables_ride_with_the_park_and_the_queue_in_one_round_trip_each(
        centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales")], [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 0.3, hangup_share: 1.0}']))
    sent: list[str] = []
    switch_api = centre.switch.api
    centre.switch.api = lambda line: sent.append(line) or switch_api(line)  # every api line the engine sent
    engine, log = start(centre, engine_factory, tmp_path, acd_file(
        {"sales": {}}, {"1001": {}}, [("1001", "sales", 1)]))
    wait_until(lambda: centre.truth.count == 1, what="the call to finish")
    assert centre.truth.finished[0].agent == "1001"
    caller = centre.truth.finished[0].uuid
    on_caller = [line for line in sent if line.split(" ")[:2] in (["uuid_setvar_multi", caller],
                                                                   ["uuid_park", caller])]
    park = on_caller.index(f"uuid_park {caller}")
    taking = on_caller[park - 1]
    assert "park_timeout=" in taking and "callrouter_stage=ivr" in taking, "the stage rides with the park timer"
    setvars = [line for line in on_caller if line.startswith("uuid_setvar_multi")]
    queued = [line for line in setvars if "callrouter_stage=queue" in line]
    assert len(queued) == 1 and "park_after_bridge=true" in queued[0]
    assert [line for line in setvars if "park_after_bridge" in line] == queued, "not set again on its own"
