"""Transfers of talking calls, end to end: the engine over TCP against the simulated FreeSWITCH.
Blind to an agent (and back to the queue when that agent does not answer), attended to an agent
completed and cancelled, to a flow; the call data the IVR collected read from the next agent's
channel on the switch; the queue log each step writes.

Agents that take part in an attended transfer are scripted softphones (they neither hang up when
their leg leaves a bridge nor on their own): the test decides when each hangs up."""
from __future__ import annotations

from dataclasses import replace

import pytest

from engine.acd.model import AgentState
from engine.esl import commands
from engine.ivr.ports import data_text
from tests.acd.test_service_e2e import QueueLog, acd_file
from tests.engine.conftest import centre_factory, engine_factory  # noqa: F401 - fixtures
from tests.simulator.conftest import ScriptedEndpoint
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
seed: 11
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "60"}}
inbound:
  arrivals:
    calls:
      - {{at: 0.2, kind: customer}}
  numbers: ["+15550100001"]
  names: ["Jane O'Hara"]
  dnis: "+18005550100"
  kinds:
    customer: {{digits: {digits}, think: 0.1, patience: 40, talk: {talk}}}
agents:
{agents}
"""
# The scenario needs an agent of its own: one no queue of the ACD uses.
NOBODY = '  - {ids: ["9999"], ring: 0.1, answer_probability: 0.0}'

# The caller keys in an account number, then waits in sales; `after` is where an agent may send it.
FLOWS = {
    "intake.yaml": """
flow: intake
entries: ["hotline"]
default: true
start: account
nodes:
  account:
    type: collect
    prompt: silence_stream://100
    into: account
    max_digits: 8
    timeout: 2
    next: sales
    on_failure: sales
  sales: {type: queue, queue: sales, max_wait: 30, on_answered: done, on_timeout: done, on_no_agents: done}
  done: {type: hangup}
""",
    "after.yaml": """
flow: after
entries: ["after"]
start: thanks
nodes:
  thanks: {type: play, prompt: "ivr/thanks_for_waiting.wav", next: bye}
  bye: {type: hangup}
