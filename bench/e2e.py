"""End to end: the simulator in its own process (`python -m engine simulate`), the engine in
another (`python -m engine run`, embedded PostgreSQL, so CDRs and the queue log are written),
calls going IVR (greeting, one-digit menu) -> queue -> agent -> hangup.

Measured over a window after a warm-up, from the simulator's truth file (what the callers lived)
and the engine process's /proc/<pid>/stat:
- e2e_calls_per_second: calls finished in the window per second;
- e2e_concurrent_calls: the most calls up at once (arrival to hangup) in the window;
- e2e_engine_cpu_ms_per_call: the engine's user+system CPU in the window per call finished;
- e2e_simulator_cpu_ms_per_call: the same for the simulator (FreeSWITCH's stand-in plus every
  simulated phone): on a shared box it is the heavier process, and what limits the offered rate;
- e2e_park_to_first_prompt_{p50,p99}_seconds: the simulated dialplan parks a call as it arrives,
  so arrival to the first media the caller hears;
- e2e_digit_to_next_action_{p50,p99}_seconds: callers press "1" a fixed think time after the menu
  prompt starts; from then to the next media they hear (the queue's music);
- e2e_agent_free_to_ring_{p50,p99}_seconds: for an agent whose next caller was already waiting in
  the queue (hearing its music) when the agent's previous call ended, that end to the next bridge. The agents answer at once
  (ring 0 s), so this is free-to-ring plus the answer and uuid_bridge round trips: an upper bound.

The baseline is a bare flow (greeting, hangup) at the same offered rate in the same run: the
least a controlled call costs. Prints one JSON line per figure.

    .venv/bin/python bench/e2e.py [--smoke] [--rate CALLS_PER_SECOND] [--seconds N] [--agents N]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.acd.config import staff_every_queue  # noqa: E402

THINK = 0.05
GREETING = "silence_stream://100"
MUSIC = "tone_stream://%(2000,4000,440,480);loops=-1"

QUEUE_FLOW = {
    "flow": "bench", "entries": ["bench"], "default": True, "start": "greeting",
    "nodes": {
        "greeting": {"type": "play", "prompt": GREETING, "next": "menu"},
        "menu": {"type": "menu", "prompt": "silence_stream://200", "options": {"1": "sales"}, "tries": 1,
                 "timeout": 2, "on_failure": "done"},
        "sales": {"type": "queue", "queue": "sales", "max_wait": 120, "on_answered": "done",
                  "on_timeout": "done", "on_no_agents": "done"},
        "done": {"type": "hangup"},
    },
}
BARE_FLOW = {
    "flow": "bench", "entries": ["bench"], "default": True, "start": "greeting",
    "nodes": {"greeting": {"type": "play", "prompt": GREETING, "next": "done"}, "done": {"type": "hangup"}},
}


def scenario(rate: float, agents: int, talk: float, talk_sd: float = 0.0) -> dict:
    """`talk_sd` > 0: talk times vary (lognormal), as a centre's do; with one fixed talk time the calls
    bridged in the engine's first seconds all end together, every `talk` seconds, for the whole run."""
    talk = {"lognormal": {"mean": talk, "sd": talk_sd}} if talk_sd > 0 else talk
    return {
        "seed": 11, "nodes": [{"name": "sim1", "port": 0}],
        "park_variables": {"callrouter_entry": "bench", "park_timeout": "120", "hangup_after_bridge": "true"},
        "inbound": {"arrivals": {"per_hour": int(rate * 3600)}, "numbers": ["+1555XXXXXXX"], "dnis": "+18005550100",
                    "kinds": {"caller": {"digits": "1", "think": THINK, "patience": 120, "talk": talk}}},
        "agents": [{"ids": f"{2000}-{2000 + agents - 1}", "ring": 0.0, "answer_probability": 1.0, "talk": talk,
                    "hangup_share": 0.5}],
    }


