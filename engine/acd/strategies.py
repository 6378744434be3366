"""The strategies: how a queue orders its available agents, and which of them a call gets.

Each queue's index holds its available agents sorted by their entries (`entry_key(queue)` gives
the function making one), tuples ending with the agent's id; `select` walks that order and takes
the first agent(s) the call may have. An entry only uses fields that change while the agent is
out of the index (or the Router re-keys it), so the order is kept incrementally rather than
sorted per decision.
"""
from __future__ import annotations

import random
from bisect import bisect_right
from typing import Callable, Collection, Sequence

from engine.acd.model import Agent, Queue, Strategy

Entry = tuple  # (sort fields..., agent id)


EntryKey = Callable[[Agent, int, int], Entry]  # (agent, tier level, tier position) -> entry


def entry_key(queue: Queue) -> EntryKey:
    """The function giving an agent's entry in the queue's free list, chosen once per queue
    (an agent enters its queues' lists every time it frees up)."""
    strategy = queue.strategy
    if strategy is Strategy.LONGEST_IDLE_AGENT:
        return lambda agent, level, position: (level, agent.idle_since, position, agent.id)
    if strategy is Strategy.FEWEST_CALLS:
        return lambda agent, level, position: (level, agent.calls_answered, agent.idle_since, agent.id)
    if strategy is Strategy.LEAST_TALK_TIME:
        return lambda agent, level, position: (level, agent.talk_time, agent.idle_since, agent.id)
    if strategy is Strategy.SKILLS_BEST_MATCH:
        wanted = tuple(queue.skills)
        return lambda agent, level, position: (-sum([agent.skills.get(skill, 0) for skill in wanted]),
                                               agent.idle_since, agent.id)
    if strategy in (Strategy.ROUND_ROBIN, Strategy.RANDOM):
        return lambda agent, level, position: (position, agent.id)
    # top-down, sequentially-by-agent-order, ring-all, ring-progressively: tier order
    return lambda agent, level, position: (level, position, agent.id)


def select(strategy: Strategy, entries: Sequence[Entry], eligible: Callable[[str], bool], *,
           rng: random.Random, after: Entry | None = None, tried: Collection[str] = ()) -> list[str]:
    """The agent ids, in `entries` order, that the strategy offers the call to (none, one, or all
    for ring-all). `rng` draws for random; `after` is round-robin's memory (the last agent's entry); `tried` the agents
    that missed this call, which top-down and ring-progressively move past until every eligible
    agent has missed it (then they start from the top again)."""
    if not entries:
        return []
    if strategy is Strategy.RING_ALL:
        return [e[-1] for e in entries if eligible(e[-1])]
    if strategy is Strategy.ROUND_ROBIN:
        start = bisect_right(entries, after) if after is not None else 0
        return _first(entries, eligible, start)
    if strategy is Strategy.RANDOM:
        return _first(entries, eligible, rng.randrange(len(entries)))
    if strategy in (Strategy.TOP_DOWN, Strategy.RING_PROGRESSIVELY) and tried:
        fresh = _first(entries, lambda agent: agent not in tried and eligible(agent), 0)
        if fresh:
            return fresh
    return _first(entries, eligible, 0)


def _first(entries: Sequence[Entry], eligible: Callable[[str], bool], start: int) -> list[str]:
    """The first eligible agent from `start`, wrapping around."""
    count = len(entries)
    for offset in range(count):
        agent = entries[(start + offset) % count][-1]
        if eligible(agent):
            return [agent]
    return []
