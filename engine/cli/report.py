"""`callrouter report`: KPI reports and CDRs from the engine's PostgreSQL, as a table, JSON or CSV."""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import psycopg

from engine.cdr.reports import (INTERVALS, Period, ReportSettings, ServiceLevelDefinition, agent_kpis, cdr_rows,
                                lost_calls, queue_kpis)
from engine.cdr.retention import prune
from engine.cli.common import build_config, config_options, database_connection, friendly_errors
from engine.errors import CallRouterError


@click.group("report")
def COMMAND() -> None:
    """KPI reports and CDRs from the engine's database.

    \b
      callrouter report queues                 today's KPIs per queue
      callrouter report queues --interval hour --from 2025-01-06
      callrouter report campaigns --json       the same KPIs per campaign
      callrouter report agents --interval day  occupancy, utilisation, calls per agent
      callrouter report lost --csv             calls lost in queue, with caller id and wait
      callrouter report cdrs --json            the CDRs, one JSON object per line
      callrouter report prune --keep-days 400  delete records older than that

    The database is found as `callrouter run` finds it: database.dsn in --config, else the
    embedded PostgreSQL under --data-dir. Periods default to today in --tz; --from alone
    reports one day. A call counts in the interval it entered its queue.
    """


def _parse_moment(text: str, zone: ZoneInfo) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a date or time like 2025-01-06 or 2025-01-06T09:30") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _period_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--from", "start", metavar="WHEN", help="Start (2025-01-06, 2025-01-06T09:00) [default: today].")
    @click.option("--to", "end", metavar="WHEN", help="End, excluded [default: one day after --from].")
    @click.option("--tz", default="UTC", show_default=True, help="Time zone of dates, hours and days (IANA name).")
    @functools.wraps(fn)
    def wrapper(*args: Any, start: str | None, end: str | None, tz: str, **kwargs: Any) -> Any:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise click.BadParameter(f"unknown time zone '{tz}'", param_hint="--tz") from None
        first = _parse_moment(start, zone) if start else datetime.combine(datetime.now(zone).date(), time(), zone)
        last = _parse_moment(end, zone) if end else first + timedelta(days=1)
        if last <= first:
            raise click.BadParameter("--to must be after --from")
        return fn(*args, period_bounds=(first, last, tz), **kwargs)
    return wrapper


def _interval_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--interval", type=click.Choice(INTERVALS), default="total", show_default=True,
                        help="One row per quarter hour, hour, day, or the whole period.")(fn)


def _settings_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """KPI definitions: the config's `reports:` section (as the engine's metrics use them), each
    overridable for one report."""
    defaults = ReportSettings()

    @click.option("--sl-seconds", type=click.IntRange(min=1),
                  help=f"Service level threshold T: answered within T seconds "
                       f"[default: reports.service_level_seconds, else {defaults.service_level_seconds}].")
    @click.option("--sl-definition", type=click.Choice([d.value for d in ServiceLevelDefinition]),
                  help=f"What the answered-within-T count is divided by [default: "
                       f"reports.service_level_definition, else {defaults.service_level_definition.value}].")
    @click.option("--short-abandon-seconds", type=click.IntRange(min=0),
                  help=f"Abandons under this many seconds are reported apart "
                       f"[default: reports.short_abandon_seconds, else {defaults.short_abandon_seconds}].")
    @click.option("--repeat-window-hours", type=click.IntRange(min=1),
                  help=f"A caller calling again within this window was not resolved first time "
                       f"[default: reports.repeat_call_window_hours, else {defaults.repeat_call_window_hours}].")
    @functools.wraps(fn)
    def wrapper(*args: Any, sl_seconds: int | None, sl_definition: str | None, short_abandon_seconds: int | None,
                repeat_window_hours: int | None, **kwargs: Any) -> Any:
        configured = build_config(kwargs.get("config_path"), kwargs.get("data_dir")).reports
        given = {"service_level_seconds": sl_seconds, "short_abandon_seconds": short_abandon_seconds,
                 "repeat_call_window_hours": repeat_window_hours,
                 "service_level_definition": ServiceLevelDefinition(sl_definition) if sl_definition else None}
        settings = dataclasses.replace(configured, **{k: v for k, v in given.items() if v is not None})
        return fn(*args, settings=settings, **kwargs)
    return wrapper


