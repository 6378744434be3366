"""`callrouter calls`: the calls a running engine controls, through its admin API — list them,
show one with its data (what the caller keyed in, what lookups found), transfer a talking call
blind or attended (then complete or cancel), and pause or resume its recording."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from engine.cli.agents import acd_request, json_option
from engine.cli.common import config_options, friendly_errors

TARGET_HELP = "agent:ID (rung directly), queue:NAME (second or third line) or flow:NAME (an IVR flow)."


@click.group("calls")
def COMMAND() -> None:
    """The calls on a running engine: list, show, transfer, record pause/resume."""


@COMMAND.command("list")
@config_options
@json_option
@friendly_errors
def list_calls(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Every call the engine controls: caller, stage, flow, queue, agent, recording, transfer."""
    calls = acd_request(config_path, data_dir, "/calls")
    if as_json:
        click.echo(json.dumps(calls, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("call", "caller", "stage", "flow", "queue", "agent", "seconds", "recording", "transfer",
                  title="calls")
    for c in calls:
        table.add_row(c["call"], _caller(c), c["stage"], c["flow"], c["queue"], c["agent"], f"{c['seconds']:.0f}",
                      _recording(c), _transfer(c))
    Console().print(table)


@COMMAND.command("show")
@click.argument("call_uuid")
@config_options
@json_option
@friendly_errors
def show(call_uuid: str, config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """CALL_UUID (the caller's Unique-ID): where it is, its data as the agent sees it, its legs."""
    call = acd_request(config_path, data_dir, "/calls", {"call": call_uuid})
    if as_json:
        click.echo(json.dumps(call, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"call {call['call']} from {_caller(call)}: {call['stage'] or 'new'}"
                  + "".join(f", {key} {call[key]}" for key in ("flow", "queue", "agent") if call[key])
                  + f", {call['seconds']:.0f} s")
    if call["recording"]:
        console.print(f"recording {_recording(call)}: {call['recording']}")
    if call["transfer"]:
        console.print(f"transfer {_transfer(call)}")
    data = Table("name", "value", title="call data (callrouter_data_* on the agent's leg)")
    for name, value in sorted(call["data"].items()):
        data.add_row(name, value)
    console.print(data)
    legs = Table("leg", "role", "agent", "answered", "up", title="legs")
    for leg in call["legs"]:
        legs.add_row(leg["uuid"], leg["role"], leg["agent"], "yes" if leg["answered"] else "",
                     "" if leg["hungup"] else "yes")
    console.print(legs)


def transfer_call(config_path: Path | None, data_dir: Path | None, call_uuid: str, target: str,
                  attended: bool) -> None:
    """Ask the engine to transfer the call; say what was asked (the caller's greenlet does it)."""
    params = {"call": call_uuid, "to": target, **({"attended": "true"} if attended else {})}
    done = acd_request(config_path, data_dir, "/calls/transfer", params, method="POST")
    if attended:
        click.echo(f"call {done['call']}: calling {done['to']} while agent {done['agent']} holds the caller; "
                   f"then `callrouter calls complete {done['call']}` or `... cancel`")
    else:
        click.echo(f"call {done['call']} transferred from agent {done['agent']} to {done['to']}")


@COMMAND.command("transfer")
@click.argument("call_uuid")
@click.option("--to", "target", required=True, metavar="TARGET", help=TARGET_HELP)
@click.option("--attended", is_flag=True,
              help="Consult first: the caller holds while the agent talks with the target (agent or queue).")
@config_options
@friendly_errors
def transfer(call_uuid: str, target: str, attended: bool, config_path: Path | None, data_dir: Path | None) -> None:
    """Transfer CALL_UUID, talking to an agent, to TARGET. Blind: the agent is released into
    wrap-up at once and the call's data goes with the caller; an agent who does not answer sends
    the caller back to its queue at its place. Attended: see `complete` and `cancel`."""
    transfer_call(config_path, data_dir, call_uuid, target, attended)


def _consult_command(action: str, done_text: str, doc: str) -> click.Command:
    """`calls complete` / `calls cancel`: the two ends of an attended transfer."""
    @click.argument("call_uuid")
    @config_options
    @friendly_errors
    def command(call_uuid: str, config_path: Path | None, data_dir: Path | None) -> None:
        done = acd_request(config_path, data_dir, f"/calls/transfer/{action}", {"call": call_uuid}, method="POST")
        click.echo(f"call {done['call']}: transfer to {done['to']} {done_text}")

    command.__doc__ = doc
    return click.command(action)(command)


COMMAND.add_command(_consult_command(
    "complete", "completing", "Complete CALL_UUID's attended transfer: the caller to the target, the first agent freed."))
COMMAND.add_command(_consult_command(
    "cancel", "cancelled", "Cancel CALL_UUID's attended transfer: the caller back to the first agent."))


@COMMAND.command("record")
@click.argument("call_uuid")
@click.argument("action", type=click.Choice(["pause", "resume"]))
@config_options
@friendly_errors
def record(call_uuid: str, action: str, config_path: Path | None, data_dir: Path | None) -> None:
    """Pause (e.g. while a card number is given: silence is recorded instead) or resume
    CALL_UUID's recording."""
    done = acd_request(config_path, data_dir, "/calls/record", {"call": call_uuid, "action": action},
                       method="POST")
    click.echo(f"call {done['call']}: recording {'paused' if done['paused'] else 'resumed'} ({done['recording']})")


def _caller(call: dict[str, Any]) -> str:
    name = call["caller_id_name"]
    return f"{call['caller_id_number']} ({name})" if name else call["caller_id_number"]


def _recording(call: dict[str, Any]) -> str:
    return ("paused" if call["recording_paused"] else "on") if call["recording"] else ""


def _transfer(call: dict[str, Any]) -> str:
    return f"to {call['transfer']['to']} ({call['transfer']['state']})" if call["transfer"] else ""
