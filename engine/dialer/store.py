"""The dialer's PostgreSQL tables (migrations/0030_dialer.sql): campaigns and their state,
contacts, attempts, DNC lists, callbacks. Plain functions over a psycopg connection; the caller
owns the transaction."""
from __future__ import annotations

import dataclasses
from datetime import datetime, time, timezone
from typing import Any, Iterable

import psycopg
from psycopg.types.json import Jsonb

from engine.dialer.compliance import PeriodFigures, period_of
from engine.dialer.model import (
    AbandonRule, Attempt, CallingWindow, Campaign, CampaignState, Contact, ContactState, Mode, RetryRule,
)
from engine.errors import CallRouterError


class UnknownCampaign(CallRouterError):
    """No campaign by that name in the database."""


def _settings(campaign: Campaign) -> dict[str, Any]:
    return {
        "caller_id": campaign.caller_id, "gateway": campaign.gateway, "queue": campaign.queue,
        "flow": campaign.flow, "max_attempts": campaign.max_attempts,
        "max_attempts_per_day": campaign.max_attempts_per_day,
        "retry_rules": [dataclasses.asdict(r) for r in campaign.retry_rules], "retry_first": campaign.retry_first,
        "ring_timeout": campaign.ring_timeout,
        "window": {"start": campaign.window.start.strftime("%H:%M"), "end": campaign.window.end.strftime("%H:%M"),
                   "weekdays": sorted(campaign.window.weekdays)},
        "abandon_rule": campaign.abandon_rule.value, "abandon_cap": campaign.abandon_cap,
        "abandon_message": campaign.abandon_message, "machine_message": campaign.machine_message,
        "region": campaign.region, "message": campaign.message, "agent_key": campaign.agent_key,
        "opt_out_key": campaign.opt_out_key, "opt_out_message": campaign.opt_out_message,
        "max_lines": campaign.max_lines,
    }


def _campaign(name: str, mode: str, settings: dict[str, Any], state: str) -> Campaign:
    window = settings["window"]
    return Campaign(
        name=name, mode=Mode(mode), caller_id=settings["caller_id"], gateway=settings["gateway"],
        queue=settings["queue"], flow=settings["flow"], max_attempts=settings["max_attempts"],
        max_attempts_per_day=settings["max_attempts_per_day"],
        retry_rules=tuple(RetryRule(**r) for r in settings["retry_rules"]), retry_first=settings["retry_first"],
        ring_timeout=settings["ring_timeout"],
        window=CallingWindow(time.fromisoformat(window["start"]), time.fromisoformat(window["end"]),
                             frozenset(window["weekdays"])),
        abandon_rule=AbandonRule(settings["abandon_rule"]), abandon_cap=settings["abandon_cap"],
        abandon_message=settings["abandon_message"], machine_message=settings.get("machine_message", ""),
        region=settings["region"], state=CampaignState(state),
        # Settings added after the first release: a campaign stored before them gets the defaults.
        **{k: settings[k] for k in _LATER_SETTINGS if k in settings})


_LATER_SETTINGS = ("message", "agent_key", "opt_out_key", "opt_out_message", "max_lines")


def create_campaign(conn: psycopg.Connection, campaign: Campaign) -> None:
    try:
        conn.execute("INSERT INTO campaign (name, mode, settings, state) VALUES (%s, %s, %s, %s)",
                     (campaign.name, campaign.mode.value, Jsonb(_settings(campaign)), campaign.state.value))
    except psycopg.errors.UniqueViolation:
        raise CallRouterError(f"campaign '{campaign.name}' already exists") from None


