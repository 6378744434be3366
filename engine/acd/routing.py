"""The Router: which agent for which waiting call, now, kept incrementally.

The driving side tells the Router what happens (a call joined or left a queue, an agent changed
status, answered, missed a call, ended one, finished wrap-up) and asks `assignments(now)` for the
offers to make. Nothing here reads a clock or does I/O: every method takes `now`, and the same
inputs give the same offers (random is seeded).

Indexes, kept as things change so a decision never scans every agent or every call:
- per queue, its available agents sorted as its strategy wants (strategies.entry_key), each
  agent entering and leaving through its seat there (its tier, and its entry while free);
- per queue, its waiting calls in groups of identical needs and priority, each group in join
  order. Relaxation only widens what a call accepts as it waits, so a group's later calls accept
  no more than its head: the head is the group's only candidate, and a call never overtakes an
  earlier or more urgent one that could have taken the same agent. Across groups it may, when
  the earlier call needs a skill no free agent has (counted per queue, for the skills its calls
  need beyond the queue's);
- the set of queues where a match may have become possible since the last decision, and timers
  for what the clock changes (delays and wrap-ups ending, skill and tier relaxation, the next
  ring of ring-progressively).

Across queues, an agent goes to the queue whose head call needs it most: priority, then wait
divided by the queue's service-level target, then join time; a head passed over
`starvation_limit` times for an agent it could have had comes first (the most passed over
first), so a queue sharing agents with busier or higher-priority ones never starves.

With thousands of calls waiting, a decision costs mostly reads of memory nothing touched lately
(bench/routing.py: the same steps take half the time in a 20-agent centre), so the indexes are
laid out for few reads: a waiting call is one key tuple (holding its Member), a seat holds what
an entry needs, and a group's keys are compared only at its ends.
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
from bisect import bisect_left, insort
from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping, NamedTuple

from engine.acd.estimator import HandleTimes, estimated_wait
from engine.acd.explain import Explanation, explain
from engine.acd.model import (
    BUSY_CAUSES, NO_ANSWER_REASON, REJECT_CAUSES, Agent, AgentStatus, Member, MemberState, Offer, Queue,
    Strategy, Tier,
)
from engine.acd.relaxation import meets, next_change, required_levels, tier_level_in_force
from engine.acd.strategies import Entry, EntryKey, entry_key, select
from engine.errors import CallRouterError


class RoutingError(CallRouterError):
    """The Router was told about an agent, queue or call it does not know."""


# The settings of an agent; everything else on Agent is live state the Router keeps.
_AGENT_CONFIG = ("name", "contacts", "skills", "max_calls", "wrap_up_time", "max_no_answer", "reject_delay_time",
                 "busy_delay_time", "no_answer_delay_time")


_NO_NEEDS: frozenset = frozenset()  # what most calls need beyond their queue's skills


# How much of the free list a Decision keeps for `explain`: the agents a supervisor asks about.
# The whole list would cost a pointer per free agent per call up until the call ends (tens of KB
# per call with thousands of agents free).
DECISION_FREE_KEPT = 50


class Decision(NamedTuple):
    """What the Router saw when it offered a call: kept for `explain`."""

    at: float
    agents: tuple[str, ...]            # offered
    need: Mapping[str, int]            # skill levels in force
    max_tier_level: float
    free: tuple[Entry, ...]            # the head of the queue's free list then (DECISION_FREE_KEPT)
    free_count: int                    # how many agents were free then
    waited: float

    @property
    def considered(self) -> tuple[str, ...]:
        """The first of the queue's available agents then, in strategy order."""
        return tuple([entry[-1] for entry in self.free])


# A waiting call's key: (-priority, joined_at, sequence, Member, group, own skills). Keys sort by
# priority then join time; the sequence is unique, so a comparison never reaches the Member. The
# group is (needs, priority); own skills are the needs beyond the queue's, sorted.
_Key = tuple


