"""The ACD's YAML (what it builds, and mistakes reported at file:line:col) and `callrouter
staffing` run as a process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.acd.config import load_acd
from engine.acd.model import AgentStatus, Member, RelaxStep, Strategy
from engine.acd.routing import Router
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
queues:
  support:
    strategy: skills-best-match
    skills: {english: 5}
    priority: 1
    service_level: {seconds: 30, target: 0.9}
    overflow: "queue:sales"
    tier_rules: {apply: true, wait_second: 20}
    relax:
      - {after: 30, min_level: 3}
      - {after: 90, min_level: 1, skills: [english]}
  sales:
    strategy: fewest-calls
    wrap_up_time: 15
agents:
  1001:
    name: Alice Martin
    contacts: {fs1: user/1001}
    skills: {english: 8, billing: 4}
    max_no_answer: 3
    no_answer_delay_time: 30
  "1002":
    skills: {english: 4}
tiers:
  - {agent: 1001, queue: support}
  - {agent: "1002", queue: support, level: 2, position: 3}
  - {agent: 1001, queue: sales}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_centre_loads_and_routes(tmp_path):
    acd = load_acd(write(tmp_path, GOOD))
    support, sales = acd.queues
    assert support.strategy is Strategy.SKILLS_BEST_MATCH and sales.strategy is Strategy.FEWEST_CALLS
    assert support.relax == (RelaxStep(30, 3), RelaxStep(90, 1, frozenset({"english"})))
    assert support.service_level_seconds == 30 and support.tier_rules.apply and sales.wrap_up_time == 15
    alice = acd.agents[0]
    assert (alice.id, alice.name, alice.contacts, alice.max_no_answer) == ("1001", "Alice Martin", {"fs1": "user/1001"}, 3)
    assert [(t.agent, t.queue, t.level, t.position) for t in acd.tiers] == [
        ("1001", "support", 1, 1), ("1002", "support", 2, 3), ("1001", "sales", 1, 1)]
    router = Router(acd.queues, acd.agents, acd.tiers)
    router.set_status("1002", AgentStatus.AVAILABLE, 0.0)
    router.member_joined(Member("c", "support", joined_at=0.0), 0.0)
    assert router.assignments(10.0) == []          # 1002: english 4 < 5, and tier level 2 not open
    assert [o.agent for o in router.assignments(40.0)] == ["1002"]  # both relaxed by then


@pytest.mark.parametrize("text,where,message", [
    ("queues:\n  q:\n    stratgy: top-down\n", ":3:5", "did you mean 'strategy'"),
    ("queues:\n  q:\n    strategy: fastest\n", ":3:15", "unknown strategy 'fastest'"),
    ("agents:\n  a:\n    skills: {en: 11}\n", ":3:18", "from 1 to 10"),
    ("queues: {q: {}}\nagents: {a: {}}\ntiers:\n  - {agent: b, queue: q}\n", ":4:13", "no agent 'b'"),
    ("queues:\n  q:\n    relax: [{after: 60, min_level: 3}, {after: 30, min_level: 1}]\n", ":3:48", "increasing"),
    ("queues:\n  q:\n    overflow: queue:nowhere\n", ":3:15", "does not exist"),
    ("queues:\n  q:\n    service_level: {target: 80}\n", ":3:29", "between 0 and 1"),
    ("queues:\n  q: {}\n  q: {}\n", ":3:3", "duplicate key 'q'"),
])
def test_mistakes_are_reported_where_they_are(tmp_path, text, where, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_acd(path)
    assert str(caught.value).startswith(f"{path}{where}: ") and message in str(caught.value)


def callrouter(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "staffing", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_staffing_command_gives_the_erlang_c_answer_as_json():
    done = callrouter("--calls", "100", "--interval-seconds", "1800", "--aht", "180", "--target-sl", "0.8",
                      "--answer-within", "20", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["model"] == "erlang-c" and figures["agents"] == 14
    assert figures["service_level"] == pytest.approx(0.888, abs=1e-3)
    assert figures["asa_seconds"] == pytest.approx(7.8, abs=0.05)
    assert figures["occupancy"] == pytest.approx(0.714, abs=1e-3)
    assert "abandon_rate" not in figures


def test_staffing_command_with_patience_and_a_given_staffing():
    done = callrouter("--calls", "100", "--interval-seconds", "1800", "--aht", "180", "--patience", "60",
                      "--agents", "10", "--json")
    figures = json.loads(done.stdout)
    assert figures["model"] == "erlang-a" and figures["agents"] == 10
    assert 0 < figures["abandon_rate"] < 0.5 and 0 < figures["service_level"] < 1
    text = callrouter("--calls", "100", "--aht", "180")
    assert text.returncode == 0 and "service level: 88.8%" in text.stdout


def test_staffing_command_refuses_a_question_without_traffic():
    done = callrouter("--aht", "180", "--json")
    assert done.returncode == 1 and "give --calls and --aht" in done.stderr
