"""Pacing benchmark: this dialer's predictive pacing beside progressive 1:1, a fixed-ratio dialer
and a VICIdial ADAPT-style dial level, each a seeded what-if run on the simulator.

For agents 10/50/200, live answer rates 15-60 % and handle times 60-600 s prints one JSON line per
figure, case and baseline dialer: {"name": "pacing_occupancy" | "pacing_abandon_rate" |
"pacing_worst_period_abandon_rate" | "pacing_calls_per_agent_hour", "value": predictive's, "unit": ...,
"baseline": {"name": "progressive" | "ratio" | "adaptive", "value": ...}, "params": ...}.
Target: the highest occupancy, with the abandon rate never over 3 % in any period. Also
`pacing_whatif_hours_per_cpu_second`: simulated hours per CPU second of the what-if itself
(predictive beside each baseline), which decides whether `campaign simulate --hours 720` is
practical. --smoke runs one small case briefly (CI).
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from engine.dialer.whatif import simulate  # noqa: E402

BASELINES = ("progressive", "ratio", "adaptive")
CASES = [(10, 0.15, 60), (10, 0.3, 120), (50, 0.3, 300), (50, 0.6, 120), (200, 0.45, 600)]
FIGURES = {"occupancy": "ratio", "abandon_rate": "ratio", "worst_period_abandon_rate": "ratio",
           "calls_per_agent_hour": "calls/agent-hour"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one small, short case")
    parser.add_argument("--hours", type=float, default=4.0, help="simulated hours per run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    cases, hours = ([(5, 0.3, 60)], 0.25) if args.smoke else (CASES, args.hours)
    for agents, answer_rate, aht in cases:
        reports, speed = {}, {}
        for mode in ("predictive", *BASELINES):
            started = time.process_time()
            reports[mode] = simulate(mode, agents=agents, answer_rate=answer_rate, aht=aht, hours=hours,
                                     seed=args.seed)
            speed[mode] = hours / max(time.process_time() - started, 1e-9)
        params = {"agents": agents, "answer_rate": answer_rate, "aht": aht, "hours": hours, "seed": args.seed,
                  "smoke": args.smoke}
        for figure, unit in FIGURES.items():
            for mode in BASELINES:
                print(json.dumps({"name": f"pacing_{figure}", "value": getattr(reports["predictive"], figure),
                                  "unit": unit, "baseline": {"name": mode, "value": getattr(reports[mode], figure)},
                                  "params": params}), flush=True)
        for mode in BASELINES:
            print(json.dumps({"name": "pacing_whatif_hours_per_cpu_second", "value": speed["predictive"],
                              "unit": "simulated hours/CPU s", "baseline": {"name": mode, "value": speed[mode]},
                              "params": params}), flush=True)


if __name__ == "__main__":
    main()