def _output_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @click.option("--json", "fmt", flag_value="json", help="One JSON object per line.")
    @click.option("--csv", "fmt", flag_value="csv", help="CSV with a header row.")
    @functools.wraps(fn)
    def wrapper(*args: Any, fmt: str | None, **kwargs: Any) -> Any:
        return fn(*args, fmt=fmt or "table", **kwargs)
    return wrapper


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    return value


def _emit(rows: Iterable[dict[str, Any]], fmt: str, title: str, columns: list[tuple[str, str]],
          caption: str = "", stamp_format: str = "%Y-%m-%d %H:%M") -> None:
    """Rows as JSON lines, CSV (every field) or a rich table (the listed columns)."""
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False))
        return
    if fmt == "csv":
        writer: csv.DictWriter | None = None
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(sys.stdout, fieldnames=list(row), lineterminator="\n")
                writer.writeheader()
            writer.writerow({k: _plain(v) for k, v in row.items()})
        return
    from rich.console import Console
    from rich.table import Table

    cells = [[_cell(row.get(key), key, stamp_format) for key, _ in columns] for row in rows]
    if not cells:
        Console().print(f"{title}: nothing in this period")
        return
    table = Table(title=title, caption=caption or None)
    for i, (_, heading) in enumerate(columns):  # headings may wrap on a narrow terminal, figures never
        widest = max(max(len(line[i]) for line in cells), *(len(word) for word in heading.split()))
        table.add_column(heading, min_width=widest)
    for line in cells:
        table.add_row(*line)
    Console().print(table)


