"""`callrouter report` as an operator runs it: a separate process, the database named by a config
file, table / --json / --csv output, on the hand-worked morning of tests/cdr/dataset.py."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from tests.cdr.conftest import fresh_database
from tests.cdr.dataset import EVENTS
from tests.cdr.factories import cdr, insert

pytestmark = pytest.mark.timeout(90)
CALLROUTER = str(Path(sys.executable).parent / "callrouter")
MORNING = ["--from", "2025-01-06T09:00", "--to", "2025-01-06T11:00"]


@pytest.fixture(scope="module")
def config(cdr_dsn, tmp_path_factory):
    with psycopg.connect(cdr_dsn, autocommit=True) as conn:
        insert(conn, EVENTS)
        insert(conn, [cdr(i, queue="sales") for i in range(3)])
    path = tmp_path_factory.mktemp("report-cli") / "callrouter.yaml"
    path.write_text(f"data_dir: data\ndatabase:\n  dsn: '{cdr_dsn}'\n")
    return path


def report(config: Path, *args: str) -> str:
    done = subprocess.run([CALLROUTER, "report", *args, "--config", str(config)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "250"})  # a wide terminal
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_queues_as_json_lines(config):
    rows = [json.loads(line) for line in report(config, "queues", *MORNING, "--json").splitlines()]
    sales = next(r for r in rows if r["queue"] == "sales")
    # the figures of test_reports.py's whole morning: 3 of 7 answered within 20 s, ASA 15, AHT 105
    assert (sales["offered"], sales["answered_within_t"], sales["asa_seconds"], sales["aht_seconds"]) == (7, 3, 15, 105)
    assert sales["service_level"] == pytest.approx(3 / 7, abs=1e-6)
    assert sales["service_level_definition"] == "answered within 20 s / offered"
    assert sales["interval_start"] == "2025-01-06T09:00:00+00:00"


def test_service_level_options_change_the_figure_and_its_name(config):
    out = report(config, "queues", *MORNING, "--json", "--sl-seconds", "30",
                 "--sl-definition", "answered_within_t/answered")
    sales = next(json.loads(line) for line in out.splitlines() if json.loads(line)["queue"] == "sales")
    assert sales["service_level"] == 1.0   # c1 10 s, c2 30 s, c5 15 s, c7 5 s: all 4 answered within 30 s
    assert sales["service_level_definition"] == "answered within 30 s / answered"


def test_the_configured_definition_is_the_default_and_named(config, tmp_path):
    # The same reports: section the engine's metrics use decides the report's service level.
    configured = tmp_path / "callrouter.yaml"
    configured.write_text(config.read_text() + "reports:\n  service_level_seconds: 30\n"
                          "  service_level_definition: answered_within_t/answered\n")
    out = report(configured, "queues", *MORNING, "--json")
    sales = next(json.loads(line) for line in out.splitlines() if json.loads(line)["queue"] == "sales")
    assert sales["service_level"] == 1.0
    assert sales["service_level_definition"] == "answered within 30 s / answered"
    out = report(configured, "queues", *MORNING, "--json", "--sl-seconds", "20")  # one option overrides one key
    assert "answered within 20 s / answered" in out


def test_time_zone_moves_the_hours(config):
    # 09:00-11:00 UTC is 10:00-12:00 in Paris (UTC+1 in January)
    out = report(config, "queues", "--from", "2025-01-06T10:00", "--to", "2025-01-06T12:00", "--tz", "Europe/Paris",
                 "--interval", "hour", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["interval_start"], r["queue"], r["offered"]) for r in rows] == [
        ("2025-01-06T10:00:00+01:00", "sales", "6"), ("2025-01-06T10:00:00+01:00", "support", "2"),
        ("2025-01-06T11:00:00+01:00", "sales", "1")]
    assert {r["service_level_definition"] for r in rows} == {"answered within 20 s / offered"}


def test_agents_and_lost_tables_name_what_they_show(config):
    table = report(config, "agents", *MORNING)
    assert "A1" in table and "A2" in table and "occupancy" in table
    lost = report(config, "lost", *MORNING)
    assert "5551003" in lost and "5551004" in lost and "TIMEOUT" in lost
    queues = report(config, "queues", *MORNING)
    assert "SL = answered within 20 s / offered" in queues


def test_cdrs_one_json_object_per_line(config):
    lines = report(config, "cdrs", "--from", "2025-01-06", "--json").splitlines()
    assert [json.loads(line)["uuid"] for line in lines] == ["leg-000000", "leg-000001", "leg-000002"]
    first = json.loads(lines[0])
    assert first["start_stamp"] == "2025-01-06T09:00:00+00:00" and first["billsec"] == 30
    assert first["queue"] == "sales"
    assert report(config, "cdrs", "--from", "2025-01-07", "--json") == ""


def test_prune_deletes_what_is_older_than_kept(pg_dsn, tmp_path):
    dsn = fresh_database(pg_dsn, "cdr_prune_cli")
    with psycopg.connect(dsn, autocommit=True) as conn:
        insert(conn, [cdr(1)])   # from 2025: older than a day
        insert(conn, [cdr(2, start_stamp=datetime.now(timezone.utc), end_stamp=datetime.now(timezone.utc))])
    config = tmp_path / "callrouter.yaml"
    config.write_text(f"database:\n  dsn: '{dsn}'\n")
    assert report(config, "prune", "--keep-days", "1").strip() == \
        "deleted 1 CDRs and 0 queue events older than 1 days"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT uuid FROM cdr").fetchall() == [("leg-000002",)]


def test_bad_input_is_one_clear_line(config):
    done = subprocess.run([CALLROUTER, "report", "queues", "--from", "yesterday", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a date or time" in done.stderr
    assert "Traceback" not in done.stderr
