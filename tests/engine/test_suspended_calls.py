"""A talking call holds no greenlet (issue #11), end to end over TCP against the simulated
FreeSWITCH: while the caller talks to an agent no greenlet of the engine runs that call, and
everything that happens to the conversation still does what it did when a greenlet waited on
it: the agent's hangup (wrap-up, the flow going on with what it collected), the caller's
hangup (the agent freed once its own leg is gone), a transfer, an ESL cut, a graceful shutdown
handing the call over to the next engine, which adopts it and lets it go on talking suspended."""
from __future__ import annotations

import gc
from dataclasses import replace

import gevent
import pytest

from engine.acd.model import AgentState
from tests.acd.test_service_e2e import QueueLog, acd_file
from tests.acd.test_transfer_e2e import NOBODY, SCENARIO, agent_channel
from tests.simulator.conftest import ScriptedEndpoint
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


# The caller keys in an account, talks to sales, then answers a survey that reads the account back.
FLOW = """
flow: intake
entries: ["hotline"]
default: true
start: account
nodes:
  account: {type: collect, prompt: silence_stream://100, into: account, max_digits: 4, timeout: 2, next: sales,
            on_failure: sales}
  sales: {type: queue, queue: sales, max_wait: 30, on_answered: readback, on_timeout: bye, on_no_agents: bye}
  readback: {type: play, prompt: [{say: "${account}", as: digits}], next: survey}
  survey:
    type: menu
    prompt: ivr/rate_us.wav
    options: {"5": bye}
    tries: 1
    timeout: 2
    on_failure: bye
  bye: {type: hangup, prompt: "ivr/goodbye.wav"}
"""

READBACK = "42"  # what the caller hears said: the account, from the Session kept across the talk
SALES = acd_file({"sales": {"wrap_up_time": 1}}, {"1001": {}, "1002": {}}, [("1001", "sales", 1), ("1002", "sales", 2)])


def greenlets_running(owner) -> list[gevent.Greenlet]:
    """The live greenlets of the engine that run a method of `owner` (a call's handler, or what is
    left of it; the registry's timers)."""
    return [g for g in gc.get_objects() if isinstance(g, gevent.Greenlet) and not g.dead
            and getattr(g._run, "__self__", None) is owner]


def talking_without_greenlet(engine, agent: str) -> bool:
    calls = engine.registry.calls
    return (len(calls) == 1 and engine.acd.router.agents[agent].state is AgentState.IN_A_QUEUE_CALL
            and not greenlets_running(calls[0]))


def start(centre_factory, engine_factory, tmp_path, *, caller_talk: float = 60.0):
    """The centre with scripted softphones for 1001 and 1002 (they hang up when the test says),
    the engine on it with FLOW, the queue log captured."""
    centre = centre_factory(SCENARIO.format(digits='["42#", "5"]', talk=caller_talk, agents=NOBODY))
    phones = {agent: ScriptedEndpoint(f"agent:{agent}") for agent in ("1001", "1002")}
    for agent, phone in phones.items():
        centre.switch.register_user(agent, phone)
    engine = engine_factory(engine_config(centre, tmp_path))
    log = QueueLog()
    engine.journal.sink = log
    return centre, engine, log


def engine_config(centre, tmp_path):
    dialplans = tmp_path / "suspend-dialplans"
    dialplans.mkdir(exist_ok=True)
    (dialplans / "intake.yaml").write_text(FLOW)
    return replace(centre.config(tmp_path, acd=SALES, ring_seconds=2), dialplans=dialplans)


def test_the_agent_hanging_up_wakes_the_call_into_wrap_up_and_the_rest_of_its_flow(
        centre_factory, engine_factory, tmp_path):
    centre, engine, log = start(centre_factory, engine_factory, tmp_path)
    wait_until(lambda: talking_without_greenlet(engine, "1001"), what="the call to talk with no greenlet")
    call = engine.registry.calls[0]
    assert call.caller.variables["callrouter_stage"] == "talking"

    agent_channel(centre, "1001").hangup()
    wait_until(lambda: centre.truth.count == 1, what="the caller to go through the survey and be hung up")
    heard = [h.detail for h in centre.truth.finished[0].heard]
    assert heard[-3:] == [READBACK, "ivr/rate_us.wav", "ivr/goodbye.wav"], \
        "the flow went on after the talk, with the account collected before it"
    assert centre.truth.finished[0].pressed[-1] == "5"
    wait_until(lambda: engine.stats.finished_calls == 1, what="the engine to close the call")
    assert engine.stats.outcomes == {"answered": 1}
    assert [e.event for e in log.events if e.call_uuid == call.uuid and e.event in (
        "CONNECT", "COMPLETE_AGENT", "COMPLETE_CALLER")] == ["CONNECT", "COMPLETE_AGENT"]
    wait_until(lambda: log.of("WRAP_UP", agent="1001"), what="the agent's wrap-up to end")
    assert engine.acd.router.agents["1001"].calls_answered == 1


