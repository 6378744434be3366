"""`callrouter status`: ask a running engine, through its admin API."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import click

from engine.app import TOKEN_FILE
from engine.cli.common import build_config, config_options, friendly_errors
from engine.errors import CallRouterError


def call_api(config_path: Path | None, data_dir: Path | None, path: str, *, method: str = "GET",
             accept: tuple[int, ...] = (200,), timeout: float = 5.0) -> tuple[int, dict]:
    """Call an admin API endpoint of the engine that the config describes: (HTTP status, JSON)."""
    config = build_config(config_path, data_dir)
    token = config.api.token.reveal() if config.api.token else None
    if token is None:
        token_file = config.data_dir / TOKEN_FILE
        if not token_file.exists():
            raise CallRouterError(f"no API token: set api.token in the config, or run the engine once so it "
                                  f"writes {token_file}")
        token = token_file.read_text().strip()
    host = f"[{config.api.host}]" if ":" in config.api.host else config.api.host
    request = urllib.request.Request(f"http://{host}:{config.api.port}{path}", method=method,
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if exc.code in accept:
            return exc.code, json.loads(body)
        raise CallRouterError(f"the engine answered {exc.code}: {body}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise CallRouterError(f"no engine answering on {config.api.host}:{config.api.port} ({exc}); "
                              f"is `callrouter run` running with this config?") from None


def fetch(config_path: Path | None, data_dir: Path | None, path: str, timeout: float = 5.0) -> dict:
    """GET an admin API endpoint; its JSON."""
    return call_api(config_path, data_dir, path, timeout=timeout)[1]


@click.command("status")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@friendly_errors
def COMMAND(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Show a running engine's FreeSWITCH nodes, calls by stage and totals."""
    status = fetch(config_path, data_dir, "/status")
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    nodes = Table("node", "address", "Event Socket", title="FreeSWITCH nodes")
    for node in status["nodes"]:
        nodes.add_row(node["name"], f"{node['host']}:{node['port']}", "[green]up" if node["up"] else "[red]down")
    console.print(nodes)
    calls = Table("", "", title=f"calls (engine up {status['uptime_seconds']:.0f} s)")
    for key in ("calls_active", "calls_offered", "calls_answered", "calls_abandoned", "callers_waiting",
                "agents_free"):
        calls.add_row(key.replace("_", " "), str(status[key]))
    for stage, count in sorted(status["calls_by_stage"].items()):
        calls.add_row(f"  in {stage}", str(count))
    console.print(calls)
