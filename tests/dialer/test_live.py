"""The live dialer in a real Engine against the simulated switch over TCP, with a real PostgreSQL:
campaigns run to completion, every attempt row checked against the DNC list, the contact's
calling window and the retry rules; abandoned calls hear the message (simulator truth); an
engine restart in the middle dials nobody twice."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

import pytest

from engine.dialer.model import Campaign, Mode, RetryRule
from tests.dialer.live import (
    MESSAGE, WINDOW, add_campaign, api, channel_of, check_compliance, outbound_truth, rows, start_engine,
    wait_closed, zone_where,
)
from tests.engine.conftest import Centre
from tests.waiting import wait_until

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


def make_campaign(dsn: str, mode: Mode, phones: dict[str, str], dnc: list[str]) -> Campaign:
    campaign = Campaign("live", mode=mode, gateway="carrier", queue="sales", caller_id="+15550000000",
                        window=WINDOW, abandon_message=MESSAGE, ring_timeout=15,
                        # No-answer is not retried: a second 15 s ring would only make the test longer.
                        retry_rules=(RetryRule("busy", 1.0, 1), RetryRule("no-answer", 1.0, 0),
                                     RetryRule("machine", 1.5, 1), RetryRule("abandoned", 3600.0, 1)))
    add_campaign(dsn, campaign, phones, dnc)
    return campaign


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
            wait_closed(database, skip=("+15551000008",))
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
        dialled = outbound_truth(centre)
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


@pytest.mark.timeout(60)
def test_an_attempt_whose_leg_ended_while_no_engine_watched_is_closed_and_dialled_again_by_its_rule(
        database, tmp_path):
    zone = zone_where(datetime.now(timezone.utc), True)
    centre = Centre(SCENARIO.format(ring=0.2), tmp_path)
    centre.start()
    try:
        campaign = make_campaign(database, Mode.PROGRESSIVE, {"+15553000001": zone}, [])
        engine = start_engine(centre, tmp_path, database)
        wait_until(lambda: channel_of(centre, "+15553000001") is not None, timeout=20)
        engine.stop(grace=0)
        leg = channel_of(centre, "+15553000001")
        assert centre.switch.api(f"uuid_kill {leg.uuid} NO_ANSWER").startswith("+OK")
        wait_until(lambda: channel_of(centre, "+15553000001") is None, timeout=10)
        engine = start_engine(centre, tmp_path, database)
        try:
            wait_closed(database, timeout=20)
        finally:
            engine.stop(grace=0)
        attempts, contacts = rows(database)
        check_compliance(campaign, attempts, contacts, [])
        # Closed as no-answer (no CDR: no engine watched it), whose rule here allows no retry.
        assert [(a.uuid, a.disposition) for a in attempts] == [(leg.uuid, "no-answer")]
        assert len(outbound_truth(centre)["+15553000001"]) == 1
    finally:
        centre.stop()
