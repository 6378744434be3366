"""`callrouter staffing --simulate --replay-day` as a planner runs it: a separate process against a
real PostgreSQL whose queue log holds a recorded day, written through the engine's RecordWriter.

The day is produced by an independent queue (not the Router): FIFO, callers with exponential
patience, agents who each take the next waiting call as soon as they are free and wrap up 10 s
after each conversation, logged as the ACD logs it (WRAP_UP as an agent event). Replaying it
with the staffing the log shows must give back what was recorded; more agents must do better."""
from __future__ import annotations

import heapq
import json
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from engine.cdr.queue_log import QueueEvent
from engine.cdr.writer import RecordWriter, WriterSettings
from tests.cdr.conftest import fresh_database

pytestmark = pytest.mark.timeout(120)
CALLROUTER = str(Path(sys.executable).parent / "callrouter")
ZONE = ZoneInfo("America/New_York")
DAY = "2026-11-20"
OPEN = datetime(2026, 11, 20, 8, 0, tzinfo=ZONE)   # 13:00 UTC: the day must be read in its own zone
AGENTS, PER_HOUR, TALK, WRAP, PATIENCE, HOURS, T = 6, 120.0, 150.0, 10.0, 60.0, 4.0, 20.0


def recorded_day(seed: int) -> tuple[list[QueueEvent], dict]:
    rng = random.Random(seed)
    events, truth = [], {"offered": 0, "answered": 0, "abandoned": 0, "within": 0}

    def log(at: float, event: str, **fields) -> None:
        events.append(QueueEvent(QueueEvent.new_id(), OPEN + timedelta(seconds=at), event, **fields))

    close = HOURS * 3600
    free = [(0.0, f"10{i:02d}") for i in range(1, AGENTS + 1)]  # (free from, agent)
    for _, agent in free:
        log(-300, "LOGIN", agent=agent, status="Available")
        log(close + 1800, "LOGOUT", agent=agent)
    now, n = 0.0, 0
    while (now := now + rng.expovariate(PER_HOUR / 3600)) < close:
        n += 1
        call = {"queue": "sales", "call_uuid": f"call-{n}"}
        truth["offered"] += 1
        log(now, "ENTER", caller_id_number=f"555{n:04d}", position=1, **call)
        patience, talk = rng.expovariate(1 / PATIENCE), rng.expovariate(1 / TALK)
        start = max(now, free[0][0])
        if start - now > patience:
            truth["abandoned"] += 1
            log(now + patience, "ABANDON", wait_seconds=patience, **call)
            continue
        _, agent = heapq.heappop(free)
        truth["answered"] += 1
        truth["within"] += start - now <= T
        log(start, "CONNECT", agent=agent, wait_seconds=start - now, ring_seconds=0.0, **call)
        log(start + talk, "COMPLETE_CALLER", agent=agent, talk_seconds=talk, hold_seconds=0.0, **call)
        log(start + talk + WRAP, "WRAP_UP", agent=agent, queue="sales", wrap_up_seconds=WRAP)
        heapq.heappush(free, (start + talk + WRAP, agent))
    return events, truth


@pytest.fixture(scope="module")
def recorded(pg_dsn, tmp_path_factory):
    dsn = fresh_database(pg_dsn, "acd_replay_cli")
    events, truth = recorded_day(seed=4)
    home = tmp_path_factory.mktemp("replay-cli")
    writer = RecordWriter(dsn, home / "spool", WriterSettings(flush_interval=0.05))
    writer.start()
    for event in events:
        writer.submit(event)
    writer.stop()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM queue_log").fetchone()[0] == len(events)
    config = home / "callrouter.yaml"
    config.write_text(f"data_dir: {home / 'data'}\ndatabase:\n  dsn: '{dsn}'\n")
    return config, truth


def staffing(config: Path, *args: str, json_out: bool = True):
    done = subprocess.run([CALLROUTER, "staffing", "--simulate", "--replay-day", DAY, "--tz", str(ZONE),
                           "--answer-within", str(T), "--config", str(config), *args,
                           *(["--json"] if json_out else [])],
                          capture_output=True, text=True, timeout=100, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout) if json_out else done.stdout


def test_the_recorded_day_and_its_replay_with_the_recorded_staffing(recorded):
    config, truth = recorded
    result = staffing(config)
    before, after = result["recorded"], result["replay"]
    assert result["staffing"] == "recorded" and before["agents"] == after["agents"] == AGENTS
    # the recorded figures are the queue's own ground truth
    assert (before["offered"], before["answered"], before["abandoned"]) == (
        truth["offered"], truth["answered"], truth["abandoned"])
    assert before["service_level"] == pytest.approx(truth["within"] / truth["offered"])
    assert 0.4 < before["service_level"] < 0.9 and before["abandoned"] > 10  # a day worth replaying
    # the same arrivals, patience and handle times on the same staffing give the same day back
    assert after["offered"] == before["offered"]
    assert after["service_level"] == pytest.approx(before["service_level"], abs=0.03)
    assert after["abandoned"] == pytest.approx(before["abandoned"], abs=max(3, 0.1 * before["abandoned"]))
    assert after["asa_seconds"] == pytest.approx(before["asa_seconds"], rel=0.1)
    assert after["occupancy"] == pytest.approx(before["occupancy"], abs=0.03)
    assert after["queues"]["sales"]["offered"] == before["queues"]["sales"]["offered"] == before["offered"]
    assert result["patience"]["abandons"] == truth["abandoned"]
    assert result["patience"]["drawn"] == truth["answered"]
    assert result["handle_times_drawn"] == truth["abandoned"]


def test_more_agents_answer_more_sooner(recorded):
    config, _ = recorded
    as_recorded = staffing(config)["replay"]
    more = staffing(config, "--agents", str(AGENTS + 2))
    assert more["staffing"] == f"{AGENTS + 2} agents" and more["replay"]["agents"] == AGENTS + 2
    assert more["replay"]["offered"] == as_recorded["offered"]
    assert more["replay"]["service_level"] > as_recorded["service_level"] + 0.05
    assert more["replay"]["abandoned"] < as_recorded["abandoned"]
    assert more["replay"]["occupancy"] < as_recorded["occupancy"]
    assert more["recorded"] == staffing(config)["recorded"]  # the baseline is the day, whatever the what-if


def test_a_staffing_file_short_handed_in_the_second_half(recorded, tmp_path):
    config, _ = recorded
    roster = tmp_path / "roster.yaml"
    roster.write_text(f"groups:\n  sales: {{queues: [sales]}}\nintervals:\n"
                      f"  - {{from: '07:30', to: '10:00', agents: {{sales: {AGENTS}}}}}\n"
                      f"  - {{from: '10:00', to: '13:00', agents: {{sales: {AGENTS - 2}}}}}\n")
    as_recorded = staffing(config)["replay"]
    short = staffing(config, "--staffing", str(roster))["replay"]
    assert short["service_level"] < as_recorded["service_level"]
    assert short["abandoned"] > as_recorded["abandoned"]


def test_text_output_and_mistakes(recorded):
    config, _ = recorded
    out = staffing(config, json_out=False)
    assert "recorded" in out and "replay" in out and "service level" in out and "sales" in out
    done = subprocess.run([CALLROUTER, "staffing", "--simulate", "--replay-day", "2026-11-21", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no call entering a queue on 2026-11-21" in done.stderr
