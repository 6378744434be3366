"""CDRs and the queue log end to end: traffic through the engine against the simulator over TCP,
PostgreSQL (a real server of the test's own) stopped and started in the middle, and the engine
restarted once; then every leg has exactly one CDR, every queue event is there once, and the
report's KPIs equal what the simulator's ground truth says happened."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

import gevent
import psycopg
import pytest

from engine.app import Engine
from engine.cdr.reports import Period, ReportSettings, queue_kpis
from engine.cdr.writer import WriterSettings
from engine.config import Secret
from engine.db import migrate
from tests.engine.conftest import centre_factory  # noqa: F401 - a fixture
from tests.postgres import OwnServer
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

QUEUE_OF_KIND = {"sales": "sales", "support": "support", "quitter": "sales"}
# Two agents talk 2.5 s each; a quitter arrives when both are busy with callers ahead of it and
# gives up 1.5 s after arriving (about 0.8 s into its wait): an abandon.
CALLS = [(0.2 + 0.6 * i, kind) for i, kind in enumerate(
    ["sales", "support", "quitter", "sales", "sales", "support", "quitter", "sales", "support", "sales",
     "quitter", "support", "sales", "support"])]

SCENARIO = """
seed: 5
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "30"}}
inbound:
  arrivals:
    calls:
{calls}
  numbers: ["+1555010XXXX"]
  dnis: "+18005550100"
  kinds:
    sales: {{digits: "1", think: 0.1, patience: 60, talk: 60}}
    support: {{digits: "2", think: 0.1, patience: 60, talk: 60}}
    quitter: {{digits: "1", think: 0.1, patience: 1.5, talk: 60}}
agents:
  - ids: ["1001", "1002"]
    ring: 0.2
    answer_probability: 1.0
    talk: 2.5
    hangup_share: 1.0
""".format(calls="\n".join(f"      - {{at: {at:.1f}, kind: {kind}}}" for at, kind in CALLS))

FAST_WRITER = WriterSettings(batch_size=100, flush_interval=0.05, fsync_interval=0.1, connect_timeout=1.0,
                             write_timeout=1.0, retry_initial=0.1, retry_max=0.3)


@pytest.fixture
def pg(tmp_path):
    own = OwnServer(tmp_path / "pg")
    with psycopg.connect(own.dsn, autocommit=True) as conn:
        migrate(conn)
    yield own
    own.server.cleanup()


def test_every_leg_one_cdr_every_queue_event_once_and_kpis_match_the_truth(centre_factory, pg, tmp_path):
    centre = centre_factory(SCENARIO)
    config = replace(centre.config(tmp_path), database_dsn=Secret(pg.dsn), cdr=FAST_WRITER)
    started = dt.datetime.now(dt.timezone.utc)

    def engine() -> Engine:
        running = Engine(config, with_api=False, with_metrics=False)
        running.start()
        assert running.nodes[0].wait_up(10)
        return running

    first = engine()
    wait_until(lambda: centre.truth.count >= 2, what="the first calls to finish")
    pg.stop()  # records now go to the spool while calls keep flowing
    wait_until(lambda: first.writer.stats().records_spooled > 0, what="records spooled while PostgreSQL is away")
    gevent.sleep(1.0)
    pg.start()
    gevent.sleep(1.0)
    first.stop(grace=0)  # calls in progress are handed over to the next engine
    second = engine()
    wait_until(lambda: centre.truth.count == len(CALLS), timeout=90, what="every call to finish")
    wait_until(lambda: not second.registry.calls, what="the engine to close its calls")
    second.stop(grace=0)
    assert second.writer.stats().spool_segments == 0, "everything spooled was replayed"

    truth = {record.uuid: record for record in centre.truth.finished}
    with psycopg.connect(pg.dsn) as conn:
        cdrs = conn.execute("SELECT uuid, role, agent, queue, hangup_cause, bleg_uuid FROM cdr").fetchall()
        events = conn.execute("SELECT call_uuid, event, queue, agent FROM queue_log").fetchall()
        kpis = {row["queue"]: row for row in
                queue_kpis(conn, Period(started, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)),
                           ReportSettings())}

    # Every leg has exactly one CDR: each caller's, and each agent leg that was bridged.
    callers = {uuid: row for uuid, *row in cdrs if row[0] == "caller"}
    assert callers.keys() == truth.keys()
    agent_legs = [row for row in cdrs if row[1] == "agent"]
    bridged = [r for r in truth.values() if r.agent]
    assert len({row[0] for row in agent_legs}) == len(agent_legs) >= len(bridged)
    for uuid, record in truth.items():
        role, agent, queue, cause, _ = callers[uuid]
        assert agent == record.agent, (uuid, record)
        assert queue == QUEUE_OF_KIND[record.kind]
        assert cause == record.hangup_cause

    # Every queue event once: one ENTER per caller, then exactly one way out of the queue.
    per_call: dict[str, list[str]] = {}
    for call_uuid, event, _, _ in events:
        per_call.setdefault(call_uuid, []).append(event)
    assert per_call.keys() == truth.keys()
    for uuid, seen in per_call.items():
        assert seen.count("ENTER") == 1, (uuid, seen)
        exits = [e for e in seen if e in ("CONNECT", "ABANDON", "TIMEOUT")]
        assert exits == (["CONNECT"] if truth[uuid].agent else ["ABANDON"]), (uuid, seen)
        if truth[uuid].agent:
            assert seen.count("COMPLETE_AGENT") + seen.count("COMPLETE_CALLER") == 1, (uuid, seen)

    # The report's KPIs equal the ground truth's.
    for queue in ("sales", "support"):
        mine = [r for r in truth.values() if QUEUE_OF_KIND[r.kind] == queue]
        answered = [r for r in mine if r.agent]
        row = kpis[queue]
        assert row["offered"] == len(mine)
        assert row["answered"] == len(answered)
        assert row["abandoned"] + row["short_abandoned"] == len(mine) - len(answered)
        assert row["service_level"] == pytest.approx(len(answered) / len(mine))  # all answered within 20 s
    assert any(r.kind == "quitter" and not r.agent for r in truth.values()), "the scenario produced abandons"
