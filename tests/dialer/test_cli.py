"""`callrouter campaign` as an operator runs it: separate processes against a real PostgreSQL."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

CALLROUTER = str(Path(sys.executable).with_name("callrouter"))


@pytest.fixture(scope="module")
def config(pg_dsn, tmp_path_factory):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "dialer_cli" WITH (FORCE)')
        conn.execute('CREATE DATABASE "dialer_cli"')
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, dbname="dialer_cli")
    path = tmp_path_factory.mktemp("dialer-cli") / "callrouter.yaml"
    path.write_text(f"data_dir: data\ndatabase:\n  dsn: '{dsn}'\n")
    return path


def campaign(config: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([CALLROUTER, "campaign", *args, "--config", str(config)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == code, done.stderr
    return done


@pytest.mark.timeout(120)
def test_create_import_control_status_and_compliance(config, tmp_path):
    campaign(config, "create", "sales", "--mode", "predictive", "--gateway", "carrier", "--region", "GB")
    campaign(config, "create", "sales", code=1)  # the same name twice
    leads = tmp_path / "leads.csv"
    leads.write_text("phone,name,timezone,priority\n"
                     "020 7946 0001,Ann,,\n"
                     "12,Bob,,\n"                                   # not a number
                     "+12125550199,\"Carol; uuid_kill all\",,3\n"   # data, kept as written
                     "020 7946 0002,Dan,Mars/Base,\n"               # unknown zone
                     "020 7946 0003,Eve\n"                          # short row
                     "020 7946 0004,\"Fay\nSmith\",,x\n"            # bad priority, on a two-line row
                     "020 7946 0001,Ann again,,\n")                 # already there
    done = campaign(config, "import", "sales", str(leads), code=2)
    errors = [line for line in done.stderr.splitlines() if "line " in line]
    assert [e.split("line ")[1].split(":")[0] for e in errors] == ["3", "5", "6", "7"]
    assert "2 contacts imported, 1 already in the campaign, 4 rows refused" in done.stdout
    status = json.loads(campaign(config, "status", "sales", "--json").stdout)
    assert (status["contacts"], status["contacts_left"], status["state"]) == (2, 2, "draft")
    campaign(config, "pause", "sales", code=1)                     # not running
    for action, state in (("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopped")):
        assert f"is {state}" in campaign(config, action, "sales").stdout
    listed = [json.loads(line) for line in campaign(config, "list", "--json").stdout.splitlines()]
    assert listed[0]["name"] == "sales" and listed[0]["started_at"]
    with psycopg.connect(psycopg.conninfo.make_conninfo(config.read_text().split("'")[1])) as conn:
        fields = conn.execute("SELECT fields->>'name' FROM contact WHERE phone = '+12125550199'").fetchone()[0]
        contact_id = conn.execute("SELECT id FROM contact WHERE phone = '+442079460001'").fetchone()[0]
        conn.execute("INSERT INTO dial_attempt (uuid, campaign, contact_id, phone, started_at, answered_at, "
                     "ended_at, disposition, amd_result, abandoned, message_played) VALUES ('u1', 'sales', %s, "
                     "'+442079460001', now(), now(), now(), 'abandoned', 'HUMAN', true, 'msg.wav')", (contact_id,))
    assert fields == "Carol; uuid_kill all"
    rows = list(csv.DictReader(io.StringIO(campaign(config, "compliance", "sales", "--csv").stdout)))
    assert [(r["uuid"], r["abandoned"], r["message_played"]) for r in rows] == [("u1", "True", "msg.wav")]
    # No engine runs: watch shows the stored figures, the abandon budget of the period included.
    watched = json.loads(campaign(config, "watch", "sales", "--once", "--json").stdout)
    assert (watched["period_abandon_rate"], watched["abandon_budget"], watched["contacts_left"]) == (1.0, -0.97, 2)
    assert "agents_busy" not in watched   # only a running engine knows its agents
    periods = [json.loads(line) for line in campaign(config, "compliance", "sales", "--periods", "--json").stdout.splitlines()]
    assert (periods[0]["live_answers"], periods[0]["abandoned"], periods[0]["rate"]) == (1, 1, 1.0)


@pytest.mark.timeout(120)
def test_dnc_file_and_simulate_json(config, tmp_path):
    registry = tmp_path / "registry.txt"
    registry.write_text("phone\n+12125550199\n(212) 555-0100\nbad\n")
    done = campaign(config, "dnc", str(registry), "--list", "national")
    assert "2 numbers added to national, 1 refused" in done.stdout and "line 4" in done.stderr
    out = subprocess.run([CALLROUTER, "campaign", "simulate", "--mode", "progressive", "--agents", "3", "--hours",
                          "0.2", "--json"], capture_output=True, text=True, timeout=60)
    report = json.loads(out.stdout)
    assert set(report) >= {"occupancy", "abandon_rate", "worst_period_abandon_rate", "calls_per_agent_hour"}
    assert report["abandon_rate"] == 0 and report["attempts"] > 0


@pytest.mark.timeout(120)
def test_a_file_not_in_utf8_is_refused_by_the_line_and_the_rest_imported(config, tmp_path):
    campaign(config, "create", "latin", "--mode", "progressive", "--gateway", "carrier", "--region", "US")
    leads = tmp_path / "latin.csv"
    leads.write_bytes(b"phone,name,city\n"
                      b"+12125550101,Ann,Paris\n"
                      b"+12125550102,Jos\xe9,M\xfcnchen\n"            # Latin-1, as spreadsheets export it
                      b"+12125550103,\"two\nlines \xff\",Rome\n"      # a bad byte on a quoted two-line row
                      b"+12125550104,Zo\xc3\xab,Z\xc3\xbcrich\n")     # UTF-8, kept
    done = campaign(config, "import", "latin", str(leads), code=2)
    errors = [line for line in done.stderr.splitlines() if "line " in line]
    assert errors == [f"{leads}: line 3: column 'name' is not UTF-8 (byte 0xe9); save the file as UTF-8",
                      f"{leads}: line 4: column 'name' is not UTF-8 (byte 0xff); save the file as UTF-8"]
    assert "2 contacts imported, 0 already in the campaign, 2 rows refused" in done.stdout
    with psycopg.connect(psycopg.conninfo.make_conninfo(config.read_text().split("'")[1])) as conn:
        names = conn.execute("SELECT fields->>'name', fields->>'city' FROM contact WHERE campaign = 'latin' "
                             "ORDER BY phone").fetchall()
    assert names == [("Ann", "Paris"), ("Zoë", "Zürich")]
    header = tmp_path / "header.csv"
    header.write_bytes(b"phone,n\xe4me\n+12125550105,x\n")
    refused = campaign(config, "import", "latin", str(header), code=1)
    assert "first line is not UTF-8" in refused.stderr and "Traceback" not in refused.stderr
