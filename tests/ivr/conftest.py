"""An engine whose route is the IVR running the sample flows of dialplans/, against the
simulated switch over TCP, with the IVR's rows in the session's real PostgreSQL."""
from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import psycopg
import pytest

from engine.app import Engine
from engine.db import migrate
from engine.ivr import Checks, FlowRunner, FlowsHolder, IvrRoute, IvrStore, RunnerSettings
from tests.engine.conftest import centre_factory  # noqa: F401 - a fixture, used by the e2e tests

DIALPLANS = Path(__file__).resolve().parents[2] / "dialplans"
QUEUES = frozenset({"sales", "support", "billing"})


@pytest.fixture(scope="session")
def ivr_db(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        migrate(conn)
    return pg_dsn


@pytest.fixture
def quick_dialplans(tmp_path):
    """The sample flows as shipped, with their digit timeouts cut to 1 s so no-input paths run fast."""
    target = tmp_path / "dialplans"
    shutil.copytree(DIALPLANS, target, ignore=shutil.ignore_patterns("*.md"))
    for path in target.glob("*.yaml"):
        path.write_text(re.sub(r"(?m)^(\s+timeout:) \d+$", r"\1 1", path.read_text()))
    return target


@pytest.fixture
def ivr_engine(tmp_path, ivr_db, quick_dialplans):
    # The simulator's seeded Unique-IDs repeat from test to test: start each with empty IVR tables.
    with psycopg.connect(ivr_db, autocommit=True) as conn:
        conn.execute("TRUNCATE survey_answer, callback_request, ivr_recording")
    made: list[tuple[Engine, IvrStore]] = []

    def make(centre, now: dt.datetime, on_node=None) -> tuple[Engine, IvrStore]:
        centre.switch.default_file_seconds = 0.2  # a sound file "plays" this long
        config = centre.config(tmp_path, acd=centre.acd(tuple(sorted(QUEUES)), skills={"english": 5})).with_overrides(
            dialplans=quick_dialplans)
        engine = Engine(config, with_database=False, with_api=False, with_metrics=False)
        store = IvrStore(lambda: psycopg.connect(ivr_db))
        runner = FlowRunner(engine.acd, store,
                            RunnerSettings(recordings_dir=tmp_path / "recordings"), now=lambda: now, on_node=on_node)
        engine.registry.handler = IvrRoute(FlowsHolder(quick_dialplans, Checks(queues=QUEUES)), runner)
        engine.start()
        assert all(node.wait_up(10) for node in engine.nodes), "engine did not connect to the simulator"
        made.append((engine, store))
        return engine, store

    yield make
    for engine, _ in made:
        engine.stop(grace=0)