def _cell(value: Any, key: str, stamp_format: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime(stamp_format)
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if key in ("service_level", "abandon_rate", "transfer_rate", "first_contact_resolution", "occupancy",
                   "utilisation", "packet_loss_percent"):
            return f"{value:.1%}" if key != "packet_loss_percent" else f"{value:.2f}%"
        return f"{value:.1f}"
    return str(value)


def _title(what: str, period: Period) -> str:
    fmt = "%Y-%m-%d %H:%M"
    return f"{what} {period.start.strftime(fmt)} to {period.end.strftime(fmt)} ({period.tz}, {period.interval})"


def _interval_column(period: Period) -> tuple[list[tuple[str, str]], str]:
    """The table's interval column and how to show it: none for one total, hours within a day."""
    if period.interval == "total":
        return [], ""
    if period.interval == "day":
        return [("interval_start", "day")], "%Y-%m-%d"
    one_day = period.end - period.start <= timedelta(days=1)
    return [("interval_start", "from")], "%H:%M" if one_day else "%m-%d %H:%M"


def _period(bounds: tuple[datetime, datetime, str], interval: str = "total") -> Period:
    start, end, tz = bounds
    return Period(start, end, interval, tz)


_KPI_COLUMNS = [("offered", "offered"), ("answered", "answered"), ("abandoned", "abandoned"),
                ("short_abandoned", "short ab."), ("timed_out", "timeout"), ("service_level", "SL"),
                ("asa_seconds", "ASA s"), ("aht_seconds", "AHT s"), ("avg_wait_seconds", "avg wait"),
                ("max_wait_seconds", "max wait"), ("abandon_rate", "aband. %"), ("transfer_rate", "transf. %"),
                ("first_contact_resolution", "FCR")]


def _kpi_command(name: str, by: str, help_text: str) -> None:
    @COMMAND.command(name, help=help_text)
    @config_options
    @_period_options
    @_interval_option
    @_settings_options
    @_output_options
    @friendly_errors
    def command(config_path: Path | None, data_dir: Path | None, period_bounds, settings, interval: str,
                fmt: str) -> None:
        period = _period(period_bounds, interval)
        with database_connection(config_path, data_dir) as conn:
            rows = queue_kpis(conn, period, settings, by=by)
        caption = (f"SL = {settings.describe_service_level()}; short abandons: under "
                   f"{settings.short_abandon_seconds} s, left out of the abandon rate; FCR: no repeat call "
                   f"within {settings.repeat_call_window_hours} h")
        interval_column, stamp_format = _interval_column(period)
        _emit(rows, fmt, _title(f"{by.capitalize()} KPIs", period), [*interval_column, (by, by), *_KPI_COLUMNS],
              caption, stamp_format)


_kpi_command("queues", "queue", "KPIs per queue: offered, answered, abandons, service level, ASA, AHT, waits, "
                                "abandon/transfer rates, first-contact resolution.")
_kpi_command("campaigns", "campaign", "The queue KPIs per campaign (calls without a campaign under '').")


@COMMAND.command("agents")
@config_options
@_period_options
@_interval_option
@_settings_options
@_output_options
@friendly_errors
def agents_command(config_path: Path | None, data_dir: Path | None, period_bounds, settings, interval: str,
                   fmt: str) -> None:
    """Per agent: calls answered and handled, ring-no-answers, talk/hold/wrap-up, AHT, logged-in and
    paused time, occupancy (handle / (logged in - paused)) and utilisation (handle / logged in)."""
    period = _period(period_bounds, interval)
    with database_connection(config_path, data_dir) as conn:
        rows = agent_kpis(conn, period, settings)
    interval_column, stamp_format = _interval_column(period)
    _emit(rows, fmt, _title("Agents", period),
          [*interval_column, ("agent", "agent"), ("answered", "answered"), ("handled", "handled"),
           ("ring_no_answer", "no answer"), ("transferred", "transf."), ("aht_seconds", "AHT s"),
           ("talk_seconds", "talk s"), ("hold_seconds", "hold s"), ("wrap_up_seconds", "wrap-up s"),
           ("logged_in_seconds", "logged in s"), ("paused_seconds", "paused s"), ("occupancy", "occupancy"),
           ("utilisation", "utilis.")], stamp_format=stamp_format)


@COMMAND.command("lost")
@config_options
@_period_options
@_settings_options
@_output_options
@friendly_errors
def lost_command(config_path: Path | None, data_dir: Path | None, period_bounds, settings, fmt: str) -> None:
    """Calls that left a queue without reaching an agent (abandoned or timed out): who called,
    when, from which position, and how long they waited."""
    period = _period(period_bounds)
    with database_connection(config_path, data_dir) as conn:
        rows = lost_calls(conn, period, settings)
    _emit(rows, fmt, _title("Lost calls", period),
          [("entered", "entered"), ("queue", "queue"), ("caller_id_number", "caller"),
           ("caller_id_name", "name"), ("outcome", "outcome"), ("wait_seconds", "wait s"),
           ("position", "position"), ("short_abandon", "short"), ("call_uuid", "uuid")],
          f"short: abandoned under {settings.short_abandon_seconds} s")


@COMMAND.command("cdrs")
@config_options
@_period_options
@_output_options
@friendly_errors
def cdrs_command(config_path: Path | None, data_dir: Path | None, period_bounds, fmt: str) -> None:
    """The CDRs of the legs that started in the period (every column with --json or --csv)."""
    period = _period(period_bounds)
    with database_connection(config_path, data_dir) as conn:
        _emit(cdr_rows(conn, period), fmt, _title("CDRs", period),
              [("start_stamp", "start"), ("uuid", "uuid"), ("direction", "dir"), ("caller_id_number", "caller"),
               ("destination_number", "destination"), ("duration", "duration"), ("billsec", "billsec"),
               ("hangup_cause", "hangup cause"), ("queue", "queue"), ("agent", "agent"),
               ("wait_seconds", "wait s"), ("rtp_audio_in_mos", "MOS")])


@COMMAND.command("prune")
@config_options
@click.option("--keep-days", type=click.IntRange(min=1), required=True,
              help="Delete CDRs that ended, and queue events, more than this many days ago.")
@friendly_errors
def prune_command(config_path: Path | None, data_dir: Path | None, keep_days: int) -> None:
    """Delete old CDRs and queue events (the engine also does this daily when retention is set)."""
    with database_connection(config_path, data_dir) as conn:
        try:
            with conn.transaction():
                deleted = prune(conn, keep_days)
        except psycopg.Error as exc:
            raise CallRouterError(f"prune failed: {exc}") from None
    click.echo(f"deleted {deleted['cdr']} CDRs and {deleted['queue_log']} queue events older than {keep_days} days")
