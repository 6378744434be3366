"""The CLI as a user runs it: `callrouter` commands as separate processes, the engine reaching the
simulator over TCP, the admin API over HTTP, signals for shutdown."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
CLI = [sys.executable, "-m", "engine"]
ROOT = Path(__file__).resolve().parents[2]


def callrouter(*args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listening on {port}")


def test_help_names_every_command_and_no_secret():
    result = callrouter("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "simulate", "check", "db", "status"):
        assert f"  {command}" in result.stdout
    run_help = callrouter("run", "--help").stdout
    assert "--freeswitch HOST:PORT:PASSWORD" in run_help and "ClueCon" in run_help  # the example only


def test_check_reports_file_line_col_and_exits_1(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text((ROOT / "dialplans" / "csat.yaml").read_text())
    bad = tmp_path / "bad.yaml"
    bad.write_text("flow: x\nnodes: [1, 2\n")
    result = callrouter("check", str(good), str(bad))
    assert result.returncode == 1
    assert f"{bad}:3:1: not valid YAML" in result.stderr
    assert "Traceback" not in result.stderr
    assert callrouter("check", str(good)).returncode == 0
    assert callrouter("check", str(ROOT / "dialplans")).returncode == 0, "the shipped flows are valid"


def test_check_with_a_config_refuses_flows_naming_a_queue_the_acd_lacks(tmp_path):
    acd = tmp_path / "acd.yaml"
    acd.write_text((ROOT / "acd.yaml").read_text().replace("\n  billing:\n", "\n  invoices:\n")
                   .replace("queue: billing", "queue: invoices"))
    config = tmp_path / "config.yaml"
    config.write_text(f"acd: {{file: {acd}}}\n")
    result = callrouter("check", "--config", str(config), str(ROOT / "dialplans"))
    assert result.returncode == 1
    assert "billing" in result.stderr and f"{ROOT / 'dialplans' / 'main.yaml'}:" in result.stderr
    assert callrouter("check", "--config", str(config), str(ROOT / "dialplans" / "csat.yaml")).returncode == 0


def test_run_without_a_node_says_what_to_do(tmp_path):
    result = callrouter("run", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no FreeSWITCH node to connect to" in result.stderr and "Traceback" not in result.stderr


def test_daemon_against_simulator_status_reload_and_graceful_stop(tmp_path):
    esl_port, api_port = free_port(), free_port()
    dialplans = tmp_path / "dialplans"
    shutil.copytree(ROOT / "dialplans", dialplans)
    password = "s3cr3t-esl-pw"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
freeswitch:
  - {{name: fs1, host: 127.0.0.1, port: {esl_port}, password: env:TEST_ESL_PASSWORD}}
data_dir: data
dialplans: {dialplans}
api: {{listen: "127.0.0.1:{api_port}"}}
acd: {{file: {ROOT / "acd.yaml"}, ring_seconds: 5}}
metrics: {{listen: "127.0.0.1:0"}}
shutdown_grace_seconds: 3
""")
    env = {**os.environ, "TEST_ESL_PASSWORD": password}
    truth = tmp_path / "truth.jsonl"
    simulator = subprocess.Popen([*CLI, "simulate", "--scenario", "smoke", "--port", str(esl_port),
                                  "--password", password, "--truth-file", str(truth)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    engine = None
    try:
        wait_for_port(esl_port)
        engine = subprocess.Popen([*CLI, "run", "--config", str(config)], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for_port(api_port, timeout=30)
        deadline = time.monotonic() + 40
        status = {}
        while time.monotonic() < deadline:
            result = callrouter("status", "--json", "--config", str(config))
            assert result.returncode == 0, result.stderr
            status = json.loads(result.stdout)
            if status["calls_answered"] >= 2:
                break
            time.sleep(0.5)
        assert status["nodes"] == [{"name": "fs1", "host": "127.0.0.1", "port": esl_port, "up": True}]
        assert status["calls_answered"] >= 2, status
        reloaded = callrouter("reload", "--config", str(config))
        assert reloaded.returncode == 0 and "flows reloaded" in reloaded.stdout, reloaded.stderr
        promo = dialplans / "promo.yaml"
        promo.write_text(promo.read_text().replace("next: choice", "next: no_such_node", 1))
        refused = callrouter("reload", "--config", str(config))
        assert refused.returncode == 1
        assert f"{promo}:" in refused.stderr and "no_such_node" in refused.stderr
        assert "flows NOT reloaded" in refused.stdout
        assert callrouter("status", "--json", "--config", str(config)).returncode == 0, "still serving"
        engine.send_signal(signal.SIGTERM)
        output, _ = engine.communicate(timeout=30)
        assert engine.returncode == 0, output
        assert password not in output, "the ESL password must never be logged"
        assert "shutting down" in output
    finally:
        for process in (engine, simulator):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    answered = [json.loads(line) for line in truth.read_text().splitlines() if json.loads(line)["agent"]]
    assert answered, "the simulator's ground truth shows callers bridged to agents"


def test_db_migrate_on_the_embedded_database(tmp_path):
    first = callrouter("db", "migrate", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "applied 0001_engine" in first.stdout
    again = callrouter("db", "migrate", "--data-dir", str(tmp_path))
    assert "up to date" in again.stdout


def test_demo_runs_engine_simulator_and_database_and_prints_a_summary(tmp_path):
    truth = tmp_path / "truth.jsonl"
    result = callrouter("demo", "--duration", "12", "--json", "--data-dir", str(tmp_path / "var"),
                        "--truth-file", str(truth), timeout=90)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["calls_offered"] >= 3 and summary["calls_answered"] >= 1, summary
    assert set(summary["routed_per_queue"]) <= {"sales", "support", "general"}
    assert (tmp_path / "var" / "pgdata" / "PG_VERSION").exists(), "the embedded PostgreSQL was used"
    bridged = [r for r in map(json.loads, truth.read_text().splitlines()) if r["agent"]]
    assert len(bridged) <= summary["calls_answered"]