def load_campaign(conn: psycopg.Connection, name: str) -> Campaign:
    row = conn.execute("SELECT name, mode, settings, state FROM campaign WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise UnknownCampaign(f"no campaign '{name}' (see `callrouter campaign list`)")
    return _campaign(*row)


def list_campaigns(conn: psycopg.Connection) -> list[tuple[Campaign, datetime | None]]:
    rows = conn.execute("SELECT name, mode, settings, state, started_at FROM campaign ORDER BY name").fetchall()
    return [(_campaign(*row[:4]), row[4]) for row in rows]


# Which state changes an operator may make, from which states.
TRANSITIONS = {
    "start": ({CampaignState.DRAFT, CampaignState.STOPPED}, CampaignState.RUNNING),
    "pause": ({CampaignState.RUNNING}, CampaignState.PAUSED),
    "resume": ({CampaignState.PAUSED}, CampaignState.RUNNING),
    "stop": ({CampaignState.RUNNING, CampaignState.PAUSED}, CampaignState.STOPPED),
}


def change_state(conn: psycopg.Connection, name: str, action: str) -> CampaignState:
    allowed, new = TRANSITIONS[action]
    campaign = load_campaign(conn, name)
    if campaign.state not in allowed:
        raise CallRouterError(f"campaign '{name}' is {campaign.state.value}: cannot {action} it "
                              f"(only when {' or '.join(sorted(s.value for s in allowed))})")
    conn.execute("UPDATE campaign SET state = %s, updated_at = now(), "
                 "started_at = CASE WHEN %s AND started_at IS NULL THEN now() ELSE started_at END WHERE name = %s",
                 (new.value, new is CampaignState.RUNNING, name))
    return new


def add_contacts(conn: psycopg.Connection, campaign: str, contacts: Iterable[tuple[Contact, int]]) -> int:
    """Insert (contact, source line) rows; a number already in the campaign is skipped. Returns how many were new."""
    added = 0
    for contact, line in contacts:
        cur = conn.execute(
            "INSERT INTO contact (campaign, phone, timezones, fields, priority, source_line) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (campaign, phone) DO NOTHING",
            (campaign, contact.phone, list(contact.timezones), Jsonb(contact.fields), contact.priority, line))
        added += cur.rowcount
    return added


_CONTACT = "SELECT id, phone, timezones, fields, state, attempts, retries, next_attempt_at, priority, imported_at FROM contact"


def _contact(r: tuple) -> Contact:
    return Contact(r[0], r[1], tuple(r[2]), r[3], ContactState(r[4]), r[5], r[6], r[7], r[8], r[9])


def load_contacts(conn: psycopg.Connection, campaign: str) -> list[Contact]:
    return [_contact(r) for r in conn.execute(_CONTACT + " WHERE campaign = %s ORDER BY id", (campaign,)).fetchall()]


def save_contact(conn: psycopg.Connection, contact: Contact) -> None:
    conn.execute("UPDATE contact SET state = %s, attempts = %s, retries = %s, next_attempt_at = %s, priority = %s "
                 "WHERE id = %s", (contact.state.value, contact.attempts, Jsonb(contact.retries),
                                   contact.next_attempt_at, contact.priority, contact.id))


def record_attempt(conn: psycopg.Connection, attempt: Attempt) -> None:
    """Insert or complete an attempt (written when placed, again when it ends: a restart sees it)."""
    values = dataclasses.asdict(attempt)
    columns = list(values)
    conn.execute(
        f"INSERT INTO dial_attempt ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT (uuid) DO UPDATE SET "
        + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in ("uuid", "campaign", "contact_id")),
        [values[c] for c in columns])


def close_attempt(conn: psycopg.Connection, attempt: Attempt) -> bool:
    """Write an attempt's end, once: False when it was closed already (by another greenlet or
    engine), so its contact's retry verdict is applied exactly once."""
    values = dataclasses.asdict(attempt)
    columns = [c for c in values if c not in ("uuid", "campaign", "contact_id")]
    return conn.execute(
        f"UPDATE dial_attempt SET {', '.join(f'{c} = %s' for c in columns)} WHERE uuid = %s AND ended_at IS NULL",
        [values[c] for c in columns] + [attempt.uuid]).rowcount == 1


def leg_record(conn: psycopg.Connection, uuid: str) -> tuple[datetime | None, str, str] | None:
    """(answer_stamp, hangup_cause, agent) of the leg's CDR, if an engine wrote one."""
    return conn.execute("SELECT answer_stamp, coalesce(hangup_cause, ''), coalesce(agent, '') FROM cdr "
                        "WHERE uuid = %s", (uuid,)).fetchone()


def attempts(conn: psycopg.Connection, campaign: str) -> list[Attempt]:
    fields = [f.name for f in dataclasses.fields(Attempt)]
    rows = conn.execute(f"SELECT {', '.join(fields)} FROM dial_attempt WHERE campaign = %s ORDER BY started_at, uuid",
                        (campaign,)).fetchall()
    return [Attempt(*row) for row in rows]


def open_attempts(conn: psycopg.Connection, campaign: str) -> list[Attempt]:
    """Attempts placed and not yet closed: after a restart, adopted from the switch or closed."""
    return [a for a in attempts(conn, campaign) if a.ended_at is None]


def attempt(conn: psycopg.Connection, uuid: str) -> Attempt | None:
    fields = [f.name for f in dataclasses.fields(Attempt)]
    row = conn.execute(f"SELECT {', '.join(fields)} FROM dial_attempt WHERE uuid = %s", (uuid,)).fetchone()
    return Attempt(*row) if row else None


