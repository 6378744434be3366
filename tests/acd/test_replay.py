"""Turning queue-log rows into a replay plan, without a database: the hand-worked morning of
tests/cdr/dataset.py read back as calls, the Kaplan-Meier patience curve against a hand
computation and against exponential patience it must recover from censored waits, staffing files
and recorded rosters, and a replay through the Router on two queues with skills."""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from engine.acd import replay as rp
from engine.acd.model import AgentStatus, Queue
from engine.errors import ConfigError
from tests.cdr.dataset import DAY, EVENTS

SINCE, UNTIL = DAY, DAY + timedelta(days=1)


def by_uuid(calls):
    return {c.call_uuid: c for c in calls}


def test_the_recorded_morning_read_back_as_calls():
    calls = by_uuid(rp.recorded_calls(EVENTS, SINCE, UNTIL))
    assert set(calls) == {f"c{i}" for i in range(1, 10)}
    c1, c2, c3, c4, c5, c6 = (calls[f"c{i}"] for i in range(1, 7))
    # answered after 10 s (A1 rang 4 s), talked 120 s, wrapped up 30 s
    assert (c1.outcome, c1.wait, c1.ring, c1.agent, c1.handle) == (rp.ANSWERED, 10.0, 4.0, "A1", 150.0)
    assert c2.handle == 100 + 20 + 10            # talk + hold + wrap-up
    assert (c3.outcome, c3.wait, c3.handle) == (rp.ABANDONED, 3.0, None)
    assert (c4.outcome, c4.wait) == (rp.ABANDONED, 45.0)
    assert (c5.outcome, c5.handle) == (rp.ANSWERED, 60.0 + 20.0)   # transferred after 60 s, then wrap-up
    assert (c6.outcome, c6.wait, c6.handle) == (rp.LEFT, 120.0, None)  # timed out
    assert calls["c7"].handle == 60.0 and calls["c9"].queue == "support"
    assert calls["c1"].entered_at == datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc).timestamp()


def test_wrap_up_logged_by_agent_alone_goes_to_that_agents_last_call():
    """The ACD writes WRAP_UP as an agent event (no call uuid) when the wrap-up ends."""
    anonymous = [dataclasses.replace(e, call_uuid="") if e.event == "WRAP_UP" else e for e in EVENTS]
    assert ({c.call_uuid: c.handle for c in rp.recorded_calls(anonymous, SINCE, UNTIL)}
            == {c.call_uuid: c.handle for c in rp.recorded_calls(EVENTS, SINCE, UNTIL)})


def test_only_the_calls_entering_in_the_period_count_but_their_ends_may_come_later():
    calls = rp.recorded_calls(EVENTS, DAY + timedelta(hours=9, minutes=59), DAY + timedelta(hours=10))
    assert [(c.call_uuid, c.outcome, c.handle) for c in calls] == [("c9", rp.ANSWERED, 60.0)]


def test_kaplan_meier_worked_by_hand():
    # abandons at 1, 3, 7; callers still waiting (answered) at 3, 5, 8; the tie at 3: abandon first
    curve = rp.kaplan_meier([(5, False), (1, True), (3, False), (3, True), (7, True), (8, False)])
    assert curve.times == (1, 3, 7)
    # 6 at risk at 1 -> 5/6; 5 at risk at 3 (the censored 3 included) -> 5/6 * 4/5; 2 at risk at 7 -> half
    assert curve.survival == pytest.approx((5 / 6, 4 / 6, 2 / 6))
    assert (curve.abandons, curve.censored) == (3, 3)
    assert curve.tail_rate == pytest.approx(3 / (1 + 3 + 3 + 5 + 7 + 8))
    assert curve.survival_at(0.5) == 1.0 and curve.survival_at(4) == pytest.approx(4 / 6)
    assert curve.survival_at(9) == pytest.approx(2 / 6 * math.exp(-curve.tail_rate * 2))
    assert curve.quantile(0.5) == 7
    assert rp.kaplan_meier([(10, False), (20, False)]).quantile(0.5) == math.inf  # nobody gave up


