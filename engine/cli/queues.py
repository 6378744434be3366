"""`callrouter queues`: the ACD's queues on a running engine, and why a call went (or has not yet
gone) to the agent it did, through the admin API; `queues transfer` stays as the short form of
`callrouter calls transfer` (blind)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from engine.cli.agents import acd_request, json_option
from engine.cli.calls import transfer_call
from engine.cli.common import config_options, friendly_errors


@click.group("queues")
def COMMAND() -> None:
    """The ACD's queues on a running engine: list, and why a call was routed as it was."""


@COMMAND.command("list")
@config_options
@json_option
@friendly_errors
def list_queues(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Every queue: strategy, callers waiting, agents free and staffed, estimated wait."""
    queues = acd_request(config_path, data_dir, "/queues")
    if as_json:
        click.echo(json.dumps(queues, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("queue", "strategy", "waiting", "free", "staffed", "est. wait (s)", title="queues")
    for q in queues:
        table.add_row(q["queue"], q["strategy"], str(q["waiting"]), str(q["available"]), str(q["staffed"]),
                      f"{q['estimated_wait_seconds']:.0f}")
    Console().print(table)


@COMMAND.command("why")
@click.argument("call_uuid")
@config_options
@json_option
@friendly_errors
def why(call_uuid: str, config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Why CALL_UUID (the caller's Unique-ID) was offered to its agent and not to the others: each
    agent's status, tier, skill levels against those in force, capacity and strategy rank."""
    explanation = acd_request(config_path, data_dir, "/queues/why", {"call": call_uuid})
    if as_json:
        click.echo(json.dumps(explanation, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"call {explanation['call_uuid']} in queue {explanation['queue']} "
                  f"({explanation['strategy']}), {explanation['state']}, waited {explanation['waited']:.0f} s"
                  + (f", position {explanation['position']}" if explanation["position"] else ""))
    console.print(explanation["summary"])
    table = Table("agent", "status", "state", "tier", "skills (has/needs)", "calls", "rank", "chosen", "why not",
                  title="agents of the queue")
    for a in explanation["agents"]:
        skills = ", ".join(f"{skill} {have}/{need}" for skill, (have, need) in sorted(a["skills"].items()))
        status = a["status"] + (f" ({a['break_reason']})" if a["break_reason"] else "")
        table.add_row(a["agent"], status, a["state"], f"{a['tier_level']}/{a['tier_position']}", skills,
                      f"{a['capacity'][0]}/{a['capacity'][1]}", "" if a["rank"] is None else str(a["rank"]),
                      "yes" if a["chosen"] else "", "; ".join(a["reasons"]))
    console.print(table)


@COMMAND.command("transfer")
@click.argument("call_uuid")
@click.argument("target")
@config_options
@friendly_errors
def transfer(call_uuid: str, target: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Blind-transfer CALL_UUID to TARGET (queue:NAME, agent:ID or flow:NAME): the same as
    `callrouter calls transfer CALL_UUID --to TARGET`."""
    transfer_call(config_path, data_dir, call_uuid, target, attended=False)