""",
}


def start(centre_factory, engine_factory, tmp_path, agents: list[str], acd: dict, *, account: str = "4711#",
          scripted: tuple[str, ...] = (), **settings):
    """The centre with the population's agents and these scripted softphones, the engine on it with
    the intake flow, the queue log captured."""
    centre = centre_factory(SCENARIO.format(digits=f'["{account}"]', talk=60, agents="\n".join(agents or [NOBODY])))
    phones = {agent: ScriptedEndpoint(f"agent:{agent}") for agent in scripted}
    for agent, phone in phones.items():
        centre.switch.register_user(agent, phone)
    dialplans = tmp_path / "transfer-dialplans"
    dialplans.mkdir()
    for name, text in FLOWS.items():
        (dialplans / name).write_text(text)
    config = replace(centre.config(tmp_path, acd=acd, ring_seconds=2, **settings), dialplans=dialplans)
    engine = engine_factory(config)
    engine.acd.transfer_wait = 4.0
    engine.acd.flow_names = lambda: engine.flows.current.flows
    log = QueueLog()
    engine.journal.sink = log
    return centre, engine, log, phones


def agent_channel(centre, agent: str):
    """The switch's channel of the engine's leg to this agent (the last one rung), if up."""
    legs = [c for c in centre.switch.channels.values()
            if c.variables.get("callrouter_agent") == agent and c.is_up]
    return legs[-1] if legs else None


def talking(engine, agent: str) -> bool:
    return engine.acd.router.agents[agent].state is AgentState.IN_A_QUEUE_CALL


def caller_events(log, call_uuid: str) -> list[tuple[str, str, str, str]]:
    return [(e.event, e.queue, e.agent, e.target) for e in log.events if e.call_uuid == call_uuid and e.event in (
        "ENTER", "CONNECT", "TRANSFER", "COMPLETE_AGENT", "COMPLETE_CALLER", "RING_NO_ANSWER")]


TWO_QUEUES = acd_file({"sales": {}, "billing": {}}, {"1001": {}, "1002": {}},
                      [("1001", "sales", 1), ("1002", "billing", 1)])


def test_blind_to_an_agent_carries_the_callers_data_to_that_agents_leg(centre_factory, engine_factory, tmp_path):
    centre, engine, log, _ = start(centre_factory, engine_factory, tmp_path, [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}',
        '  - {ids: ["1002"], ring: 0.3, answer_probability: 1.0, talk: 30, hangup_share: 1.0}'],
        TWO_QUEUES)
    wait_until(lambda: talking(engine, "1001"), what="the first agent to talk")
    call = engine.registry.calls[0]
    first = agent_channel(centre, "1001")
    assert first.variables["callrouter_data_account"] == "4711", "the keyed-in account reached the first agent"

    done = engine.acd.transfer(call.uuid, "agent:1002")
    assert done == {"call": call.uuid, "to": "agent:1002", "attended": False, "agent": "1001"}

    wait_until(lambda: log.of("CONNECT", agent="1002"), what="the named agent to take the call")
    second = agent_channel(centre, "1002")
    assert second.variables["callrouter_data_account"] == "4711"
    assert second.variables["callrouter_queue"] == "sales", "reported under the caller's own queue"
    assert engine.acd.router.agents["1001"].state in (AgentState.WRAP_UP, AgentState.WAITING)
    assert caller_events(log, call.uuid) == [
        ("ENTER", "sales", "", ""), ("CONNECT", "sales", "1001", ""), ("TRANSFER", "sales", "1001", "agent:1002"),
        ("CONNECT", "sales", "1002", "")]
    shown = engine.acd.call_view(call.uuid)
    assert shown["agent"] == "1002" and shown["data"] == {"account": "4711"}
    assert not any(q["queue"].startswith("agent:") for q in engine.acd.queues_view())


def test_an_agent_who_does_not_answer_a_blind_transfer_sends_the_caller_back_to_its_queue(
        centre_factory, engine_factory, tmp_path):
    centre, engine, log, _ = start(centre_factory, engine_factory, tmp_path, [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 1.0, hangup_share: 1.0}',
        '  - {ids: ["1002"], ring: 0.1, answer_probability: 0.0}'],
        acd_file({"sales": {}}, {"1001": {}, "1002": {}}, [("1001", "sales", 1)]))
    wait_until(lambda: talking(engine, "1001"), what="the first agent to talk")
    call = engine.registry.calls[0]
    joined = float(call.caller.variables["callrouter_queue_joined"])
    engine.acd.transfer(call.uuid, "agent:1002")

    wait_until(lambda: len(log.of("CONNECT")) == 2, timeout=20, what="the caller back with the sales agent")
    assert caller_events(log, call.uuid)[:5] == [
        ("ENTER", "sales", "", ""), ("CONNECT", "sales", "1001", ""), ("TRANSFER", "sales", "1001", "agent:1002"),
        ("RING_NO_ANSWER", "sales", "1002", ""), ("CONNECT", "sales", "1001", "")]
    assert len(log.of("ENTER")) == 1, "back at its place, not a second arrival"
    assert float(call.caller.variables["callrouter_queue_joined"]) == joined


def test_attended_to_an_agent_consults_then_completes(centre_factory, engine_factory, tmp_path):
    centre, engine, log, phones = start(centre_factory, engine_factory, tmp_path, [], TWO_QUEUES,
                                        scripted=("1001", "1002"))
    wait_until(lambda: talking(engine, "1001"), what="the first agent to talk")
    call = engine.registry.calls[0]
    first = agent_channel(centre, "1001")
    caller = centre.switch.channels[call.uuid]
    with pytest.raises(ValueError, match="has not answered|no attended"):
        engine.acd.transfer_control(call.uuid, "complete")

    engine.acd.transfer(call.uuid, "agent:1002", attended=True)
    wait_until(lambda: agent_channel(centre, "1002") is not None and agent_channel(centre, "1002").bridged_to is first,
               what="the two agents to talk")
    assert caller.bridged_to is None and caller.is_up, "the caller holds, parked, while the agents consult"
    assert engine.acd.call_view(call.uuid)["transfer"] == {"to": "agent:1002", "state": "consulting"}
    with pytest.raises(ValueError, match="under way"):
        engine.acd.transfer(call.uuid, "queue:billing")

    engine.acd.transfer_control(call.uuid, "complete")
    second = agent_channel(centre, "1002")
    wait_until(lambda: caller.bridged_to is second, what="the caller bridged to the second agent")
    wait_until(lambda: not first.is_up, what="the first agent's leg released")
    wait_until(lambda: engine.acd.router.agents["1001"].state is not AgentState.IN_A_QUEUE_CALL,
               what="the first agent freed")
    assert talking(engine, "1002")
    second.hangup()
    wait_until(lambda: log.of("COMPLETE_AGENT"), what="the second agent to end the call")
    assert caller_events(log, call.uuid) == [
        ("ENTER", "sales", "", ""), ("CONNECT", "sales", "1001", ""), ("TRANSFER", "sales", "1001", "agent:1002"),
        ("CONNECT", "sales", "1002", ""), ("COMPLETE_AGENT", "sales", "1002", "")]
    wait_until(lambda: not engine.acd.router.agents["1002"].calls, what="the second agent's call counted as ended")
    assert engine.acd.router.agents["1002"].calls_answered == 1


def test_attended_cancelled_brings_the_caller_back_to_the_first_agent(centre_factory, engine_factory, tmp_path):
    centre, engine, log, phones = start(centre_factory, engine_factory, tmp_path, [], TWO_QUEUES,
                                        scripted=("1001", "1002"))
    wait_until(lambda: talking(engine, "1001"), what="the first agent to talk")
    call = engine.registry.calls[0]
    first = agent_channel(centre, "1001")
    caller = centre.switch.channels[call.uuid]
    engine.acd.transfer(call.uuid, "queue:billing", attended=True)
    wait_until(lambda: engine.acd.call_view(call.uuid)["transfer"] == {"to": "queue:billing", "state": "consulting"},
               what="the billing agent to answer the consultation")
    second = agent_channel(centre, "1002")
    wait_until(lambda: second.bridged_to is first, what="the agents to talk")

    engine.acd.transfer_control(call.uuid, "cancel")
    wait_until(lambda: caller.bridged_to is first, what="the caller back with the first agent")
    wait_until(lambda: not second.is_up, what="the consulted agent's leg released")
    assert engine.acd.call_view(call.uuid)["transfer"] is None
    wait_until(lambda: engine.acd.router.agents["1002"].state is AgentState.WAITING, what="the consulted agent free")
    assert talking(engine, "1001")
    assert not log.of("TRANSFER"), "a cancelled transfer is no transfer"


def test_attended_target_not_answering_returns_the_caller_to_the_first_agent(centre_factory, engine_factory,
                                                                             tmp_path):
    centre, engine, log, phones = start(centre_factory, engine_factory, tmp_path, [
        '  - {ids: ["1002"], ring: 0.1, answer_probability: 0.0}'], TWO_QUEUES, scripted=("1001",))
    wait_until(lambda: talking(engine, "1001"), what="the first agent to talk")
    call = engine.registry.calls[0]
    first = agent_channel(centre, "1001")
    engine.acd.transfer(call.uuid, "agent:1002", attended=True)
    wait_until(lambda: log.of("RING_NO_ANSWER", agent="1002"), timeout=10, what="the target to ring out")
    wait_until(lambda: engine.acd.call_view(call.uuid)["transfer"] is None, what="the transfer to give up")
    assert centre.switch.channels[call.uuid].bridged_to is first and talking(engine, "1001")


def test_blind_to_a_flow_runs_it_with_the_collected_data(centre_factory, engine_factory, tmp_path):
    centre, engine, log, _ = start(centre_factory, engine_factory, tmp_path, [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}'],
        acd_file({"sales": {}}, {"1001": {}}, [("1001", "sales", 1)]))
    wait_until(lambda: talking(engine, "1001"), what="the agent to talk")
    call = engine.registry.calls[0]
    with pytest.raises(ValueError, match="no flow"):
        engine.acd.transfer(call.uuid, "flow:nowhere")
    with pytest.raises(ValueError, match="blind"):
        engine.acd.transfer(call.uuid, "flow:after", attended=True)

    engine.acd.transfer(call.uuid, "flow:after")
    wait_until(lambda: centre.truth.count == 1, what="the caller to go through the flow and be hung up")
    record = centre.truth.finished[0]
    assert "ivr/thanks_for_waiting.wav" in [h.detail for h in record.heard]
    assert call.labels["flow"] == "after" and call.caller.variables["callrouter_data_account"] == "4711"
    assert caller_events(log, call.uuid)[-1] == ("TRANSFER", "sales", "1001", "flow:after")


@pytest.mark.parametrize("hostile", ["a}b{c", "${system(rm -rf /)}", "line\nbreak", "x:_:y", "quote' and \\"])
def test_data_from_lookups_is_made_safe_for_the_agents_dial_string(hostile):
    value = data_text(hostile)
    built = commands.originate("user/1001", {"origination_uuid": commands.new_uuid(), "callrouter_data_x": value})
    assert "${" not in value and "\n" not in built and built.count("{") == built.count("}")
