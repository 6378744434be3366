"""`callrouter check`: validate configuration and call-flow files before they are loaded."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.acd.config import load_acd
from engine.config import load_config
from engine.errors import ConfigError
from engine.ivr.loader import Checks, FlowErrors, build_flowset, flow_files


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also validate this engine configuration file and the ACD file it names; flows naming a "
                   "queue that ACD file does not have then fail, as they would at the engine's start.")
@click.option("--queue", "queues", multiple=True, metavar="NAME",
              help="A queue that exists (repeat the option); when given, flows naming other queues fail.")
@click.option("--sounds", "sounds_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="FreeSWITCH's sound directory; when given, every prompt file must exist under it.")
def COMMAND(paths: tuple[Path, ...], config_path: Path | None, queues: tuple[str, ...],
            sounds_dir: Path | None) -> None:
    """Validate the engine configuration and call flows (files or directories); print
    file:line:col and what is wrong for every mistake.

    The flows given together are checked as one set (transfers between flows, entries taken
    twice), exactly as the engine loads and reloads them, so what passes here loads there.
    Exit status 0 when everything is valid, 1 otherwise.
    """
    errors: list[str] = []
    checked = 0
    if config_path is not None:
        checked += 1
        try:
            config = load_config(config_path)
            if config.acd.file is not None:
                checked += 1
                queues = queues or tuple(q.name for q in load_acd(config.acd.file).queues)
        except ConfigError as exc:
            errors.append(str(exc))
    files = [f for path in paths for f in (flow_files(path) if path.is_dir() else [path])]
    if files:
        checked += len(files)
        try:
            build_flowset(files, Checks(queues=frozenset(queues) if queues else None, sounds_dir=sounds_dir))
        except FlowErrors as exc:
            errors.extend(str(e) for e in exc.errors)
    for error in errors:
        click.echo(error, err=True)
    click.echo(f"checked {checked} file(s): " + (f"{len(errors)} error(s)" if errors else "all valid"))
    sys.exit(1 if errors else 0)
