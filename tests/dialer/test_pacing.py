"""Pacing's cap as properties over arbitrary inputs (hypothesis), and its fallbacks."""
from __future__ import annotations

import math
from statistics import NormalDist

from hypothesis import given, settings, strategies as st

from engine.dialer.pacing import (
    IDLE, TALKING, WRAP_UP, AgentView, DialLevel, PacingInputs, adapt_level, pace, progressive_calls, target_rate,
)

agents = st.lists(st.builds(AgentView, st.sampled_from([IDLE, TALKING, WRAP_UP]),
                            st.floats(0, 600), st.floats(0, 60)), min_size=1, max_size=60).map(tuple)


@st.composite
def inputs(draw, attempts=st.integers(0, 20_000)):
    n = draw(attempts)
    live = draw(st.integers(0, n))
    period_live = draw(st.floats(0, 5000))
    return PacingInputs(
        agents=draw(agents), in_flight=draw(st.integers(0, 100)), attempts=n, live_answers=live,
        handle_time=draw(st.floats(10, 900)), handle_samples=draw(st.integers(0, 5000)),
        answer_delay=draw(st.floats(1, 40)), period_live_answers=period_live,
        period_abandoned=draw(st.floats(0, 0.05)) * period_live,
        period_seconds_left=draw(st.floats(0, 30 * 86400)), live_answers_per_second=draw(st.floats(0, 2)),
        delta=draw(st.sampled_from([0.01, 0.05, 0.2])))


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_predictive_decisions_keep_the_prediction_within_the_target_and_the_target_within_the_cap(i):
    decision = pace(i)
    assert decision.calls >= progressive_calls(i.agents, i.in_flight)
    if decision.method == "predictive":
        assert decision.predicted_abandon_rate <= decision.target_abandon_rate + 1e-12
        assert decision.target_abandon_rate <= i.cap
        assert i.attempts >= i.min_attempts and i.handle_samples >= i.min_handle_samples
    else:
        assert decision.calls == progressive_calls(i.agents, i.in_flight)
    assert decision.reason and decision.to_dict()["inputs"]["in_flight"] == i.in_flight


@settings(max_examples=300, deadline=None)
@given(inputs())
def test_the_upper_confidence_bound_of_the_period_stays_under_the_cap(i):
    """With the rest of the period answered at the target rate r, the one-sided (1 - delta) bound
    of the period's final abandons, A + rR + z sqrt(rR), is within cap x (L + R)."""
    z = NormalDist().inv_cdf(1 - i.delta)
    r = target_rate(i, z)
    remaining = i.live_answers_per_second * i.period_seconds_left
    assert 0.0 <= r <= i.cap
    if r > 0:
        bound = i.period_abandoned + r * remaining + z * math.sqrt(r * remaining)
        assert bound <= i.cap * (i.period_live_answers + remaining) + 1e-6


def _inputs(**kw) -> PacingInputs:
    base = dict(agents=(AgentView(IDLE),) * 5 + (AgentView(TALKING, 60),) * 15, in_flight=0, attempts=2000,
                live_answers=600, handle_time=120, handle_samples=500, answer_delay=10, period_live_answers=500,
                period_abandoned=5, period_seconds_left=20 * 86400, live_answers_per_second=0.1)
    return PacingInputs(**{**base, **kw})


def test_too_little_data_or_a_spent_budget_dials_progressively():
    assert pace(_inputs()).method == "predictive" and pace(_inputs()).calls > 5
    little = pace(_inputs(attempts=50, live_answers=15))
    assert (little.method, little.calls) == ("progressive", 5) and "too little data" in little.reason
    spent = pace(_inputs(period_abandoned=16, period_seconds_left=3600, live_answers_per_second=0.01))
    assert (spent.method, spent.calls) == ("progressive", 5) and "budget" in spent.reason


def test_more_free_agents_or_fewer_answers_mean_more_calls():
    assert pace(_inputs(agents=(AgentView(IDLE),) * 10 + (AgentView(TALKING, 60),) * 10)).calls > pace(_inputs()).calls
    assert pace(_inputs(live_answers=200)).calls > pace(_inputs()).calls
    assert pace(_inputs(in_flight=40)).calls < pace(_inputs()).calls


def test_adaptive_level_moves_against_the_drop_rate():
    level = DialLevel(2.0)
    assert adapt_level(level, 0.05, 0.03, 0.5).level < 2.0
    assert adapt_level(level, 0.01, 0.03, 0.5).level > 2.0
    assert adapt_level(DialLevel(1.0), 0.5, 0.03, 0.0).level == 1.0
