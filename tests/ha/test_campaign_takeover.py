"""A progressive campaign across a takeover: two `callrouter run` processes (active/standby through
PostgreSQL) on three simulated nodes over TCP; the active is SIGKILLed with the campaign's calls
ringing and talking; the standby takes over, adopts them and completes the campaign. The
simulator's record of every originate and the attempts table say no contact was dialled twice."""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone

import psycopg
import pytest

from engine.db import migrate
from engine.dialer import store
from engine.dialer.model import Campaign, Mode, RetryRule
from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from engine.simulator.truth import TruthRecorder
from tests.dialer.live import WINDOW, add_campaign, check_compliance, zone_where
from tests.ha.harness import PASSWORD, EngineProcess, link_nodes, wait_until
from tests.postgres import OwnServer

pytestmark = pytest.mark.timeout(150)

# The harness's nodes and agents (its ACD file names them), no inbound callers, and a carrier
# whose outcome is known per number.
SCENARIO = """
seed: 17
nodes: [{name: sim1, port: 0}, {name: sim2, port: 0}, {name: sim3, port: 0}]
agents:
  - {ids: "1001-1003", node: sim1, ring: 0.3, talk: 3, hangup_share: 1.0}
  - {ids: "1004-1006", node: sim2, ring: 0.3, talk: 3, hangup_share: 1.0}
outbound:
  gateway: carrier
  destinations:
    - {match: '^\\+1555100', answer: 1, answer_delay: 0.5, greeting: 0.4, patience: 30, talk: 10}
    - {match: '^\\+1555200', busy: 1}
    - {match: '^\\+1555300', no_answer: 1}
    - {match: '^\\+1555400', machine: 1, answer_delay: 0.5, machine_greeting: 0.5}
    - {match: '^\\+1555500', invalid: 1}
"""
PEOPLE = [f"+155510000{i:02d}" for i in range(20)]
OTHERS = ["+15552000001", "+15552000002", "+15553000001", "+15553000002", "+15554000001", "+15555000001"]
RULES = (RetryRule("busy", 1.0, 1),)   # busy once more; every other outcome ends the contact


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        migrate(conn)
    yield server
    server.server.cleanup()


def attempts(dsn: str) -> list:
    with psycopg.connect(dsn) as conn:
        return store.attempts(conn, "outbound")


def campaign_state(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return store.load_campaign(conn, "outbound").state.value


def test_the_standby_completes_a_campaign_without_dialling_anyone_twice(tmp_path, pg):
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    simulation = Simulation(load_scenario(path), recorder=TruthRecorder(), port=0, password=PASSWORD)
    simulation.start()
    link_nodes(simulation)
    originates: Counter[str] = Counter()   # number -> outbound channels the switches created for it

    def count(event) -> None:
        if event.name == "CHANNEL_CREATE" and event.get("Call-Direction") == "outbound" \
                and "/gateway/carrier/" in (event.get("Channel-Name") or ""):
            originates[event.get("Caller-Destination-Number") or ""] += 1

    for node in simulation.nodes.values():
        node.switch.subscribe(count)
    zone = zone_where(datetime.now(timezone.utc), True)
    campaign = Campaign("outbound", mode=Mode.PROGRESSIVE, gateway="carrier", queue="sales", window=WINDOW,
                        caller_id="+15550000000", ring_timeout=15, retry_rules=RULES)
    engines = []
    try:
        active = EngineProcess(tmp_path, "a", simulation, pg.dsn)
        engines.append(active)
        wait_until(lambda: active.role() == "active", 15, "engine a to lead")
        engines.append(standby := EngineProcess(tmp_path, "b", simulation, pg.dsn))
        assert standby.role() == "standby"
        add_campaign(pg.dsn, campaign, {p: zone for p in PEOPLE + OTHERS})
        # Mid-campaign: some contacts closed, calls ringing (the no-answer numbers) and talking.
        wait_until(lambda: sum(a.ended_at is not None for a in attempts(pg.dsn)) >= 6
                   and sum(a.ended_at is None for a in attempts(pg.dsn)) >= 3, 40, "the campaign under way")
        active.kill()
        killed_at = datetime.now(timezone.utc)
        open_at_kill = {a.uuid for a in attempts(pg.dsn) if a.ended_at is None}
        wait_until(lambda: standby.role() == "active", 10, "the standby to take over")
        wait_until(lambda: campaign_state(pg.dsn) == "done", 90, "the standby to complete the campaign")
        assert standby.terminate() == 0, standby.output()
    finally:
        simulation.stop()
        for engine in engines:
            engine.ensure_dead()

    rows = attempts(pg.dsn)
    with psycopg.connect(pg.dsn) as conn:
        contacts = {c.id: c for c in store.load_contacts(conn, "outbound")}
    check_compliance(campaign, rows, contacts, [])
    assert open_at_kill and any(a.started_at > killed_at for a in rows), "the standby dialled the rest"
    # Each attempt closed exactly once: its contact counted it once (the retry verdict applied once).
    per_contact = Counter(a.contact_id for a in rows)
    assert {c.id: c.attempts for c in contacts.values()} == dict(per_contact)
    assert all(a.ended_at is not None and a.disposition for a in rows)
    assert all(c.state.value not in ("new", "retry", "dialing") for c in contacts.values())
    # The switches' record: every number dialled once, a busy one once more by its rule.
    by_phone = defaultdict(list)
    for a in sorted(rows, key=lambda a: a.started_at):
        by_phone[a.phone].append(a.disposition)
    # An attempt open at the kill may never have reached the switch (the engine died between
    # writing it and sending the originate): closed by the standby, counted, never dialled again.
    assert set(originates) <= set(by_phone)
    unplaced = {phone: len(tries) - originates.get(phone, 0) for phone, tries in by_phone.items()}
    assert all(n >= 0 for n in unplaced.values()), "nobody dialled more often than the attempts say"
    assert sum(unplaced.values()) <= len(open_at_kill)
    assert set(by_phone) == set(PEOPLE + OTHERS)
    # The rest by their outcomes (a number whose attempt never reached the switch has none to check).
    reached = {phone: tries for phone, tries in by_phone.items() if not unplaced[phone]}
    for phone, tries in reached.items():
        expected = ["busy", "busy"] if phone.startswith("+1555200") else [tries[0]]
        assert tries == expected, (phone, tries)
    # Every person reached an agent: nobody was dialled for an agent an adopted call was about to take.
    assert all(reached[p] == ["answered"] for p in PEOPLE if p in reached), {p: by_phone[p] for p in PEOPLE}