def load_contact(conn: psycopg.Connection, contact_id: int, *, lock: bool = False) -> Contact:
    return _contact(conn.execute(_CONTACT + " WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                                 (contact_id,)).fetchone())


def recent_attempts(conn: psycopg.Connection, campaign: str, since: datetime) -> list[tuple[int, datetime, bool]]:
    """(contact id, started at, abandoned) of the attempts since `since`: what the dial check counts."""
    return conn.execute("SELECT contact_id, started_at, abandoned FROM dial_attempt WHERE campaign = %s "
                        "AND started_at >= %s", (campaign, since)).fetchall()


def mark_done(conn: psycopg.Connection, name: str) -> None:
    """Every contact is reached or closed: the campaign ends by itself."""
    conn.execute("UPDATE campaign SET state = %s, updated_at = now() WHERE name = %s AND state = %s",
                 (CampaignState.DONE.value, name, CampaignState.RUNNING.value))


def add_dnc(conn: psycopg.Connection, phones: Iterable[str], list_name: str, source: str) -> int:
    added = 0
    for phone in phones:
        added += conn.execute("INSERT INTO dnc_number (phone, list, source) VALUES (%s, %s, %s) "
                              "ON CONFLICT DO NOTHING", (phone, list_name, source)).rowcount
    return added


def on_dnc(conn: psycopg.Connection, campaign: str, phone: str) -> bool:
    """The last-moment lookup: national, internal, or this campaign's own list."""
    return conn.execute("SELECT EXISTS (SELECT 1 FROM dnc_number WHERE phone = %s AND list = ANY(%s))",
                        (phone, ["national", "internal", f"campaign:{campaign}"])).fetchone()[0]


def schedule_callback(conn: psycopg.Connection, campaign: str, contact_id: int, due_at: datetime,
                      agent: str = "") -> int:
    return conn.execute("INSERT INTO dialer_callback (campaign, contact_id, due_at, agent) VALUES (%s, %s, %s, %s) "
                        "RETURNING id", (campaign, contact_id, due_at, agent)).fetchone()[0]


def status(conn: psycopg.Connection, name: str, now: datetime | None = None) -> dict[str, Any]:
    """What `campaign status` and `watch` show: contacts by state, dial, answer and abandon rates,
    the current abandon period against the cap and its remaining budget, and an ETA at the pace so far."""
    campaign = load_campaign(conn, name)
    now = now or datetime.now(timezone.utc)
    by_state = dict(conn.execute("SELECT state, count(*) FROM contact WHERE campaign = %s GROUP BY state",
                                 (name,)).fetchall())
    started_at = conn.execute("SELECT started_at FROM campaign WHERE name = %s", (name,)).fetchone()[0]
    period_start, period_end = period_of(campaign.abandon_rule, started_at or now, now)
    row = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE answered_at IS NOT NULL AND amd_result <> 'MACHINE'), "
        "count(*) FILTER (WHERE abandoned), min(started_at), max(started_at), "
        "count(*) FILTER (WHERE answered_at >= %s AND amd_result <> 'MACHINE'), "
        "count(*) FILTER (WHERE answered_at >= %s AND abandoned), "
        "count(*) FILTER (WHERE started_at >= %s - interval '1 hour') "
        "FROM dial_attempt WHERE campaign = %s", (period_start, period_start, now, name)).fetchone()
    total, live, abandoned, first, last, period_live, period_abandoned, last_hour = row
    hours = (last - first).total_seconds() / 3600 if first and last and last > first else 0.0
    left = sum(by_state.get(s.value, 0) for s in (ContactState.NEW, ContactState.RETRY, ContactState.DIALING))
    closed = sum(by_state.values()) - left
    elapsed = (now - started_at).total_seconds() if started_at else 0.0
    figures = PeriodFigures(period_start, period_end, period_live, period_abandoned, campaign.abandon_cap)
    return {
        "campaign": name, "mode": campaign.mode.value, "state": campaign.state.value,
        "contacts": sum(by_state.values()), "contacts_left": left,
        "contacts_by_state": by_state, "attempts": total, "attempts_last_hour": last_hour,
        "dial_rate_per_hour": round(total / hours, 3) if hours else None,
        "answer_rate": round(live / total, 6) if total else None,
        "abandon_rate": round(abandoned / live, 6) if live else 0.0,
        "abandon_cap": campaign.abandon_cap, "abandon_rule": campaign.abandon_rule.value,
        "period_start": period_start, "period_end": period_end,
        "period_abandon_rate": round(figures.rate, 6), "abandon_budget": round(figures.budget, 3),
        # Contacts still to close at the rate they have been closed since the start.
        "eta_seconds": round(left * elapsed / closed) if left and closed and elapsed > 0 else (0 if not left else None),
    }


def to_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


