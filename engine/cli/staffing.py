"""`callrouter staffing`: how many agents a hotline needs (Erlang C, Erlang A with --patience), or
what a staffing gives, by formula or (--simulate) by running the real Router on the simulator:
from a scenario, or (--replay-day) replaying a day of the queue log with another staffing."""
from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from engine.acd import replay as rp
from engine.acd.config import AcdConfig, load_acd
from engine.acd.erlang import Staffing, staffing as erlang_staffing
from engine.acd.whatif import WhatIfReport, mmc_scenario, run, with_agents
from engine.cli.common import build_config, config_options, database_connection, friendly_errors
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
              help="With --simulate: queues, agents and tiers (default: the config's acd.file with "
                   "--replay-day, else one longest-idle queue, every agent).")
@click.option("--replay-day", type=click.DateTime(formats=["%Y-%m-%d"]), metavar="YYYY-MM-DD",
              help="With --simulate: replay this day's calls from the queue log (--agents or --staffing for "
                   "another staffing; by default the staffing the log shows), beside what was recorded.")
@click.option("--tz", default="UTC", show_default=True, help="With --replay-day: the day's time zone (IANA name).")
@click.option("--queue", "queue_names", multiple=True, metavar="QUEUE",
              help="With --replay-day: replay only this queue's calls (repeatable).")
@click.option("--staffing", "staffing_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --replay-day: agent groups and how many of each are on per interval (YAML).")
@click.option("--route", "routes", multiple=True, metavar="NUMBER=QUEUE",
              help="With --simulate: calls to this destination number join this queue (repeatable).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True,
              help="With --simulate and no scenario: simulated hours of traffic.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True,
              help="With --simulate: the random seed (the same seed gives the same run).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@config_options
@friendly_errors
def staffing(calls: float | None, interval_seconds: float, aht: float | None, target_sl: float,
             answer_within: float, patience: float | None, agents: int | None, simulate: bool,
             scenario_path: Path | None, acd_path: Path | None, replay_day: datetime | None, tz: str,
             queue_names: tuple[str, ...], staffing_path: Path | None, routes: tuple[str, ...], hours: float,
             seed: int, as_json: bool, config_path: Path | None, data_dir: Path | None) -> None:
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
      callrouter staffing --simulate --replay-day 2026-11-20 --tz Europe/London --agents 14
      callrouter staffing --simulate --replay-day 2026-11-20 --staffing roster.yaml --config callrouter.yaml
    """
    if replay_day is not None:
        if not simulate:
            raise ConfigError("--replay-day replays the day on the simulator: add --simulate")
        if agents is not None and staffing_path is not None:
            raise ConfigError("give --agents or --staffing, not both")
        _show_replay(_replay_day(replay_day, tz, queue_names, agents, staffing_path, acd_path, answer_within, seed,
                                 config_path, data_dir), as_json)
        return
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


def _replay_day(day: datetime, tz: str, queue_names: tuple[str, ...], agents: int | None,
                staffing_path: Path | None, acd_path: Path | None, answer_within: float, seed: int,
                config_path: Path | None, data_dir: Path | None) -> dict:
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.BadParameter(f"unknown time zone '{tz}'", param_hint="--tz") from None
    acd_file = acd_path or build_config(config_path, data_dir).acd.file
    acd = load_acd(acd_file) if acd_file is not None else AcdConfig((), (), ())
    since, until = rp.day_bounds(day.date(), zone)
    with database_connection(config_path, data_dir) as conn:
        events = rp.read_queue_log(conn, since, until)
    every_call = rp.recorded_calls(events, since, until)
    calls = [c for c in every_call if not queue_names or c.queue in queue_names]
    where = f"on {day:%Y-%m-%d} ({tz})" + (f" in {', '.join(queue_names)}" if queue_names else "")
    if not calls:
        raise rp.ReplayError(f"the queue log has no call entering a queue {where}: nothing to replay")
    queues = rp.queues_of_day(calls, acd.queues, answer_within)
    start, end = since.timestamp(), until.timestamp()
    recorded = rp.recorded_roster(events, since, until, queues, acd.agents, acd.tiers)
    if agents is not None:
        roster = rp.uniform_roster(agents, queues, *rp.opening_hours(recorded, calls, start, end))
    elif staffing_path is not None:
        known = {q.name: q for q in (*acd.queues, *rp.queues_of_day(every_call, acd.queues, answer_within))}
        roster = rp.load_roster(staffing_path, day.date(), zone, list(known.values()))
    elif any(recorded.available_seconds(start, end).values()):
        roster = recorded
    else:
        raise rp.ReplayError(f"the queue log shows no agent Available {where}: give the staffing to replay "
                             "with --agents N or --staffing FILE")
    plan = rp.replay_plan(calls, seed=seed)
    replayed = rp.replay(plan, roster, queues, since=start, until=end, answer_within=answer_within, seed=seed)
    return {"model": "replay", "day": f"{day:%Y-%m-%d}", "tz": tz, "staffing": roster.source,
            "service_level": f"answered within T / offered; T = {answer_within:g} s in total, each queue's own",
            "patience": {"estimator": "kaplan-meier over waits censored by answers, exponential tail",
                         "abandons": plan.patience.abandons, "censored": plan.patience.censored,
                         "median_seconds": plan.patience.quantile(0.5), "drawn": plan.patience_drawn},
            "handle_times_drawn": plan.handles_drawn, "ring_seconds": plan.ring_seconds,
            "recorded": rp.recorded_figures(calls, recorded, queues, since=start, until=end,
                                            answer_within=answer_within).to_dict(),
            "replay": replayed.to_dict()}


_FIGURES = ("offered", "answered", "abandoned", "service_level", "asa_seconds", "abandon_rate", "occupancy")
_SHARES = ("service_level", "occupancy", "abandon_rate", "probability_of_waiting")


def _show_replay(result: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_finite(result)))
        return
    patience = result["patience"]
    click.echo(f"replay of {result['day']} ({result['tz']}) with staffing: {result['staffing']}")
    click.echo(f"service level: {result['service_level']}")
    click.echo(f"patience: {patience['abandons']} abandons, {patience['censored']} censored waits, median "
               f"{_cell('asa_seconds', patience['median_seconds'])} s ({patience['estimator']}); drawn for "
               f"{patience['drawn']} callers; handle time drawn for {result['handle_times_drawn']} calls")
    recorded, replayed = result["recorded"], result["replay"]
    scopes = [("total", recorded, replayed)] + [
        (name, recorded["queues"].get(name, {}), replayed["queues"].get(name, {}))
        for name in sorted(set(recorded["queues"]) | set(replayed["queues"]))]
    click.echo(f"{'':<24}{'recorded':>12}{'replay':>12}")
    for name, before, after in scopes:
        click.echo(name)
        for key in _FIGURES:
            click.echo(f"  {key.replace('_', ' '):<22}{_cell(key, before.get(key)):>12}{_cell(key, after.get(key)):>12}")


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}" if key in _SHARES else f"{value:.2f}"
    return str(value)



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
        click.echo(f"{' ' * indent}{key.replace('_', ' '):>24}: {_cell(key, value)}")


COMMAND = staffing
