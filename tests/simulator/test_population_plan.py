"""The inbound call plan: arrival rates as asked, the same seed the same calls."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from engine.simulator.population import arrival_plan, arrival_times
from engine.simulator.scenario import PoissonArrivals, ProfileArrivals, bundled, load_scenario


def test_poisson_rate_is_the_rate_asked_for() -> None:
    times = list(arrival_times(PoissonArrivals(per_hour=600), 0, random.Random(3), until=50 * 3600))
    assert len(times) == pytest.approx(600 * 50, rel=0.03)
    assert times == sorted(times) and times[-1] < 50 * 3600
    gaps = [b - a for a, b in zip(times, times[1:])]
    # exponential gaps: the standard deviation equals the mean
    mean = sum(gaps) / len(gaps)
    sd = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert sd == pytest.approx(mean, rel=0.05)


def test_profile_follows_the_time_of_day() -> None:
    # open 08:00-12:00 at 360/h, 12:00-17:00 at 120/h, closed otherwise; start at 06:00, run 3 days
    profile = ProfileArrivals(((8 * 3600, 360.0), (12 * 3600, 120.0), (17 * 3600, 0.0)))
    start = 6 * 3600
    per_hour_of_day = Counter(int((start + t) % 86400 // 3600)
                              for t in arrival_times(profile, start, random.Random(5), until=3 * 86400))
    assert all(per_hour_of_day[h] == 0 for h in list(range(0, 8)) + list(range(17, 24)))
    morning = sum(per_hour_of_day[h] for h in range(8, 12)) / (4 * 3)
    afternoon = sum(per_hour_of_day[h] for h in range(12, 17)) / (5 * 3)
    assert morning == pytest.approx(360, rel=0.1)
    assert afternoon == pytest.approx(120, rel=0.15)


def test_closed_all_day_places_no_calls() -> None:
    assert list(arrival_times(ProfileArrivals(((0, 0.0),)), 0, random.Random(1), until=None)) == []


def _plan(seed: int, until: float = 600.0):
    inbound = load_scenario(bundled("demo")).inbound
    return list(arrival_plan(inbound, 9 * 3600, random.Random(seed), until))


def test_same_seed_same_calls_other_seed_other_calls() -> None:
    first, again, other = _plan(11), _plan(11), _plan(12)
    assert first == again
    assert [c.at for c in first] != [c.at for c in other]


def test_plan_draws_from_the_scenario_pools() -> None:
    scenario = load_scenario(bundled("demo"))
    plan = _plan(1, until=3600)
    kinds = Counter(c.kind.name for c in plan)
    weights = {k.name: k.weight for k in scenario.inbound.kinds}
    total = sum(weights.values())
    for name, weight in weights.items():
        assert kinds[name] / len(plan) == pytest.approx(weight / total, abs=0.03)
    assert {c.dnis for c in plan} == {d for d, _ in scenario.inbound.dnis}
    patterns = scenario.inbound.numbers
    for call in plan:
        assert any(len(p) == len(call.number) and all(pc == "X" and nc.isdigit() or pc == nc
                                                      for pc, nc in zip(p, call.number)) for p in patterns)


def test_scripted_calls_keep_their_fixed_fields(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text("nodes: [{name: a, port: 1}]\ninbound:\n  numbers: ['+1555XXXX']\n  dnis: '7000'\n"
                    "  kinds: {calm: {}, angry: {}}\n  arrivals:\n    calls:\n"
                    "      - {at: 1, number: '+4420', dnis: '7001', kind: angry}\n"
                    "      - {at: 5}\n      - {at: 9}\n", encoding="utf-8")
    plan = list(arrival_plan(load_scenario(path).inbound, 0, random.Random(1), until=6))
    assert [c.at for c in plan] == [1.0, 5.0]
    assert (plan[0].number, plan[0].dnis, plan[0].kind.name) == ("+4420", "7001", "angry")
    assert plan[1].number.startswith("+1555") and plan[1].dnis == "7000"
