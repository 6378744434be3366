"""Soak: a busy stretch of simulated traffic through one engine, compressed in real time (the
engine and the simulator talk TCP, so a virtual clock cannot drive them), then the figures that
say whether it can run for ever, each taken with no call up (the traffic comes in phases, drained
in between): memory growth after warm-up (tracemalloc and RSS), greenlets and file descriptors
left over once the traffic has drained, and calls not accounted for (offered by the simulator but
neither finished by the engine nor lived to an end in the truth).

The full run offers `--rate` calls/s for `--seconds` (default 600 s at 20 calls/s: 12,000 calls,
an hour of a 3,300-calls/hour centre compressed); `--smoke` runs a few seconds for CI. Calls take
an IVR flow (greeting, a menu, a branch, goodbye), and one caller in ten hangs up mid-prompt.
Prints one JSON line per figure; exits 1, naming what on stderr, if a call is unaccounted for, a
greenlet or fd is left, or memory grows past the limits below.

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
import random  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.app import Engine  # noqa: E402
from engine.config import Config, EslSettings, FreeswitchNode, Secret  # noqa: E402
from engine.simulator.population import arrival_plan  # noqa: E402
from engine.simulator.runner import Simulation  # noqa: E402
from engine.simulator.scenario import load_scenario  # noqa: E402
from engine.simulator.truth import TruthRecorder  # noqa: E402

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


# Limits on what the second half of the traffic may leave behind, measured with no call up.
# Greenlets and fds: none (one left per call is how a daemon dies slowly). The heap (tracemalloc,
# exact): at 20 calls/s the second half moved it 8-20 KB whether it carried 16 calls or 1,800,
# which is free lists and dict resizes, not calls; the slack covers ten times that, and 128 B
# per call catches the smallest leak worth the name (a dict entry keyed by a Unique-ID is about
# 200 B; a call's whole state is ~20 KB, bench/README). RSS moves by allocator arenas (0.2 MiB
# over 600 calls, 0.9 MiB over 1,800, with the heap flat), so its limit is looser; it is there
# for what tracemalloc cannot see: C-level buffers (greenlet stacks, socket buffers, libpq).
SETTLE_SECONDS = 5.0
TRACED_BYTES_PER_CALL = 128
TRACED_SLACK_BYTES = 256 * 1024
RSS_KIB_PER_CALL = 1
RSS_SLACK_MIB = 4.0


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
    # gevent.Greenlet: what gevent.spawn makes (the engine's and the simulator's). Raw greenlets
    # are gevent's own (the hub, thread-pool workers that come and go with DNS lookups).
    return sum(1 for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def offer(sim: Simulation, seconds: float, rng: random.Random) -> None:
    """Place the scenario's callers for `seconds` (its arrival plan, drawn from `rng`), then return."""
    started = time.monotonic()
    for call in arrival_plan(sim.scenario.inbound, sim.scenario.start_time, rng, seconds):
        gevent.sleep(max(0.0, started + call.at - time.monotonic()))
        sim.population.place(call)


def drain(engine: Engine, sim: Simulation, timeout: float = 30.0) -> None:
    """Until no call is left in the engine or on the switch."""
    deadline = time.monotonic() + timeout
    while (engine.registry.calls or sim.nodes["sim1"].switch.channels) and time.monotonic() < deadline:
        gevent.sleep(0.1)


@dataclass(frozen=True)
class Idle:
    greenlets: int
    fds: int
    traced: int  # bytes tracemalloc sees allocated
    rss_mib: float


