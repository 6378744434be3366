"""The live dialer in a real Engine against the simulated switch over TCP, with a real PostgreSQL:
campaigns run to completion, every attempt row checked against the DNC list, the contact's
calling window and the retry rules; abandoned calls hear the message (simulator truth); an
engine restart in the middle dials nobody twice."""
from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from dataclasses import replace
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest

from engine.app import Engine
from engine.config import ApiSettings, DialerSettings, Secret
from engine.db import migrate
from engine.dialer import store
from engine.dialer.model import CallingWindow, Campaign, Contact, Mode, RetryRule
from tests.engine.conftest import Centre
from tests.waiting import wait_until

MESSAGE = "ivr/abandon-message.wav"
WINDOW = CallingWindow(time(8), time(21))

# One destination per outcome, by number: the outcome of each contact is known in advance.
SCENARIO = """
seed: 11
nodes: [{{name: sim1, port: 0}}]
agents:
  - ids: "1001-1002"
    ring: {ring}
    talk: 1.0
    hangup_share: 1.0
outbound:
  gateway: carrier
  destinations:
    - {{match: '^\\+1555100', answer: 1, answer_delay: 0.3, greeting: 0.4, patience: 6, talk: 1}}
    - {{match: '^\\+1555200', busy: 1}}
    - {{match: '^\\+1555300', no_answer: 1}}
    - {{match: '^\\+1555400', machine: 1, answer_delay: 0.3, machine_greeting: 0.5}}
    - {{match: '^\\+1555500', invalid: 1}}
"""


def zone_where(now: datetime, inside: bool) -> str:
    """A fixed-offset zone in which `now` falls inside (or outside) the calling window."""
    for offset in range(-12, 15):
        name = f"Etc/GMT{-offset:+d}" if offset else "UTC"
        local = now.astimezone(ZoneInfo(name)).time()
        # A margin of an hour either way, so the test never straddles the window's edge.
        if inside and time(10) <= local < time(19) or not inside and (local >= time(22) or local < time(6)):
            return name
    raise AssertionError("no zone found")


@pytest.fixture
def database(pg_dsn, request):
    name = "dialer_live_" + request.node.name.split("[")[0][-20:].lower()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    return dsn


def make_campaign(dsn: str, mode: Mode, phones: dict[str, str], dnc: list[str]) -> Campaign:
    campaign = Campaign("live", mode=mode, gateway="carrier", queue="sales", caller_id="+15550000000",
                        window=WINDOW, abandon_message=MESSAGE, ring_timeout=15,
                        # No-answer is not retried: a second 15 s ring would only make the test longer.
                        retry_rules=(RetryRule("busy", 1.0, 1), RetryRule("no-answer", 1.0, 0),
                                     RetryRule("machine", 1.5, 1), RetryRule("abandoned", 3600.0, 1)))
    with psycopg.connect(dsn) as conn:
        store.create_campaign(conn, campaign)
        store.add_contacts(conn, "live", ((Contact(0, phone, (zone,)), line)
                                          for line, (phone, zone) in enumerate(phones.items(), 2)))
        store.add_dnc(conn, dnc, "internal", "test")
        store.change_state(conn, "live", "start")
    return campaign


def start_engine(centre: Centre, tmp_path, dsn: str) -> Engine:
    config = centre.config(tmp_path, acd=centre.acd(("sales",)))
    config = replace(config, database_dsn=Secret(dsn), api=ApiSettings(port=0, token=Secret("t0ken")),
                     dialer=DialerSettings(poll_seconds=0.2, amd_timeout=5.0), shutdown_grace_seconds=0)
    engine = Engine(config, with_metrics=False)
    engine.start()
    assert all(node.wait_up(10) for node in engine.nodes)
    return engine


def api(engine: Engine, path: str, method: str = "GET") -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{engine.api.port}{path}", method=method,
                                     headers={"Authorization": "Bearer t0ken"})
    with urllib.request.urlopen(request, timeout=5) as reply:
        return json.loads(reply.read())


