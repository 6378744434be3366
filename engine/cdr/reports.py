"""KPI reports, computed in SQL over `queue_log` (and `cdr` for the CDR listing).

Definitions (every report names the service-level one it used):
- offered: each ENTER of a call into a queue. Its outcome is the same call's later events in the
  same queue, and the whole call is counted in the interval it entered.
- answered: CONNECT; answered within T: CONNECT with wait <= T seconds.
- abandoned: ABANDON with wait >= the short-abandon threshold; short_abandoned: under it
  (reported apart, and left out of the abandon rate's denominator as they were never real offers):
  abandon_rate = abandoned / (offered - short_abandoned).
- service level: answered within T over offered, offered minus short abandons, or answered —
  `ServiceLevelDefinition`, chosen in config; `service_level()` is the same formula for metrics.
- ASA: mean wait of answered calls; avg/max wait: over every call that left the queue
  (answered, abandoned, timed out, overflowed).
- AHT: (talk + hold from COMPLETE_*/TRANSFER) + wrap-up (WRAP_UP), over the calls handled.
- transfer_rate: TRANSFER / answered.
- first-contact resolution: answered calls with a caller id whose caller did not enter any queue
  again within the repeat window, over answered calls with a caller id.
- agents: logged-in time from LOGIN/LOGOUT/STATUS segments clipped to the interval, paused time
  (logged in with a status other than 'Available'), handle time = talk + hold + wrap-up;
  occupancy = handle / (logged in - paused), utilisation = handle / logged in.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Iterator

import psycopg
from psycopg.rows import dict_row

from engine.cdr.queue_log import AVAILABLE


class ServiceLevelDefinition(str, Enum):
    OFFERED = "answered_within_t/offered"
    OFFERED_MINUS_SHORT_ABANDONS = "answered_within_t/(offered-short_abandons)"
    ANSWERED = "answered_within_t/answered"

    def describe(self, seconds: int) -> str:
        denominator = {"OFFERED": "offered", "OFFERED_MINUS_SHORT_ABANDONS": "(offered - short abandons)",
                       "ANSWERED": "answered"}[self.name]
        return f"answered within {seconds} s / {denominator}"


_SL_DENOMINATOR_SQL = {
    ServiceLevelDefinition.OFFERED: "offered",
    ServiceLevelDefinition.OFFERED_MINUS_SHORT_ABANDONS: "(offered - short_abandoned)",
    ServiceLevelDefinition.ANSWERED: "answered",
}


def service_level(definition: ServiceLevelDefinition, *, answered_within: int, offered: int,
                  short_abandoned: int, answered: int) -> float | None:
    """The service level as the reports compute it (for live metrics); None when nothing counts."""
    denominator = {ServiceLevelDefinition.OFFERED: offered,
                   ServiceLevelDefinition.OFFERED_MINUS_SHORT_ABANDONS: offered - short_abandoned,
                   ServiceLevelDefinition.ANSWERED: answered}[definition]
    return answered_within / denominator if denominator > 0 else None


@dataclass(frozen=True)
class ReportSettings:
    service_level_seconds: int = 20
    service_level_definition: ServiceLevelDefinition = ServiceLevelDefinition.OFFERED
    short_abandon_seconds: int = 5
    repeat_call_window_hours: int = 24

    def describe_service_level(self) -> str:
        return self.service_level_definition.describe(self.service_level_seconds)


INTERVALS = ("15m", "hour", "day", "total")


@dataclass(frozen=True)
class Period:
    """[start, end) cut into intervals; day and hour boundaries are those of time zone `tz`."""

    start: datetime
    end: datetime
    interval: str = "total"
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
        if self.start.tzinfo is None or self.end.tzinfo is None or self.end <= self.start:
            raise ValueError("a report period needs aware start < end")


def _buckets_sql(interval: str) -> str:
    """CTE `buckets(bucket_start, bucket_end)` covering [start, end) in the session's time zone."""
    first, step = {
        "15m": ("date_bin('15 minutes', %(start)s::timestamptz, timestamptz '2000-01-01 00:00')", "interval '15 minutes'"),
        "hour": ("date_trunc('hour', %(start)s::timestamptz)", "interval '1 hour'"),
        "day": ("date_trunc('day', %(start)s::timestamptz)", "interval '1 day'"),
        "total": ("%(start)s::timestamptz", "(%(end)s::timestamptz - %(start)s::timestamptz)"),
    }[interval]
    return f"""buckets AS (
        SELECT greatest(b, %(start)s) AS bucket_start, least(b + {step}, %(end)s) AS bucket_end
        FROM generate_series({first}, %(end)s::timestamptz, {step}) AS b
        WHERE b < %(end)s)"""


def _params(period: Period, settings: ReportSettings) -> dict[str, Any]:
    return {"start": period.start, "end": period.end, "sl": settings.service_level_seconds,
            "short": settings.short_abandon_seconds,
            "window": timedelta(hours=settings.repeat_call_window_hours), "available": AVAILABLE}


