"""RecordWriter against the session's real PostgreSQL: COPY batches land once, replays are
skipped on the natural key, a refused record does not block the others, a full queue spools."""
from __future__ import annotations

import json

import psycopg
import pytest

from engine.cdr import RecordWriter, WriterSettings
from engine.cdr.spool import Spool
from tests.cdr.factories import cdr, queue_event
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def counts(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        return (conn.execute("SELECT count(*) FROM cdr").fetchone()[0],
                conn.execute("SELECT count(*) FROM queue_log").fetchone()[0])


@pytest.fixture
def empty(cdr_dsn):
    with psycopg.connect(cdr_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE cdr, queue_log")
    return cdr_dsn


def test_records_are_written_in_batches_and_read_back_equal(empty, tmp_path):
    writer = RecordWriter(empty, tmp_path / "spool", WriterSettings(batch_size=100, flush_interval=0.05))
    writer.start()
    sent = [cdr(i) for i in range(250)] + [queue_event(i) for i in range(250)]
    for record in sent:
        writer.submit(record)
    wait_until(lambda: writer.stats().rows_written == 500, what="500 rows written")
    writer.stop()
    assert counts(empty) == (250, 250)
    with psycopg.connect(empty) as conn:
        row = conn.execute("SELECT uuid, start_stamp, billsec, caller_id_number FROM cdr WHERE uuid = 'leg-000007'").fetchone()
    assert row == ("leg-000007", sent[7].start_stamp, 30, "5550007")
    stats = writer.stats()
    assert (stats.rows_duplicate, stats.write_errors, stats.spool_segments, stats.queue_depth) == (0, 0, 0, 0)


def test_the_same_records_submitted_again_are_skipped_on_their_natural_key(empty, tmp_path):
    writer = RecordWriter(empty, tmp_path / "spool", WriterSettings(flush_interval=0.05))
    writer.start()
    for _ in range(2):
        for i in range(50):
            writer.submit(cdr(i))
            writer.submit(queue_event(i, "CONNECT", wait_seconds=3.0))
    wait_until(lambda: writer.stats().rows_written + writer.stats().rows_duplicate == 200, what="both rounds")
    writer.stop()
    assert counts(empty) == (50, 50)
    assert (writer.stats().rows_written, writer.stats().rows_duplicate) == (100, 100)


def test_a_refused_record_is_set_aside_and_the_rest_of_its_batch_lands(empty, tmp_path):
    writer = RecordWriter(empty, tmp_path / "spool", WriterSettings(flush_interval=0.05))
    writer.start()
    bad = cdr(3, duration=2**40)  # out of range for the integer column: a data error, not an outage
    for record in [cdr(1), cdr(2), bad, cdr(4)]:
        writer.submit(record)
    wait_until(lambda: writer.stats().records_rejected == 1 and writer.stats().rows_written == 3,
               what="the bad record isolated")
    writer.stop()
    assert counts(empty) == (3, 0)
    kept = [json.loads(line) for line in (tmp_path / "spool" / "rejected.jsonl").read_text().splitlines()]
    assert [k["r"]["uuid"] for k in kept] == ["leg-000003"]
    assert writer.stats().write_errors == 0


def test_a_full_queue_spools_instead_of_waiting_and_the_spool_is_replayed(empty, tmp_path):
    settings = WriterSettings(queue_size=10, batch_size=5, flush_interval=0.05)
    writer = RecordWriter(empty, tmp_path / "spool", settings)
    # not started yet: nothing drains the queue, so all but 10 go to the spool
    for i in range(40):
        writer.submit(cdr(i))
    assert writer.stats().queue_depth == 10 and writer.stats().records_spooled == 30
    writer.start()
    wait_until(lambda: counts(empty)[0] == 40, what="all 40 rows")
    wait_until(lambda: writer.stats().spool_segments == 0, what="the spool emptied")
    writer.stop()
    assert writer.stats().rows_duplicate == 0


def test_stop_with_the_database_unreachable_spools_everything_and_a_new_writer_replays_it(empty, tmp_path):
    dead = "host=/nonexistent-socket-dir dbname=x connect_timeout=2"
    settings = WriterSettings(flush_interval=0.05, retry_initial=60)
    writer = RecordWriter(dead, tmp_path / "spool", settings)
    writer.start()
    for i in range(30):
        writer.submit(queue_event(i))
    wait_until(lambda: writer.stats().write_errors >= 1, what="a failed write")
    writer.stop()
    assert writer.stats().write_errors >= 1
    spool = Spool(tmp_path / "spool")
    assert spool.segments >= 1 and sum(len(spool.read(p)) for p in sorted((tmp_path / "spool").glob("*.spool"))) == 30

    again = RecordWriter(empty, tmp_path / "spool", settings)
    again.start()
    wait_until(lambda: counts(empty)[1] == 30 and again.stats().spool_segments == 0, what="the replay")
    again.stop()
    assert not list((tmp_path / "spool").glob("*.spool"))