def test_patience_recovered_from_censored_waits():
    """Exponential patience (mean 60 s); callers answered after a wait of up to 90 s never show
    theirs. The abandons alone look far less patient; the curve, with the answered callers'
    patience drawn beyond their waits, gives back the true distribution."""
    rng = random.Random(5)
    patience = [rng.expovariate(1 / 60) for _ in range(20_000)]
    answered_after = [rng.uniform(0, 90) for _ in patience]
    observations = [(min(p, w), p <= w) for p, w in zip(patience, answered_after)]
    abandoned = [w for w, gave_up in observations if gave_up]
    assert statistics.mean(abandoned) < 40  # the naive estimate
    curve = rp.kaplan_meier(observations)
    draw = random.Random(6)
    completed = [w if gave_up else curve.draw_beyond(w, draw) for w, gave_up in observations]
    assert all(c >= w for c, (w, _) in zip(completed, observations))
    assert statistics.mean(completed) == pytest.approx(60, rel=0.04)
    assert statistics.median(completed) == pytest.approx(60 * math.log(2), rel=0.04)
    assert curve.quantile(0.5) == pytest.approx(60 * math.log(2), rel=0.04)


def test_the_plan_keeps_what_was_observed_and_draws_the_rest():
    calls = rp.recorded_calls(EVENTS, SINCE, UNTIL)
    plan = rp.replay_plan(calls, seed=3)
    assert len(plan.arrivals) == len(calls)
    for call, arrival in zip(calls, plan.arrivals):
        assert (arrival.at, arrival.queue) == (call.entered_at, call.queue)
        if call.outcome == rp.ABANDONED:
            assert arrival.patience == call.wait
        else:
            assert arrival.patience > (call.wait or 0.0)
        if call.handle is not None:
            assert arrival.handle == call.handle
        else:  # drawn from its own queue's recorded handle times
            assert arrival.handle in {c.handle for c in calls if c.queue == call.queue and c.handle is not None}
    assert plan.patience_drawn == 7 and plan.handles_drawn == 3
    assert plan.ring_seconds == 4.0  # the mean over the CONNECTs that name a ring time: only c1 does
    assert rp.replay_plan(calls, seed=3) == plan


def test_a_day_without_any_handle_time_cannot_be_replayed():
    lost = [e for e in EVENTS if e.event not in ("COMPLETE_CALLER", "COMPLETE_AGENT", "TRANSFER")]
    with pytest.raises(rp.ReplayError, match="handle time"):
        rp.replay_plan(rp.recorded_calls(lost, SINCE, UNTIL), seed=1)


def test_the_recorded_roster():
    queues = [Queue("sales"), Queue("support", skills={"tech": 5})]
    roster = rp.recorded_roster(EVENTS, DAY + timedelta(hours=9), DAY + timedelta(hours=11), queues)
    # A1 on since 08:30, on break 10:15-10:30, out at 10:45; A2 on since 08:59, still on
    seconds = roster.available_seconds(roster.changes[0].at, roster.changes[0].at + 2 * 3600)
    assert seconds == {"A1": (105 - 15) * 60.0, "A2": 2 * 3600.0}
    # agents the ACD file does not name are generalists: every queue, every required skill
    assert {(t.agent, t.queue) for t in roster.tiers} == {(a, q) for a in ("A1", "A2") for q in ("sales", "support")}
    assert all(a.skills == {"tech": rp.TOP_LEVEL} for a in roster.agents)


STAFFING = """
groups:
  general: {queues: [sales]}
  tech: {skills: {tech: 8}, queues: {support: 1, sales: 2}}
intervals:
  - {from: "00:00", to: "08:00", agents: {tech: 1}}
  - {from: "08:00", to: "12:00", agents: {general: 3, tech: 2}}
  - {from: "12:00", to: "24:00", agents: {general: 1, tech: 1}}
"""


