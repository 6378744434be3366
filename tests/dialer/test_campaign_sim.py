"""A campaign run to completion against the simulator (virtual clock): every attempt is checked
against the DNC list, the contact's calling window and the retry rules; abandons hear the message."""
from __future__ import annotations

from collections import defaultdict
from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest

from engine.dialer.compliance import abandon_periods, utc, zones_for
from engine.dialer.model import CallingWindow, Campaign, Contact, ContactState, Mode
from engine.dialer.whatif import (
    GATEWAY, MESSAGE, CampaignSource, DialerDriver, EndlessSource, simulate, sizing_scenario,
)
from engine.simulator.clock import VirtualClock
from engine.simulator.runner import Simulation

START = 1_800_000_000.0   # 08:00 UTC: 03:00 in New York, so its contacts wait for their window


def run_campaign(mode: str, seed: int):
    numbers = [f"+4420794600{i:02d}" for i in range(40)] + [f"+121255501{i:02d}" for i in range(40)]
    contacts = [Contact(i, n, zones_for(n)) for i, n in enumerate(numbers, 1)]
    dnc = set(numbers[::7])
    campaign = Campaign("e2e", mode=Mode(mode), gateway=GATEWAY, window=CallingWindow(time(9), time(20)),
                        max_attempts=4)
    clock = VirtualClock(start=START)
    sim = Simulation(sizing_scenario(4, 0.35, 90, seed), clock=clock, serve=False, seed=seed)
    sim.start()
    source = CampaignSource(campaign, contacts, dnc)
    driver = DialerDriver(sim, source, mode=mode, agents=["2001", "2002", "2003", "2004"], campaign=campaign)
    driver.start()
    for _ in range(24 * 6):  # up to 6 days, an hour at a time
        clock.run_until(clock.now() + 3600)
        if source.exhausted(None) and driver.in_flight == 0:
            break
    driver.stop_dialing()
    sim.stop()
    return campaign, contacts, dnc, source, driver


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["progressive", "predictive"])
def test_campaign_completes_within_dnc_windows_and_retry_rules(mode):
    campaign, contacts, dnc, source, driver = run_campaign(mode, seed=3)
    assert source.exhausted(None)
    by_id = {c.id: c for c in contacts}
    attempts = driver.attempts
    assert {a.disposition for a in attempts} >= {"answered", "busy", "no-answer", "machine", "invalid"}
    per_contact = defaultdict(list)
    for a in attempts:
        contact = by_id[a.contact_id]
        assert a.phone not in dnc
        local = a.started_at.astimezone(ZoneInfo(contact.timezones[0]))
        assert time(9) <= local.time() < time(20), (a.phone, local)
        per_contact[a.contact_id].append(a)
    assert all((c.phone in dnc) != (c.id in per_contact) for c in contacts)   # all others were tried   # everyone else was tried
    for contact_id, rows in per_contact.items():
        zone = ZoneInfo(by_id[contact_id].timezones[0])
        rows.sort(key=lambda a: a.started_at)
        assert len(rows) <= campaign.max_attempts
        for before, after in zip(rows, rows[1:]):
            rule = campaign.retry_rule(before.disposition)
            assert rule is not None, before.disposition          # final dispositions are never redialled
            assert after.started_at - before.ended_at >= timedelta(seconds=rule.delay)
        per_day = defaultdict(int)
        for a in rows:
            per_day[a.started_at.astimezone(zone).date()] += 1
        assert max(per_day.values()) <= campaign.max_attempts_per_day
    for a in attempts:
        if a.abandoned:
            assert a.message_played == MESSAGE and a.connected_at is None
        if a.disposition == "answered":
            assert a.agent and a.connected_at is not None
    states = {source.contacts[c.id].state for c in contacts}
    assert ContactState.NEW not in states and ContactState.DIALING not in states


@pytest.mark.timeout(120)
def test_sizing_runs_each_mode_and_predictive_beats_progressive_within_the_cap():
    figures = {mode: simulate(mode, agents=10, answer_rate=0.3, aht=120, hours=1.5, seed=2)
               for mode in ("progressive", "predictive", "ratio", "adaptive")}
    assert figures["progressive"].abandoned == 0
    assert figures["predictive"].occupancy > figures["progressive"].occupancy
    assert figures["predictive"].worst_period_abandon_rate <= 0.03
    for report in figures.values():
        assert 0 < report.occupancy <= 1 and report.live_answers > 0


@pytest.mark.timeout(120)
def test_sizing_is_seeded_deterministic():
    """The figures a supervisor sizes on come from the seed alone (the virtual clock, the switch's and the
    population's draws); a different seed is a different run."""
    run = dict(agents=6, answer_rate=0.35, aht=90, hours=0.75)
    first, again = (simulate("predictive", seed=11, **run) for _ in range(2))
    assert first == again
    assert simulate("predictive", seed=12, **run) != first
    assert first.attempts > first.live_answers >= first.abandoned and first.periods == 1


@pytest.mark.timeout(120)
def test_report_figures_match_the_attempts_they_summarise():
    """A sizing run keeps counters, not attempts: its figures must be what the full attempt list says."""
    clock = VirtualClock(start=START)
    sim = Simulation(sizing_scenario(5, 0.4, 60, 5), clock=clock, serve=False, seed=5)
    sim.start()
    campaign = Campaign("figures", mode=Mode.PREDICTIVE, gateway=GATEWAY)
    driver = DialerDriver(sim, EndlessSource(), mode="ratio", agents=[str(2001 + i) for i in range(5)],
                          campaign=campaign, ratio=3.0)
    driver.start()
    until = START + 1800
    clock.run_until(until)
    driver.stop_dialing()
    report = driver.report(until)
    attempts = list(driver.attempts)   # stopping the simulation hangs up the calls still up: more attempts
    sim.stop()
    periods = abandon_periods(campaign.abandon_rule, attempts, utc(START), cap=campaign.abandon_cap)
    assert report.attempts == len(attempts)
    assert report.live_answers == sum(1 for a in attempts if a.answered_at and a.amd_result == "HUMAN")
    assert report.abandoned == sum(1 for a in attempts if a.abandoned) > 0
    assert report.calls_per_agent_hour == sum(1 for a in attempts if a.connected_at) / (5 * 0.5)
    assert report.worst_period_abandon_rate == max(p.rate for p in periods)
