"""Predictive dialling live: a real Engine on the simulated switch over TCP and a real PostgreSQL.

The campaign has been running for three days (its earlier attempts are in PostgreSQL, written
through the store as the engine writes them), so the pacing has its 100 attempts and dials more
lines than there are free agents. Every attempt row is checked against the DNC list and the
calling window, abandoned calls hear the message, the 30-day period stays under the 3% cap, and
the CDRs of the dialled legs name the campaign, the contact and the attempt's disposition."""
from __future__ import annotations

import json
import logging
import random
import uuid as uuidlib
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from engine.dialer import store
from engine.dialer.compliance import abandon_periods
from engine.dialer.model import Attempt, Campaign, Contact, Mode
from engine.dialer.selection import after_attempt
from tests.dialer.live import (
    MESSAGE, WINDOW, add_campaign, check_compliance, outbound_truth, rows, start_engine, wait_closed, zone_where,
)
from tests.engine.conftest import Centre

AGENTS = 6
# Today's list answers better than the period so far (about 45% live against 30%): the pacing,
# on what it has learnt, sometimes has more live answers than free agents.
SCENARIO = f"""
seed: 23
nodes: [{{name: sim1, port: 0}}]
agents:
  - ids: "1001-{1000 + AGENTS}"
    ring: 0.2
    talk: 2.0
    hangup_share: 1.0
outbound:
  gateway: carrier
  destinations:
    - {{match: '^\\+1555600', answer: 0.45, busy: 0.2, no_answer: 0.1, machine: 0.15, invalid: 0.1,
        answer_delay: 0.5, greeting: 0.4, machine_greeting: 0.5, patience: 20, talk: 5}}
"""
# The earlier days' outcomes, as a list of this kind does: (disposition, share).
HISTORY = (("answered", 0.30), ("machine", 0.12), ("busy", 0.15), ("no-answer", 0.35), ("invalid", 0.08))
HISTORY_ATTEMPTS = 600
HISTORY_ABANDON_SHARE = 0.01  # of the live answers


def seed_history(dsn: str, campaign: Campaign, zone: str, now: datetime, rng: random.Random) -> None:
    """The campaign's earlier attempts in this period, one contact each, written as the engine
    writes them: placed (open), then closed with the contact's retry verdict. Each is placed at
    about this time of day on one of the three days before, or in the hour before now, so inside
    the contact's calling window."""
    phones = {f"+1555900{i:04d}": zone for i in range(HISTORY_ATTEMPTS)}
    add_campaign(dsn, campaign, phones)
    with psycopg.connect(dsn) as conn:
        for contact in store.load_contacts(conn, campaign.name):
            day = rng.randrange(4)
            started = now - timedelta(days=day, seconds=rng.uniform(60, 3600) if day == 0 else rng.uniform(-3600, 3600))
            attempt = Attempt(campaign.name, contact.id, contact.phone, str(uuidlib.UUID(int=rng.getrandbits(128))),
                              started)
            store.record_attempt(conn, attempt)
            disposition = rng.choices([d for d, _ in HISTORY], [w for _, w in HISTORY])[0]
            ended = started + timedelta(seconds=25)
            if disposition in ("answered", "machine"):
                attempt.answered_at = started + timedelta(seconds=rng.uniform(4, 14))
                attempt.amd_result = "HUMAN" if disposition == "answered" else "MACHINE"
                ended = attempt.answered_at + timedelta(seconds=20)
            if disposition == "answered" and rng.random() < HISTORY_ABANDON_SHARE:
                disposition, attempt.abandoned, attempt.message_played = "abandoned", True, MESSAGE
                ended = attempt.answered_at + timedelta(seconds=8)
            elif disposition == "answered":
                attempt.connected_at = attempt.answered_at + timedelta(seconds=rng.uniform(0.5, 2))
                attempt.agent = f"{1001 + rng.randrange(AGENTS)}"
                ended = attempt.connected_at + timedelta(seconds=rng.expovariate(1 / 120))
            elif disposition in ("busy", "invalid"):
                ended = started + timedelta(seconds=rng.uniform(1, 4))
            attempt.ended_at, attempt.disposition = ended, disposition
            assert store.close_attempt(conn, attempt)
            store.save_contact(conn, after_attempt(campaign, contact, disposition, ended))
        # The store stamps a campaign's start with now(); this one started before its history.
        conn.execute("UPDATE campaign SET started_at = %s WHERE name = %s",
                     (now - timedelta(days=3, hours=2), campaign.name))


