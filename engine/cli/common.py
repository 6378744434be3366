"""Options and helpers shared by the CLI's commands."""
from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from engine.config import Config, load_config, parse_listen, parse_node_spec
from engine.db import Database, migrate
from engine.errors import CallRouterError


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config and --data-dir: how every command finds the engine's configuration and data."""
    fn = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                      help="Where the embedded PostgreSQL, the spool and the API token live "
                           "[default: data_dir from the config, else ./var].")(fn)
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                      help="The engine's YAML configuration (see config.example.yaml).")(fn)
    return fn


def build_config(config_path: Path | None, data_dir: Path | None, freeswitch: tuple[str, ...] = (),
                 **overrides: Any) -> Config:
    config = load_config(config_path)
    nodes = tuple(parse_node_spec(spec, i) for i, spec in enumerate(freeswitch))
    if overrides.get("metrics_listen"):
        parse_listen(overrides["metrics_listen"], "--metrics-address")
    return config.with_overrides(data_dir=data_dir, freeswitch=nodes or None, **overrides)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show the engine's own errors as one clear line and exit 1, not as a traceback."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CallRouterError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    return wrapper


@contextmanager
def database_connection(config_path: Path | None, data_dir: Path | None) -> Iterator[Any]:
    """The database `run` would use, its schema migrated first (so a database no engine has used
    yet reports empty instead of failing); committed when the command succeeds."""
    config = build_config(config_path, data_dir)
    database = Database(config.database_dsn, config.data_dir)
    with database.connect(autocommit=True) as conn:
        migrate(conn)
    conn = database.connect()
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()
