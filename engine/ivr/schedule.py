"""Business hours: weekly opening hours per weekday in a time zone, public holidays from the
`holidays` package (country and subdivision) plus explicit closed dates, and special opening
hours for given dates. `status_at(schedule, moment)` is a pure function of its arguments.

Hours are wall-clock hours in the schedule's zone, as a receptionist reads them: on the night
clocks go back, 01:30 happens twice and is inside 01:00-02:00 both times; on the night they go
forward, 02:30 never happens. A range may end at 24:00.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

OPEN, CLOSED, HOLIDAY = "open", "closed", "holiday"


@dataclass(frozen=True)
class Hours:
    """One opening range, in minutes after local midnight; end may be 1440 (24:00)."""

    start: int
    end: int

    def contains(self, minute: float) -> bool:
        return self.start <= minute < self.end


@dataclass(frozen=True)
class Schedule:
    name: str
    timezone: str
    weekly: tuple[tuple[Hours, ...], ...]  # index 0 = Monday
    country: str | None = None
    subdivision: str | None = None
    closed_dates: frozenset[dt.date] = frozenset()
    special: tuple[tuple[dt.date, tuple[Hours, ...]], ...] = ()  # these dates' own hours win
    special_map: dict[dt.date, tuple[Hours, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.special_map.update(self.special)


@lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    return frozenset(holidays_lib.country_holidays(country, subdiv=subdivision, years=year))


def is_holiday(schedule: Schedule, day: dt.date) -> bool:
    if day in schedule.closed_dates:
        return True
    return schedule.country is not None and day in _public_holidays(schedule.country, schedule.subdivision, day.year)


def wall_clock(timezone: str, moment: dt.datetime) -> dt.datetime:
    """`moment` (aware; naive means UTC) on the wall clock of `timezone`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(ZoneInfo(timezone))


def status_at(schedule: Schedule, moment: dt.datetime) -> str:
    """open, closed, or holiday (a public holiday or closed date without special hours)."""
    wall = wall_clock(schedule.timezone, moment)
    day = wall.date()
    minute = wall.hour * 60 + wall.minute + wall.second / 60
    special = schedule.special_map.get(day)
    if special is not None:
        return OPEN if any(h.contains(minute) for h in special) else CLOSED
    if is_holiday(schedule, day):
        return HOLIDAY
    return OPEN if any(h.contains(minute) for h in schedule.weekly[wall.weekday()]) else CLOSED


def open_at(schedule: Schedule, moment: dt.datetime) -> bool:
    return status_at(schedule, moment) == OPEN


def time_between(wall: dt.datetime, start: str, end: str) -> bool:
    """Is the wall-clock time within [start, end)? A range whose end is before its start spans
    midnight ('22:00', '06:00')."""
    first, last = parse_clock(start), parse_clock(end)
    minute = wall.hour * 60 + wall.minute
    if first <= last:
        return first <= minute < last
    return minute >= first or minute < last


def parse_clock(text: str) -> int:
    """'HH:MM' (24 h, 24:00 allowed) as minutes after midnight; ValueError otherwise."""
    hours, sep, minutes = str(text).partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2 or len(hours) > 2:
        raise ValueError(f"'{text}' is not a time of day as HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 1440:
        raise ValueError(f"'{text}' is not a time of day between 00:00 and 24:00")
    return value


def parse_range(text: str) -> Hours:
    """'HH:MM-HH:MM' (start before end, within one day)."""
    start, sep, end = str(text).partition("-")
    if not sep:
        raise ValueError(f"'{text}' is not a range of hours like 09:00-17:30")
    first, last = parse_clock(start.strip()), parse_clock(end.strip())
    if first >= last:
        raise ValueError(f"'{text}' ends before it starts; split a range over midnight into two days")
    return Hours(first, last)


def supported_countries() -> dict[str, list[str]]:
    """ISO country codes the holidays package knows, with their subdivisions."""
    return holidays_lib.list_supported_countries()
