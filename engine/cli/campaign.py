"""`callrouter campaign`: outbound campaigns in the engine's database — create, import contacts
and DNC lists, start/pause/resume/stop, status, the compliance export, and the what-if simulation."""
from __future__ import annotations

import csv
import dataclasses
import json
import sys
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from engine.cli.common import build_config, config_options, database_connection, friendly_errors
from engine.dialer import store
from engine.dialer.compliance import InvalidNumber, abandon_periods, normalise
from engine.dialer.importer import RowError, read_contacts
from engine.dialer.model import AbandonRule, CallingWindow, Campaign, Mode
from engine.errors import CallRouterError

_BATCH = 500


@click.group("campaign")
def COMMAND() -> None:
    """Outbound campaigns: contacts, compliance, pacing.

    \b
      callrouter campaign create sales --mode predictive --gateway carrier --queue sales
      callrouter campaign import sales leads.csv       phone column required, bad rows reported
      callrouter campaign dnc registry.txt --list national
      callrouter campaign start sales                  (pause, resume, stop)
      callrouter campaign status sales
      callrouter campaign watch sales                  live view; --once --json for scripts
      callrouter campaign call --agent 1001 +12125550199   click-to-call: the agent's phone first
      callrouter campaign compliance sales --csv       every attempt, for a regulator
      callrouter campaign simulate --mode predictive --agents 20 --answer-rate 0.3 --aht 120 --hours 8
    """


def _time(text: str) -> time:
    try:
        return time.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a time of day like 08:00") from None


@COMMAND.command("create")
@click.argument("name")
@click.option("--mode", type=click.Choice([m.value for m in Mode]), default="progressive", show_default=True)
@click.option("--caller-id", default="", help="The number presented to the called party.")
@click.option("--gateway", default="", help="FreeSWITCH gateway the calls go out through.")
@click.option("--queue", default="", help="ACD queue answered calls are connected to.")
@click.option("--flow", default="", help="IVR flow answered calls run (broadcast, survey).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--max-attempts-per-day", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--ring-timeout", type=click.FloatRange(min=15), default=25.0, show_default=True,
              help="Seconds to ring before giving up (at least 15).")
@click.option("--window", default="08:00-21:00", show_default=True, help="Calling hours in the contact's local time.")
@click.option("--abandon-rule", type=click.Choice([r.value for r in AbandonRule]), default="TSR", show_default=True)
@click.option("--abandon-cap", type=click.FloatRange(min=0.001, max=0.03), default=0.03, show_default=True)
@click.option("--abandon-message", default="", help="What an abandoned call hears: who calls, a number to call back.")
@click.option("--machine-message", default="", help="Left on answering machines after the beep; empty: hang up on them.")
@click.option("--message", default="", help="Broadcast: what answered calls hear; survey: its introduction, offering the opt-out key.")
@click.option("--agent-key", default="", help="Broadcast: the key that reaches an agent in --queue (e.g. 1).")
@click.option("--opt-out-key", default="9", show_default=True, help="Broadcast and survey: the key that puts the number on the internal DNC list.")
@click.option("--opt-out-message", default="", help="Broadcast and survey: the opt-out's confirmation.")
@click.option("--max-lines", type=click.IntRange(min=1), default=10, show_default=True,
              help="Broadcast and survey: calls at once.")
@click.option("--region", default="US", show_default=True, help="Country of numbers written without +country code.")
@config_options
@friendly_errors
def create(name: str, mode: str, window: str, abandon_rule: str, config_path: Path | None, data_dir: Path | None,
           **settings: Any) -> None:
    """Create a campaign (in state draft)."""
    start, _, end = window.partition("-")
    try:
        campaign = Campaign(name, mode=Mode(mode), window=CallingWindow(_time(start), _time(end)),
                            abandon_rule=AbandonRule(abandon_rule), **settings)
    except ValueError as exc:
        raise CallRouterError(str(exc)) from None
    with database_connection(config_path, data_dir) as conn:
        store.create_campaign(conn, campaign)
    click.echo(f"campaign {name} created ({mode}, draft)")


