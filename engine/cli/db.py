"""`callrouter db`: the engine's PostgreSQL."""
from __future__ import annotations

from pathlib import Path

import click

from engine.cli.common import build_config, config_options, friendly_errors
from engine.db import Database, applied_versions, migrate


@click.group("db")
def COMMAND() -> None:
    """The engine's PostgreSQL database (embedded by default, or database.dsn in the config)."""


@COMMAND.command("migrate")
@config_options
@friendly_errors
def migrate_command(config_path: Path | None, data_dir: Path | None) -> None:
    """Apply the schema migrations that are missing (the daemon also does this at start)."""
    config = build_config(config_path, data_dir)
    database = Database(config.database_dsn, config.data_dir)
    with database.connect(autocommit=True) as conn:
        applied = migrate(conn)
        versions = sorted(applied_versions(conn))
    click.echo(f"{database.describe()}: " + (f"applied {', '.join(applied)}" if applied else "up to date")
               + f" (schema version {versions[-1] if versions else 0})")
