"""`callrouter demo`: the engine, the built-in FreeSWITCH simulator and the embedded database,
with simulated traffic, in one command.

The simulator runs as its own process and the engine reaches it over TCP exactly as it would
reach FreeSWITCH; the database is the embedded PostgreSQL under the data dir.
"""
from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import gevent
import gevent.event
from dataclasses import replace

from engine.cli.common import build_config, config_options, friendly_errors
from engine.config import FreeswitchNode, Secret
from engine.errors import CallRouterError
from engine.logs import setup_logging

SIM_PASSWORD = "ClueCon"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CallRouterError(f"the simulator exited early (status {process.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            gevent.sleep(0.1)
    raise CallRouterError(f"the simulator did not listen on port {port} within {timeout:.0f} s")


def _demo_acd(scenario_path: Path, queues: tuple[str, ...], data_dir: Path) -> Path:
    """The scenario's agents Available in every queue the flows name, as an ACD file."""
    import yaml

    from engine.acd.config import staff_every_queue
    from engine.simulator.scenario import load_scenario

    scenario = load_scenario(scenario_path)
    path = data_dir / "demo-acd.yaml"
    path.write_text(yaml.safe_dump(staff_every_queue(
        (agent_id for spec in scenario.agents for agent_id in spec.ids), queues, skills={"english": 5})))
    return path


def _live_table(status: dict, elapsed: float):
    from rich.table import Table

    table = Table(title=f"callrouter demo, {elapsed:.0f} s", caption="Ctrl-C to stop", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    nodes = ", ".join(f"{n['name']} {'up' if n['up'] else 'DOWN'}" for n in status["nodes"])
    rows = [("FreeSWITCH", nodes),
            ("calls offered", status["calls_offered"]), ("answered by an agent", status["calls_answered"]),
            ("abandoned", status["calls_abandoned"]), ("in progress", status["calls_active"]),
            ("waiting for an agent", status["callers_waiting"]), ("agents free", status["agents_free"])]
    rows += [(f"  in {stage}", n) for stage, n in sorted(status["calls_by_stage"].items())]
    rows += [(f"queued for {q}", n) for q, n in sorted(status["routed_per_queue"].items())]
    rows += [(f"ended {c}", n) for c, n in sorted(status["hangup_causes"].items())]
    for label, value in rows:
        table.add_row(label, str(value))
    return table


@click.command("demo")
@config_options
@click.option("--scenario", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Simulator scenario YAML [default: the bundled demo contact centre].")
@click.option("--duration", type=click.FloatRange(min=1), help="Stop after this many seconds [default: until Ctrl-C].")
@click.option("--json", "as_json", is_flag=True, help="Print only the final summary, as one JSON object.")
@click.option("--truth-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the simulator's ground truth (one JSON line per finished call) here.")
@click.option("--dialplans", type=click.Path(file_okay=False, path_type=Path),
              help="The directory of call-flow YAML files [default: ./dialplans].")
@click.option("--metrics-address", metavar="HOST:PORT",
              help="Serve Prometheus's /metrics here [default: metrics.listen, 127.0.0.1:9180].")
@friendly_errors
def COMMAND(config_path: Path | None, data_dir: Path | None, scenario: Path | None, duration: float | None,
            as_json: bool, truth_file: Path | None, dialplans: Path | None, metrics_address: str | None) -> None:
    """Run engine + simulated FreeSWITCH + embedded PostgreSQL with demo traffic.

    Calls follow the flows in --dialplans (the bundled demo calls the 24/7 line, entry
    2125550100). Shows a live summary until Ctrl-C (or --duration), then prints the totals:
    calls offered, answered, abandoned, routed per entry and queue, and hangup causes.
    """
    from engine.app import Engine
    from engine.ivr import Checks, FlowsHolder
    from engine.simulator.scenario import bundled

    scenario = scenario or bundled("demo")
    config = build_config(config_path, data_dir, dialplans=dialplans, metrics_listen=metrics_address)
    setup_logging("WARNING" if not as_json else "ERROR", "text")
    port = _free_port()
    config = config.with_overrides(
        freeswitch=(FreeswitchNode("sim1", "127.0.0.1", port, Secret(SIM_PASSWORD)),),
        api=replace(config.api, port=0))  # any free port: the demo must not clash with a running engine
    config.data_dir.mkdir(parents=True, exist_ok=True)
    flows = FlowsHolder(config.dialplans, Checks()).current.queues()
    config = config.with_overrides(acd=replace(config.acd, file=_demo_acd(scenario, flows, config.data_dir)))
    command = [sys.executable, "-m", "engine", "simulate", "--scenario", str(scenario), "--port", str(port),
               "--password", SIM_PASSWORD]
    if truth_file:
        command += ["--truth-file", str(truth_file)]
    config.data_dir.mkdir(parents=True, exist_ok=True)
    simulator_log = (config.data_dir / "demo-simulator.log").open("w")
    simulator = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=simulator_log, stderr=subprocess.STDOUT)
    engine = None
    try:
        _wait_for_port(port, simulator)
        engine = Engine(config)
        engine.start()
        _run(engine, duration, live=not as_json and sys.stdout.isatty())
    finally:
        if engine is not None:
            engine.stop(grace=2.0)
        simulator.send_signal(signal.SIGTERM)
        try:
            simulator.wait(10)
        except subprocess.TimeoutExpired:
            simulator.kill()
        simulator_log.close()
    summary = {k: v for k, v in engine.status().items() if k not in ("instance", "nodes", "calls_by_stage")}
    summary["duration_seconds"] = summary.pop("uptime_seconds")
    click.echo(json.dumps(summary, indent=None if as_json else 2, sort_keys=True))


def _run(engine, duration: float | None, live: bool) -> None:
    started = time.monotonic()
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGINT, stop.set)
    gevent.signal_handler(signal.SIGTERM, stop.set)

    def elapsed() -> float:
        return time.monotonic() - started

    def finished() -> bool:
        return stop.is_set() or (duration is not None and elapsed() >= duration)

    if not live:
        while not finished():
            stop.wait(0.5)
        return
    from rich.live import Live

    with Live(_live_table(engine.status(), 0), refresh_per_second=2, transient=False) as view:
        while not finished():
            stop.wait(0.5)
            view.update(_live_table(engine.status(), elapsed()))
    logging.getLogger("engine").info("demo stopped after %.0f s", elapsed())