def idle(baseline: Idle | None = None) -> Idle:
    """What the process holds with no call up. Given a baseline, waits up to SETTLE_SECONDS for
    greenlets and fds to fall back to it (a timer may outlive its call briefly; a leak never falls
    back), and reports what is still above it."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        gc.collect()
        now = Idle(live_greenlets(), open_fds(), tracemalloc.get_traced_memory()[0], rss_mib())
        settled = baseline is None or (now.greenlets <= baseline.greenlets and now.fds <= baseline.fds)
        if settled or time.monotonic() >= deadline:
            return now
        gevent.sleep(0.2)


def soak(rate: float, seconds: float, warmup: float, workdir: Path) -> dict:
    flows = workdir / "flows"
    flows.mkdir(parents=True)
    (flows / "soak.yaml").write_text(FLOW)
    (workdir / "scenario.yaml").write_text(SCENARIO.format(per_hour=int(rate * 3600)))
    # The soak places the callers itself (duration 0: the simulation's own plan places none), in
    # phases with the traffic drained in between, so memory, greenlets and fds are compared with no
    # call up. The truth is counted, not kept: a kept record per call would be a leak of our own.
    sim = Simulation(load_scenario(workdir / "scenario.yaml"), port=0, password="ClueCon", duration=0,
                     recorder=TruthRecorder(keep=False))
    rng = random.Random(sim.seed)
    sim.start()
    config = Config(freeswitch=(FreeswitchNode("sim1", "127.0.0.1", sim.nodes["sim1"].port, Secret("ClueCon")),),
                    data_dir=workdir / "data", dialplans=flows,
                    esl=EslSettings(command_timeout=10.0, backoff_initial=0.05, backoff_max=0.5))
    engine = Engine(config, with_database=False, with_api=False, with_metrics=False)
    records = Counter()
    engine.journal.sink = records
    engine.start()
    assert engine.nodes[0].wait_up(10), "engine did not connect"
    offer(sim, warmup, rng)  # fills what is filled once: code paths, pools, caches
    drain(engine, sim)
    tracemalloc.start()
    start = idle()
    offer(sim, seconds / 2, rng)
    drain(engine, sim)
    offered_mid = sim.population.placed
    mid = idle()
    offer(sim, seconds / 2, rng)
    drain(engine, sim)
    end = idle(baseline=start)
    tracemalloc.stop()
    second_half_calls = max(sim.population.placed - offered_mid, 1)
    offered_by_switch = sim.recorder.count + len(sim.nodes["sim1"].switch.channels)
    result = {
        "offered": offered_by_switch, "lived": sim.recorder.count, "engine_offered": engine.stats.offered,
        "engine_finished": engine.stats.finished_calls, "cdrs": records.cdrs,
        # Flat memory: measured with no call up, the second half of the traffic leaves the heap
        # no bigger than the first half did (which may still have been filling bounded caches).
        "traced_growth_mib": (end.traced - mid.traced) / 2**20, "traced_first_half_mib": (mid.traced - start.traced) / 2**20,
        "rss_growth_mib": end.rss_mib - mid.rss_mib, "rss_mib": start.rss_mib, "second_half_calls": second_half_calls,
        "greenlets_left": end.greenlets - start.greenlets, "greenlets_idle": start.greenlets,
        "fds_left": end.fds - start.fds, "fds_idle": start.fds,
    }
    engine.stop(grace=0)
    sim.stop()
    # Every call the switch saw ended, was finished once by the engine, and left one caller CDR.
    result["unaccounted"] = (abs(result["offered"] - result["lived"]) + abs(result["lived"] - result["engine_offered"])
                             + abs(result["engine_offered"] - result["engine_finished"])
                             + abs(result["engine_finished"] - result["cdrs"]))
    return result


def failures(r: dict) -> list[str]:
    """What breaks the promise that the engine can run for ever."""
    calls = r["second_half_calls"]
    traced_limit = (TRACED_SLACK_BYTES + TRACED_BYTES_PER_CALL * calls) / 2**20
    rss_limit = RSS_SLACK_MIB + RSS_KIB_PER_CALL * calls / 1024
    found = []
    if r["unaccounted"]:
        found.append(f"{r['unaccounted']} calls unaccounted for")
    if r["greenlets_left"] > 0:
        found.append(f"{r['greenlets_left']} greenlets left after the traffic drained")
    if r["fds_left"] > 0:
        found.append(f"{r['fds_left']} file descriptors (sockets) left after the traffic drained")
    if r["traced_growth_mib"] > traced_limit:
        found.append(f"heap grew {r['traced_growth_mib']:.2f} MiB over the second {calls} calls "
                     f"(limit {traced_limit:.2f} MiB): memory is not flat")
    if r["rss_growth_mib"] > rss_limit:
        found.append(f"RSS grew {r['rss_growth_mib']:.1f} MiB over the second {calls} calls "
                     f"(limit {rss_limit:.1f} MiB): memory is not flat")
    return found


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
        ("soak_rss_growth_second_half", r["rss_growth_mib"], "MiB", "rss_at_warmup", r["rss_mib"]),
        ("soak_greenlets_left", r["greenlets_left"], "greenlets", "greenlets_idle_after_warmup", r["greenlets_idle"]),
        ("soak_fds_left", r["fds_left"], "fds", "fds_idle_after_warmup", r["fds_idle"]),
        ("soak_calls_unaccounted", r["unaccounted"], "calls", "calls_offered", r["offered"]),
    ]
    for name, value, unit, base_name, base_value in figures:
        print(json.dumps({"name": name, "value": round(value, 3), "unit": unit,
                          "baseline": {"name": base_name, "value": round(base_value, 3)}, "params": params}))
    broken = failures(r)
    for failure in broken:
        print(f"soak: {failure}", file=sys.stderr)
    sys.exit(1 if broken else 0)

if __name__ == "__main__":
    main()
