"""Records for the writer and report tests, with every field the test does not care about at a
plain default."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.cdr import CdrRecord, QueueEvent
from engine.cdr import records
from engine.cdr.records import columns

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)


def cdr(n: int, **values) -> CdrRecord:
    fields = dict.fromkeys(columns(CdrRecord), None)
    start = T0 + timedelta(seconds=n)
    fields.update(uuid=f"leg-{n:06d}", direction="inbound", caller_id_number=f"555{n:04d}",
                  caller_id_name="Caller", destination_number="7000", start_stamp=start,
                  answer_stamp=start + timedelta(seconds=1), end_stamp=start + timedelta(seconds=31),
                  duration=31, billsec=30, hangup_cause="NORMAL_CLEARING", node="sim1")
    fields.update(values)
    return CdrRecord(**fields)


def queue_event(n: int, event: str = "ENTER", **values) -> QueueEvent:
    values.setdefault("time", T0 + timedelta(seconds=n))
    values.setdefault("call_uuid", f"leg-{n:06d}")
    return QueueEvent(event_id=QueueEvent.key_for(values["call_uuid"], event, n), event=event,
                      queue=values.pop("queue", "sales"), **values)


def insert(conn, rows) -> None:
    """Rows of one record kind straight into their table (report tests need no writer)."""
    cols = records.columns(type(rows[0]))
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {rows[0].TABLE} ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})",
                        [records.row(r) for r in rows])
