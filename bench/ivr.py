"""Calls per second one engine process carries through a 6-node IVR flow (play, set, branch,
menu, play with say, hangup) against the simulator in its own process, and the engine's CPU
time per call; a two-node flow (one prompt, hangup: the least a controlled call costs) measured
the same way in the same run as the baseline.

Calls are offered faster than one process can take them; calls finished inside the measured
window (after a warm-up) count. Prints one JSON line per figure.

    .venv/bin/python bench/ivr.py [--smoke] [--rate CALLS_PER_SECOND] [--seconds N]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.app import Engine  # noqa: E402
from engine.config import Config, EslSettings, FreeswitchNode, RouteSettings, Secret  # noqa: E402

FLOW = """
flow: bench
entries: [bench]
start: greet
nodes:
  greet: {type: play, prompt: "silence_stream://20", next: mark}
  mark: {type: set, values: {segment: bench}, next: route}
  route:
    type: branch
    cases: [{if: "segment == 'bench' and len(caller_id) > 3", goto: menu}]
    else: bye
  menu: {type: menu, prompt: "silence_stream://20", options: {"1": confirm}, tries: 1, timeout: 1, on_failure: bye}
  confirm: {type: play, prompt: ["silence_stream://20", {say: "7", as: number}], next: bye}
  bye: {type: hangup}
"""

BASELINE = """
flow: bench
entries: [bench]
start: greet
nodes:
  greet: {type: play, prompt: "silence_stream://20", next: bye}
  bye: {type: hangup}
"""

SCENARIO = """
seed: 11
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: bench, park_timeout: "60"}}
inbound:
  arrivals: {{per_hour: {per_hour}}}
  numbers: ["+1555XXXXXXX"]
  dnis: "+18005550100"
  kinds:
    presser: {{digits: "1", think: 0.05, patience: 60}}
"""


def start_simulator(workdir: Path, rate: float, seconds: float) -> tuple[subprocess.Popen, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    scenario = workdir / "scenario.yaml"
    scenario.write_text(SCENARIO.format(per_hour=int(rate * 3600)))
    proc = subprocess.Popen([sys.executable, "-m", "engine", "simulate", "--scenario", str(scenario), "--port", "0",
                             "--duration", str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        found = re.search(r"Event Socket on [\d.]+:(\d+)", line)
        if found:
            return proc, int(found[1])
    raise RuntimeError("the simulator did not start")


def measure(name: str, flow: str, rate: float, warmup: float, window: float, workdir: Path) -> dict:
    proc, port = start_simulator(workdir, rate, warmup + window + 5)
    flows = workdir / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "bench.yaml").write_text(flow)
    config = Config(freeswitch=(FreeswitchNode("sim1", "127.0.0.1", port, Secret("ClueCon")),),
                    data_dir=workdir / "data", dialplans=flows,
                    esl=EslSettings(command_timeout=10.0, backoff_initial=0.05, backoff_max=0.5),
                    route=RouteSettings(park_timeout_seconds=60))
    engine = Engine(config, with_database=False, with_api=False, with_metrics=False)
    try:
        engine.start()
        assert engine.nodes[0].wait_up(10), "engine did not connect"
        gevent.sleep(warmup)
        calls0, cpu0, wall0 = engine.stats.finished_calls, time.process_time(), time.perf_counter()
        gevent.sleep(window)
        calls = engine.stats.finished_calls - calls0
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        engine.stop(grace=0)
        proc.terminate()
        proc.wait(10)
    return {"name": name, "calls_per_second": calls / wall, "cpu_ms_per_call": 1000 * cpu / max(1, calls),
            "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the script runs")
    parser.add_argument("--rate", type=float, default=60.0, help="calls offered per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rate, warmup, window = (10.0, 2.0, 3.0) if args.smoke else (args.rate, 5.0, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        ivr = measure("ivr_6_nodes", FLOW, rate, warmup, window, Path(tmp) / "ivr")
        spine = measure("ivr_2_nodes", BASELINE, rate, warmup, window, Path(tmp) / "baseline")
    params = {"offered_per_second": rate, "window_seconds": window, "smoke": args.smoke}
    for figure, unit in (("calls_per_second", "calls/s"), ("cpu_ms_per_call", "ms")):
        print(json.dumps({"name": f"ivr_{figure}", "value": round(ivr[figure], 3), "unit": unit,
                          "baseline": {"name": f"ivr_2_nodes_{figure}", "value": round(spine[figure], 3)},
                          "params": {**params, "calls": ivr["calls"], "baseline_calls": spine["calls"]}}))


if __name__ == "__main__":
    main()
