"""Erlang C and Erlang A against published figures, an exact textbook formula and an independent
Monte-Carlo queue; and numerically sound where factorials would overflow."""
from __future__ import annotations

import heapq
import math
import random
from fractions import Fraction

import pytest

from engine.acd.erlang import StaffingError, erlang_a_staffing, erlang_c, erlang_c_staffing, staffing


def test_the_classic_hotline_example():
    """100 calls in 30 minutes, AHT 180 s, 80 % within 20 s: 10 Erlangs, 14 agents, as every
    Erlang C primer works it out (P(wait) 17.4 %, SL 88.8 %, ASA 7.8 s, occupancy 71.4 %)."""
    result = staffing(100, 1800, 180, 20, target_sl=0.8)
    assert result.traffic_erlangs == pytest.approx(10.0)
    assert result.agents == 14
    assert result.probability_of_waiting == pytest.approx(0.1741, abs=5e-4)
    assert result.service_level == pytest.approx(0.888, abs=1e-3)
    assert result.asa_seconds == pytest.approx(7.8, abs=0.05)
    assert result.occupancy == pytest.approx(0.714, abs=1e-3)
    # 13 agents fall just short: 79.6 % (the primers' 79.5-79.6 %)
    assert staffing(100, 1800, 180, 20, agents=13).service_level == pytest.approx(0.7956, abs=5e-4)


def _erlang_c_textbook(n: int, a: Fraction) -> Fraction:
    """P(wait) = (A^n/n! * n/(n-A)) / (sum_{k<n} A^k/k! + A^n/n! * n/(n-A)), in exact rationals."""
    top = a ** n / math.factorial(n) * Fraction(n) / (n - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(n)) + top)


@pytest.mark.parametrize("n,a", [(1, Fraction(1, 2)), (3, Fraction(5, 2)), (12, Fraction(10)), (40, Fraction(331, 10))])
def test_erlang_c_agrees_with_the_exact_textbook_formula(n, a):
    assert erlang_c(n, float(a)) == pytest.approx(float(_erlang_c_textbook(n, a)), rel=1e-12)


def test_large_centres_stay_finite_and_monotone():
    """2000 agents: 2000! overflows a float many times over; the recursion does not care."""
    levels = [erlang_c_staffing(n, 1900 / 180, 180, 20).service_level for n in range(1901, 1960, 5)]
    assert all(0.0 <= sl <= 1.0 for sl in levels)
    assert levels == sorted(levels) and levels[-1] > 0.99
    with_patience = erlang_a_staffing(1900, 1900 / 180, 180, 20, 120)
    assert 0.0 < with_patience.abandon_rate < 0.1 and 0.0 < with_patience.service_level < 1.0


def test_overload_has_no_erlang_c_answer_but_erlang_a_has_one():
    overloaded = erlang_c_staffing(8, 10 / 180, 180, 20)
    assert overloaded.service_level == 0.0 and math.isinf(overloaded.asa_seconds)
    with_abandons = erlang_a_staffing(8, 10 / 180, 180, 20, 60)
    assert 0.0 < with_abandons.abandon_rate < 1.0
    # what is not answered is abandoned: the agents carry what the callers do not take away
    assert with_abandons.occupancy == pytest.approx(10 * (1 - with_abandons.abandon_rate) / 8)


def test_erlang_a_tends_to_erlang_c_as_patience_grows():
    c = erlang_c_staffing(12, 100 / 1800, 180, 20)
    a = erlang_a_staffing(12, 100 / 1800, 180, 20, 1e8)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-5)
    assert a.asa_seconds == pytest.approx(c.asa_seconds, rel=1e-4)
    assert a.abandon_rate < 1e-6


def _monte_carlo(rate: float, aht: float, agents: int, patience: float, within: float, calls: int, seed: int):
    """FIFO M/M/n+M, one caller at a time: it is served when the first agent frees up, unless its
    patience ends first (FIFO makes the free times of the agents all that matters)."""
    rng = random.Random(seed)
    free = [0.0] * agents
    now = answered = abandoned = in_time = 0
    waits = 0.0
    for _ in range(calls):
        now += rng.expovariate(rate)
        start = max(now, free[0])
        if start - now > rng.expovariate(1 / patience):
            abandoned += 1
            continue
        heapq.heapreplace(free, start + rng.expovariate(1 / aht))
        answered += 1
        waits += start - now
        in_time += start - now <= within
    return in_time / calls, abandoned / calls, waits / answered


@pytest.mark.parametrize("agents,patience", [(9, 20.0), (7, 60.0)])
def test_erlang_a_agrees_with_a_monte_carlo_queue(agents, patience):
    rate, aht, within = 960 / 3600, 30.0, 10.0
    sl, abandon, asa = _monte_carlo(rate, aht, agents, patience, within, 200_000, seed=agents)
    model = erlang_a_staffing(agents, rate, aht, within, patience)
    assert model.service_level == pytest.approx(sl, abs=0.01)
    assert model.abandon_rate == pytest.approx(abandon, abs=0.01)
    assert model.asa_seconds == pytest.approx(asa, rel=0.05)


def test_staffing_finds_the_fewest_agents():
    for patience in (None, 45.0):
        best = staffing(400, 3600, 240, 15, target_sl=0.9, patience=patience)
        assert best.service_level >= 0.9
        assert staffing(400, 3600, 240, 15, agents=best.agents - 1, patience=patience).service_level < 0.9


def test_impossible_questions_say_so():
    with pytest.raises(StaffingError):
        staffing(0, 1800, 180, 20, target_sl=0.8)
    with pytest.raises(StaffingError):
        staffing(100, 1800, 180, 20)
