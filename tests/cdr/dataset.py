"""A morning in a small contact centre, as queue_log events, whose KPIs are worked out by hand in
test_reports.py. Times are UTC on 2025-01-06.

sales (SL T = 20 s, short abandon < 5 s):
  c1 09:00:00 from 5551001, campaign spring: A2 rings 5 s, no answer; A1 answers after 10 s,
     talks 120 s, caller hangs up, wrap-up 30 s
  c2 09:05:00 from 5551002, campaign spring: A2 answers after 30 s, talks 100 s + 20 s hold, agent
     hangs up, wrap-up 10 s
  c3 09:10:00 from 5551003: abandons after 3 s (short), position 1
  c4 09:20:00 from 5551004: abandons after 45 s, position 2
  c5 09:30:00 from 5551001 (c1's caller again): A1 answers after 15 s, talks 60 s, transfers to
     2000, wrap-up 20 s
  c6 09:40:00 anonymous: times out after 120 s, position 1
  c7 10:10:00 from 5551007: A2 answers after 5 s, talks 60 s
support:
  c8 09:15:00 from 5551002 (c2's caller again): A2 answers after 8 s, talks 60 s
  c9 09:59:50 from 5551009: A1 answers after 15 s (at 10:00:05), talks 60 s, agent hangs up
agents:
  A1 logged in at 08:30, On Break (lunch) 10:15-10:30, logged out at 10:45
  A2 logged in at 08:59, still logged in
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from engine.cdr import QueueEvent

DAY = datetime(2025, 1, 6, tzinfo=timezone.utc)


def at(hhmmss: str) -> datetime:
    h, m, s = map(int, hhmmss.split(":"))
    return DAY + timedelta(hours=h, minutes=m, seconds=s)


_seq = iter(range(10_000))


def ev(time: str, event: str, **values) -> QueueEvent:
    return QueueEvent(event_id=f"ev-{next(_seq):04d}", time=at(time), event=event, **values)


def _call(uuid: str, queue: str, caller: str, entered: str, *rest: QueueEvent, campaign: str = "",
          position: int = 1) -> list[QueueEvent]:
    enter = ev(entered, "ENTER", call_uuid=uuid, queue=queue, caller_id_number=caller, campaign=campaign,
               position=position)
    return [enter, *(QueueEvent(**{**e.__dict__, "call_uuid": uuid, "queue": queue, "campaign": campaign})
                     for e in rest)]


EVENTS: list[QueueEvent] = [
    ev("08:30:00", "LOGIN", agent="A1", status="Available"),
    ev("08:59:00", "LOGIN", agent="A2", status="Available"),
    *_call("c1", "sales", "5551001", "09:00:00",
           ev("09:00:05", "RING_NO_ANSWER", agent="A2", ring_seconds=5.0),
           ev("09:00:10", "CONNECT", agent="A1", wait_seconds=10.0, ring_seconds=4.0),
           ev("09:02:10", "COMPLETE_CALLER", agent="A1", talk_seconds=120.0, hold_seconds=0.0),
           ev("09:02:40", "WRAP_UP", agent="A1", wrap_up_seconds=30.0), campaign="spring"),
    *_call("c2", "sales", "5551002", "09:05:00",
           ev("09:05:30", "CONNECT", agent="A2", wait_seconds=30.0),
           ev("09:07:30", "COMPLETE_AGENT", agent="A2", talk_seconds=100.0, hold_seconds=20.0),
           ev("09:07:40", "WRAP_UP", agent="A2", wrap_up_seconds=10.0), campaign="spring"),
    *_call("c3", "sales", "5551003", "09:10:00",
           ev("09:10:03", "ABANDON", wait_seconds=3.0, position=1)),
    *_call("c4", "sales", "5551004", "09:20:00",
           ev("09:20:45", "ABANDON", wait_seconds=45.0, position=2), position=2),
    *_call("c5", "sales", "5551001", "09:30:00",
           ev("09:30:15", "CONNECT", agent="A1", wait_seconds=15.0),
           ev("09:31:15", "TRANSFER", agent="A1", talk_seconds=60.0, hold_seconds=0.0, target="2000"),
           ev("09:31:35", "WRAP_UP", agent="A1", wrap_up_seconds=20.0)),
    *_call("c6", "sales", "", "09:40:00",
           ev("09:42:00", "TIMEOUT", wait_seconds=120.0)),
    *_call("c7", "sales", "5551007", "10:10:00",
           ev("10:10:05", "CONNECT", agent="A2", wait_seconds=5.0),
           ev("10:11:05", "COMPLETE_CALLER", agent="A2", talk_seconds=60.0)),
    *_call("c8", "support", "5551002", "09:15:00",
           ev("09:15:08", "CONNECT", agent="A2", wait_seconds=8.0),
           ev("09:16:08", "COMPLETE_CALLER", agent="A2", talk_seconds=60.0)),
    *_call("c9", "support", "5551009", "09:59:50",
           ev("10:00:05", "CONNECT", agent="A1", wait_seconds=15.0),
           ev("10:01:05", "COMPLETE_AGENT", agent="A1", talk_seconds=60.0)),
    ev("10:15:00", "STATUS", agent="A1", status="On Break", reason="lunch"),
    ev("10:30:00", "STATUS", agent="A1", status="Available"),
    ev("10:45:00", "LOGOUT", agent="A1"),
]
