"""The KPI reports against the real PostgreSQL, on tests/cdr/dataset.py's morning, each figure
worked out by hand in a comment next to its assertion."""
from __future__ import annotations

import psycopg
import pytest
from pytest import approx

from engine.cdr.reports import (Period, ReportSettings, ServiceLevelDefinition, agent_kpis, lost_calls,
                                queue_kpis, service_level)
from tests.cdr.dataset import EVENTS, at
from tests.cdr.factories import insert

MORNING = Period(at("09:00:00"), at("11:00:00"), "total")


@pytest.fixture(scope="module")
def conn(cdr_dsn):
    with psycopg.connect(cdr_dsn, autocommit=True) as setup:
        insert(setup, EVENTS)
    with psycopg.connect(cdr_dsn) as connection:
        yield connection


def by_key(rows, key):
    return {row[key]: row for row in rows}


def test_queue_kpis_over_the_whole_morning(conn):
    sales = by_key(queue_kpis(conn, MORNING), "queue")["sales"]
    assert sales["offered"] == 7                 # c1..c7
    assert sales["answered"] == 4                # c1, c2, c5, c7
    assert sales["answered_within_t"] == 3       # waits 10, 15, 5 <= 20; c2 waited 30
    assert sales["abandoned"] == 1               # c4 (45 s)
    assert sales["short_abandoned"] == 1         # c3 (3 s < 5 s)
    assert sales["timed_out"] == 1 and sales["transferred"] == 1   # c6; c5
    assert sales["service_level"] == approx(3 / 7)
    assert sales["asa_seconds"] == approx((10 + 30 + 15 + 5) / 4)                  # 15
    # AHT: c1 120 + 30 wrap, c2 100 + 20 hold + 10 wrap, c5 60 + 20 wrap, c7 60
    assert sales["aht_seconds"] == approx((150 + 130 + 80 + 60) / 4)               # 105
    assert sales["avg_wait_seconds"] == approx((10 + 30 + 3 + 45 + 15 + 120 + 5) / 7)
    assert sales["max_wait_seconds"] == 120
    assert sales["abandon_rate"] == approx(1 / (7 - 1))        # short abandons are not real offers
    assert sales["transfer_rate"] == approx(1 / 4)
    # identified answered callers: c1 (called again as c5), c2 (called support as c8), c5, c7
    assert sales["first_contact_resolution"] == approx(2 / 4)
    assert sales["service_level_definition"] == "answered within 20 s / offered"


def test_queue_kpis_per_hour_count_a_call_in_the_hour_it_entered(conn):
    rows = queue_kpis(conn, Period(at("09:00:00"), at("11:00:00"), "hour"))
    got = {(r["interval_start"].hour, r["queue"]): r for r in rows}
    assert set(got) == {(9, "sales"), (10, "sales"), (9, "support")}
    s9 = got[9, "sales"]
    assert (s9["offered"], s9["answered"], s9["answered_within_t"]) == (6, 3, 2)
    assert s9["asa_seconds"] == approx((10 + 30 + 15) / 3)
    assert s9["aht_seconds"] == approx((150 + 130 + 80) / 3)                          # 120
    assert s9["avg_wait_seconds"] == approx((10 + 30 + 3 + 45 + 15 + 120) / 6)
    assert s9["first_contact_resolution"] == approx(1 / 3)                            # only c5
    s10 = got[10, "sales"]
    assert (s10["offered"], s10["answered"], s10["service_level"], s10["asa_seconds"]) == (1, 1, 1.0, 5.0)
    assert s10["abandon_rate"] == 0.0
    # c9 entered support at 09:59:50 and was answered at 10:00:05: it belongs to 09:00
    sup = got[9, "support"]
    assert (sup["offered"], sup["answered"], sup["answered_within_t"]) == (2, 2, 2)
    assert sup["asa_seconds"] == approx((8 + 15) / 2) and sup["aht_seconds"] == approx(60)
    assert sup["first_contact_resolution"] == 1.0
    assert sup["interval_end"] == at("10:00:00")


def test_quarter_hours(conn):
    rows = queue_kpis(conn, Period(at("09:00:00"), at("11:00:00"), "15m"))
    offered = {r["interval_start"].strftime("%H:%M"): r["offered"] for r in rows if r["queue"] == "sales"}
    # c1 c2 c3 | c4 | c5 c6 | c7
    assert offered == {"09:00": 3, "09:15": 1, "09:30": 2, "10:00": 1}


