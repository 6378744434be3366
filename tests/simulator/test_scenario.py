"""Scenario YAML: every mistake is reported as file:line:col with what is wrong, and YAML 1.1's
implicit typing never changes what the operator wrote."""
from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.simulator.scenario import (
    Exponential, LogNormal, PoissonArrivals, ProfileArrivals, ScriptedArrivals, Uniform, bundled, load_scenario,
)

BROKEN = Path(__file__).parent / "data" / "broken"

# file, line, column, what the operator must be told
CASES = [
    ("duplicate_key", 5, 1, "duplicate key 'seed' in the scenario (first given on line 1)"),
    ("unknown_key", 4, 1, "unknown key 'agent' in the scenario; did you mean 'agents'?"),
    ("digits_on", 8, 15, "inbound.kinds.yes_man.digits must be DTMF digits (0-9 * # A-D) or none, not 'on'"),
    ("time_out_of_range", 6, 16, "inbound.arrivals.profile[1].from must be a time of day as HH:MM (24 h), not '25:00'"),
    ("rate_not_number", 4, 15, "inbound.arrivals.per_hour must be a number, not 'lots'"),
    ("probability_range", 4, 25, "agents[0].answer_probability must be a probability between 0 and 1, not '1.5'"),
    ("outcomes_sum", 5, 7, "must add up to 1 (they add up to 0.7"),
    ("bad_regex", 5, 14, "outbound.destinations[0].match is not a valid regular expression"),
    ("unknown_node", 6, 11, "agents[0].node: no node named 'sim9' (nodes: sim1, sim2)"),
    ("syntax_error", 4, 1, "not valid YAML: expected ',' or ']'"),
    ("empty", 1, 1, "the file is empty"),
    ("two_arrival_kinds", 4, 5, "inbound.arrivals must give exactly one of per_hour"),
    ("uniform_reversed", 4, 37, "agents[0].talk.uniform.max must not be below min (300)"),
    ("missing_nodes", 1, 1, "the scenario is missing 'nodes'"),
    ("agent_twice", 4, 10, "agent 1005 is listed twice"),
    ("profile_order", 6, 16, "inbound.arrivals.profile[1].from must be later than the step before it"),
    ("unknown_distribution", 4, 12, "unknown key 'gamma' in agents[0].ring"),
    ("agent_node_ambiguous", 5, 5, "agents[0] must say which node its agents register on"),
    ("port_twice", 3, 24, "port 8021 is used by another node"),
    ("number_not_digits", 4, 29, "inbound.numbers[1] must be digits (X = any digit, optional leading +), not 'anonymous'"),
    ("script_unknown_kind", 6, 23, "inbound.arrivals.calls[1].kind: no caller kind named 'angry'"),
]


@pytest.mark.parametrize("name,line,col,message", CASES, ids=[c[0] for c in CASES])
def test_broken_scenario_names_place_and_problem(name: str, line: int, col: int, message: str) -> None:
    path = BROKEN / f"{name}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:{line}:{col}: "), text
    assert message in text


def test_the_corpus_is_fully_covered() -> None:
    assert {p.stem for p in BROKEN.glob("*.yaml")} == {c[0] for c in CASES}


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_scenario(tmp_path / "nope.yaml")


def test_yaml_1_1_traps_keep_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "traps.yaml"
    path.write_text(
        "seed: 010\n"                      # decimal ten, not octal eight
        "start_time: 9:30\n"               # half past nine, not 570
        "nodes: [{name: sim1, port: 8021, password: 0123}]\n"
        "park_variables: {record: on, park_timeout: 010, hours: 9:30}\n"
        "inbound:\n"
        "  arrivals: {per_hour: 60}\n"
        "  numbers: [+442079460000, 0612345678]\n"
        "  dnis: 0800\n"
        "  kinds:\n"
        "    menu: {digits: [010, none, '#'], patience: 1e2}\n",
        encoding="utf-8",
    )
    scenario = load_scenario(path)
    assert scenario.seed == 10
    assert scenario.start_time == 9 * 3600 + 30 * 60
    assert scenario.nodes[0].password == "0123"
    assert dict(scenario.park_variables) == {"record": "on", "park_timeout": "010", "hours": "9:30"}
    assert scenario.inbound.numbers == ("+442079460000", "0612345678")
    assert scenario.inbound.dnis == (("0800", 1.0),)
    kind = scenario.inbound.kinds[0]
    assert kind.digits == ("010", "", "#")
    assert kind.patience.value == 100.0


def test_bundled_scenarios_load() -> None:
    demo = load_scenario(bundled("demo"))
    assert demo.agent_count() == 8
    assert isinstance(demo.inbound.arrivals, PoissonArrivals)
    # about one call every 1-2 s, as the live demo needs
    assert 1800 <= demo.inbound.arrivals.per_hour <= 3600
    smoke = load_scenario(bundled("smoke"))
    assert smoke.duration is not None and smoke.duration <= 30
    assert smoke.nodes[0].port == 0


def test_agent_id_ranges_keep_leading_zeros(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text("nodes: [{name: a, port: 1}]\nagents:\n  - ids: 0098-0101\n", encoding="utf-8")
    assert load_scenario(path).agents[0].ids == ("0098", "0099", "0100", "0101")


def test_arrival_forms(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    base = "nodes: [{name: a, port: 1}]\ninbound:\n  numbers: ['1']\n  dnis: '2'\n  kinds: {k: {}}\n"
    path.write_text(base + "  arrivals:\n    profile:\n      - {from: '08:00', per_hour: 100}\n"
                    "      - {from: '17:30', per_hour: 0}\n", encoding="utf-8")
    profile = load_scenario(path).inbound.arrivals
    assert isinstance(profile, ProfileArrivals)
    assert profile.rate_at(7 * 3600) == 0          # before the first step: last step of yesterday
    assert profile.rate_at(12 * 3600) == 100
    assert profile.next_change(18 * 3600) == 86400 + 8 * 3600
    path.write_text(base + "  arrivals:\n    calls:\n      - {at: 0.5, number: '+15551234', kind: k}\n"
                    "      - {at: 2}\n", encoding="utf-8")
    script = load_scenario(path).inbound.arrivals
    assert isinstance(script, ScriptedArrivals)
    assert [c.at for c in script.calls] == [0.5, 2.0]
    assert script.calls[0].number == "+15551234" and script.calls[1].number is None


@pytest.mark.parametrize("dist,mean,sd", [
    (LogNormal(180.0, 60.0), 180.0, 60.0),
    (Exponential(90.0), 90.0, 90.0),
    (Uniform(2.0, 8.0), 5.0, 6.0 / 12 ** 0.5),
])
def test_distributions_have_the_mean_and_spread_asked_for(dist, mean: float, sd: float) -> None:
    rng = random.Random(1)
    sample = [dist.draw(rng) for _ in range(40000)]
    assert statistics.fmean(sample) == pytest.approx(mean, rel=0.03)
    assert statistics.stdev(sample) == pytest.approx(sd, rel=0.05)
    assert min(sample) >= 0
