"""`callrouter staffing`: how many agents a hotline needs (Erlang C, Erlang A with --patience), or
what a staffing gives, by formula or (--simulate) by running the real Router on the simulator."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from engine.acd.config import load_acd
from engine.acd.erlang import Staffing, staffing as erlang_staffing
from engine.acd.whatif import WhatIfReport, mmc_scenario, run, with_agents
from engine.cli.common import friendly_errors
from engine.errors import ConfigError
from engine.simulator.scenario import load_scenario


def _finite(value: Any) -> Any:
    """JSON has no infinity: an ASA that never ends (nobody answered) is shown as null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


@click.command("staffing")
@click.option("--calls", type=click.FloatRange(min=0, min_open=True), help="Calls offered in the interval.")
@click.option("--interval-seconds", type=click.FloatRange(min=0, min_open=True), default=1800.0,
              show_default=True, help="Length of the interval the calls arrive in.")
@click.option("--aht", type=click.FloatRange(min=0, min_open=True), help="Average handle time, seconds.")
@click.option("--target-sl", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="Share of calls to answer within --answer-within.")
@click.option("--answer-within", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="The T of the service level, seconds.")
@click.option("--patience", type=click.FloatRange(min=0, min_open=True),
              help="Callers' mean patience, seconds: Erlang A (abandonment) instead of Erlang C.")
@click.option("--agents", type=click.IntRange(min=1),
              help="Evaluate this staffing instead of finding the smallest that meets the target.")
@click.option("--simulate", is_flag=True,
              help="Answer by running the Router against the simulator on a virtual clock.")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --simulate: the simulator scenario to replay (--agents resizes its staffing); "
                   "without it an M/M/c scenario is built from --calls and --aht.")
@click.option("--acd", "acd_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --simulate: queues, agents and tiers (default: one longest-idle queue, every agent).")
@click.option("--route", "routes", multiple=True, metavar="NUMBER=QUEUE",
              help="With --simulate: calls to this destination number join this queue (repeatable).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True,
              help="With --simulate and no scenario: simulated hours of traffic.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="With --simulate: the random seed (the same seed gives the same run).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@friendly_errors
def staffing(calls: float | None, interval_seconds: float, aht: float | None, target_sl: float,
             answer_within: float, patience: float | None, agents: int | None, simulate: bool,
             scenario_path: Path | None, acd_path: Path | None, routes: tuple[str, ...], hours: float, seed: int,
             as_json: bool) -> None:
    """Staffing for a queue: agents, service level, ASA, occupancy (and abandon rate with --patience).

    Service level counts answered-within-T over all calls offered (an abandon counts against it);
    ASA is the mean wait of the calls answered.

    \b
    Examples:
      callrouter staffing --calls 100 --interval-seconds 1800 --aht 180 --target-sl 0.8 --answer-within 20
      callrouter staffing --calls 100 --aht 180 --patience 60 --agents 12 --json
      callrouter staffing --simulate --calls 100 --aht 180 --agents 14 --hours 4
      callrouter staffing --simulate --scenario centre.yaml --agents 12 --acd acd.yaml \\
          --route 2125550100=sales --route 2125550200=support
    """
    if simulate:
        report = _simulate(calls, interval_seconds, aht, answer_within, patience, agents, scenario_path,
                           acd_path, routes, hours, seed)
        _show({"model": "simulation", **report.to_dict()}, as_json)
        return
    if calls is None or aht is None:
        raise ConfigError("give --calls and --aht (or --simulate with --scenario)")
    result: Staffing = erlang_staffing(calls, interval_seconds, aht, answer_within, target_sl=target_sl,
                                       agents=agents, patience=patience)
    _show({"model": "erlang-a" if patience is not None else "erlang-c", **result.to_dict()}, as_json)


def _simulate(calls: float | None, interval_seconds: float, aht: float | None, answer_within: float,
              patience: float | None, agents: int | None, scenario_path: Path | None, acd_path: Path | None,
              routes: tuple[str, ...], hours: float, seed: int) -> WhatIfReport:
    acd = load_acd(acd_path) if acd_path is not None else None
    route_map = {}
    for route in routes:
        number, equals, queue = route.partition("=")
        if not equals or not number or not queue:
            raise ConfigError(f"--route {route}: write it as NUMBER=QUEUE")
        route_map[number] = queue
    if scenario_path is not None:
        scenario = load_scenario(scenario_path)
        if agents is not None:
            scenario = with_agents(scenario, agents)
    else:
        if calls is None or aht is None or agents is None:
            raise ConfigError("--simulate without --scenario needs --calls, --aht and --agents")
        scenario = mmc_scenario(calls * 3600.0 / interval_seconds, aht, agents, hours, seed=seed, patience=patience)
    return run(scenario, answer_within=answer_within, acd=acd, seed=seed, routes=route_map)


def _show(figures: dict, as_json: bool, indent: int = 0) -> None:
    figures = _finite(figures)
    if as_json:
        click.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        if isinstance(value, dict):
            click.echo(f"{' ' * indent}{key.replace('_', ' ')}:")
            _show(value, False, indent + 2)
            continue
        if isinstance(value, float):
            value = f"{value:.1%}" if key in ("service_level", "occupancy", "abandon_rate",
                                               "probability_of_waiting") else f"{value:.2f}"
        click.echo(f"{' ' * indent}{key.replace('_', ' '):>24}: {'-' if value is None else value}")


COMMAND = staffing
