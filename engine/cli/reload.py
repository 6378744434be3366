"""`callrouter reload`: swap a running engine's call flows, as SIGHUP does, and say what happened."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.cli.common import config_options, friendly_errors
from engine.cli.status import call_api


@click.command("reload")
@config_options
@friendly_errors
def COMMAND(config_path: Path | None, data_dir: Path | None) -> None:
    """Reload the call flows of a running engine (through its admin API).

    Every flow file is validated first; the new flows take over only if all are valid, and calls
    already in a flow finish on the version they started with. On a refusal every mistake is
    printed as file:line:col and the exit status is 1 (the running flows stay).
    """
    _, result = call_api(config_path, data_dir, "/reload", method="POST", accept=(200, 422))
    if result["reloaded"]:
        click.echo(f"flows reloaded (version {result['version']})")
        return
    for error in result["errors"]:
        click.echo(error, err=True)
    click.echo(f"flows NOT reloaded: {len(result['errors'])} error(s); version {result['version']} stays in force")
    sys.exit(1)