def _query(conn: psycopg.Connection, period: Period, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT set_config('TimeZone', %s, false)", (period.tz,))
        cur.execute(query, params)
        return cur.fetchall()


def queue_kpis(conn: psycopg.Connection, period: Period, settings: ReportSettings = ReportSettings(),
               by: str = "queue") -> list[dict[str, Any]]:
    """One row per interval and queue (by="queue") or campaign (by="campaign")."""
    if by not in ("queue", "campaign"):
        raise ValueError("by must be 'queue' or 'campaign'")
    denominator = _SL_DENOMINATOR_SQL[settings.service_level_definition]
    query = f"""
    WITH {_buckets_sql(period.interval)},
    calls AS (
        SELECT e.call_uuid, e.queue, e.campaign, e.caller_id_number, e.time AS entered, o.*,
               EXISTS (SELECT 1 FROM queue_log r
                       WHERE r.event = 'ENTER' AND e.caller_id_number <> ''
                         AND r.caller_id_number = e.caller_id_number AND r.call_uuid <> e.call_uuid
                         AND r.time > e.time AND r.time <= e.time + %(window)s) AS repeated
        FROM queue_log e
        CROSS JOIN LATERAL (
            SELECT bool_or(o.event = 'CONNECT') AS answered,
                   min(o.wait_seconds) FILTER (WHERE o.event = 'CONNECT') AS answer_wait,
                   bool_or(o.event = 'ABANDON') AS abandoned,
                   bool_or(o.event = 'TIMEOUT') AS timed_out,
                   bool_or(o.event = 'OVERFLOW') AS overflowed,
                   bool_or(o.event = 'TRANSFER') AS transferred,
                   max(o.wait_seconds) FILTER (WHERE o.event IN ('CONNECT', 'ABANDON', 'TIMEOUT', 'OVERFLOW')) AS wait,
                   bool_or(o.event IN ('COMPLETE_CALLER', 'COMPLETE_AGENT', 'TRANSFER')) AS handled,
                   coalesce(sum(coalesce(o.talk_seconds, 0) + coalesce(o.hold_seconds, 0))
                            FILTER (WHERE o.event IN ('COMPLETE_CALLER', 'COMPLETE_AGENT', 'TRANSFER')), 0)
                   + coalesce(sum(o.wrap_up_seconds) FILTER (WHERE o.event = 'WRAP_UP'), 0) AS handle_seconds
            FROM queue_log o
            WHERE o.call_uuid = e.call_uuid AND o.queue = e.queue AND o.time >= e.time AND o.event <> 'ENTER'
        ) AS o
        WHERE e.event = 'ENTER' AND e.time >= %(start)s AND e.time < %(end)s
    ),
    counts AS (
        SELECT b.bucket_start AS interval_start, b.bucket_end AS interval_end, c.{by} AS {by},
               count(*) AS offered,
               count(*) FILTER (WHERE c.answered) AS answered,
               count(*) FILTER (WHERE c.answered AND c.answer_wait <= %(sl)s) AS answered_within_t,
               count(*) FILTER (WHERE c.abandoned AND NOT coalesce(c.wait < %(short)s, false)) AS abandoned,
               count(*) FILTER (WHERE c.abandoned AND c.wait < %(short)s) AS short_abandoned,
               count(*) FILTER (WHERE c.timed_out) AS timed_out,
               count(*) FILTER (WHERE c.overflowed) AS overflowed,
               count(*) FILTER (WHERE c.transferred) AS transferred,
               avg(c.answer_wait) FILTER (WHERE c.answered) AS asa_seconds,
               avg(c.handle_seconds) FILTER (WHERE c.handled) AS aht_seconds,
               avg(c.wait) AS avg_wait_seconds,
               max(c.wait) AS max_wait_seconds,
               count(*) FILTER (WHERE c.answered AND c.caller_id_number <> '') AS answered_identified,
               count(*) FILTER (WHERE c.answered AND c.caller_id_number <> '' AND NOT c.repeated) AS resolved_first
        FROM calls c JOIN buckets b ON c.entered >= b.bucket_start AND c.entered < b.bucket_end
        GROUP BY 1, 2, 3
    )
    SELECT interval_start, interval_end, {by}, offered, answered, answered_within_t, abandoned, short_abandoned,
           timed_out, overflowed, transferred,
           answered_within_t::float / nullif({denominator}, 0) AS service_level,
           asa_seconds, aht_seconds, avg_wait_seconds, max_wait_seconds,
           abandoned::float / nullif(offered - short_abandoned, 0) AS abandon_rate,
           transferred::float / nullif(answered, 0) AS transfer_rate,
           resolved_first::float / nullif(answered_identified, 0) AS first_contact_resolution
    FROM counts ORDER BY interval_start, {by}"""
    rows = _query(conn, period, query, _params(period, settings))
    for row in rows:
        row["service_level_definition"] = settings.describe_service_level()
    return rows


def agent_kpis(conn: psycopg.Connection, period: Period, settings: ReportSettings = ReportSettings()
               ) -> list[dict[str, Any]]:
    """One row per interval and agent: calls, handle time, logged-in and paused time, occupancy."""
    query = f"""
    WITH {_buckets_sql(period.interval)},
    segments AS (
        SELECT agent, event, coalesce(nullif(status, ''), %(available)s) AS status, time AS since,
               coalesce(lead(time) OVER (PARTITION BY agent ORDER BY time, event_id), 'infinity') AS until
        FROM queue_log
        WHERE event IN ('LOGIN', 'LOGOUT', 'STATUS') AND agent <> '' AND time < %(end)s
    ),
    presence AS (
        SELECT b.bucket_start, b.bucket_end, s.agent,
               sum(extract(epoch FROM least(s.until, b.bucket_end, now()) - greatest(s.since, b.bucket_start)))
                   AS logged_in_seconds,
               coalesce(sum(extract(epoch FROM least(s.until, b.bucket_end, now()) - greatest(s.since, b.bucket_start)))
                   FILTER (WHERE s.status <> %(available)s), 0) AS paused_seconds
        FROM segments s JOIN buckets b ON s.since < b.bucket_end AND s.until > b.bucket_start
        WHERE s.event <> 'LOGOUT' AND greatest(s.since, b.bucket_start) < least(s.until, b.bucket_end, now())
        GROUP BY 1, 2, 3
    ),
    work AS (
        SELECT b.bucket_start, b.bucket_end, q.agent,
               count(*) FILTER (WHERE q.event = 'CONNECT') AS answered,
               count(*) FILTER (WHERE q.event = 'RING_NO_ANSWER') AS ring_no_answer,
               count(*) FILTER (WHERE q.event = 'TRANSFER') AS transferred,
               count(*) FILTER (WHERE q.event IN ('COMPLETE_CALLER', 'COMPLETE_AGENT', 'TRANSFER')) AS handled,
               coalesce(sum(q.talk_seconds), 0) AS talk_seconds,
               coalesce(sum(q.hold_seconds), 0) AS hold_seconds,
               coalesce(sum(q.wrap_up_seconds) FILTER (WHERE q.event = 'WRAP_UP'), 0) AS wrap_up_seconds
        FROM queue_log q JOIN buckets b ON q.time >= b.bucket_start AND q.time < b.bucket_end
        WHERE q.agent <> '' AND q.event NOT IN ('LOGIN', 'LOGOUT', 'STATUS')
        GROUP BY 1, 2, 3
    ),
    joined AS (
        SELECT bucket_start AS interval_start, bucket_end AS interval_end, agent,
               coalesce(w.answered, 0) AS answered, coalesce(w.ring_no_answer, 0) AS ring_no_answer,
               coalesce(w.transferred, 0) AS transferred, coalesce(w.handled, 0) AS handled,
               coalesce(w.talk_seconds, 0) AS talk_seconds, coalesce(w.hold_seconds, 0) AS hold_seconds,
               coalesce(w.wrap_up_seconds, 0) AS wrap_up_seconds,
               coalesce(p.logged_in_seconds, 0)::float AS logged_in_seconds,
               coalesce(p.paused_seconds, 0)::float AS paused_seconds
        FROM work w FULL JOIN presence p USING (bucket_start, bucket_end, agent)
    )
    SELECT *, talk_seconds + hold_seconds + wrap_up_seconds AS handle_seconds,
           (talk_seconds + hold_seconds + wrap_up_seconds) / nullif(handled, 0) AS aht_seconds,
           (talk_seconds + hold_seconds + wrap_up_seconds) / nullif(logged_in_seconds - paused_seconds, 0) AS occupancy,
           (talk_seconds + hold_seconds + wrap_up_seconds) / nullif(logged_in_seconds, 0) AS utilisation
    FROM joined ORDER BY interval_start, agent"""
    return _query(conn, period, query, _params(period, settings))


def lost_calls(conn: psycopg.Connection, period: Period, settings: ReportSettings = ReportSettings()
               ) -> list[dict[str, Any]]:
    """Calls that left a queue without an agent (ABANDON, TIMEOUT), with who called and how long they waited."""
    query = """
    SELECT e.time AS entered, l.time AS left_at, e.queue, e.call_uuid, e.caller_id_number, e.caller_id_name,
           l.event AS outcome, l.wait_seconds, coalesce(l.position, e.position) AS position,
           (l.event = 'ABANDON' AND coalesce(l.wait_seconds < %(short)s, false)) AS short_abandon
    FROM queue_log e
    JOIN queue_log l ON l.call_uuid = e.call_uuid AND l.queue = e.queue AND l.time >= e.time
                    AND l.event IN ('ABANDON', 'TIMEOUT')
    WHERE e.event = 'ENTER' AND e.time >= %(start)s AND e.time < %(end)s
    ORDER BY e.time, e.call_uuid"""
    return _query(conn, period, query, _params(period, settings))


def cdr_rows(conn: psycopg.Connection, period: Period) -> Iterator[dict[str, Any]]:
    """The CDRs of legs that started in the period, oldest first, streamed."""
    with conn.cursor(row_factory=dict_row) as setup:
        setup.execute("SELECT set_config('TimeZone', %s, false)", (period.tz,))
    with conn.cursor(name="cdr_listing", row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM cdr WHERE start_stamp >= %s AND start_stamp < %s ORDER BY start_stamp, uuid",
                    (period.start, period.end))
        yield from cur
