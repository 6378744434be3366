"""Compliance rules as pure functions: E.164 numbers and their time zones, calling windows in the
contact's local time, the last-moment dial check (DNC, window, attempts per day, Ofcom's 72 h),
the abandon definition and abandon accounting per rule set (TSR/FCC 30 days, Ofcom 24 h)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as pn_timezone

from engine.dialer.model import (
    ABANDON_GRACE_SECONDS, AbandonRule, Attempt, CallingWindow, Campaign, Contact, ContactState,
)
from engine.errors import CallRouterError

TSR_PERIOD = timedelta(days=30)
OFCOM_PERIOD = timedelta(hours=24)
OFCOM_NO_REDIAL = timedelta(hours=72)


class InvalidNumber(CallRouterError):
    """A phone number that phonenumbers cannot make a valid E.164 number of."""


def normalise(raw: str, region: str) -> str:
    """The E.164 form of `raw` (national numbers read in `region`, e.g. US, GB)."""
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"'{raw}' is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumber(f"'{raw}' is not a valid number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def zones_for(e164: str) -> tuple[str, ...]:
    """Every time zone the number may be in. A number spanning several zones (a mobile, a
    country-wide range) is called only when the window is open in all of them."""
    zones = pn_timezone.time_zones_for_number(phonenumbers.parse(e164))
    return tuple(z for z in zones if z != pn_timezone.UNKNOWN_TIMEZONE) or ("UTC",)


def check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidNumber(f"unknown time zone '{name}'") from None
    return name


def window_open(window: CallingWindow, zones: Iterable[str], now: datetime) -> bool:
    """True when `now` (aware) falls in the window in every one of the contact's zones."""
    for zone in zones:
        local = now.astimezone(ZoneInfo(zone))
        if local.weekday() not in window.weekdays or not window.start <= local.time() < window.end:
            return False
    return True


@dataclass(frozen=True)
class DialHistory:
    """What the dial check needs to know of a number's past (from the attempts table)."""
    attempts_today: int = 0                     # in the contact's local day
    last_abandoned_at: datetime | None = None


def refuse_dial(campaign: Campaign, contact: Contact, now: datetime, on_dnc: bool,
                history: DialHistory) -> str | None:
    """Why this contact must not be dialled now, or None. The live layer calls it right before
    each originate, with the DNC lookup done then (an opt-out a second ago counts)."""
    if on_dnc:
        return "on a do-not-call list"
    if contact.state in (ContactState.DONE, ContactState.DNC, ContactState.INVALID):
        return f"contact is {contact.state.value}"
    if contact.attempts >= campaign.max_attempts:
        return f"max attempts ({campaign.max_attempts}) reached"
    if history.attempts_today >= campaign.max_attempts_per_day:
        return f"max attempts per day ({campaign.max_attempts_per_day}) reached"
    if not window_open(campaign.window, contact.timezones, now):
        return "outside the calling window in the contact's time zone"
    if (campaign.abandon_rule is AbandonRule.OFCOM and history.last_abandoned_at is not None
            and now - history.last_abandoned_at < OFCOM_NO_REDIAL):
        return "abandoned less than 72 h ago (Ofcom)"
    return None


def is_abandoned(greeting_ended_at: float, connected_at: float | None) -> bool:
    """A live answer is abandoned when no agent is connected within 2 s of the greeting's end."""
    return connected_at is None or connected_at - greeting_ended_at > ABANDON_GRACE_SECONDS


# --------------------------------------------------------------------------- abandon accounting
@dataclass(frozen=True)
class PeriodFigures:
    start: datetime
    end: datetime
    live_answers: float      # Ofcom: plus the estimated live calls AMD took for machines
    abandoned: float
    cap: float

    @property
    def rate(self) -> float:
        return self.abandoned / self.live_answers if self.live_answers else 0.0

    @property
    def budget(self) -> float:
        """Abandons still allowed in this period at its current live answers."""
        return self.cap * self.live_answers - self.abandoned

    def to_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "live_answers": self.live_answers,
                "abandoned": self.abandoned, "rate": round(self.rate, 6), "cap": self.cap,
                "budget": round(self.budget, 3)}


def period_length(rule: AbandonRule) -> timedelta:
    return TSR_PERIOD if rule is AbandonRule.TSR else OFCOM_PERIOD


def period_of(rule: AbandonRule, campaign_start: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The successive period (from the campaign's start) that `now` falls in."""
    length = period_length(rule)
    index = max(0, math.floor((now - campaign_start) / length))
    start = campaign_start + index * length
    return start, start + length


def abandon_periods(rule: AbandonRule, attempts: Iterable[Attempt], campaign_start: datetime, *,
                    cap: float, amd_false_positive_rate: float = 0.0) -> list[PeriodFigures]:
    """Figures per successive period that had an attempt. Ofcom counts the live calls AMD hung up
    on as machines (its false positives, estimated at `amd_false_positive_rate` of them) both as
    live answers and as abandoned; TSR counts live answers and abandons as recorded."""
    per: dict[datetime, list[float]] = {}
    for attempt in attempts:
        if attempt.answered_at is None:
            continue
        start, _ = period_of(rule, campaign_start, attempt.answered_at)
        figures = per.setdefault(start, [0.0, 0.0])
        if attempt.amd_result == "MACHINE":
            if rule is AbandonRule.OFCOM:
                figures[0] += amd_false_positive_rate
                figures[1] += amd_false_positive_rate
            continue
        figures[0] += 1
        figures[1] += attempt.abandoned
    length = period_length(rule)
    return [PeriodFigures(start, start + length, live, abandoned, cap)
            for start, (live, abandoned) in sorted(per.items())]


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)
