"""The Event Socket connection dropped under live calls (in the IVR, queued, talking): the engine
reconnects with backoff, resubscribes and reconciles, and the simulator's ground truth shows every
call lived to its normal end exactly once; a node that stays away has its calls written off as
lost (one CDR each, cause LOST_DURING_OUTAGE) while the other node carries on."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import pytest

from engine.config import FreeswitchNode, Secret
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

CALLS = 30
# Callers arrive every 0.15 s; six agents talk 2 s each: at any moment some callers hear the
# greeting, some wait in the queue and some talk, which is what the cut must not disturb.
SCENARIO = """
seed: 11
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "60"}}
inbound:
  arrivals:
    calls:
{calls}
  numbers: ["+1555010XXXX"]
  dnis: "+18005550100"
  kinds:
    sales: {{digits: "1", think: 0.1, patience: 90, talk: 90}}
agents:
  - ids: "1001-1006"
    ring: 0.2
    answer_probability: 1.0
    talk: 2.0
    hangup_share: 1.0
""".format(calls="\n".join(f"      - {{at: {0.2 + 0.15 * i:.2f}, kind: sales}}" for i in range(CALLS)))


def stages(engine) -> Counter:
    return Counter(c.caller.variables.get("callrouter_stage", "new") for c in engine.registry.calls)


@pytest.mark.parametrize("cuts", [1, 3])
def test_esl_cut_during_live_calls_drops_and_duplicates_nothing(centre_factory, engine_factory, tmp_path, cuts):
    centre = centre_factory(SCENARIO)
    engine = engine_factory(centre.config(tmp_path, greeting="silence_stream://700"))
    wait_until(lambda: {"ivr", "queue", "talking"} <= stages(engine).keys(), what="calls in every stage")
    for _ in range(cuts):
        before = list(centre.server.connections)
        assert before, "the engine is connected"
        for connection in before:
            connection.close()
        wait_until(lambda: not engine.nodes[0].up or any(c not in before for c in centre.server.connections),
                   what="the engine to notice the cut")
        wait_until(lambda: engine.nodes[0].up and any(c not in before for c in centre.server.connections),
                   what="the engine to reconnect")
    wait_until(lambda: centre.truth.count == CALLS, timeout=60, what="every call to end")
    wait_until(lambda: not engine.registry.calls, what="the engine to close every call")

    records = centre.truth.finished
    assert len({r.uuid for r in records}) == CALLS
    assert all(r.agent is not None and r.hung_up_by == "agent" for r in records), \
        [(r.uuid, r.agent, r.hung_up_by, r.hangup_cause) for r in records if r.hung_up_by != "agent"]
    assert all(r.pressed == ["1"] for r in records), "no caller was asked twice for the menu"
    agents_per_caller = [sum(1 for h in r.heard if h.kind == "playback" and "silence_stream://700" in h.detail)
                         for r in records]
    assert max(agents_per_caller) <= 1 + cuts, "a resumed call replays at most its current prompt"
    assert engine.stats.offered == CALLS, "no call picked up twice"
    assert engine.stats.answered == CALLS and engine.stats.finished_calls == CALLS
    assert engine.stats.outcomes.get("lost", 0) == 0
    # The subscription was restored: the reconnected engine still saw every call's hangup.
    assert engine.stats.hangup_causes == {"NORMAL_CLEARING": CALLS}


TWO_NODES = """
seed: 4
nodes: [{name: sim1, port: 0}, {name: sim2, port: 0}]
park_variables: {callrouter_entry: hotline, park_timeout: "120"}
inbound:
  arrivals:
    calls: [{at: 0.2, kind: a}, {at: 0.3, kind: a}, {at: 0.4, kind: a}, {at: 0.5, kind: a},
            {at: 0.6, kind: a}, {at: 0.7, kind: a}, {at: 0.8, kind: a}, {at: 0.9, kind: a},
            {at: 4.0, kind: a}, {at: 4.2, kind: a}, {at: 4.4, kind: a}, {at: 4.6, kind: a}]
  numbers: ["+1555010XXXX"]
  dnis: "+18005550100"
  kinds:
    a: {digits: "1", think: 0.1, patience: 100, talk: 100}
agents:
  - ids: "1001-1004"
    node: sim1
    ring: 0.2
    talk: 1.0
    hangup_share: 1.0
"""


class Records:
    """Where the engine's journal puts CDRs and queue events (the RecordWriter's place)."""

    def __init__(self) -> None:
        self.items: list = []

    def submit(self, record) -> None:
        self.items.append(record)


def test_a_node_that_stays_away_has_its_calls_written_off_while_the_other_carries_on(
        centre_factory, engine_factory, tmp_path):
    centre = centre_factory(TWO_NODES)
    sim1, sim2 = centre.nodes["sim1"], centre.nodes["sim2"]
    config = centre.config(tmp_path, greeting="silence_stream://3000")
    config = replace(config, freeswitch=(
        FreeswitchNode("sim1", "127.0.0.1", sim1.port, Secret("ClueCon")),
        FreeswitchNode("sim2", "127.0.0.1", sim2.port, Secret("ClueCon"))))
    engine = engine_factory(config)
    engine.registry.lost_after = 1.0
    records = Records()
    engine.journal.sink = records
    on_sim2 = lambda: [c for c in engine.registry.calls if c.caller.node == "sim2"]  # noqa: E731
    wait_until(lambda: len(engine.registry.calls) >= 8 and on_sim2(), what="calls on both nodes")
    stranded = {c.uuid for c in on_sim2()}
    left_at = time.time()
    sim2.server.stop()  # FreeSWITCH sim2 goes away for good (its channels stay up, unreachable)
    wait_until(lambda: not engine.nodes[1].up, what="the engine to see sim2 go")
    wait_until(lambda: not any(c.uuid in stranded for c in engine.registry.calls), timeout=30,
               what="sim2's calls written off")
    written_off = [r for r in records.items if getattr(r, "uuid", None) in stranded]
    assert {r.uuid for r in written_off} == stranded, "one CDR for each stranded caller"
    assert len(written_off) == len(stranded), "and only one"
    assert {r.hangup_cause for r in written_off} == {"LOST_DURING_OUTAGE"}
    assert engine.stats.hangup_causes["LOST_DURING_OUTAGE"] == len(stranded)

    # sim1 carries on: every call that arrived there, before and after sim2 left, reaches an agent.
    wait_until(lambda: len(centre.truth.finished) + len(sim2.switch.channels) == 12 and not sim1.switch.channels,
               timeout=60, what="every call on sim1 to end")
    on_sim1 = [r for r in centre.truth.finished if r.node == "sim1"]
    assert on_sim1 and all(r.agent and r.hung_up_by == "agent" for r in on_sim1), on_sim1
    assert any(r.arrived_at > left_at for r in on_sim1), "calls arriving after sim2 left were served on sim1"
    assert engine.nodes[0].up
