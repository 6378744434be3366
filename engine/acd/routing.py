"""The Router: which agent for which waiting call, now, kept incrementally.

The driving side tells the Router what happens (a call joined or left a queue, an agent changed
status, answered, missed a call, ended one, finished wrap-up) and asks `assignments(now)` for the
offers to make. Nothing here reads a clock or does I/O: every method takes `now`, and the same
inputs give the same offers (random is seeded).

Indexes, kept as things change so a decision never scans every agent or every call:
- per queue, its available agents sorted as its strategy wants (strategies.index_key);
- per queue, its waiting calls in groups of identical needs and priority, each group in join
  order. Relaxation only widens what a call accepts as it waits, so a group's later calls accept
  no more than its head: the head is the group's only candidate, and a call never overtakes an
  earlier or more urgent one that could have taken the same agent. Across groups it may, when
  the earlier call needs a skill no free agent has;
- the set of queues where a match may have become possible since the last decision, and timers
  for what the clock changes (delays and wrap-ups ending, skill and tier relaxation, the next
  ring of ring-progressively).

Across queues, an agent goes to the queue whose head call needs it most: priority, then wait
divided by the queue's service-level target, then join time; a head passed over
`starvation_limit` times for an agent it could have had comes first (the most passed over
first), so a queue sharing agents with busier or higher-priority ones never starves.
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

from engine.acd.estimator import HandleTimes, estimated_wait
from engine.acd.explain import Explanation, explain
from engine.acd.model import (
    BUSY_CAUSES, NO_ANSWER_REASON, REJECT_CAUSES, Agent, AgentStatus, Member, MemberState, Offer, Queue,
    Strategy, Tier,
)
from engine.acd.relaxation import meets, next_change, required_levels, tier_level_in_force
from engine.acd.strategies import Entry, index_key, select
from engine.errors import CallRouterError


class RoutingError(CallRouterError):
    """The Router was told about an agent, queue or call it does not know."""


# The settings of an agent; everything else on Agent is live state the Router keeps.
_AGENT_CONFIG = ("name", "contacts", "skills", "max_calls", "wrap_up_time", "max_no_answer", "reject_delay_time",
                 "busy_delay_time", "no_answer_delay_time")


_NO_NEEDS: frozenset = frozenset()  # most calls need only their queue's skills: one shared key (~200 B a call)


class Decision(NamedTuple):
    """What the Router saw when it offered a call: kept for `explain`."""

    at: float
    agents: tuple[str, ...]            # offered
    need: Mapping[str, int]            # skill levels in force
    max_tier_level: float
    considered: tuple[str, ...]        # the queue's available agents, in strategy order
    waited: float


@dataclass
class _QueueIndex:
    queue: Queue
    tiers: dict[str, Tier] = field(default_factory=dict)          # agent id -> tier
    available: list[Entry] = field(default_factory=list)          # sorted by the strategy's key
    free_skills: dict[str, int] = field(default_factory=dict)     # skill -> available agents having it
    groups: dict[tuple, list[tuple]] = field(default_factory=dict)  # (needs, priority) -> member keys, sorted
    levels: dict[int, list[int]] = field(default_factory=dict)    # tier level -> [tiers, staffed]
    heads: list[tuple[tuple, tuple]] = field(default_factory=list)  # (head key, own skills) per group, sorted
    waiting: int = 0
    rr_after: Entry | None = None                                 # round-robin's memory
    handle_times: HandleTimes = field(default_factory=HandleTimes)

    def staffed(self) -> int:
        return sum(staffed for _, staffed in self.levels.values())

    def level_staffing(self) -> list[tuple[int, int]]:
        return sorted((level, counts[1]) for level, counts in self.levels.items())


@dataclass(slots=True)
class _Candidate:
    index: _QueueIndex
    member: Member
    agents: list[str]
    need: Mapping[str, int]
    max_tier_level: float
    waited: float
    rank: tuple


def _discard(entries: list[Entry], entry: Entry) -> None:
    i = bisect_left(entries, entry)
    if i < len(entries) and entries[i] == entry:
        del entries[i]


class Router:
    """See the module docstring. Unknown ids raise RoutingError."""

    def __init__(self, queues: Iterable[Queue] = (), agents: Iterable[Agent] = (), tiers: Iterable[Tier] = (),
                 *, seed: int | None = None) -> None:
        self.queues: dict[str, _QueueIndex] = {}
        self.agents: dict[str, Agent] = {}
        self.members: dict[str, Member] = {}
        self.decisions: dict[str, Decision] = {}
        self._tiers_of: dict[str, dict[str, Tier]] = {}   # agent id -> queue -> tier
        self._entries: dict[str, dict[str, Entry]] = {}   # agent id -> queue -> its entry there
        self._member_keys: dict[str, tuple[tuple, tuple, tuple]] = {}  # uuid -> (group, sort key, own skills)
        self._ready: set[str] = set()  # queues changed since the last decision looked at them
        self._timers: list[tuple[float, int, str, str]] = []
        self._seq = itertools.count()
        self._rng = random.Random(seed)
        self._now = 0.0  # the latest time seen: configuration changes apply then
        for queue in queues:
            self.add_queue(queue)
        for agent in agents:
            self.add_agent(agent)
        for tier in tiers:
            self.set_tier(tier)

    # ------------------------------------------------------------------ configuration
    def add_queue(self, queue: Queue) -> None:
        """Add a queue, or replace an existing queue's settings (its calls and tiers stay)."""
        index = self.queues.get(queue.name)
        if index is None:
            self.queues[queue.name] = _QueueIndex(queue)
            return
        index.queue = queue
        index.rr_after = None
        for agent_id in index.tiers:
            self._unindex(self.agents[agent_id], queue.name)
            self._refresh(self.agents[agent_id], self._now)
        self._ready.add(queue.name)

    def add_agent(self, agent: Agent) -> None:
        """Add an agent, or take a known agent's new settings (its status and calls stay)."""
        known = self.agents.get(agent.id)
        if known is None:
            self.agents[agent.id] = agent
            self._tiers_of[agent.id] = {}
            self._entries[agent.id] = {}
            return
        for queue_name in list(self._entries[agent.id]):
            self._unindex(known, queue_name)  # out under its old skills, back in under the new
        for name in _AGENT_CONFIG:
            setattr(known, name, getattr(agent, name))
        self._refresh(known, self._now)

    def set_tier(self, tier: Tier) -> None:
        agent, index = self._agent(tier.agent), self._queue(tier.queue)
        self.remove_tier(tier.agent, tier.queue)
        index.tiers[agent.id] = tier
        self._tiers_of[agent.id][tier.queue] = tier
        counts = index.levels.setdefault(tier.level, [0, 0])
        counts[0] += 1
        counts[1] += agent.status.takes_calls
        self._refresh(agent, self._now, rekey=True)
        self._ready.add(tier.queue)

    def remove_tier(self, agent_id: str, queue_name: str) -> None:
        index = self._queue(queue_name)
        tier = index.tiers.pop(agent_id, None)
        if tier is None:
            return
        del self._tiers_of[agent_id][queue_name]
        self._unindex(self.agents[agent_id], queue_name)
        counts = index.levels[tier.level]
        counts[0] -= 1
        counts[1] -= self.agents[agent_id].status.takes_calls
        if not counts[0]:
            del index.levels[tier.level]

    # ------------------------------------------------------------------ what agents do
    def set_status(self, agent_id: str, status: AgentStatus, now: float, reason: str = "") -> None:
        agent = self._agent(agent_id)
        was = agent.status.takes_calls
        agent.status = status
        agent.break_reason = reason if status is AgentStatus.ON_BREAK else ""
        agent.last_status_change = now
        if status.takes_calls and not was:
            agent.idle_since = now
            agent.no_answer_count = 0
            agent.on_demand_idle = False
        if status.takes_calls != was:
            for queue_name, tier in self._tiers_of[agent_id].items():
                self.queues[queue_name].levels[tier.level][1] += 1 if status.takes_calls else -1
                self._ready.add(queue_name)  # tier rules may now let calls reach other levels
        self._refresh(agent, now)

    def set_ready(self, agent_id: str, now: float) -> None:
        """An On-Demand agent asks for its next call (mod_callcenter: state back to Waiting)."""
        agent = self._agent(agent_id)
        if agent.on_demand_idle:
            agent.on_demand_idle = False
            agent.idle_since = now
            self._refresh(agent, now)

    def wrap_up_done(self, agent_id: str, now: float) -> None:
        """The agent ends its after-call work early."""
        agent = self._agent(agent_id)
        if agent.wrap_ups:
            agent.wrap_ups.clear()
            self._became_free(agent, now)
            self._refresh(agent, now)

    # ------------------------------------------------------------------ what calls do
    def member_joined(self, member: Member, now: float) -> None:
        """A call enters a queue (or is restored into it after a restart, with its original
        joined_at). A call already known leaves its old queue first (a transfer between queues:
        give the original joined_at to keep its wait)."""
        index = self._queue(member.queue)
        if member.uuid in self.members:
            self.member_left(member.uuid, now)
        if member.priority is None:
            member.priority = index.queue.priority
        member.state = MemberState.WAITING
        self.members[member.uuid] = member
        key = (-member.priority, member.joined_at, next(self._seq), member.uuid)
        needs = frozenset(member.skills.items()) if member.skills else _NO_NEEDS
        self._member_keys[member.uuid] = ((needs, member.priority), key, tuple(sorted(member.skills)))
        self._enqueue(member)

    def member_left(self, uuid: str, now: float) -> list[str]:
        """The call left the queue without an agent (abandon, timeout, exit key, overflow), or,
        if it was answered, its conversation ended. Returns the agents still ringing for it."""
        member = self.members.get(uuid)
        if member is None:
            return []
        if member.state is MemberState.ANSWERED:
            self.call_ended(uuid, now)
            return []
        if member.state is MemberState.WAITING:
            self._dequeue(member)
        ringing = self._release_offers(member, now)
        self._forget(uuid)
        return ringing

    def offer_answered(self, uuid: str, agent_id: str, now: float) -> list[str]:
        """The agent answered: it has the call. Returns the other agents still ringing for it
        (ring-all, ring-progressively), whose legs the driver hangs up."""
        member, agent = self.member(uuid), self._agent(agent_id)
        if member.state is MemberState.WAITING:
            self._dequeue(member)
        member.offers.discard(agent_id)
        ringing = self._release_offers(member, now)
        member.state = MemberState.ANSWERED
        member.agent = agent_id
        agent.offers.discard(uuid)
        agent.calls.add(uuid)
        agent.last_bridge_start[uuid] = now
        agent.no_answer_count = 0
        self._refresh(agent, now)
        return ringing

    def offer_failed(self, uuid: str, agent_id: str, cause: str, now: float) -> None:
        """The agent's leg failed with hangup cause `cause`: apply the busy / reject / no-answer
        delay, count a no-answer towards max-no-answer (then On Break, reason no-answer), and
        put the call back in its place once no agent rings for it any more."""
        agent = self._agent(agent_id)
        agent.offers.discard(uuid)
        if cause in BUSY_CAUSES:
            delay = agent.busy_delay_time
        elif cause in REJECT_CAUSES:
            delay = agent.reject_delay_time
        else:
            delay = agent.no_answer_delay_time
            agent.no_answer_count += 1
        if delay > 0:
            agent.ready_time = max(agent.ready_time, now + delay)
            self._at(agent.ready_time, "agent", agent_id)
        if agent.max_no_answer and agent.no_answer_count >= agent.max_no_answer:
            self.set_status(agent_id, AgentStatus.ON_BREAK, now, NO_ANSWER_REASON)
        else:
            self._refresh(agent, now)
        member = self.members.get(uuid)
        if member is not None and member.state is MemberState.TRYING and agent_id in member.offers:
            member.offers.discard(agent_id)
            member.tried.add(agent_id)
            if not member.offers:
                member.state = MemberState.WAITING
                self._enqueue(member)

    def call_ended(self, uuid: str, now: float) -> None:
        """The answered call is over: count it, start the agent's wrap-up."""
        member = self.members.get(uuid)
        if member is None or member.state is not MemberState.ANSWERED:
            return
        agent = self.agents.get(member.agent)
        index = self.queues.get(member.queue)
        self._forget(uuid)
        if agent is None:
            return
        agent.calls.discard(uuid)
        talk = now - agent.last_bridge_start.pop(uuid, now)
        agent.talk_time += talk
        agent.calls_answered += 1
        agent.last_bridge_end = now
        wrap = index.queue.wrap_up_time if index and index.queue.wrap_up_time is not None else agent.wrap_up_time
        if wrap > 0:
            agent.wrap_ups.append(now + wrap)
            self._at(now + wrap, "agent", agent.id)
        elif not agent.calls:
            self._became_free(agent, now)
        if index is not None:
            index.handle_times.add(now, talk + wrap)
        self._refresh(agent, now, rekey=True)

    # ------------------------------------------------------------------ decisions
    def assignments(self, now: float) -> list[Offer]:
        """The offers to make now. Each reserves the agent (state Receiving) until the driver
        reports offer_answered / offer_failed / member_left."""
        offers = self._run_timers(now)
        candidates: dict[str, _Candidate] = {}  # per queue; recomputed only where something changed
        while True:
            for name in self._ready:
                index = self.queues[name]
                if not index.available or not index.waiting:
                    candidates.pop(name, None)  # nothing to match until an agent or a call comes
                    continue
                candidate = self._candidate(index, now)
                if candidate is not None:
                    candidates[name] = candidate
                else:
                    candidates.pop(name, None)
                    self._wake_when_relaxed(index, now)
            self._ready.clear()
            if not candidates:
                return offers
            best = max(candidates.values(), key=lambda c: c.rank)
            del candidates[best.index.queue.name]
            taken = set(best.agents)
            for name, rival in candidates.items():
                if taken.intersection(rival.agents):
                    rival.member.passed_over += 1
                    self._ready.add(name)
            offers.extend(self._offer(best, now))

    def next_wakeup(self) -> float | None:
        """When to call assignments() again even if nothing happens (a delay or wrap-up ends,
        a call's needs relax, ring-progressively rings the next agent)."""
        return self._timers[0][0] if self._timers else None

    # ------------------------------------------------------------------ queries
    def position(self, uuid: str) -> int | None:
        """1 for the next call to be served in its queue; None unless the call is waiting."""
        member = self.members.get(uuid)
        if member is None or member.state is not MemberState.WAITING:
            return None
        key = self._member_keys[uuid][1]
        return 1 + sum(bisect_left(keys, key) for keys in self.queues[member.queue].groups.values())

    def waiting(self, queue_name: str) -> list[Member]:
        """The queue's waiting calls, next first."""
        keys = sorted(k for keys in self._queue(queue_name).groups.values() for k in keys)
        return [self.members[k[-1]] for k in keys]

    def available(self, queue_name: str) -> list[str]:
        """The queue's available agents, in its strategy's order."""
        return [entry[-1] for entry in self._queue(queue_name).available]

    def staffed(self, queue_name: str) -> int:
        return self._queue(queue_name).staffed()

    def tiers(self, queue_name: str) -> dict[str, Tier]:
        return dict(self._queue(queue_name).tiers)

    def tier_levels(self, queue_name: str) -> list[tuple[int, int]]:
        """(tier level, agents staffed at it), ascending: what the tier rules look at."""
        return self._queue(queue_name).level_staffing()

    def estimated_wait(self, uuid: str, now: float) -> float | None:
        """Seconds the waiting call can expect to wait still (see estimator.py)."""
        position = self.position(uuid)
        if position is None:
            return None
        index = self.queues[self.members[uuid].queue]
        return estimated_wait(position, len(index.available), index.staffed(), index.handle_times.mean(now))

    def explain(self, uuid: str, now: float) -> Explanation:
        """Why this call has (or has not yet) this agent: see explain.py."""
        return explain(self, uuid, now)

    # ------------------------------------------------------------------ internals
    def _agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise RoutingError(f"no agent '{agent_id}'; add it (agents: in the ACD configuration) first") from None

    def _queue(self, name: str) -> _QueueIndex:
        try:
            return self.queues[name]
        except KeyError:
            raise RoutingError(f"no queue '{name}'; add it (queues: in the ACD configuration) first") from None

    def member(self, uuid: str) -> Member:
        """The call, waiting, being offered or answered; RoutingError if it is in no queue."""
        try:
            return self.members[uuid]
        except KeyError:
            raise RoutingError(f"call {uuid} is in no queue") from None

    def _at(self, when: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, key))

    def _enqueue(self, member: Member) -> None:
        index = self.queues[member.queue]
        group, key, own_skills = self._member_keys[member.uuid]
        keys = index.groups.setdefault(group, [])
        at = bisect_left(keys, key)
        if at == 0:  # the group's new head
            if keys:
                _discard(index.heads, (keys[0], own_skills))
            insort(index.heads, (key, own_skills))
        keys.insert(at, key)
        index.waiting += 1
        self._ready.add(member.queue)

    def _dequeue(self, member: Member) -> None:
        index = self.queues[member.queue]
        group, key, own_skills = self._member_keys[member.uuid]
        keys = index.groups[group]
        at = bisect_left(keys, key)
        del keys[at]
        if at == 0:
            _discard(index.heads, (key, own_skills))
            if keys:
                insort(index.heads, (keys[0], own_skills))
        if not keys:
            del index.groups[group]
        index.waiting -= 1
        self._ready.add(member.queue)

    def _forget(self, uuid: str) -> None:
        self.members.pop(uuid, None)
        self._member_keys.pop(uuid, None)
        self.decisions.pop(uuid, None)

    def _release_offers(self, member: Member, now: float) -> list[str]:
        ringing = sorted(member.offers)
        member.offers.clear()
        for agent_id in ringing:
            agent = self.agents[agent_id]
            agent.offers.discard(member.uuid)
            self._refresh(agent, now)
        return ringing

    def _became_free(self, agent: Agent, now: float) -> None:
        agent.idle_since = now
        if agent.status is AgentStatus.AVAILABLE_ON_DEMAND and not agent.calls:
            agent.on_demand_idle = True

    def _unindex(self, agent: Agent, queue_name: str) -> None:
        entry = self._entries[agent.id].pop(queue_name, None)
        if entry is not None:
            index = self.queues[queue_name]
            _discard(index.available, entry)
            for skill in agent.skills:
                index.free_skills[skill] -= 1
            self._ready.add(queue_name)

    def _refresh(self, agent: Agent, now: float, rekey: bool = False) -> None:
        """Put the agent in (or take it out of) its queues' indexes, as it can take a call or
        not; `rekey` when a field its position depends on may have changed."""
        self._now = max(self._now, now)
        entries = self._entries[agent.id]
        if not agent.can_take_call(now):
            for queue_name in list(entries):
                self._unindex(agent, queue_name)
            return
        for queue_name, tier in self._tiers_of[agent.id].items():
            old = entries.get(queue_name)
            if old is not None and not rekey:
                continue
            index = self.queues[queue_name]
            entry = index_key(index.queue.strategy, agent, tier, index.queue)
            if entry == old:
                continue
            if old is not None:
                _discard(index.available, old)
            else:
                for skill in agent.skills:
                    index.free_skills[skill] = index.free_skills.get(skill, 0) + 1
            insort(index.available, entry)
            entries[queue_name] = entry
            self._ready.add(queue_name)

    def _candidate(self, index: _QueueIndex, now: float) -> _Candidate | None:
        """The queue's next call that a free agent may take, with the agent(s) its strategy picks
        (the queue has free agents and waiting calls)."""
        queue = index.queue
        levels = index.level_staffing() if queue.tier_rules.apply else ()
        tiers, agents, free_skills = index.tiers, self.agents, index.free_skills
        need: dict[str, int] = {}
        max_level = math.inf

        def eligible(agent_id: str) -> bool:
            if tiers[agent_id].level > max_level:
                return False
            skills = agents[agent_id].skills
            for skill, level in need.items():
                if skills.get(skill, 0) < level:
                    return False
            return True

        # One free agent (a busy centre: someone just finished a call): every strategy picks it.
        only = index.available[0][-1] if len(index.available) == 1 else None
        for key, own_skills in index.heads:
            if own_skills and not all(map(free_skills.get, own_skills)):
                continue  # needs a skill of its own that no free agent of the queue has at any level
            member = self.members[key[-1]]
            waited = now - member.joined_at
            need = required_levels(queue, member, waited)
            max_level = tier_level_in_force(queue.tier_rules, levels, waited)
            if only is not None:
                chosen = [only] if eligible(only) else []
            else:
                chosen = select(queue.strategy, index.available, eligible, after=index.rr_after,
                                tried=member.tried, rng=self._rng)
            if chosen:
                # a starving head (passed over starvation_limit times) comes first, the most passed
                # over first; ties of priority and urgency go to the call that joined first
                starving = member.passed_over if member.passed_over >= queue.starvation_limit else 0
                urgency = waited / queue.service_level_seconds if queue.service_level_seconds > 0 else waited
                return _Candidate(index, member, chosen, need, max_level, waited,
                                  (starving, member.priority, urgency, -member.joined_at, -key[2]))
        return None

    def _offer(self, candidate: _Candidate, now: float) -> list[Offer]:
        index, member = candidate.index, candidate.member
        queue = index.queue
        self.decisions[member.uuid] = Decision(now, tuple(candidate.agents), candidate.need,
                                               candidate.max_tier_level,
                                               tuple([entry[-1] for entry in index.available]), candidate.waited)
        if queue.strategy is Strategy.ROUND_ROBIN:
            index.rr_after = self._entries[candidate.agents[0]][queue.name]
        self._dequeue(member)
        member.state = MemberState.TRYING
        member.passed_over = 0
        if queue.strategy is Strategy.RING_PROGRESSIVELY:
            self._at(now + queue.ring_progressively_delay, "ring", member.uuid)
        return [self._ring(member, agent_id, now) for agent_id in candidate.agents]

    def _ring(self, member: Member, agent_id: str, now: float) -> Offer:
        agent = self.agents[agent_id]
        agent.offers.add(member.uuid)
        agent.last_offered_call = now
        member.offers.add(agent_id)
        member.rung_at = now
        self._refresh(agent, now)
        return Offer(member.uuid, member.queue, agent_id)

    def _wake_when_relaxed(self, index: _QueueIndex, now: float) -> None:
        """A queue with free agents and waiting calls that still cannot match: look again when
        the first of its head calls accepts more (the rest only join the index on events)."""
        moments = []
        for keys in index.groups.values():
            member = self.members[keys[0][-1]]
            change = next_change(index.queue, index.levels, now - member.joined_at)
            if change is not None:
                moments.append(member.joined_at + change)
        if moments:
            self._at(min(moments), "queue", index.queue.name)

    def _run_timers(self, now: float) -> list[Offer]:
        offers: list[Offer] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._timers)
            if kind == "queue":
                self._ready.add(key)
            elif kind == "agent":
                agent = self.agents.get(key)
                if agent is None:
                    continue
                if agent.wrap_ups:
                    left = [end for end in agent.wrap_ups if end > now]
                    if len(left) != len(agent.wrap_ups):
                        agent.wrap_ups = left
                        if not left and not agent.calls:
                            self._became_free(agent, now)
                self._refresh(agent, now, rekey=True)
            elif kind == "ring":
                offers.extend(self._ring_next(key, now))
        return offers

    def _ring_next(self, uuid: str, now: float) -> list[Offer]:
        """ring-progressively: one more agent rings for the call, the earlier ones keep ringing."""
        member = self.members.get(uuid)
        if member is None or member.state is not MemberState.TRYING:
            return []
        index = self.queues[member.queue]
        queue = index.queue
        if now < member.rung_at + queue.ring_progressively_delay:
            return []  # the timer of an earlier attempt at this call
        waited = now - member.joined_at
        need = required_levels(queue, member, waited)
        max_level = tier_level_in_force(queue.tier_rules, index.level_staffing(), waited)
        tiers, agents = index.tiers, self.agents
        ringing = member.offers
        chosen = select(queue.strategy, index.available,
                        lambda a: a not in ringing and tiers[a].level <= max_level and meets(agents[a].skills, need),
                        tried=member.tried, rng=self._rng)
        self._at(now + queue.ring_progressively_delay, "ring", uuid)
        return [self._ring(member, agent_id, now) for agent_id in chosen]
