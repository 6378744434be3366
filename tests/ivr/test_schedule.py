"""Business hours on the wall clock of the schedule's zone, across DST changes and holidays."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from engine.ivr.schedule import CLOSED, HOLIDAY, OPEN, Hours, Schedule, parse_range, status_at, time_between

UTC = dt.timezone.utc
NINE_TO_FIVE = (parse_range("09:00-17:00"),)
WEEKDAYS_ONLY = (NINE_TO_FIVE,) * 5 + ((), ())


def london(**kw) -> Schedule:
    return Schedule("office", "Europe/London", kw.pop("weekly", WEEKDAYS_ONLY), **kw)


def at(zone: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone))


def test_hours_are_wall_clock_hours_on_both_sides_of_the_spring_change():
    # 2026-03-27 (Friday) is GMT, 2026-03-30 (Monday) is BST: 09:00 local is 09:00Z then 08:00Z.
    office = london()
    assert status_at(office, dt.datetime(2026, 3, 27, 9, 0, tzinfo=UTC)) == OPEN
    assert status_at(office, dt.datetime(2026, 3, 30, 8, 0, tzinfo=UTC)) == OPEN
    assert status_at(office, dt.datetime(2026, 3, 30, 7, 59, tzinfo=UTC)) == CLOSED
    assert status_at(office, dt.datetime(2026, 3, 30, 16, 0, tzinfo=UTC)) == CLOSED  # 17:00 BST


def test_the_repeated_hour_of_the_autumn_change_is_open_both_times():
    night = Schedule("night", "America/New_York", ((parse_range("01:00-02:00"),),) * 7)
    # 2026-11-01 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    assert status_at(night, dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)) == OPEN
    assert status_at(night, dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)) == OPEN
    assert status_at(night, dt.datetime(2026, 11, 1, 7, 30, tzinfo=UTC)) == CLOSED  # 02:30 EST


def test_the_hour_that_never_happens_in_spring():
    early = Schedule("early", "Europe/London", ((parse_range("01:00-02:00"),),) * 7)
    # 2026-03-29: clocks jump from 01:00 GMT to 02:00 BST, so 01:00-02:00 local never comes.
    assert status_at(early, dt.datetime(2026, 3, 29, 0, 59, tzinfo=UTC)) == CLOSED  # 00:59 GMT
    assert status_at(early, dt.datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == CLOSED  # 02:00 BST
    assert status_at(early, dt.datetime(2026, 3, 30, 0, 30, tzinfo=UTC)) == OPEN  # 01:30 BST the next night


def test_public_holidays_of_the_country_and_subdivision():
    # 2026-03-17 St Patrick's Day is a bank holiday in Northern Ireland only.
    tuesday_ten = at("Europe/London", 2026, 3, 17, 10, 0)
    assert status_at(london(country="GB", subdivision="NIR"), tuesday_ten) == HOLIDAY
    assert status_at(london(country="GB", subdivision="ENG"), tuesday_ten) == OPEN
    assert status_at(london(country="GB", subdivision="ENG"), at("Europe/London", 2026, 12, 25, 10, 0)) == HOLIDAY


def test_explicit_closed_dates_and_special_hours_win():
    office = london(closed_dates=frozenset({dt.date(2026, 6, 3)}),
                    special=((dt.date(2026, 6, 4), (parse_range("10:00-12:00"),)),
                             (dt.date(2026, 12, 25), (parse_range("09:00-11:00"),))),
                    country="GB", subdivision="ENG")
    assert status_at(office, at("Europe/London", 2026, 6, 3, 10, 0)) == HOLIDAY
    assert status_at(office, at("Europe/London", 2026, 6, 4, 9, 30)) == CLOSED
    assert status_at(office, at("Europe/London", 2026, 6, 4, 11, 59)) == OPEN
    assert status_at(office, at("Europe/London", 2026, 12, 25, 10, 0)) == OPEN  # open on Christmas by decision


def test_a_range_may_end_at_midnight_and_time_between_may_span_it():
    late = Schedule("late", "UTC", ((parse_range("18:00-24:00"),),) * 7)
    assert status_at(late, dt.datetime(2026, 1, 5, 23, 59, 59, tzinfo=UTC)) == OPEN
    assert status_at(late, dt.datetime(2026, 1, 6, 0, 0, tzinfo=UTC)) == CLOSED
    assert time_between(dt.datetime(2026, 1, 5, 23, 0), "22:00", "06:00")
    assert time_between(dt.datetime(2026, 1, 5, 5, 59), "22:00", "06:00")
    assert not time_between(dt.datetime(2026, 1, 5, 6, 0), "22:00", "06:00")


@pytest.mark.parametrize("text", ["9-17", "09:00", "17:00-09:00", "09:60-10:00", "09:00-24:01", "9:5-10:00"])
def test_ranges_that_are_not_ranges_are_refused(text):
    with pytest.raises(ValueError):
        parse_range(text)


def test_parse_range_reads_minutes():
    assert parse_range("08:30-24:00") == Hours(510, 1440)
