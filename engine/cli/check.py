"""`callrouter check`: validate configuration and call-flow files before they are loaded."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.config import load_config
from engine.errors import ConfigError
from engine.yamlfile import load


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Also validate this engine configuration file.")
def COMMAND(paths: tuple[Path, ...], config_path: Path | None) -> None:
    """Validate YAML files and directories of call flows; print file:line:col for every mistake.

    Exit status 0 when everything is valid, 1 otherwise. The engine runs the same validation when
    it loads or reloads the files, so what passes here loads there.
    """
    errors: list[str] = []
    checked = 0
    if config_path is not None:
        checked += 1
        try:
            load_config(config_path)
        except ConfigError as exc:
            errors.append(str(exc))
    for path in paths:
        files = sorted(path.rglob("*.yaml")) + sorted(path.rglob("*.yml")) if path.is_dir() else [path]
        for file in files:
            checked += 1
            try:
                load(file)
            except ConfigError as exc:
                errors.append(str(exc))
    for error in errors:
        click.echo(error, err=True)
    click.echo(f"checked {checked} file(s): " + (f"{len(errors)} error(s)" if errors else "all valid"))
    sys.exit(1 if errors else 0)
