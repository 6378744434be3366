"""Compliance, selection and retry rules, without a network."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from engine.dialer.compliance import (
    DialHistory, InvalidNumber, abandon_periods, is_abandoned, normalise, refuse_dial, window_open, zones_for,
)
from engine.dialer.model import AbandonRule, Attempt, CallingWindow, Campaign, Contact, ContactState, Disposition
from engine.dialer.selection import after_attempt, callback, next_contacts

UTC = timezone.utc
NOON_UTC = datetime(2025, 3, 12, 12, 0, tzinfo=UTC)   # a Wednesday: 08:00 in New York, 12:00 in London


def contact(id: int, phone: str, **kw) -> Contact:
    return Contact(id, phone, zones_for(phone), **kw)


def test_numbers_are_normalised_to_e164_and_bad_ones_refused():
    assert normalise("(212) 555-0199", "US") == "+12125550199"
    assert normalise("020 7946 0000", "GB") == "+442079460000"
    with pytest.raises(InvalidNumber):
        normalise("12", "US")
    with pytest.raises(InvalidNumber):
        normalise("not a number", "US")


def test_calling_window_is_the_contacts_local_time():
    window = CallingWindow(time(9, 0), time(21, 0))
    assert zones_for("+12125550199") == ("America/New_York",)
    assert not window_open(window, ("America/New_York",), NOON_UTC)      # 08:00 there
    assert window_open(window, ("Europe/London",), NOON_UTC)             # 12:00 there
    assert window_open(window, ("America/New_York",), NOON_UTC + timedelta(hours=1))
    # A number that may be in several zones is called only when all of them are open.
    assert not window_open(window, ("Europe/London", "America/New_York"), NOON_UTC)


def test_dial_check_refuses_dnc_window_daily_limit_and_ofcom_redial():
    campaign = Campaign("c", max_attempts_per_day=2)
    london = contact(1, "+442079460000")
    assert refuse_dial(campaign, london, NOON_UTC, False, DialHistory()) is None
    assert "do-not-call" in refuse_dial(campaign, london, NOON_UTC, True, DialHistory())
    assert "per day" in refuse_dial(campaign, london, NOON_UTC, False, DialHistory(attempts_today=2))
    assert "window" in refuse_dial(campaign, london, NOON_UTC.replace(hour=22), False, DialHistory())
    ofcom = Campaign("uk", abandon_rule=AbandonRule.OFCOM)
    recent = DialHistory(last_abandoned_at=NOON_UTC - timedelta(hours=71))
    assert "72 h" in refuse_dial(ofcom, london, NOON_UTC, False, recent)
    assert refuse_dial(campaign, london, NOON_UTC, False, recent) is None   # TSR has no such rule
    assert refuse_dial(ofcom, london, NOON_UTC, False, DialHistory(last_abandoned_at=NOON_UTC - timedelta(hours=73))) is None


def test_abandon_is_no_agent_within_two_seconds_of_the_greeting():
    assert not is_abandoned(100.0, 101.9)
    assert not is_abandoned(100.0, 102.0)
    assert is_abandoned(100.0, 102.1)
    assert is_abandoned(100.0, None)


def test_ring_timeout_under_15_seconds_is_refused():
    with pytest.raises(ValueError):
        Campaign("c", ring_timeout=14)


def _attempt(at: datetime, abandoned=False, amd="HUMAN") -> Attempt:
    return Attempt("c", 1, "+1", str(at), at, answered_at=at, amd_result=amd, abandoned=abandoned)


def test_tsr_periods_are_successive_30_days_and_ofcom_counts_amd_false_positives():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [_attempt(start + timedelta(days=1), abandoned=True)] + [_attempt(start + timedelta(days=2))] * 49
    rows += [_attempt(start + timedelta(days=31), abandoned=True)] * 2 + [_attempt(start + timedelta(days=32))] * 8
    rows += [_attempt(start + timedelta(days=1), amd="MACHINE")] * 10
    tsr = abandon_periods(AbandonRule.TSR, rows, start, cap=0.03)
    assert [(p.live_answers, p.abandoned) for p in tsr] == [(50, 1), (10, 2)]
    assert tsr[0].rate == pytest.approx(0.02) and tsr[1].start == start + timedelta(days=30)
    ofcom = abandon_periods(AbandonRule.OFCOM, rows, start, cap=0.03, amd_false_positive_rate=0.2)
    day1 = ofcom[0]
    assert day1.start == start + timedelta(days=1)
    assert (day1.live_answers, day1.abandoned) == pytest.approx((1 + 2.0, 1 + 2.0))


def test_retries_follow_the_rules_and_their_limits():
    campaign = Campaign("c", max_attempts=4)
    fresh = contact(1, "+12125550199")
    busy = after_attempt(campaign, fresh, Disposition.BUSY.value, NOON_UTC)
    assert busy.state is ContactState.RETRY and busy.next_attempt_at == NOON_UTC + timedelta(minutes=10)
    no_answer = after_attempt(campaign, busy, Disposition.NO_ANSWER.value, NOON_UTC)
    assert no_answer.next_attempt_at == NOON_UTC + timedelta(hours=2)
    machine = after_attempt(campaign, no_answer, Disposition.MACHINE.value, NOON_UTC)
    assert machine.next_attempt_at == NOON_UTC + timedelta(days=1)
    assert after_attempt(campaign, machine, Disposition.BUSY.value, NOON_UTC).state is ContactState.DONE  # 4th attempt
    for final, state in (("answered", ContactState.DONE), ("DNC", ContactState.DNC), ("invalid", ContactState.INVALID),
                         ("sale", ContactState.DONE)):
        assert after_attempt(campaign, fresh, final, NOON_UTC).state is state
    limited = Campaign("c", max_attempts=99)
    c = fresh
    for _ in range(5):  # busy retries: 5 at most
        c = after_attempt(limited, c, "busy", NOON_UTC)
        assert c.state is ContactState.RETRY
    assert after_attempt(limited, c, "busy", NOON_UTC).state is ContactState.DONE
    ofcom = Campaign("uk", abandon_rule=AbandonRule.OFCOM)
    assert after_attempt(ofcom, fresh, "abandoned", NOON_UTC).next_attempt_at == NOON_UTC + timedelta(hours=72)


def test_next_contacts_order_due_times_and_filters():
    campaign = Campaign("c", window=CallingWindow(time(9, 0), time(21, 0)))
    london = [contact(i, f"+4420794600{i:02d}") for i in range(1, 5)]
    london[0].state, london[0].next_attempt_at = ContactState.RETRY, NOON_UTC - timedelta(minutes=1)
    london[1].state, london[1].next_attempt_at = ContactState.RETRY, NOON_UTC + timedelta(minutes=1)  # not due
    london[2].priority = 5
    new_york = contact(9, "+12125550199")  # window closed there
    picked = next_contacts(campaign, london + [new_york], NOON_UTC, 10, dnc={london[3].phone})
    assert [c.id for c in picked] == [3, 1]          # fresh first, then the due retry; DNC and closed skipped
    retry_first = Campaign("c", retry_first=True, window=campaign.window)
    assert [c.id for c in next_contacts(retry_first, london, NOON_UTC, 10)] == [1, 3, 4]
    assert [c.id for c in next_contacts(campaign, london, NOON_UTC, 1)] == [3]
    called_back = callback(london[1], NOON_UTC - timedelta(seconds=1))
    assert next_contacts(retry_first, [called_back] + london[:1], NOON_UTC, 1)[0].id == 2
