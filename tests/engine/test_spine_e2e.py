"""The spine end to end: the engine over TCP against the simulated FreeSWITCH, asserted from the
simulator's ground truth (what callers and agents really lived) and the engine's own totals."""
from __future__ import annotations

import gevent
import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

SCENARIO = """
seed: 3
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "30"}}
inbound:
  arrivals:
    calls:
{calls}
  numbers: ["+15550100001"]
  names: ["Jane O'Hara"]
  dnis: "+18005550100"
  kinds:
    sales: {{digits: "1", think: 0.2, patience: 30, talk: 60}}
    hangs_up_early: {{digits: "1", think: 0.2, patience: 0.3, talk: 60}}
    silent: {{digits: none, patience: 30, talk: 60}}
agents:
  - ids: {agents}
    ring: 0.3
    answer_probability: 1.0
    talk: {talk}
    hangup_share: 1.0
"""


def scenario(calls: list[tuple[float, str]], agents: str = '["1001"]', talk: float = 1.0) -> str:
    lines = "\n".join(f"      - {{at: {at}, kind: {kind}}}" for at, kind in calls)
    return SCENARIO.format(calls=lines, agents=agents, talk=talk)


def test_parked_call_is_answered_prompted_collects_digits_and_is_bridged(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.3, "sales")]))
    engine = engine_factory(centre.config(tmp_path))
    wait_until(lambda: centre.truth.count == 1, what="the call to finish")
    record = centre.truth.finished[0]
    assert record.answered_at is not None, "the engine answered the caller"
    heard = [h.detail for h in record.heard]
    assert heard[0] == "tone_stream://%(300,0,440)", "the greeting was the first thing heard"
    assert record.pressed == ["1"]
    assert record.agent == "1001" and record.bridged_at is not None
    assert record.hung_up_by == "agent"
    wait_until(lambda: engine.stats.finished_calls == 1, what="the engine to close the call")
    assert engine.stats.summary()["routed_per_queue"] == {"sales": 1}
    assert engine.stats.answered == 1 and engine.stats.abandoned == 0


def test_caller_hanging_up_during_a_prompt_releases_the_wait_at_once(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "hangs_up_early")]))
    engine = engine_factory(centre.config(tmp_path, greeting="silence_stream://60000"))
    wait_until(lambda: centre.truth.count == 1, what="the caller to hang up")
    # The engine was waiting on a 60 s playback: the hangup must end that wait, not its timeout.
    wait_until(lambda: engine.stats.finished_calls == 1, timeout=5, what="the engine to let go of the call")
    assert engine.stats.outcomes == {"ended_in_ivr": 1}
    assert not engine.registry.calls


def test_esl_cut_mid_call_reconnects_and_keeps_the_call(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales")], talk=4.0))
    engine = engine_factory(centre.config(tmp_path))
    wait_until(lambda: any(r for r in engine.registry.calls
                           if r.caller.variables.get("callrouter_stage") == "talking"), what="the bridge")
    cut = list(centre.server.connections)
    for connection in cut:
        connection.close()
    wait_until(lambda: any(c not in cut for c in centre.server.connections) and engine.nodes[0].up,
               timeout=10, what="the engine to reconnect")
    wait_until(lambda: centre.truth.count == 1, what="the call to finish normally")
    record = centre.truth.finished[0]
    assert record.agent == "1001" and record.hung_up_by == "agent"
    wait_until(lambda: engine.stats.finished_calls == 1, what="the engine to close the call")
    assert engine.stats.offered == 1, "the call was not picked up twice"
    assert engine.stats.answered == 1


def test_restarted_engine_adopts_a_call_in_progress(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales")], talk=5.0))
    first = engine_factory(centre.config(tmp_path))
    wait_until(lambda: any(c.caller.variables.get("callrouter_stage") == "talking" for c in first.registry.calls),
               what="the bridge")
    # The first engine dies without touching the calls (as a SIGKILL would leave them).
    for node in first.nodes:
        node.stop()
    for call in first.registry.calls:
        call.kill()
    second = engine_factory(centre.config(tmp_path))
    wait_until(lambda: len(second.registry.calls) == 1, what="the adoption")
    adopted = second.registry.calls[0]
    assert adopted.adopted and adopted.caller.variables["callrouter_stage"] == "talking"
    wait_until(lambda: centre.truth.count == 1, what="the call to finish")
    wait_until(lambda: second.stats.finished_calls == 1, what="the new engine to close the call")
    assert centre.truth.finished[0].agent == "1001"


def test_callers_queue_first_come_first_served_for_one_agent(centre_factory, engine_factory, tmp_path):
    centre = centre_factory(scenario([(0.2, "sales"), (0.4, "sales"), (0.6, "sales")], talk=0.5))
    engine = engine_factory(centre.config(tmp_path))
    wait_until(lambda: centre.truth.count == 3, timeout=40, what="three calls")
    records = sorted(centre.truth.finished, key=lambda r: r.arrived_at)
    bridged = [r.bridged_at for r in records]
    assert all(b is not None for b in bridged)
    assert bridged == sorted(bridged), "the agent took the callers in the order they arrived"
    gevent.sleep(0.2)
    assert engine.stats.answered == 3


def test_engine_rearms_the_dialplans_short_park_timer(centre_factory, engine_factory, tmp_path):
    # The dialplan's safety net is 1 s; the call takes several: the engine's own bound must apply.
    centre = centre_factory(scenario([(0.2, "sales")], talk=1.5).replace('park_timeout: "30"', 'park_timeout: "1"'))
    engine_factory(centre.config(tmp_path, greeting="silence_stream://2500"))
    wait_until(lambda: centre.truth.count == 1, what="the call to finish")
    record = centre.truth.finished[0]
    assert record.hangup_cause == "NORMAL_CLEARING" and record.agent == "1001", record


def test_without_an_engine_the_dialplans_park_timer_ends_the_call(centre_factory, tmp_path):
    centre = centre_factory(scenario([(0.1, "sales")]).replace('park_timeout: "30"', 'park_timeout: "1"'))
    wait_until(lambda: centre.truth.count == 1, timeout=10, what="the park timer")
    record = centre.truth.finished[0]
    assert record.hung_up_by == "switch" and record.answered_at is None
