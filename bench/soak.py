"""Soak: a busy stretch of simulated traffic through one engine, compressed in real time (the
engine and the simulator talk TCP, so a virtual clock cannot drive them), then the figures that
say whether it can run for ever: memory growth after warm-up (tracemalloc and RSS), greenlets
and file descriptors left over once the traffic has drained, and calls not accounted for
(offered by the simulator but neither finished by the engine nor lived to an end in the truth).

The full run offers `--rate` calls/s for `--seconds` (default 600 s at 20 calls/s: 12,000 calls,
an hour of a 3,300-calls/hour centre compressed); `--smoke` runs a few seconds for CI. Calls take
an IVR flow (greeting, a menu, a branch, goodbye), and one caller in ten hangs up mid-prompt.
Prints one JSON line per figure; exits 1 if a call is unaccounted for.

    .venv/bin/python bench/soak.py [--smoke] [--rate CALLS_PER_SECOND] [--seconds N]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
from greenlet import greenlet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.app import Engine  # noqa: E402
from engine.config import Config, EslSettings, FreeswitchNode, Secret  # noqa: E402
from engine.simulator.runner import Simulation  # noqa: E402
from engine.simulator.scenario import load_scenario  # noqa: E402

FLOW = """
flow: soak
entries: [soak]
start: greet
nodes:
  greet: {type: play, prompt: "silence_stream://150", next: menu}
  menu: {type: menu, prompt: "silence_stream://100", options: {"1": thanks, "2": thanks}, tries: 1, timeout: 0.5,
         on_failure: bye}
  thanks: {type: play, prompt: "silence_stream://100", next: bye}
  bye: {type: hangup}
"""

SCENARIO = """
seed: 21
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: soak, park_timeout: "60"}}
inbound:
  arrivals: {{per_hour: {per_hour}}}
  numbers: ["+1555XXXXXXX"]
  names: ["Soak O'Test", "a{{b}}|c;d&e"]
  dnis: "+18005550100"
  kinds:
    presser: {{weight: 8, digits: "1", think: 0.1, patience: 60}}
    silent: {{weight: 1, digits: none, patience: 60}}
    quitter: {{weight: 1, digits: "2", think: 0.1, patience: 0.1}}
"""


class Counter:
    """The engine's journal sink: counts the CDRs it would write."""

    def __init__(self) -> None:
        self.cdrs = 0

    def submit(self, record) -> None:
        self.cdrs += type(record).__name__ == "CdrRecord"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def live_greenlets() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def drained(engine: Engine, sim: Simulation, timeout: float) -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while (engine.registry.calls or sim.nodes["sim1"].switch.channels) and gevent.get_hub().loop.now() < deadline:
        gevent.sleep(0.1)


def soak(rate: float, seconds: float, warmup: float, workdir: Path) -> dict:
    flows = workdir / "flows"
    flows.mkdir(parents=True)
    (flows / "soak.yaml").write_text(FLOW)
    (workdir / "scenario.yaml").write_text(SCENARIO.format(per_hour=int(rate * 3600)))
    greenlets0, fds0 = live_greenlets(), open_fds()
    sim = Simulation(load_scenario(workdir / "scenario.yaml"), port=0, password="ClueCon",
                     duration=warmup + seconds)
    sim.start()
    config = Config(freeswitch=(FreeswitchNode("sim1", "127.0.0.1", sim.nodes["sim1"].port, Secret("ClueCon")),),
                    data_dir=workdir / "data", dialplans=flows,
                    esl=EslSettings(command_timeout=10.0, backoff_initial=0.05, backoff_max=0.5))
    engine = Engine(config, with_database=False, with_api=False, with_metrics=False)
    records = Counter()
    engine.journal.sink = records
    engine.start()
    assert engine.nodes[0].wait_up(10), "engine did not connect"
    gevent.sleep(warmup)
    gc.collect()
    tracemalloc.start()
    traced0, rss0 = tracemalloc.get_traced_memory()[0], rss_mib()
    gevent.sleep(seconds / 2)
    gc.collect()
    traced_mid = tracemalloc.get_traced_memory()[0]
    gevent.sleep(seconds / 2)
    drained(engine, sim, timeout=30)
    gc.collect()
    traced1, rss1 = tracemalloc.get_traced_memory()[0], rss_mib()
    tracemalloc.stop()
    offered_by_switch = sim.recorder.count + len(sim.nodes["sim1"].switch.channels)
    result = {
        "offered": offered_by_switch, "lived": sim.recorder.count, "engine_offered": engine.stats.offered,
        "engine_finished": engine.stats.finished_calls, "cdrs": records.cdrs,
        # Flat memory: the second half of the traffic grows the heap no more than the first did.
        "traced_growth_mib": (traced1 - traced_mid) / 2**20, "traced_first_half_mib": (traced_mid - traced0) / 2**20,
        "rss_growth_mib": rss1 - rss0, "rss_mib": rss0,
    }
    engine.stop(grace=0)
    sim.stop()
    gevent.sleep(0.5)
    gc.collect()
    result["greenlets_left"] = live_greenlets() - greenlets0
    result["fds_left"] = open_fds() - fds0
    # Every call the switch saw ended, was finished once by the engine, and left one caller CDR.
    result["unaccounted"] = (abs(result["offered"] - result["lived"]) + abs(result["lived"] - result["engine_offered"])
                             + abs(result["engine_offered"] - result["engine_finished"])
                             + abs(result["engine_finished"] - result["cdrs"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the script runs")
    parser.add_argument("--rate", type=float, default=20.0, help="calls offered per second")
    parser.add_argument("--seconds", type=float, default=600.0, help="traffic after the warm-up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rate, warmup, seconds = (8.0, 1.0, 4.0) if args.smoke else (args.rate, 10.0, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        r = soak(rate, seconds, warmup, Path(tmp))
    params = {"rate": rate, "seconds": seconds, "smoke": args.smoke, "calls": r["offered"]}
    figures = [
        ("soak_traced_growth_second_half", r["traced_growth_mib"], "MiB", "soak_traced_growth_first_half",
         r["traced_first_half_mib"]),
        ("soak_rss_growth", r["rss_growth_mib"], "MiB", "rss_at_warmup", r["rss_mib"]),
        ("soak_greenlets_left", r["greenlets_left"], "greenlets", "greenlets_before", 0),
        ("soak_fds_left", r["fds_left"], "fds", "fds_before", 0),
        ("soak_calls_unaccounted", r["unaccounted"], "calls", "calls_offered", r["offered"]),
    ]
    for name, value, unit, base_name, base_value in figures:
        print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                          "baseline": {"name": base_name, "value": round(base_value, 3)}, "params": params}))
    sys.exit(1 if r["unaccounted"] else 0)


if __name__ == "__main__":
    main()
