"""`callrouter agents`: list the ACD's agents and log them in, out, on break or back, on a running
engine through its admin API (the change is logged to the queue log and survives a restart)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from engine.acd.model import AgentStatus
from engine.cli.common import config_options, friendly_errors
from engine.cli.status import call_api

# Spellings a shell user can type without quotes, beside mod_callcenter's own names.
STATUS_ALIASES = {"available": AgentStatus.AVAILABLE, "on-demand": AgentStatus.AVAILABLE_ON_DEMAND,
                  "on-break": AgentStatus.ON_BREAK, "break": AgentStatus.ON_BREAK,
                  "logged-out": AgentStatus.LOGGED_OUT, **{s.value.lower(): s for s in AgentStatus}}


def acd_request(config_path: Path | None, data_dir: Path | None, path: str, params: dict[str, str] | None = None,
                *, method: str = "GET") -> Any:
    """An ACD endpoint's JSON; a refusal (422: unknown agent, call, status) is printed and exits 1."""
    status, body = call_api(config_path, data_dir, f"{path}?{urlencode(params)}" if params else path,
                            method=method, accept=(422,))
    if status == 422:
        click.echo(f"error: {body['error']}", err=True)
        sys.exit(1)
    return body


def print_agents(agents: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("agent", "name", "status", "reason", "state", "skills", "answered", "missed", title=title)
    for a in agents:
        skills = ", ".join(f"{skill} {level}" for skill, level in sorted(a["skills"].items()))
        table.add_row(a["agent"], a["name"], a["status"], a["reason"], a["state"], skills,
                      str(a["calls_answered"]), str(a["no_answer_count"]))
    Console().print(table)


def show(agents: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps(agents, indent=2))
    else:
        print_agents(agents, title)


json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")


@click.group("agents")
def COMMAND() -> None:
    """The ACD's agents on a running engine: list, login, logout, status (break with a reason)."""


@COMMAND.command("list")
@config_options
@json_option
@friendly_errors
def list_agents(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Every agent with its status (and break reason), state, skills and counters."""
    show(acd_request(config_path, data_dir, "/agents"), as_json, "agents")


def _set(config_path: Path | None, data_dir: Path | None, agent: str, status: AgentStatus, reason: str,
         as_json: bool) -> None:
    changed = acd_request(config_path, data_dir, "/agents/status",
                          {"agent": agent, "status": status.value, "reason": reason}, method="POST")
    show([changed], as_json, f"agent {agent}")


@COMMAND.command("login")
@click.argument("agent")
@config_options
@json_option
@friendly_errors
def login(agent: str, config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Make AGENT Available."""
    _set(config_path, data_dir, agent, AgentStatus.AVAILABLE, "", as_json)


@COMMAND.command("logout")
@click.argument("agent")
@config_options
@json_option
@friendly_errors
def logout(agent: str, config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Log AGENT out: it is offered no call until it logs in again."""
    _set(config_path, data_dir, agent, AgentStatus.LOGGED_OUT, "", as_json)


@COMMAND.command("status")
@click.argument("agent")
@click.argument("status", type=click.Choice(sorted(STATUS_ALIASES), case_sensitive=False), metavar="STATUS")
@click.option("--reason", default="", help="The break reason code (lunch, training, ...), for On Break.")
@config_options
@json_option
@friendly_errors
def set_status(agent: str, status: str, reason: str, config_path: Path | None, data_dir: Path | None,
               as_json: bool) -> None:
    """Set AGENT's STATUS: available, on-demand, on-break (with --reason) or logged-out
    (mod_callcenter's names, quoted, work too)."""
    _set(config_path, data_dir, agent, STATUS_ALIASES[status.lower()], reason, as_json)
