"""The engine SIGKILLed with calls in the IVR, waiting in the queue and talking, then restarted:
`callrouter run` as a separate process against a simulated node over TCP, with a PostgreSQL of
its own. The restarted engine adopts every call still up, serves the callers who were waiting in
the order they ORIGINALLY joined (read from the queue log) even though an agent freed during the
outage is ready before all of them have rejoined, and agents keep their status (On Break with its
reason, Available)."""
from __future__ import annotations

import re
import time

import psycopg
import pytest

from tests.ha.harness import AgentPhones, wait_until
from tests.reliability.harness import STRANDED, Centre, EngineProcess
from tests.postgres import OwnServer

pytestmark = pytest.mark.timeout(150)

SERVING = ["1001", "1003", "1004"]
ON_BREAK = "1002"
TALK = 8.0  # long enough for every talking call to outlive the kill and the restart


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    yield server
    server.server.cleanup()


def saved_status(dsn: str, agent: str) -> tuple[str, str] | None:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT status, reason FROM acd_agent_status WHERE agent = %s", (agent,)).fetchone()


def first_rings(dsn: str, calls: list[str]) -> list[str]:
    """The calls in the order the queue log says an agent was first rung for each."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT call_uuid FROM queue_log WHERE event = 'RING_AGENT' AND call_uuid = ANY(%s)"
                            " GROUP BY call_uuid ORDER BY min(time)", (calls,)).fetchall()
    return [uuid for (uuid,) in rows]


def cdr_counts(dsn: str, calls: list[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT uuid, count(*) FROM cdr WHERE uuid = ANY(%s) GROUP BY uuid",
                                 (calls,)).fetchall())


def test_a_killed_engine_restarted_adopts_every_call_keeps_queue_order_and_agent_status(tmp_path, pg):
    centre = Centre(tmp_path, agents="1001-1004", talk=TALK)
    centre.start()
    phones = AgentPhones(centre)
    engine = EngineProcess(tmp_path, centre, pg.dsn, greeting_ms=1000, agents=[*SERVING, ON_BREAK])
    try:
        engine.start()
        assert engine.set_status(ON_BREAK, "On Break", "lunch")["status"] == "On Break"
        wait_until(lambda: saved_status(pg.dsn, ON_BREAK) == ("On Break", "lunch"), 10, "the break stored")

        talking = [centre.place() for _ in SERVING]
        waiting = []
        for _ in range(4):
            time.sleep(0.2)  # distinct join times; their (random) Unique-IDs say nothing of that order
            waiting.append(centre.place())
        wait_until(lambda: engine.stages().get("talking") == 3 and engine.stages().get("queue") == 4, 20,
                   "three callers talking and four waiting")
        in_ivr = [centre.place() for _ in range(2)]
        wait_until(lambda: engine.stages().get("ivr") == 2, 10, "two callers in the IVR")
        channels = centre.node.switch.channels
        joined = {uuid: float(channels[uuid].variables["callrouter_queue_joined"]) for uuid in waiting}
        callers = [*talking, *waiting, *in_ivr]

        engine.kill()
        killed_at = time.time()
        assert all(uuid in channels for uuid in callers), "every call outlived the engine"
        # One conversation ends while no engine runs: its agent is free the moment the engine is back,
        # before every waiting caller has rejoined its queue.
        next(ch for ch in channels.values() if ch.variables.get("callrouter_parent") == talking[0]).hangup()
        engine.start()
        agents = engine.agents()
        assert (agents[ON_BREAK]["status"], agents[ON_BREAK]["reason"]) == ("On Break", "lunch")
        assert all(agents[a]["status"] == "Available" for a in SERVING), agents

        wait_until(lambda: len(centre.inbound()) == len(callers), 90, "every call to end")
        time.sleep(0.3)  # the last CDRs' flush_interval
        agents_after = engine.agents()
        assert engine.terminate() == 0, engine.output()[-3000:]
    finally:
        centre.stop()
        engine.ensure_dead()

    restart_log = engine.output().split("connecting to FreeSWITCH")[-1]
    adopted = set(re.findall(r"adopting call ([0-9a-f-]{36})", restart_log))
    assert adopted == set(callers), "the restarted engine adopted every call still up, and only those"

    records = {r.uuid: r for r in centre.inbound()}
    assert all(records[uuid].hangup_cause != STRANDED for uuid in callers), "a call was left to park_timeout"
    assert all(records[uuid].agent in SERVING for uuid in callers), \
        [(r.uuid, r.agent, r.hung_up_by, r.hangup_cause) for r in records.values()]
    assert all(records[u].bridged_at < killed_at and records[u].hung_up_by == "agent" for u in talking[1:]), \
        "the conversations in progress went on through the restart to their normal end"
    assert not phones.second_calls, "an agent talking through the restart was offered another call"

    assert first_rings(pg.dsn, waiting) == sorted(waiting, key=joined.__getitem__), \
        "waiting callers are served in the order they originally joined"
    assert set(first_rings(pg.dsn, [*waiting, *in_ivr])[-2:]) == set(in_ivr), \
        "callers still in the IVR at the kill joined behind those waiting"
    assert cdr_counts(pg.dsn, callers) == dict.fromkeys(callers, 1), "every caller has its CDR"
    assert agents_after[ON_BREAK]["status"] == "On Break" and agents_after[ON_BREAK]["calls_answered"] == 0
