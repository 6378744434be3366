"""Simulator speed: simulated call-hours per wall second on the virtual clock, for a contact
centre day driven in-process by the real Router (engine/acd/whatif.py).

A call-hour is one hour of a caller's time on the switch (queue and talk, park to hangup). The
baseline runs the same scenario in the same process with a subscriber that reads every header of
every event, which is what each event costs when an ESL listener subscribed to all of them: the
simulator builds an event's headers only when someone reads them.

    .venv/bin/python bench/simulator.py [--smoke] [--agents N] [--hours H]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.acd import whatif  # noqa: E402
from engine.simulator.switch import Switch  # noqa: E402
from engine.simulator.truth import TruthRecorder  # noqa: E402

AHT = 300.0
OCCUPANCY = 0.85


def call_hours_per_second(agents: int, hours: float, seed: int, *, read_every_header: bool) -> tuple[float, int]:
    """(simulated call-hours per wall second, calls) for one what-if run."""
    calls_per_hour = agents * OCCUPANCY * 3600 / AHT
    scenario = whatif.mmc_scenario(calls_per_hour, AHT, agents, hours, seed=seed, patience=120.0)
    recorder = TruthRecorder()
    fire = Switch.fire
    if read_every_header:
        Switch.fire = lambda switch, event: (event.headers, fire(switch, event))
    try:
        started = time.perf_counter()
        whatif.run(scenario, answer_within=20.0, seed=seed, recorder=recorder)
        wall = time.perf_counter() - started
    finally:
        Switch.fire = fire
    seconds = sum(r.hangup_at - r.arrived_at for r in recorder.finished
                  if r.direction == "inbound" and r.hangup_at is not None)
    return seconds / 3600 / wall, len(recorder.finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small centre for a few minutes (CI)")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--hours", type=float, default=8.0, help="simulated hours (a centre day)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    agents, hours = (20, 0.25) if args.smoke else (args.agents, args.hours)
    value, calls = call_hours_per_second(agents, hours, args.seed, read_every_header=False)
    baseline, _ = call_hours_per_second(agents, hours, args.seed, read_every_header=True)
    print(json.dumps({"name": "sim_call_hours_per_second", "value": round(value, 2), "unit": "call-hours/s",
                      "baseline": {"name": "sim_call_hours_per_second_every_header_read", "value": round(baseline, 2)},
                      "params": {"agents": agents, "hours": hours, "aht_seconds": AHT, "occupancy": OCCUPANCY,
                                 "calls": calls, "seed": args.seed, "smoke": args.smoke}}), flush=True)


if __name__ == "__main__":
    main()
