"""Engine memory per concurrent call: the engine in its own process (`python -m engine run`,
embedded PostgreSQL in another), the simulator in a third; N calls ramped up through the IVR
into the queue and held talking to N agents.

memory_bytes_per_call = (engine RSS with the N calls up - engine RSS connected and idle) / calls
up (callrouter_calls_active from the engine's /metrics). The baseline is what one parked
greenlet per call costs in a bare gevent process: what a talking call saves by holding none
(engine.calls.call.Suspend), so the figure can be well below it.

`--top N` also says where the memory goes: the engine runs under tracemalloc, a snapshot is taken
idle and another with the calls up, and the N source lines whose allocations grew most are
printed to stderr, in bytes per call. Tracing slows the engine (calls lag behind the simulator),
so the figure of such a run is not comparable: it is flagged in its params.

    .venv/bin/python bench/memory.py [--smoke] [--calls N] [--rate CALLS_PER_SECOND] [--top N]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

from e2e import QUEUE_FLOW, ROOT, scenario, start_engine, start_simulator

# The engine's own entry point under tracemalloc; each SIGUSR1 dumps a snapshot to <dir>/<n>.snapshot.
TRACED_ENGINE = """
import signal, sys, tracemalloc
tracemalloc.start()
out, taken = sys.argv[1], []
def dump(*_):
    taken.append(1)
    tracemalloc.take_snapshot().dump(f"{out}/{len(taken)}.snapshot")
signal.signal(signal.SIGUSR1, dump)
from engine.cli import main
sys.argv = ["callrouter", *sys.argv[2:]]
main()
"""

GREENLET_PROBE = """
import gevent, gevent.event, sys
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
n = int(sys.argv[1]); hold = gevent.event.Event()
before = rss(); held = [gevent.spawn(hold.wait) for _ in range(n)]; gevent.sleep(0)
print((rss() - before) / n)
"""


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(address: str, name: str) -> float | None:
    """The sum of a metric's samples, None while the engine does not answer."""
    try:
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and (line[len(name)] in " {"))


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def snapshot(pid: int, path: Path) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    wait_for(path.exists, 120, f"the engine's tracemalloc snapshot {path.name}")
    time.sleep(1.0)  # written in one go, but give the dump time to finish
    return tracemalloc.Snapshot.load(str(path))


def measure(calls: int, rate: float, workdir: Path, traced: bool = False) -> dict:
    workdir.mkdir(parents=True)
    port, metrics = free_port(), f"127.0.0.1:{free_port()}"
    launcher = ["-c", TRACED_ENGINE, str(workdir)] if traced else ["-m", "engine"]
    engine = start_engine(workdir, workdir / "data", port, QUEUE_FLOW, [str(2000 + i) for i in range(calls)], metrics,
                          launcher=launcher)
    snapshots = []
    sim = None
    try:
        wait_for(lambda: metric(metrics, "callrouter_calls_active") is not None, 60, "the engine's /metrics")
        time.sleep(1.0)
        idle = rss_bytes(engine.pid)
        if traced:
            snapshots.append(snapshot(engine.pid, workdir / "1.snapshot"))
        spec = scenario(rate, calls, talk=3600.0)
        spec["inbound"]["kinds"]["caller"]["patience"] = 3600
        sim, _ = start_simulator(workdir, spec, calls / rate, port)
        wait_for(lambda: (metric(metrics, "callrouter_esl_up") or 0) >= 1, 30, "the engine to connect")
        # Arrivals are Poisson: wait out the ramp, then until the count of calls up settles.
        time.sleep(calls / rate)
        readings = [-1.0]

        def settled() -> bool:
            readings.append(metric(metrics, "callrouter_calls_active") or 0)
            return readings[-1] > 0 and readings[-1] == readings[-2]

        wait_for(lambda: time.sleep(1.0) or settled(), 120, "the calls up to settle")
        up = metric(metrics, "callrouter_calls_active") or 0
        loaded = rss_bytes(engine.pid)
        if traced:
            snapshots.append(snapshot(engine.pid, workdir / "2.snapshot"))
    finally:
        engine.terminate()
        engine.wait(30)
        if sim is not None:
            sim.terminate()
            sim.wait(10)
    return {"idle": idle, "loaded": loaded, "calls": up, "per_call": (loaded - idle) / max(1, up),
            "growth": snapshots[1].compare_to(snapshots[0], "lineno") if traced else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few calls, to check the script runs")
    parser.add_argument("--calls", type=int, default=2000, help="concurrent calls to hold")
    parser.add_argument("--rate", type=float, default=100.0, help="calls placed per second while ramping")
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="run the engine under tracemalloc and print the N lines that grew most")
    args = parser.parse_args()
    calls, rate = (50, 50.0) if args.smoke else (args.calls, args.rate)
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(calls, rate, Path(tmp) / "memory", traced=args.top > 0)
    for stat in figures["growth"][:args.top]:
        print(f"{stat.size_diff / max(1, figures['calls']):9.0f} B/call {stat.count_diff:+8d} blocks  {stat.traceback}",
              file=sys.stderr)
    greenlet = float(subprocess.run([sys.executable, "-c", GREENLET_PROBE, str(calls)], capture_output=True,
                                    text=True, check=True, cwd=ROOT).stdout)
    print(json.dumps({"name": "memory_bytes_per_call", "value": round(figures["per_call"]), "unit": "bytes",
                      "baseline": {"name": "greenlet_bytes_per_parked_greenlet", "value": round(greenlet)},
                      "params": {"calls_up": figures["calls"], "engine_rss_idle_bytes": figures["idle"],
                                 "engine_rss_loaded_bytes": figures["loaded"], "rate": rate, "smoke": args.smoke,
                                 "tracemalloc": args.top > 0}}),
          flush=True)


if __name__ == "__main__":
    main()