def start_simulator(workdir: Path, spec: dict, seconds: float, port: int = 0) -> tuple[subprocess.Popen, int]:
    path = workdir / "scenario.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = subprocess.Popen([sys.executable, "-m", "engine", "simulate", "--scenario", str(path), "--port", str(port),
                             "--duration", str(seconds), "--truth-file", str(workdir / "truth.jsonl")],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        found = re.search(r"Event Socket on [\d.]+:(\d+)", line)
        if found:
            return proc, int(found[1])
    raise RuntimeError("the simulator did not start")


def start_engine(workdir: Path, data_dir: Path, port: int, flow: dict, agents: list[str],
                 metrics: str = "127.0.0.1:0", launcher: tuple[str, ...] | list[str] = ("-m", "engine")
                 ) -> subprocess.Popen:
    dialplans = workdir / "dialplans"
    dialplans.mkdir()
    (dialplans / "bench.yaml").write_text(yaml.safe_dump(flow))
    acd = workdir / "acd.yaml"
    acd.write_text(yaml.safe_dump(staff_every_queue(agents, ["sales"], moh=MUSIC, wrap_up_time=0)))
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump({
        "freeswitch": [{"name": "sim1", "host": "127.0.0.1", "port": port, "password": "ClueCon"}],
        "data_dir": str(data_dir), "dialplans": str(dialplans), "logging": {"level": "WARNING"},
        "shutdown_grace_seconds": 1, "api": {"listen": "127.0.0.1:0"}, "metrics": {"listen": metrics},
        "esl": {"command_timeout": 10, "backoff_initial": 0.05, "backoff_max": 0.5},
        "acd": {"file": str(acd), "ring_seconds": 20},
    }))
    return subprocess.Popen([sys.executable, *launcher, "run", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "engine.log", "w"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(calls: list[dict]) -> dict[str, list[float]]:
    first_prompt, after_digit, free_to_ring = [], [], []
    by_agent: dict[str, list[dict]] = {}
    for call in calls:
        heard = call["heard"]
        if heard:
            first_prompt.append(heard[0]["at"] - call["arrived_at"])
        menu = next((i for i, h in enumerate(heard) if h["kind"] == "prompt"), None)
        if menu is not None and call["pressed"] and menu + 1 < len(heard):
            after_digit.append(heard[menu + 1]["at"] - (heard[menu]["at"] + THINK))
        if call["agent"] and call["bridged_at"] is not None:
            by_agent.setdefault(call["agent"], []).append(call)
    for served in by_agent.values():
        served.sort(key=lambda c: c["bridged_at"])
        for before, after in zip(served, served[1:]):
            freed = before["hangup_at"]
            # Waiting means in the queue (hearing its music), not still in the IVR in front of it.
            queued = next((h["at"] for h in after["heard"] if h["detail"] == MUSIC), None)
            if freed is not None and queued is not None and queued < freed <= after["bridged_at"]:
                free_to_ring.append(after["bridged_at"] - freed)
    return {"park_to_first_prompt": first_prompt, "digit_to_next_action": after_digit,
            "agent_free_to_ring": free_to_ring}


def peak_concurrency(calls: list[dict], since: float, until: float) -> int:
    edges = sorted([(c["arrived_at"], 1) for c in calls] + [(c["hangup_at"], -1) for c in calls])
    up = peak = 0
    for at, step in edges:
        up += step
        if since <= at <= until:
            peak = max(peak, up)
    return peak


def measure(flow: dict, rate: float, agents: int, talk: float, talk_sd: float, warmup: float, window: float,
            workdir: Path, data_dir: Path) -> dict:
    workdir.mkdir(parents=True)
    spec = scenario(rate, agents, talk, talk_sd)
    sim, port = start_simulator(workdir, spec, warmup + window)
    agent_ids = [str(2000 + i) for i in range(agents)]
    engine = start_engine(workdir, data_dir, port, flow, agent_ids)
    try:
        truth = workdir / "truth.jsonl"
        deadline = time.monotonic() + 60
        while not records(truth):   # the engine (and its PostgreSQL) is up once calls finish
            if engine.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the engine did not take calls: {(workdir / 'engine.log').read_text()[-2000:]}")
            time.sleep(0.2)
        time.sleep(warmup)
        since, cpu0, sim_cpu0 = time.time(), cpu_seconds(engine.pid), cpu_seconds(sim.pid)
        time.sleep(window)
        until, cpu, sim_cpu = time.time(), cpu_seconds(engine.pid) - cpu0, cpu_seconds(sim.pid) - sim_cpu0
        time.sleep(min(5.0, talk + 2))   # calls that ended in the window reach the truth file
    finally:
        engine.terminate()
        engine.wait(30)
        sim.terminate()
        sim.wait(10)
    everything = [c for c in records(truth) if c["direction"] == "inbound"]
    done = [c for c in everything if c["hangup_at"] is not None and since <= c["hangup_at"] <= until]
    return {"calls_per_second": len(done) / (until - since), "concurrent_calls": peak_concurrency(everything, since,
                                                                                                 until),
            "engine_cpu_ms_per_call": 1000 * cpu / max(1, len(done)),
            "simulator_cpu_ms_per_call": 1000 * sim_cpu / max(1, len(done)), "calls": len(done),
            # Calls that arrived in the window: the first ones parked before the engine had connected
            # and waited for it (a start-up artefact, up to a second and more, not a latency).
            "latencies": latencies([c for c in everything if since <= c["arrived_at"] <= until])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the script runs")
    parser.add_argument("--rate", type=float, default=50.0, help="calls offered per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--talk", type=float, default=10.0, help="seconds an agent talks, on average")
    parser.add_argument("--talk-sd", type=float, default=None,
                        help="spread of the talk times (lognormal; default half the mean; 0: all the same)")
    args = parser.parse_args()
    rate, agents, talk, warmup, window = ((5.0, 4, 1.0, 0.5, 2.0) if args.smoke else
                                          (args.rate, args.agents, args.talk, 5.0, args.seconds))
    talk_sd = talk / 2 if args.talk_sd is None else args.talk_sd
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"   # one embedded PostgreSQL for both runs
        full = measure(QUEUE_FLOW, rate, agents, talk, talk_sd, warmup, window, Path(tmp) / "queue", data_dir)
        bare = measure(BARE_FLOW, rate, agents, talk, talk_sd, warmup, window, Path(tmp) / "bare", data_dir)
    params = {"offered_per_second": rate, "agents": agents, "talk_seconds": talk, "talk_sd_seconds": talk_sd,
              "window_seconds": window,
              "calls": full["calls"], "baseline_calls": bare["calls"], "smoke": args.smoke}
    for figure, unit in (("calls_per_second", "calls/s"), ("concurrent_calls", "calls"),
                         ("engine_cpu_ms_per_call", "ms"), ("simulator_cpu_ms_per_call", "ms")):
        print(json.dumps({"name": f"e2e_{figure}", "value": round(full[figure], 3), "unit": unit,
                          "baseline": {"name": f"e2e_bare_{figure}", "value": round(bare[figure], 3)},
                          "params": params}), flush=True)
    bare_prompt = bare["latencies"]["park_to_first_prompt"]
    for latency, values in full["latencies"].items():
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            value, base = percentile(values, q), percentile(bare_prompt, q)
            print(json.dumps({"name": f"e2e_{latency}_{label}_seconds",
                              "value": None if value is None else round(value, 4), "unit": "s",
                              "baseline": {"name": f"e2e_bare_park_to_first_prompt_{label}_seconds",
                                           "value": None if base is None else round(base, 4)},
                              "params": {**params, "samples": len(values)}}), flush=True)


if __name__ == "__main__":
    main()