def test_the_caller_hanging_up_wakes_the_call_and_frees_the_agent_once_its_leg_is_gone(
        centre_factory, engine_factory, tmp_path):
    centre, engine, log = start(centre_factory, engine_factory, tmp_path, caller_talk=1.5)
    wait_until(lambda: talking_without_greenlet(engine, "1001"), what="the call to talk with no greenlet")
    call = engine.registry.calls[0]
    agent_leg = agent_channel(centre, "1001")

    wait_until(lambda: engine.stats.finished_calls == 1, what="the caller's hangup to end the call")
    assert not agent_leg.is_up, "the agent's leg went with the bridge before the agent was freed"
    assert [e.event for e in log.events if e.call_uuid == call.uuid and e.event.startswith("COMPLETE")] == [
        "COMPLETE_CALLER"]
    assert engine.acd.router.agents["1001"].state in (AgentState.WRAP_UP, AgentState.WAITING)
    assert not greenlets_running(call)


def test_a_transfer_wakes_the_call_and_the_next_conversation_suspends_it_again(
        centre_factory, engine_factory, tmp_path):
    centre, engine, log = start(centre_factory, engine_factory, tmp_path)
    wait_until(lambda: talking_without_greenlet(engine, "1001"), what="the call to talk with no greenlet")
    call = engine.registry.calls[0]

    engine.acd.transfer(call.uuid, "agent:1002", attended=True)
    wait_until(lambda: engine.acd.call_view(call.uuid)["transfer"] == {"to": "agent:1002", "state": "consulting"},
               what="the consultation")
    assert greenlets_running(call), "an attended transfer under way keeps its greenlet"
    engine.acd.transfer_control(call.uuid, "complete")
    wait_until(lambda: talking_without_greenlet(engine, "1002"), what="the second conversation to suspend")
    assert centre.switch.channels[call.uuid].bridged_to is agent_channel(centre, "1002")

    agent_channel(centre, "1002").hangup()
    wait_until(lambda: engine.stats.finished_calls == 1, what="the call to end after the survey")
    assert [(e.event, e.agent) for e in log.events if e.call_uuid == call.uuid and e.event in (
        "CONNECT", "TRANSFER", "COMPLETE_AGENT")] == [
        ("CONNECT", "1001"), ("TRANSFER", "1001"), ("CONNECT", "1002"), ("COMPLETE_AGENT", "1002")]
    assert READBACK in [h.detail for h in centre.truth.finished[0].heard]


def test_an_esl_cut_wakes_the_call_which_suspends_again_once_the_node_is_back(
        centre_factory, engine_factory, tmp_path):
    centre, engine, log = start(centre_factory, engine_factory, tmp_path)
    wait_until(lambda: talking_without_greenlet(engine, "1001"), what="the call to talk with no greenlet")
    cut = list(centre.server.connections)
    for connection in cut:
        connection.close()
    wait_until(lambda: any(c not in cut for c in centre.server.connections) and engine.nodes[0].up,
               timeout=10, what="the engine to reconnect")
    wait_until(lambda: talking_without_greenlet(engine, "1001"), what="the resumed call to suspend again")

    agent_channel(centre, "1001").hangup()
    wait_until(lambda: engine.stats.finished_calls == 1, what="the call to end")
    assert engine.stats.offered == 1 and engine.stats.answered == 1
    assert len(log.of("COMPLETE_AGENT")) == 1


def test_a_graceful_shutdown_hands_a_suspended_call_over_and_the_next_engine_adopts_it(
        centre_factory, engine_factory, tmp_path):
    centre, first, _ = start(centre_factory, engine_factory, tmp_path)
    wait_until(lambda: talking_without_greenlet(first, "1001"), what="the call to talk with no greenlet")
    call_uuid = first.registry.calls[0].uuid

    first.stop(grace=0.2)
    assert first.stats.handed_over_calls == 1 and first.stats.finished_calls == 0
    assert not first.registry.calls
    assert centre.switch.channels[call_uuid].is_up, "the call was left up on the switch"
    assert not greenlets_running(first.registry), "a stopped engine left a node's write-off timer behind"

    second = engine_factory(engine_config(centre, tmp_path))
    log = second.journal.sink = QueueLog()
    wait_until(lambda: talking_without_greenlet(second, "1001"), what="the adopted call to talk with no greenlet")
    agent_channel(centre, "1001").hangup()
    wait_until(lambda: second.stats.finished_calls == 1, what="the adopting engine to close the call")
    assert second.registry.calls == [] and centre.truth.count == 1
    assert second.stats.outcomes == {"answered": 1}
    heard = [h.detail for h in centre.truth.finished[0].heard]
    assert heard[-3:] == [READBACK, "ivr/rate_us.wav", "ivr/goodbye.wav"], \
        "the adopting engine read the account keyed in before the handover from the channel's call data"
    wait_until(lambda: log.of("WRAP_UP"), what="the agent's wrap-up")
    assert [(e.event, e.agent) for e in log.events if e.call_uuid == call_uuid] == [
        ("COMPLETE_AGENT", "1001"), ("WRAP_UP", "1001")]