@dataclass(eq=False, slots=True)
class _QueueIndex:
    queue: Queue
    key: EntryKey                                                 # an agent's entry in `available`
    seats: dict[str, _Seat] = field(default_factory=dict)         # agent id -> its seat here
    available: list[Entry] = field(default_factory=list)          # sorted by the strategy's key
    # skill -> free agents having it, for the skills a call of this queue needed beyond the
    # queue's (never forgotten: a handful of languages and the like)
    free_skills: dict[str, int] = field(default_factory=dict)
    groups: dict[tuple, list[_Key]] = field(default_factory=dict)  # (needs, priority) -> keys, sorted
    levels: dict[int, list[int]] = field(default_factory=dict)    # tier level -> [tiers, staffed]
    heads: list[_Key] = field(default_factory=list)               # every group's first key, sorted
    waiting: int = 0
    rr_after: Entry | None = None                                 # round-robin's memory
    handle_times: HandleTimes = field(default_factory=HandleTimes)

    def staffed(self) -> int:
        return sum(staffed for _, staffed in self.levels.values())

    def level_staffing(self) -> list[tuple[int, int]]:
        return sorted((level, counts[1]) for level, counts in self.levels.items())


@dataclass(slots=True)
class _Seat:
    """One agent's place in one queue: its tier (level and position copied, read at every
    entry), what follows from the agent's and the queue's settings (the agent's skills the queue
    counts in free_skills, whether it has the queue's own skills), and its entry in the queue's
    free list while it can take a call (None otherwise)."""

    index: _QueueIndex
    tier: Tier
    level: int
    position: int
    counted: tuple[str, ...] = ()
    fits: bool = False  # meets the queue's skills, as most calls need
    entry: Entry | None = None

    def settle(self, agent: Agent) -> None:
        """Work out what follows from the agent's and the queue's settings, after either changed."""
        self.counted = tuple([skill for skill in self.index.free_skills if skill in agent.skills])
        self.fits = meets(agent.skills, self.index.queue.skills)


# A queue's candidate: (rank, index, key, agents chosen (a tuple), need, max tier level, waited). A plain
# tuple, built for every queue an agent frees up in; ranks never tie (they end with the sequence).
_Candidate = tuple