@COMMAND.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@config_options
@friendly_errors
def list_(as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """The campaigns and their state."""
    with database_connection(config_path, data_dir) as conn:
        for campaign, started in store.list_campaigns(conn):
            if as_json:
                click.echo(json.dumps({"name": campaign.name, "mode": campaign.mode.value,
                                       "state": campaign.state.value,
                                       "started_at": started.isoformat() if started else None}))
            else:
                click.echo(f"{campaign.name}\t{campaign.mode.value}\t{campaign.state.value}")


def _state_command(action: str) -> click.Command:
    @click.argument("name")
    @config_options
    @friendly_errors
    def command(name: str, config_path: Path | None, data_dir: Path | None) -> None:
        with database_connection(config_path, data_dir) as conn:
            state = store.change_state(conn, name, action)
        poll = build_config(config_path, data_dir).dialer.poll_seconds
        click.echo(f"campaign {name} is {state.value} (a running engine picks it up within {poll:g} s, "
                   f"its dialer.poll_seconds)")

    command.__doc__ = f"{action.capitalize()} the campaign (in PostgreSQL, which a running engine polls)."
    return click.command(action)(command)


for _action in store.TRANSITIONS:
    COMMAND.add_command(_state_command(_action))


@COMMAND.command("import")
@click.argument("name")
@click.argument("file", type=click.File("r", encoding="utf-8-sig", errors="surrogateescape"))
@config_options
@friendly_errors
def import_(name: str, file: Any, config_path: Path | None, data_dir: Path | None) -> None:
    """Import contacts from a CSV (columns: phone, optional timezone and priority, any others
    become custom fields). Each bad row is reported with its line; the others are imported."""
    errors: list[RowError] = []
    added = read = 0
    with database_connection(config_path, data_dir) as conn:
        campaign = store.load_campaign(conn, name)
        try:
            rows = read_contacts(file, campaign.region)
            batch = []
            with Progress(TextColumn("importing"), BarColumn(), MofNCompleteColumn(), console=None,
                          transient=not sys.stderr.isatty()) as progress:
                task = progress.add_task("rows", total=None)
                for line, row in rows:
                    read += 1
                    if isinstance(row, RowError):
                        errors.append(row)
                    else:
                        batch.append((row, line))
                    if len(batch) >= _BATCH:
                        added += store.add_contacts(conn, name, batch)
                        batch.clear()
                    progress.update(task, advance=1)
                added += store.add_contacts(conn, name, batch)
        except InvalidNumber as exc:
            raise CallRouterError(f"{file.name}: {exc}") from None
    for error in errors:
        click.echo(f"{file.name}: {error}", err=True)
    click.echo(f"{added} contacts imported, {read - len(errors) - added} already in the campaign, "
               f"{len(errors)} rows refused")
    if errors:
        sys.exit(2)


@COMMAND.command("dnc")
@click.argument("file", type=click.File("r", encoding="utf-8-sig", errors="surrogateescape"))
@click.option("--list", "list_name", default="internal", show_default=True,
              help="national (the registry file), internal, or a campaign's name for its own list.")
@click.option("--region", default="US", show_default=True)
@config_options
@friendly_errors
def dnc(file: Any, list_name: str, region: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Load do-not-call numbers, one per line (a registry file; the first column of a CSV)."""
    target = list_name if list_name in ("national", "internal") else f"campaign:{list_name}"
    phones, bad = [], 0
    for line_no, line in enumerate(file, 1):
        raw = line.split(",", 1)[0].strip()
        if not raw or raw.startswith("#") or (line_no == 1 and not any(c.isdigit() for c in raw)):
            continue
        try:
            phones.append(normalise(raw, region))
        except InvalidNumber as exc:
            bad += 1
            click.echo(f"{file.name}: line {line_no}: {exc}", err=True)
    with database_connection(config_path, data_dir) as conn:
        added = store.add_dnc(conn, phones, target, f"file:{Path(file.name).name}")
    click.echo(f"{added} numbers added to {target}, {bad} refused")


@COMMAND.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@config_options
@friendly_errors
def status(name: str, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Dial rate, answer rate, abandon rate against the cap, contacts left."""
    with database_connection(config_path, data_dir) as conn:
        figures = {k: store.to_json(v) for k, v in store.status(conn, name).items()}
    if as_json:
        click.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        click.echo(f"{key:>20}: {value}")


def _live_status(config_path: Path | None, data_dir: Path | None, name: str) -> dict[str, Any]:
    """The campaign's figures from the running engine (agents, calls in progress), else from PostgreSQL."""
    from engine.cli.status import call_api

    try:
        status, body = call_api(config_path, data_dir, f"/campaigns/status?{urlencode({'campaign': name})}",
                                accept=(422,), timeout=2.0)
    except CallRouterError:  # no engine answering: the stored figures
        with database_connection(config_path, data_dir) as conn:
            return {k: store.to_json(v) for k, v in store.status(conn, name).items()}
    if status == 422:
        raise CallRouterError(body["error"])
    return body


def _percent(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _watch_table(figures: dict[str, Any]) -> Any:
    from rich.table import Table

    eta = figures.get("eta_seconds")
    table = Table("", "", title=f"campaign {figures['campaign']} ({figures['mode']}, {figures['state']})")
    busy, idle = figures.get("agents_busy"), figures.get("agents_idle")
    rows = [
        ("dial rate", f"{figures['attempts_last_hour']} calls in the last hour"),
        ("answer rate", _percent(figures["answer_rate"])),
        ("abandon rate (period)", f"{_percent(figures['period_abandon_rate'])} of a {figures['abandon_cap']:.1%} cap "
                                  f"({figures['abandon_rule']})"),
        ("abandon budget left", f"{figures['abandon_budget']:g} calls"),
        ("agents busy / idle", "-" if busy is None else f"{busy} / {idle}"),
        ("calls in progress", str(figures.get("calls_in_progress", "-"))),
        ("contacts left", f"{figures['contacts_left']} of {figures['contacts']}"),
        ("ETA", "-" if eta is None else f"{eta // 3600}h{eta % 3600 // 60:02d}m"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table


@COMMAND.command("watch")
@click.argument("name")
@click.option("--once", is_flag=True, help="Print the figures once and exit.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of the table (one object per refresh).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between refreshes.")
@config_options
@friendly_errors
def watch(name: str, once: bool, as_json: bool, interval: float, config_path: Path | None,
          data_dir: Path | None) -> None:
    """Live view: dial, answer and abandon rates against the cap, the abandon budget left, agents
    busy and idle, contacts left and an ETA (from the running engine, else from PostgreSQL)."""
    import time as clock

    from rich.console import Console
    from rich.live import Live

    if as_json or once:
        while True:
            figures = _live_status(config_path, data_dir, name)
            if as_json:
                click.echo(json.dumps(figures))
            else:
                Console().print(_watch_table(figures))
            if once:
                return
            clock.sleep(interval)
    with Live(_watch_table(_live_status(config_path, data_dir, name)), refresh_per_second=4) as live:
        try:
            while True:
                clock.sleep(interval)
                live.update(_watch_table(_live_status(config_path, data_dir, name)))
        except KeyboardInterrupt:
            pass


@COMMAND.command("call")
@click.argument("number")
@click.option("--agent", required=True, help="The agent whose phone rings first.")
@click.option("--campaign", default="", help="Call through this campaign's gateway and caller id.")
@click.option("--gateway", default="", help="Else: the FreeSWITCH gateway to call through.")
@click.option("--caller-id", default="", help="The number the called party sees.")
@click.option("--region", default="US", show_default=True, help="Country of a number written without +country code.")
@config_options
@friendly_errors
def call(number: str, agent: str, campaign: str, gateway: str, caller_id: str, region: str,
         config_path: Path | None, data_dir: Path | None) -> None:
    """Click-to-call on the running engine: the agent's phone rings; once the agent answers, the
    number is called and the two are connected (refused when the number is on a DNC list)."""
    from engine.cli.status import call_api

    params = {"agent": agent, "number": number, "campaign": campaign, "gateway": gateway, "caller_id": caller_id,
              "region": region}
    status, body = call_api(config_path, data_dir, f"/campaigns/call?{urlencode(params)}", method="POST",
                            accept=(422,))
    if status == 422:
        raise CallRouterError(body["error"])
    click.echo(f"ringing agent {body['agent']} (leg {body['agent_leg']}); {body['number']} is called once "
               f"the agent answers")


@COMMAND.command("compliance")
@click.argument("name")
@click.option("--json", "fmt", flag_value="json", help="One JSON object per attempt.")
@click.option("--csv", "fmt", flag_value="csv", default=True, help="CSV with a header row [default].")
@click.option("--periods", is_flag=True, help="The abandon rate per period of the campaign's rule instead.")
@config_options
@friendly_errors
def compliance(name: str, fmt: str, periods: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Every attempt with its times, outcome, abandon flag and message played."""
    with database_connection(config_path, data_dir) as conn:
        campaign = store.load_campaign(conn, name)
        rows = store.attempts(conn, name)
        started = conn.execute("SELECT started_at FROM campaign WHERE name = %s", (name,)).fetchone()[0]
    if periods:
        start = started or (rows[0].started_at if rows else None)
        records = [p.to_dict() for p in abandon_periods(campaign.abandon_rule, rows, start,
                                                        cap=campaign.abandon_cap)] if start else []
    else:
        records = [{k: store.to_json(v) for k, v in dataclasses.asdict(a).items()} for a in rows]
    if fmt == "json":
        for record in records:
            click.echo(json.dumps(record))
    elif records:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


@COMMAND.command("simulate")
@click.option("--mode", type=click.Choice(["predictive", "progressive", "ratio", "adaptive"]), default="predictive",
              show_default=True)
@click.option("--agents", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--answer-rate", type=click.FloatRange(0.01, 1.0), default=0.3, show_default=True,
              help="Share of calls a person answers.")
@click.option("--aht", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Mean handle time (s).")
@click.option("--wrap-up", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--hours", type=click.FloatRange(min=0.01), default=8.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--ratio", type=click.FloatRange(min=1), default=2.0, show_default=True, help="Lines per idle agent (ratio).")
@click.option("--abandon-rule", type=click.Choice([r.value for r in AbandonRule]), default="TSR", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def simulate(mode: str, agents: int, answer_rate: float, aht: float, wrap_up: float, hours: float, seed: int,
             ratio: float, abandon_rule: str, as_json: bool) -> None:
    """Size a campaign: the real pacing against the simulator on a virtual clock."""
    from engine.dialer.whatif import simulate as run

    report = run(mode, agents=agents, answer_rate=answer_rate, aht=aht, hours=hours, seed=seed, wrap_up=wrap_up,
                 ratio=ratio, rule=AbandonRule(abandon_rule))
    if as_json:
        click.echo(json.dumps(report.to_dict()))
        return
    for key, value in report.to_dict().items():
        click.echo(f"{key:>26}: {value}")
