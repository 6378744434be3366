"""`callrouter top` as a supervisor runs it: a separate process reading a running engine's admin API."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.api import AdminApi
from engine.config import Secret
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "top-test-token"


def top(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "top", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={"COLUMNS": "160", "PATH": ""})


def config_for(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "top.yaml"
    path.write_text(f"data_dir: data\napi:\n  listen: 127.0.0.1:{port}\n  token: {TOKEN}\n")
    return path


def test_top_once_prints_queues_agents_service_level_and_campaigns(instrumented_engine, tmp_path):
    engine, metrics = instrumented_engine.engine, instrumented_engine.metrics
    # The admin API as the engine serves it once /status carries the wallboard (see the report).
    api = AdminApi("127.0.0.1", 0, Secret(TOKEN), lambda: {**engine.status(), **metrics.wallboard()})
    api.start()
    try:
        wait_until(lambda: engine.stats.answered >= 2, timeout=40, what="answered calls")
        result = top(config_for(tmp_path, api.port), "--once")
    finally:
        api.stop()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sim1 up" in out
    assert "service level: answered within 20 s / offered" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert {"sales", "support", "general"} <= rows.keys(), out
    assert "renewals" in rows, "the campaign's row"
    answered_somewhere = [name for name in ("sales", "support", "general") if "%" in rows[name].split("│")[8]]
    assert answered_somewhere, f"a service level is shown for a queue with answered calls:\n{out}"


def test_top_says_what_to_do_when_no_engine_answers(tmp_path):
    result = top(config_for(tmp_path, 1), "--once")
    assert result.returncode == 1
    assert "no engine answering on 127.0.0.1:1" in result.stderr and "callrouter run" in result.stderr