def _discard(entries: list, entry: tuple) -> None:
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
        self._seats: dict[str, dict[str, _Seat]] = {}     # agent id -> queue -> its seat there
        self._member_keys: dict[str, _Key] = {}
        # (needs, priority) -> (that tuple, own skills): shared by every call alike, a handful in all
        self._groups: dict[tuple, tuple[tuple, tuple[str, ...]]] = {}
        # queues changed since the last decision looked at them; a dict for a deterministic order
        self._ready: dict[_QueueIndex, None] = {}
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
            self.queues[queue.name] = _QueueIndex(queue, entry_key(queue))
            return
        index.queue = queue
        index.key = entry_key(queue)
        index.rr_after = None
        for seat in index.seats.values():
            self._leave(seat)
        for agent_id, seat in index.seats.items():
            seat.settle(self.agents[agent_id])
            self._refresh(self.agents[agent_id], self._now)
        self._ready[index] = None

    def add_agent(self, agent: Agent) -> None:
        """Add an agent, or take a known agent's new settings (its status and calls stay)."""
        known = self.agents.get(agent.id)
        if known is None:
            self.agents[agent.id] = agent
            self._seats[agent.id] = {}
            return
        seats = self._seats[agent.id].values()
        for seat in seats:
            self._leave(seat)  # out under its old skills, back in under the new
        for name in _AGENT_CONFIG:
            setattr(known, name, getattr(agent, name))
        for seat in seats:
            seat.settle(known)
        self._refresh(known, self._now)

    def set_tier(self, tier: Tier) -> None:
        agent, index = self._agent(tier.agent), self._queue(tier.queue)
        self.remove_tier(tier.agent, tier.queue)
        seat = _Seat(index, tier, tier.level, tier.position)
        seat.settle(agent)
        index.seats[agent.id] = self._seats[agent.id][tier.queue] = seat
        counts = index.levels.setdefault(tier.level, [0, 0])
        counts[0] += 1
        counts[1] += agent.status.takes_calls
        self._refresh(agent, self._now, rekey=True)
        self._ready[index] = None

    def remove_tier(self, agent_id: str, queue_name: str) -> None:
        index = self._queue(queue_name)
        seat = index.seats.pop(agent_id, None)
        if seat is None:
            return
        del self._seats[agent_id][queue_name]
        self._leave(seat)
        counts = index.levels[seat.level]
        counts[0] -= 1
        counts[1] -= self.agents[agent_id].status.takes_calls
        if not counts[0]:
            del index.levels[seat.level]

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
            for seat in self._seats[agent_id].values():
                seat.index.levels[seat.level][1] += 1 if status.takes_calls else -1
                self._ready[seat.index] = None  # tier rules may now let calls reach other levels
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
        needs = frozenset(member.skills.items()) if member.skills else _NO_NEEDS
        shared = self._groups.get((needs, member.priority))
        if shared is None:
            group = (needs, member.priority)
            shared = self._groups[group] = (group, tuple(sorted(member.skills)))
        group, own_skills = shared
        for skill in own_skills:
            if skill not in index.free_skills:
                self._count_skill(index, skill)
        key = (-member.priority, member.joined_at, next(self._seq), member, group, own_skills)
        self._member_keys[member.uuid] = key
        self._enqueue(index, key)

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
            self._dequeue(self.queues[member.queue], self._member_keys[uuid])
        ringing = self._release_offers(member, now)
        self._forget(uuid)
        return ringing

    def offer_answered(self, uuid: str, agent_id: str, now: float) -> list[str]:
        """The agent answered: it has the call. Returns the other agents still ringing for it
        (ring-all, ring-progressively), whose legs the driver hangs up."""
        member, agent = self.member(uuid), self._agent(agent_id)
        if member.state is MemberState.WAITING:
            self._dequeue(self.queues[member.queue], self._member_keys[uuid])
        member.offers.discard(agent_id)
        ringing = self._release_offers(member, now)
        member.state = MemberState.ANSWERED
        member.agent = agent_id
        offered = uuid in agent.offers
        agent.offers.discard(uuid)
        agent.calls.add(uuid)
        agent.last_bridge_start[uuid] = now
        agent.no_answer_count = 0
        if offered:  # the offer became the call: the same capacity in use, the indexes stand
            self._now = max(self._now, now)
        else:
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
                self._enqueue(self.queues[member.queue], self._member_keys[uuid])

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
        candidates: dict[_QueueIndex, _Candidate] = {}  # recomputed only where something changed
        ready = self._ready
        while True:
            for index in ready:
                if index.available and index.waiting:  # else nothing to match until an agent or a call comes
                    candidate = self._candidate(index, now)
                    if candidate is not None:
                        candidates[index] = candidate
                        continue
                    self._wake_when_relaxed(index, now)
                candidates.pop(index, None)
            ready.clear()
            if not candidates:
                return offers
            best = max(candidates.values())  # by rank
            del candidates[best[1]]
            taken = set(best[3])
            for index, rival in candidates.items():
                if not taken.isdisjoint(rival[3]):  # it wanted an agent the best took
                    rival[2][3].passed_over += 1    # its key's Member
                    ready[index] = None
            offers += self._offer(best, now)

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
        key = self._member_keys[uuid]
        return 1 + sum(bisect_left(keys, key) for keys in self.queues[member.queue].groups.values())

    def waiting(self, queue_name: str) -> list[Member]:
        """The queue's waiting calls, next first."""
        keys = sorted(k for keys in self._queue(queue_name).groups.values() for k in keys)
        return [k[3] for k in keys]

    def waiting_count(self, queue_name: str) -> int:
        """How many calls wait in the queue: len(waiting()) without sorting them all."""
        return self._queue(queue_name).waiting

    def available(self, queue_name: str) -> list[str]:
        """The queue's available agents, in its strategy's order."""
        return [entry[-1] for entry in self._queue(queue_name).available]

    def staffed(self, queue_name: str) -> int:
        return self._queue(queue_name).staffed()

    def tiers(self, queue_name: str) -> dict[str, Tier]:
        return {agent_id: seat.tier for agent_id, seat in self._queue(queue_name).seats.items()}

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

    def member(self, uuid: str) -> Member:
        """The call, waiting, being offered or answered; RoutingError if it is in no queue."""
        try:
            return self.members[uuid]
        except KeyError:
            raise RoutingError(f"call {uuid} is in no queue") from None

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

    def _at(self, when: float, kind: str, key: str) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, key))

    # A group's keys are compared only where needed: each comparison reads a key nothing else
    # has touched lately, and with thousands of calls waiting these reads are most of the cost.
    def _enqueue(self, index: _QueueIndex, key: _Key) -> None:
        group = key[4]
        keys = index.groups.get(group)
        if keys is None:
            index.groups[group] = [key]
            insort(index.heads, key)
        elif keys[-1] < key:  # a new call: the last of its group
            keys.append(key)
        else:  # a call put back after a missed offer, or restored with its original join time
            at = bisect_left(keys, key)
            if at == 0:  # the group's new head
                _discard(index.heads, keys[0])
                insort(index.heads, key)
            keys.insert(at, key)
        index.waiting += 1
        self._ready[index] = None

    def _dequeue(self, index: _QueueIndex, key: _Key) -> None:
        group = key[4]
        keys = index.groups[group]
        if keys[0] is key:  # the group's head: the call offered
            del keys[0]
            _discard(index.heads, key)
            if keys:
                insort(index.heads, keys[0])
            else:
                del index.groups[group]
        else:  # a call leaving from further back (abandon, timeout, exit key)
            del keys[bisect_left(keys, key)]
        index.waiting -= 1
        self._ready[index] = None

    def _forget(self, uuid: str) -> None:
        self.members.pop(uuid, None)
        self._member_keys.pop(uuid, None)
        self.decisions.pop(uuid, None)

    def _release_offers(self, member: Member, now: float) -> list[str]:
        if not member.offers:
            return []
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

    def _count_skill(self, index: _QueueIndex, skill: str) -> None:
        """Start counting the queue's free agents having `skill`: a call needs it on top of
        the queue's skills."""
        free = 0
        for agent_id, seat in index.seats.items():
            if skill in self.agents[agent_id].skills:
                seat.counted += (skill,)
                free += seat.entry is not None
        index.free_skills[skill] = free

    def _leave(self, seat: _Seat) -> None:
        """The agent out of the seat's queue's free list (if it is in)."""
        if seat.entry is None:
            return
        index = seat.index
        available = index.available
        del available[bisect_left(available, seat.entry)]  # a seat's entry is in its queue's list
        seat.entry = None
        free_skills = index.free_skills
        for skill in seat.counted:
            free_skills[skill] -= 1
        self._ready[index] = None

    def _refresh(self, agent: Agent, now: float, rekey: bool = False) -> None:
        """Put the agent in (or take it out of) its queues' indexes, as it can take a call or
        not; `rekey` when a field its position depends on may have changed."""
        self._now = max(self._now, now)
        seats = self._seats[agent.id].values()
        if not agent.can_take_call(now):
            for seat in seats:
                if seat.entry is not None:
                    self._leave(seat)
            return
        for seat in seats:
            old = seat.entry
            if old is not None and not rekey:
                continue
            index = seat.index
            entry = index.key(agent, seat.level, seat.position)
            if entry == old:
                continue
            if old is None:
                free_skills = index.free_skills
                for skill in seat.counted:
                    free_skills[skill] += 1
            else:
                _discard(index.available, old)
            insort(index.available, entry)
            seat.entry = entry
            self._ready[index] = None

    def _candidate(self, index: _QueueIndex, now: float) -> _Candidate | None:
        """The queue's next call that a free agent may take, with the agent(s) its strategy picks
        (the queue has free agents and waiting calls)."""
        queue = index.queue
        rules = queue.tier_rules
        levels = index.level_staffing() if rules.apply else ()
        free_skills, available = index.free_skills, index.available
        only = None
        if len(available) == 1:  # a busy centre, someone just finished a call: every strategy takes it
            only = available[0][-1]
            seat = index.seats[only]
            only_level, only_fits, only_skills = seat.level, seat.fits, self.agents[only].skills
        for key in index.heads:
            _, joined_at, seq, member, _, own_skills = key
            if own_skills and not all(map(free_skills.get, own_skills)):
                continue  # needs a skill of its own that no free agent of the queue has at any level
            waited = now - joined_at
            # most calls need only the queue's skills: no call, and no read of the call's own
            need = required_levels(queue, member, waited) if own_skills or queue.relax else queue.skills
            max_level = tier_level_in_force(rules, levels, waited) if rules.apply else math.inf
            if only is None:
                chosen = self._select(index, member, need, max_level)
            else:
                fits = only_fits if need is queue.skills else meets(only_skills, need)
                chosen = (only,) if fits and only_level <= max_level else None
            if chosen:
                # a starving head (passed over starvation_limit times) comes first, the most passed
                # over first; ties of priority and urgency go to the call that joined first
                starving = member.passed_over if member.passed_over >= queue.starvation_limit else 0
                urgency = waited / queue.service_level_seconds if queue.service_level_seconds > 0 else waited
                return ((starving, member.priority, urgency, -joined_at, -seq),
                        index, key, chosen, need, max_level, waited)
        return None

    def _select(self, index: _QueueIndex, member: Member, need: Mapping[str, int], max_level: float,
                ringing: Collection[str] = ()) -> tuple[str, ...]:
        """The agent(s) the queue's strategy offers the call to, among its free agents at a tier
        level up to `max_level` that meet `need` (and are not ringing for it already)."""
        seats, agents = index.seats, self.agents

        def eligible(agent_id: str) -> bool:
            return (seats[agent_id].level <= max_level and meets(agents[agent_id].skills, need)
                    and agent_id not in ringing)

        return tuple(select(index.queue.strategy, index.available, eligible, after=index.rr_after,
                            tried=member.tried, rng=self._rng))

    def _offer(self, candidate: _Candidate, now: float) -> list[Offer]:
        _, index, key, agents, need, max_level, waited = candidate
        member, queue = key[3], index.queue
        free = index.available
        self.decisions[member.uuid] = Decision(now, agents, need, max_level, tuple(free[:DECISION_FREE_KEPT]),
                                               len(free), waited)
        if queue.strategy is Strategy.ROUND_ROBIN:
            index.rr_after = index.seats[agents[0]].entry
        self._dequeue(index, key)
        member.state = MemberState.TRYING
        member.passed_over = 0
        if queue.strategy is Strategy.RING_PROGRESSIVELY:
            self._at(now + queue.ring_progressively_delay, "ring", member.uuid)
        return [self._ring(member, agent_id, now) for agent_id in agents]

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
        for key in index.heads:
            joined_at = key[1]
            change = next_change(index.queue, index.levels, now - joined_at)
            if change is not None:
                moments.append(joined_at + change)
        if moments:
            self._at(min(moments), "queue", index.queue.name)

    def _run_timers(self, now: float) -> list[Offer]:
        offers: list[Offer] = []
        while self._timers and self._timers[0][0] <= now:
            _, _, kind, key = heapq.heappop(self._timers)
            if kind == "queue":
                self._ready[self.queues[key]] = None
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
        chosen = self._select(index, member, need, max_level, ringing=member.offers)
        self._at(now + queue.ring_progressively_delay, "ring", uuid)
        return [self._ring(member, agent_id, now) for agent_id in chosen]