def campaign_state(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return store.load_campaign(conn, "live").state.value


def rows(dsn: str) -> tuple[list, dict[int, Contact]]:
    with psycopg.connect(dsn) as conn:
        return store.attempts(conn, "live"), {c.id: c for c in store.load_contacts(conn, "live")}


def check_compliance(campaign: Campaign, attempts: list, contacts: dict[int, Contact], dnc: list[str]) -> None:
    per_contact = defaultdict(list)
    for a in attempts:
        contact = contacts[a.contact_id]
        assert a.phone not in dnc, a
        local = a.started_at.astimezone(ZoneInfo(contact.timezones[0])).time()
        assert WINDOW.start <= local < WINDOW.end, (a.phone, local)
        assert a.ended_at is not None and a.disposition, a
        per_contact[a.contact_id].append(a)
    for contact_id, tries in per_contact.items():
        tries.sort(key=lambda a: a.started_at)
        assert len(tries) <= campaign.max_attempts
        for before, after in zip(tries, tries[1:]):
            rule = campaign.retry_rule(before.disposition)
            assert rule is not None, before.disposition  # answered, invalid, DNC: never dialled again
            assert after.started_at - before.ended_at >= timedelta(seconds=rule.delay)
            assert tries.count(before) == 1
        assert sum(r.disposition == d for r in tries for d in ("answered",)) <= 1


def open_attempt(dsn: str, phone: str):
    return next((a for a in rows(dsn)[0] if a.phone == phone and a.ended_at is None), None)


@pytest.mark.timeout(90)
def test_progressive_campaign_runs_to_completion_across_a_restart(database, tmp_path):
    now = datetime.now(timezone.utc)
    open_zone, closed_zone = zone_where(now, True), zone_where(now, False)
    phones = {"+15551000001": open_zone, "+15551000002": open_zone, "+15551000003": open_zone,
              "+15552000001": open_zone, "+15553000001": open_zone, "+15554000001": open_zone,
              "+15555000001": open_zone, "+15551000009": open_zone,   # on the DNC list
              "+15551000008": closed_zone}                             # outside its window all along
    dnc = ["+15551000009"]
    centre = Centre(SCENARIO.format(ring=0.2), tmp_path)
    centre.start()
    try:
        campaign = make_campaign(database, Mode.PROGRESSIVE, phones, dnc)
        engine = start_engine(centre, tmp_path, database)
        # Stop the engine while the no-answer number rings (its originate's result is lost with the
        # engine), then start another on the same database: it adopts the ringing leg.
        wait_until(lambda: open_attempt(database, "+15553000001") is not None, timeout=30)
        engine.stop(grace=0)
        engine = start_engine(centre, tmp_path, database)
        try:
            wait_until(lambda: all(c.state.value not in ("new", "retry", "dialing")
                                   for c in rows(database)[1].values() if c.phone != "+15551000008"), timeout=60)
            status = api(engine, "/campaigns/status?campaign=live")
            assert status["contacts_left"] == 1  # the contact whose window never opened
        finally:
            engine.stop(grace=0)
        attempts, contacts = rows(database)
        check_compliance(campaign, attempts, contacts, dnc)
        dispositions = {a.disposition for a in attempts}
        assert dispositions >= {"answered", "busy", "no-answer", "machine", "invalid"}, dispositions
        by_phone = defaultdict(list)
        for a in attempts:
            by_phone[a.phone].append(a)
        assert "+15551000008" not in by_phone and "+15551000009" not in by_phone
        assert [a.disposition for a in sorted(by_phone["+15552000001"], key=lambda a: a.started_at)] == \
            ["busy", "busy"]  # one retry after busy, then the rule's limit
        # The switch's truth: each attempt reached the far end once, never two calls to one number at once.
        dialled = defaultdict(list)
        for record in centre.truth.finished:
            if record.direction == "outbound":
                dialled[record.destination].append(record)
        for phone, tries in by_phone.items():
            assert len(dialled[phone]) == len(tries), phone
        for a in attempts:
            if a.disposition == "answered":
                assert a.agent in ("1001", "1002") and a.connected_at is not None and not a.abandoned
        answered_truth = [r for r in centre.truth.finished if r.direction == "outbound" and r.kind == "answer"]
        assert all(r.agent in ("1001", "1002") for r in answered_truth)
    finally:
        centre.stop()


@pytest.mark.timeout(60)
def test_abandoned_calls_hear_the_message_and_count(database, tmp_path):
    """The agents go on break while their calls ring: the live answers find nobody to take them."""
    now = datetime.now(timezone.utc)
    zone = zone_where(now, True)
    phones = {f"+1555100000{i}": zone for i in range(2)}
    centre = Centre(SCENARIO.format(ring=0.2), tmp_path)
    centre.start()
    try:
        make_campaign(database, Mode.PREDICTIVE, phones, [])
        engine = start_engine(centre, tmp_path, database)
        try:
            wait_until(lambda: len(rows(database)[0]) >= 2, timeout=20)
            for agent in ("1001", "1002"):
                api(engine, f"/agents/status?agent={agent}&status=On%20Break&reason=lunch", "POST")
            wait_until(lambda: len([a for a in rows(database)[0] if a.ended_at]) >= 2, timeout=40)
            status = api(engine, "/campaigns/status?campaign=live")
        finally:
            engine.stop(grace=0)
        attempts, _ = rows(database)
        assert attempts and all(a.abandoned and a.disposition == "abandoned" for a in attempts)
        assert all(a.message_played == MESSAGE and a.connected_at is None for a in attempts)
        assert status["abandon_rate"] == 1.0
        heard = {r.destination: [h.detail for h in r.heard] for r in centre.truth.finished if r.direction == "outbound"}
        for a in attempts:
            assert MESSAGE in heard[a.phone], heard[a.phone]
    finally:
        centre.stop()
