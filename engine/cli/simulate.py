"""`callrouter simulate`: the FreeSWITCH simulator alone, for pointing any ESL client at it."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TextIO

import click
import gevent
from gevent.event import Event

from engine.errors import ConfigError
from engine.simulator.runner import Simulation
from engine.simulator.scenario import bundled, load_scenario
from engine.simulator.truth import TruthRecorder


@click.command("simulate")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Scenario YAML (nodes, inbound traffic, agents, outbound destinations), or the name "
                   "of a bundled one: demo (the default: 8 agents, a call every 1-2 s) or smoke.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the Event Socket listens on.")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Event Socket port, instead of the scenario's (further nodes take the next ports; "
                   "0 = any free port, printed at start).")
@click.option("--password", help="Event Socket password of every node, instead of the scenario's "
                                 "(the scenario's default is ClueCon).")
@click.option("--truth-file", type=click.File("w", encoding="utf-8", lazy=False),
              help="Write the ground truth of every finished call here, one JSON line each, as it happens.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True),
              help="Stop placing inbound calls after this many seconds (the switch keeps running).")
@click.option("--seed", type=click.IntRange(min=0), help="Random seed, instead of the scenario's: "
                                                          "the same seed places the same calls.")
def simulate(scenario_path: Path | None, host: str, port: int | None, password: str | None,
             truth_file: TextIO | None, duration: float | None, seed: int | None) -> None:
    """Run simulated FreeSWITCH nodes with simulated callers, agents and PSTN destinations.

    Each node speaks the FreeSWITCH 1.10 inbound Event Socket. Inbound calls arrive as the
    scenario says, get the scenario's park_variables set by the simulated dialplan and are
    parked, exactly as the real dialplan does for the engine; agents register as directory
    users (originate/bridge user/<id>); outbound calls go through the scenario's gateway
    (sofia/gateway/<name>/<number>). With no engine connected, parked calls simply wait until
    their callers give up or park_timeout expires, as on FreeSWITCH.

    --truth-file records what really happened to each call (uuid, caller, arrival, prompts
    heard, digits pressed, answer, agent, hangup time, who hung up and the cause), to check
    an engine's CDRs and statistics against.

    Stop with Ctrl-C or SIGTERM: every call is hung up and the sockets are closed.

    \b
    Examples:
      callrouter simulate                         # the demo centre on 127.0.0.1:8021
      callrouter simulate --scenario smoke --port 0 --truth-file truth.jsonl
      fs_cli -H 127.0.0.1 -P 8021 -p ClueCon      # any ESL client can connect
    """
    path = scenario_path or bundled("demo")
    if not path.exists() and bundled(str(path)).exists():
        path = bundled(str(path))
    try:
        scenario = load_scenario(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    recorder = TruthRecorder(truth_file, keep=False)
    sim = Simulation(scenario, recorder=recorder, host=host, port=port, password=password, seed=seed,
                     duration=duration)
    try:
        sim.start()
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}: {exc.strerror or exc}; "
                                   "is another switch or simulator using the port? Try --port 0.") from None
    for name, node in sim.nodes.items():
        click.echo(f"node {name}: Event Socket on {host}:{node.port} password {node.password}")
    traffic = scenario.duration if duration is None else duration
    click.echo(f"scenario {path}: seed {sim.seed}, {scenario.agent_count()} agents registered, "
               f"inbound traffic {'for ' + format(traffic, 'g') + ' s' if traffic else 'until stopped'}; "
               "Ctrl-C to stop")
    sys.stdout.flush()

    stop = Event()
    handlers = [gevent.signal_handler(sig, stop.set) for sig in (signal.SIGINT, signal.SIGTERM)]
    try:
        stop.wait()
    finally:
        for handler in handlers:
            handler.cancel()
        sim.stop()
        click.echo(f"stopped: {sim.population.placed} inbound calls placed, "
                   f"{recorder.count} calls finished")


COMMAND = simulate