@pytest.mark.parametrize("definition, expected", [
    (ServiceLevelDefinition.OFFERED, 3 / 7),
    (ServiceLevelDefinition.OFFERED_MINUS_SHORT_ABANDONS, 3 / 6),
    (ServiceLevelDefinition.ANSWERED, 3 / 4),
])
def test_service_level_definitions_and_their_names(conn, definition, expected):
    settings = ReportSettings(service_level_definition=definition)
    sales = by_key(queue_kpis(conn, MORNING, settings), "queue")["sales"]
    assert sales["service_level"] == approx(expected)
    assert sales["service_level_definition"] == definition.describe(20)
    # the metrics' formula agrees with the SQL
    assert service_level(definition, answered_within=3, offered=7, short_abandoned=1, answered=4) == approx(expected)


def test_thresholds_come_from_the_settings(conn):
    settings = ReportSettings(service_level_seconds=10, short_abandon_seconds=60)
    sales = by_key(queue_kpis(conn, MORNING, settings), "queue")["sales"]
    assert sales["answered_within_t"] == 2               # waits 10 and 5 are <= 10
    assert (sales["abandoned"], sales["short_abandoned"]) == (0, 2)   # 3 s and 45 s are both < 60 s
    assert sales["abandon_rate"] == 0.0


def test_kpis_per_campaign(conn):
    rows = by_key(queue_kpis(conn, MORNING, by="campaign"), "campaign")
    spring = rows["spring"]
    assert (spring["offered"], spring["answered"], spring["answered_within_t"]) == (2, 2, 1)   # c1, c2
    assert spring["service_level"] == approx(1 / 2)
    assert spring["aht_seconds"] == approx((150 + 130) / 2)
    assert rows[""]["offered"] == 7  # c3..c9 carry no campaign


def test_agent_kpis_over_the_morning(conn):
    agents = by_key(agent_kpis(conn, MORNING), "agent")
    a1 = agents["A1"]
    # logged in 09:00-10:45 (login at 08:30 clipped to the period) = 6300 s, of which 10:15-10:30 on break
    assert (a1["logged_in_seconds"], a1["paused_seconds"]) == (6300, 900)
    assert (a1["answered"], a1["handled"], a1["transferred"], a1["ring_no_answer"]) == (3, 3, 1, 0)
    # talk c1 120 + c5 60 + c9 60; wrap-up 30 + 20
    assert (a1["talk_seconds"], a1["wrap_up_seconds"], a1["handle_seconds"]) == (240, 50, 290)
    assert a1["aht_seconds"] == approx(290 / 3)
    assert a1["occupancy"] == approx(290 / (6300 - 900))
    assert a1["utilisation"] == approx(290 / 6300)
    a2 = agents["A2"]
    # logged in since 08:59 and never out: the whole 2 h
    assert (a2["logged_in_seconds"], a2["paused_seconds"]) == (7200, 0)
    assert (a2["answered"], a2["ring_no_answer"]) == (3, 1)          # c2, c8, c7; missed c1
    # talk 100 + 60 + 60, hold 20, wrap-up 10
    assert (a2["talk_seconds"], a2["hold_seconds"], a2["handle_seconds"]) == (220, 20, 250)
    assert a2["occupancy"] == approx(250 / 7200) and a2["utilisation"] == approx(250 / 7200)


def test_agent_kpis_per_hour(conn):
    rows = agent_kpis(conn, Period(at("09:00:00"), at("11:00:00"), "hour"))
    a1 = {r["interval_start"].hour: r for r in rows if r["agent"] == "A1"}
    assert (a1[9]["logged_in_seconds"], a1[9]["paused_seconds"], a1[9]["handle_seconds"]) == (3600, 0, 230)
    # 10:00-10:45 logged in, 10:15-10:30 on break; c9 60 s talk
    assert (a1[10]["logged_in_seconds"], a1[10]["paused_seconds"], a1[10]["handle_seconds"]) == (2700, 900, 60)
    assert a1[10]["occupancy"] == approx(60 / 1800)


def test_lost_calls_list_who_called_and_how_long_they_waited(conn):
    lost = lost_calls(conn, MORNING)
    assert [(r["call_uuid"], r["caller_id_number"], r["outcome"], r["wait_seconds"], r["position"], r["short_abandon"])
            for r in lost] == [
        ("c3", "5551003", "ABANDON", 3.0, 1, True),
        ("c4", "5551004", "ABANDON", 45.0, 2, False),
        ("c6", "", "TIMEOUT", 120.0, 1, False),
    ]


def test_a_period_with_nothing_in_it_is_empty(conn):
    quiet = Period(at("12:00:00"), at("13:00:00"), "15m")
    assert queue_kpis(conn, quiet) == [] and lost_calls(conn, quiet) == []
    # A2 is still logged in: presence without work still reports
    assert [(r["agent"], r["handled"], r["occupancy"]) for r in agent_kpis(conn, Period(at("12:00:00"), at("13:00:00")))] \
        == [("A2", 0, 0.0)]