def test_a_staffing_file_on_the_day_the_clocks_go_back(tmp_path):
    path = tmp_path / "staffing.yaml"
    path.write_text(STAFFING)
    zone = ZoneInfo("Europe/London")
    day = date(2026, 10, 25)  # 25 hours long: 01:00-02:00 happens twice
    since, until = rp.day_bounds(day, zone)
    assert until.timestamp() - since.timestamp() == 25 * 3600  # (aware datetimes in one zone subtract as wall clocks)
    queues = [Queue("sales"), Queue("support", skills={"tech": 5})]
    roster = rp.load_roster(path, day, zone, queues)
    assert sorted(a.id for a in roster.agents) == ["general-1", "general-2", "general-3", "tech-1", "tech-2"]
    assert {(t.agent, t.queue, t.level) for t in roster.tiers if t.agent == "tech-1"} == {
        ("tech-1", "support", 1), ("tech-1", "sales", 2)}
    seconds = roster.available_seconds(since.timestamp(), until.timestamp())
    # tech-1 works the whole day without logging out at 08:00 or 12:00: 25 hours
    assert seconds["tech-1"] == 25 * 3600
    assert [c.status for c in roster.changes if c.agent == "tech-1"] == [AgentStatus.AVAILABLE, AgentStatus.LOGGED_OUT]
    assert seconds["general-1"] == 16 * 3600 and seconds["general-2"] == seconds["tech-2"] == 4 * 3600


@pytest.mark.parametrize("text,error", [
    ("groups: {a: {queues: [nosuch]}}\nintervals: []\n", "no queue nosuch"),
    ("groups: {a: {}}\nintervals: [{from: '08:00', to: '09:00', agents: {b: 1}}]\n", "no group 'b'"),
    (("groups: {a: {}}\nintervals: [{from: '08:00', to: '10:00', agents: {a: 1}},"
      " {from: '09:00', to: '11:00', agents: {a: 1}}]\n"), "overlaps"),
    ("groups: {a: {}}\nintervals: [{from: '10:00', to: '09:00', agents: {a: 1}}]\n", "later than from"),
])
def test_staffing_file_mistakes_are_named_where_they_are(tmp_path, text, error):
    path = tmp_path / "staffing.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=error) as caught:
        rp.load_roster(path, date(2026, 11, 20), ZoneInfo("UTC"), [Queue("sales")])
    assert str(path) in str(caught.value)


@pytest.mark.timeout(60)
def test_two_queues_with_skills_replayed_through_the_router(tmp_path):
    """support needs skill tech: with the staffing file both queues are served; the same day
    without the tech group leaves support unanswered while sales is served as before."""
    path = tmp_path / "staffing.yaml"
    path.write_text(STAFFING)
    day = date(2026, 11, 20)
    since, until = rp.day_bounds(day, ZoneInfo("UTC"))
    rng = random.Random(9)
    calls = []
    for i in range(300):
        queue = "support" if i % 3 == 0 else "sales"
        at = since.timestamp() + 8 * 3600 + rng.uniform(0, 4 * 3600)
        calls.append(rp.RecordedCall(f"r{i}", queue, at, "", rp.ANSWERED, 5.0, rng.expovariate(1 / 120), 0.0, "x"))
    calls.sort(key=lambda c: c.entered_at)
    queues = [Queue("sales"), Queue("support", skills={"tech": 5}, service_level_seconds=60)]
    plan = rp.replay_plan(calls, seed=1)
    full = rp.load_roster(path, day, ZoneInfo("UTC"), queues)
    report = rp.replay(plan, full, queues, since=since.timestamp(), until=until.timestamp(), answer_within=20, seed=1)
    assert report.offered == 300 and report.queues["support"].offered == 100
    assert report.agents == 5
    assert report.queues["sales"].answered > 190 and report.queues["support"].answered > 90
    general_only = rp.Roster(tuple(a for a in full.agents if a.id.startswith("general")),
                             tuple(t for t in full.tiers if t.agent.startswith("general")),
                             tuple(c for c in full.changes if c.agent.startswith("general")), "general only")
    starved = rp.replay(plan, general_only, queues, since=since.timestamp(), until=until.timestamp(),
                        answer_within=20, seed=1)
    assert starved.queues["support"].answered == 0 and starved.queues["sales"].answered > 190
