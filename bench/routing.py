"""ACD routing decision time: the Router's incremental indexes against a naive full-scan router.

A busy centre: 1,000 agents (three skills each, tiers in three of 50 queues) and 10,000 calls
waiting (a fifth of them needing a language on top of their queue's skill). In steady state an
agent ends a call, the Router picks its next one and it is answered, and a new caller joins:
one assignment, timed with all of that bookkeeping. The baseline does the same by scanning
every waiting call against every free agent, as a database query over members and agents does.

Prints one JSON line per figure (median and p99 seconds per assignment); --smoke runs briefly.
The p99 of a step this short follows the machine's load (another process sharing the core, its
cache): the params give the load average before and after the run, to read the figure by.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.acd.model import Agent, AgentStatus, Member, Queue, Tier  # noqa: E402
from engine.acd.relaxation import meets, required_levels  # noqa: E402
from engine.acd.routing import Router  # noqa: E402

SKILLS = [f"product{i}" for i in range(20)]
LANGUAGES = ["fr", "de", "es"]


def build(agents: int, queues: int, rng: random.Random) -> tuple[list[Queue], list[Agent], list[Tier]]:
    queue_list = [Queue(f"q{i}", skills={SKILLS[i % len(SKILLS)]: rng.randint(1, 5)},
                        service_level_seconds=rng.choice([20.0, 30.0, 60.0])) for i in range(queues)]
    agent_list, tiers = [], []
    for i in range(agents):
        served = rng.sample(queue_list, 3)
        skills = {skill: rng.randint(level, 10) for q in served for skill, level in q.skills.items()}
        if rng.random() < 0.4:
            skills[rng.choice(LANGUAGES)] = rng.randint(3, 10)
        agent_list.append(Agent(f"{1000 + i}", skills=skills))
        tiers += [Tier(f"{1000 + i}", q.name, level=rng.randint(1, 2), position=rng.randint(1, 10)) for q in served]
    return queue_list, agent_list, tiers


def caller(serial: int, queues: list[Queue], now: float, rng: random.Random) -> Member:
    skills = {rng.choice(LANGUAGES): 3} if rng.random() < 0.2 else {}
    return Member(f"call-{serial}", rng.choice(queues).name, joined_at=now, priority=rng.choice([0, 0, 0, 1]),
                  skills=skills)


class FullScanRouter:
    """The baseline: every decision looks at every waiting call and every free agent."""

    def __init__(self, queues: list[Queue], agents: list[Agent], tiers: list[Tier]) -> None:
        self.queues = {q.name: q for q in queues}
        self.agents = {a.id: a for a in agents}
        self.tiers = {(t.agent, t.queue): t for t in tiers}
        self.waiting: dict[str, Member] = {}
        self.free: dict[str, float] = {}  # agent -> idle since

    def decide(self, now: float) -> tuple[str, str] | None:
        best, best_rank = None, None
        for member in self.waiting.values():
            queue = self.queues[member.queue]
            waited = now - member.joined_at
            need = required_levels(queue, member, waited)
            agent = min((a for a in self.free if (a, member.queue) in self.tiers and meets(self.agents[a].skills, need)),
                        key=self.free.__getitem__, default=None)
            if agent is None:
                continue
            rank = (member.priority, waited / queue.service_level_seconds, -member.joined_at)
            if best_rank is None or rank > best_rank:
                best, best_rank = (member.uuid, agent), rank
        if best is not None:
            del self.waiting[best[0]]
            del self.free[best[1]]
        return best


def run_router(queues, agents, tiers, waiting: int, cycles: int, rng: random.Random) -> list[float]:
    router = Router(queues, agents, tiers, seed=1)
    now = 0.0
    for agent in agents:
        router.set_status(agent.id, AgentStatus.AVAILABLE, now)
    serial = 0
    for serial in range(waiting + len(agents)):
        router.member_joined(caller(serial, queues, now - rng.random() * 300, rng), now)
    talking = {}
    for offer in router.assignments(now):
        router.offer_answered(offer.call_uuid, offer.agent, now)
        talking[offer.agent] = offer.call_uuid
    samples = []
    for _ in range(cycles):
        now += 0.05
        agent = rng.choice(list(talking))
        serial += 1
        new = caller(serial, queues, now, rng)
        started = time.perf_counter()
        router.call_ended(talking.pop(agent), now)
        offers = router.assignments(now)
        for offer in offers:
            router.offer_answered(offer.call_uuid, offer.agent, now)
        router.member_joined(new, now)
        elapsed = time.perf_counter() - started
        for offer in offers:
            talking[offer.agent] = offer.call_uuid
        if offers:
            samples.append(elapsed / len(offers))
    return samples


def run_full_scan(queues, agents, tiers, waiting: int, cycles: int, rng: random.Random) -> list[float]:
    scan = FullScanRouter(queues, agents, tiers)
    now = 0.0
    members = [caller(serial, queues, now - rng.random() * 300, rng) for serial in range(waiting)]
    scan.waiting = {m.uuid: m for m in members}
    talking = [a.id for a in agents]
    samples = []
    for serial in range(waiting, waiting + cycles):
        now += 0.05
        agent = talking.pop(rng.randrange(len(talking)))
        new = caller(serial, queues, now, rng)
        started = time.perf_counter()
        scan.free[agent] = now
        chosen = scan.decide(now)
        scan.waiting[new.uuid] = new
        elapsed = time.perf_counter() - started
        if chosen is not None:
            talking.append(chosen[1])
            samples.append(elapsed)
        else:
            talking.append(agent)
            scan.free.pop(agent, None)
    return samples


def p99(samples: list[float]) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * 0.99))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run, to check the script still works")
    args = parser.parse_args()
    agents, waiting, queue_count = 1000, 10_000, 50
    cycles, baseline_cycles = (300, 20) if args.smoke else (20_000, 200)
    load_before = os.getloadavg()[0]
    queues, agent_list, tiers = build(agents, queue_count, random.Random(7))
    router = run_router(queues, [Agent(a.id, skills=a.skills) for a in agent_list], tiers, waiting, cycles,
                        random.Random(11))
    scan = run_full_scan(queues, agent_list, tiers, waiting, baseline_cycles, random.Random(11))
    params = {"agents": agents, "waiting_calls": waiting, "queues": queue_count, "assignments": len(router),
              "baseline_assignments": len(scan), "smoke": args.smoke,
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    for name, measure in (("median", statistics.median), ("p99", p99)):
        print(json.dumps({"name": f"routing_decision_{name}_seconds", "value": measure(router), "unit": "s",
                          "baseline": {"name": "full scan", "value": measure(scan)}, "params": params}))


if __name__ == "__main__":
    main()
