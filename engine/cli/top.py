"""`callrouter top`: a live wallboard for supervisors, read from a running engine's admin API
(GET /status): FreeSWITCH nodes, calls by stage, queues (waiting, longest wait, agents by state,
service level) and outbound campaigns. `--once` prints one frame, for scripts and non-terminals."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from engine.cli.common import config_options, friendly_errors
from engine.cli.status import fetch
from engine.errors import CallRouterError
from engine.metrics.sources import IN_QUEUE_CALL, LOGGED_OUT, ON_BREAK, WAITING

SL_WINDOW = "15m"  # the window a wallboard's service level is read over
SL_TARGET = 0.8  # as in monitoring/alerts.yml: below it the figure shows red


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes}:{seconds:02d}" if minutes else f"{seconds}s"


def _ratio(value: float | None, *, good_above: float | None = None, bad_above: float | None = None,
           digits: int = 0) -> Text:
    if value is None:
        return Text("-")
    style = ""
    if good_above is not None:
        style = "green" if value >= good_above else "red"
    if bad_above is not None and value > bad_above:
        style = "red"
    return Text(f"{value:.{digits}%}", style=style)


def _agents(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Logged-in agents by state, the way a supervisor reads them."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["status"] == LOGGED_OUT:
            continue
        key = "on break" if row["status"] == ON_BREAK else row["state"]
        counts[key] = counts.get(key, 0) + row["count"]
    return counts


def render(status: dict[str, Any]) -> Group:
    """One frame of the wallboard from the engine's /status document."""
    nodes = "  ".join(f"{n['name']} [{'green]up' if n['up'] else 'red]DOWN'}[/]" for n in status["nodes"])
    stages = ", ".join(f"{stage} {count}" for stage, count in sorted(status["calls_by_stage"].items())) or "none"
    header = Text.from_markup(
        f"[bold]callrouter[/] up {_seconds(status['uptime_seconds'])}   FreeSWITCH: {nodes or '-'}\n"
        f"calls {status['calls_active']} ({stages})   offered {status['calls_offered']}   "
        f"answered {status['calls_answered']}   abandoned {status['calls_abandoned']}")
    parts: list[Any] = [header]
    if "queues" not in status:
        parts.append(Text("this engine does not report queues yet (its /status has no 'queues')", style="yellow"))
        return Group(*parts)
    queues = Table("queue", "waiting", "longest", "expected", "agents waiting", "in call", "other",
                   f"SL {SL_WINDOW}", f"abandon {SL_WINDOW}", f"ASA {SL_WINDOW}", f"calls {SL_WINDOW}",
                   title=f"queues — service level: {status.get('service_level_definition', '?')}",
                   title_justify="left")
    for queue in status["queues"]:
        agents = _agents(queue["agents"])
        waiting, in_call = agents.pop(WAITING, 0), agents.pop(IN_QUEUE_CALL, 0)
        window = queue["windows"].get(SL_WINDOW, {})
        name = queue["queue"] if queue["open"] else f"{queue['queue']} (closed)"
        queues.add_row(name, Text(str(queue["waiting"]), style="bold" if queue["waiting"] else ""),
                       _seconds(queue["longest_wait_seconds"] if queue["waiting"] else None),
                       _seconds(queue["estimated_wait_seconds"]), str(waiting), str(in_call),
                       ", ".join(f"{state} {n}" for state, n in sorted(agents.items()) if n) or "-",
                       _ratio(window.get("service_level"), good_above=SL_TARGET),
                       _ratio(window.get("abandon_rate")), _seconds(window.get("average_answer_seconds")),
                       str(window.get("calls", 0)))
    parts.append(queues)
    if status.get("campaigns"):
        campaigns = Table("campaign", "dialled", "answered", "abandon rate", "cap", "pacing", "remaining",
                          title="campaigns", title_justify="left")
        for c in status["campaigns"]:
            campaigns.add_row(c["campaign"], str(c["dialed"]), str(c["answered"]),
                              _ratio(c["abandon_ratio"], bad_above=0.9 * c["abandon_cap_ratio"], digits=1),
                              f"{c['abandon_cap_ratio']:.1%}", f"{c['pacing_ratio']:.2f}", str(c["contacts_remaining"]))
        parts.append(campaigns)
    return Group(*parts)


@click.command("top")
@config_options
@click.option("--interval", type=click.FloatRange(min=0.5), default=2.0, show_default=True,
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and logs).")
@friendly_errors
def COMMAND(config_path: Path | None, data_dir: Path | None, interval: float, once: bool) -> None:
    """Live wallboard of a running engine: queues, waiting calls, agents, service level, campaigns."""
    console = Console()
    if once:
        console.print(render(fetch(config_path, data_dir, "/status")))
        return
    from rich.live import Live

    with Live(render(fetch(config_path, data_dir, "/status")), console=console, screen=console.is_terminal,
              auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval)
                try:
                    live.update(render(fetch(config_path, data_dir, "/status")), refresh=True)
                except CallRouterError as exc:  # the engine restarting: keep trying, say so
                    live.update(Text(f"{exc}\nretrying every {interval:g} s; Ctrl-C to quit", style="red"),
                                refresh=True)
        except KeyboardInterrupt:
            pass