def pacing_decisions(caplog) -> list[dict]:
    return [json.loads(r.args[0]) for r in caplog.records
            if r.name == "engine.dialer.pacing" and r.msg == "pacing %s"]


def most_lines_at_once(records: list) -> int:
    """The most outbound calls the switch had up at one moment."""
    edges = sorted([(r.arrived_at, 1) for r in records] + [(r.hangup_at, -1) for r in records])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


@pytest.mark.timeout(120)
def test_predictive_dials_more_lines_than_free_agents_within_the_abandon_cap(database, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="engine.dialer.pacing")
    now = datetime.now(timezone.utc)
    zone, closed_zone = zone_where(now, True), zone_where(now, False)
    campaign = Campaign("live", mode=Mode.PREDICTIVE, gateway="carrier", queue="sales", caller_id="+15550000000",
                        window=WINDOW, abandon_message=MESSAGE, ring_timeout=15, retry_rules=())
    seed_history(database, campaign, zone, now, random.Random(8))
    today = {f"+1555600{i:04d}": zone for i in range(60)}
    dnc = ["+15556000007", "+15556000031"]
    late = "+15556009999"   # outside its calling window all along
    with psycopg.connect(database) as conn:
        store.add_contacts(conn, campaign.name, ((Contact(0, phone, (z,)), line) for line, (phone, z)
                                                in enumerate({**today, late: closed_zone}.items(), 2)))
        store.add_dnc(conn, dnc, "internal", "test")
    history_uuids = {a.uuid for a in rows(database)[0]}

    centre = Centre(SCENARIO, tmp_path)
    centre.start()
    try:
        engine = start_engine(centre, tmp_path, database)
        try:
            wait_closed(database, timeout=90, skip=(late,))
        finally:
            engine.stop(grace=0)
        attempts, contacts = rows(database)
        check_compliance(campaign, attempts, contacts, dnc)
        mine = [a for a in attempts if a.uuid not in history_uuids]
        assert {a.phone for a in mine} == set(today) - set(dnc)   # each once: no retry rule here
        assert late not in {a.phone for a in attempts}

        # More lines than free agents: the pacing's own log, and the switch's count of lines up.
        predictive = [d for d in pacing_decisions(caplog) if d["method"] == "predictive"]
        assert any(d["calls"] + d["inputs"]["in_flight"] > d["inputs"]["agents"]["idle"] for d in predictive)
        truth = outbound_truth(centre)
        dialled = [r for tries in truth.values() for r in tries]
        assert most_lines_at_once(dialled) > AGENTS
        assert all(len(truth[a.phone]) == 1 for a in mine)

        # Abandoned calls heard the message; everyone else answered live reached an agent.
        heard = {r.destination: [h.detail for h in r.heard] for r in dialled}
        assert any(a.abandoned for a in mine)   # today's better answer rate outran the free agents
        for a in mine:
            if a.abandoned:
                assert a.disposition == "abandoned" and a.message_played == MESSAGE and a.connected_at is None
                assert MESSAGE in heard[a.phone], a.phone
            elif a.disposition == "answered":
                assert a.agent and a.connected_at is not None and truth[a.phone][0].agent == a.agent

        # The 30-day period (from the campaign's start three days ago) under the cap.
        with psycopg.connect(database) as conn:
            status = store.status(conn, campaign.name)
            started_at = conn.execute("SELECT started_at FROM campaign WHERE name = 'live'").fetchone()[0]
        [period] = abandon_periods(campaign.abandon_rule, attempts, started_at, cap=campaign.abandon_cap)
        assert period.live_answers > 100 and period.rate < campaign.abandon_cap
        assert status["period_abandon_rate"] == pytest.approx(period.rate, abs=1e-6)

        # The dialled legs' CDRs (and their agents' legs) name the campaign, contact and disposition.
        with psycopg.connect(database) as conn:
            cdrs = conn.execute("SELECT uuid, call_uuid, role, campaign, contact, disposition FROM cdr").fetchall()
        by_call = {}
        for uuid, call_uuid, role, *named in cdrs:
            by_call.setdefault(call_uuid, {})[role] = tuple(named)
        answered = [a for a in mine if a.answered_at is not None]
        assert answered
        for a in answered:
            expected = ("live", str(a.contact_id), a.disposition)
            assert by_call[a.uuid]["caller"] == expected, a
            if a.connected_at is not None:
                assert by_call[a.uuid]["agent"] == expected, a
    finally:
        centre.stop()

