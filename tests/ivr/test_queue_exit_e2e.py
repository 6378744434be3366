"""A queued caller leaves on a key (the queue node's exit_keys) and asks for a callback that
keeps its place: the sample hotline flow run by the engine against the simulated FreeSWITCH over
TCP, the key sent as the far end would (uuid_recv_dtmf), asserted from the simulator's truth,
the queue log, the Router and the callback row in PostgreSQL."""
from __future__ import annotations

import pytest

from tests.ivr.test_flows_e2e import OPEN, Seen, rows, scenario
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

NUMBER = "+15550000077"


class QueueLog:
    """Stands in for the RecordWriter: the queue-log events exactly as the journal submits them."""

    def __init__(self) -> None:
        self.events = []

    def submit(self, record) -> None:
        if type(record).__name__ == "QueueEvent":
            self.events.append(record)


def test_queued_caller_presses_1_leaves_the_queue_and_keeps_its_place_for_a_callback(centre_factory, ivr_engine,
                                                                                    ivr_db):
    # "2" at the main menu (support), then "1" at the callback offer; the agents never answer.
    centre = centre_factory(scenario("hotline", [(0.3, "waits", NUMBER)],
                                     {"waits": 'digits: ["2", "1"], think: 0.1, patience: 60'}).replace(
        "answer_probability: 1.0", "answer_probability: 0.0"))
    seen = Seen()
    engine, store = ivr_engine(centre, OPEN, seen)
    queue_log = QueueLog()
    engine.journal.sink = queue_log
    wait_until(lambda: "main.support" in seen.path.get(NUMBER, []), timeout=20, what="the caller to queue")
    call = seen.calls[NUMBER]
    wait_until(lambda: call.uuid in engine.acd.router.members, what="the caller to join the queue")

    centre.switch.api(f"uuid_recv_dtmf {call.uuid} 1")

    wait_until(lambda: centre.truth.count == 1, timeout=20, what="the call to end")
    # The "2" pressed at the menu is also an exit key of the queue (voicemail): it did not count.
    assert seen.path[NUMBER][-3:] == ["main.support", "main.support_callback", "main.goodbye"]
    assert centre.truth.finished[0].pressed == ["2", "1"] and centre.truth.finished[0].agent is None
    assert call.uuid not in engine.acd.router.members
    assert not any(agent.offers or agent.calls for agent in engine.acd.router.agents.values())
    left = [e for e in queue_log.events if e.call_uuid == call.uuid and e.event in ("ENTER", "TIMEOUT", "CONNECT")]
    assert [(e.event, e.queue, e.reason) for e in left] == [("ENTER", "support", ""),
                                                            ("TIMEOUT", "support", "EXIT_WITH_KEY")]
    store.flush()
    [(queue, number, joined_at)] = rows(ivr_db, "SELECT queue, number, joined_at FROM callback_request "
                                                "WHERE call_uuid = %s", call.uuid)
    assert (queue, number) == ("support", NUMBER)
    queue_joined = float(seen.final(NUMBER, "callrouter_queue_joined"))
    assert joined_at.timestamp() == pytest.approx(queue_joined, abs=0.001), "the place in line, not the arrival"
    assert queue_joined > float(seen.final(NUMBER, "callrouter_joined")), "the flow ran before the caller queued"
