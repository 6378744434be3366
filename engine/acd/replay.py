"""Replaying a recorded day: the queue log's arrivals, with each caller's patience and handle time,
played through the real Router with another staffing (`callrouter staffing --simulate --replay-day`).

From the queue log (engine/cdr/queue_log.py), pure functions:
- `recorded_calls`: one RecordedCall per ENTER: its queue, when, how it left the queue (CONNECT,
  ABANDON, TIMEOUT/OVERFLOW) after how long, and its handle time: talk + hold of COMPLETE_* or
  TRANSFER plus the agent's WRAP_UP (matched by call, else the agent's next after the call).
- `kaplan_meier`: callers' patience. An abandon observes it; a caller answered (or timed out,
  overflowed) after waiting w only tells that it exceeded w: a right-censored observation. The
  mean of the abandons' waits would be biased low (the patient ones were answered first), so the
  survival curve P(patience > t) is the Kaplan-Meier product over the censored waits. Past the
  last abandon the curve says nothing; there it goes on exponentially, at the day's abandons per
  second of waiting (the maximum-likelihood rate of exponential patience, Erlang A's estimator).
- `replay_plan`: every call of the day with a patience and a handle time. A caller who abandoned
  keeps its own; the others draw theirs from the curve *given that it exceeded their wait*
  (inverse transform of S(t) / S(wait)); a call without a recorded handle time draws one of its
  queue's (else the day's). Agents ring for the day's mean ring time of answered calls.
- `recorded_roster`: who was Available when, from LOGIN / STATUS / LOGOUT (with the ACD file's
  skills and tiers, or as generalists serving every queue); `uniform_roster` (N generalists
  through the day's `opening_hours`) and `load_roster` (a staffing file) give the what-if ones.

`replay` plays the plan through RouterDriver on the virtual clock; `recorded_figures` counts the
day as it happened with the same formulas (engine.acd.whatif.figures). What the replay does not
reproduce: an agent who let a call ring out (agents here always answer), queue time-outs and
overflows (their callers wait as their patience says), and wrap-up as configured: the recorded
wrap-up is part of each call's handle time instead, so configured wrap-up times are set to 0.
Transfers keep their recorded times: the target queue's ENTER is an arrival of its own. One run
is one draw of the unknown patiences and handle times: --seed gives another.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import operator
import random
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

import gevent
import psycopg

from engine.acd.model import Agent, AgentStatus, Queue, Tier
from engine.acd.routing import Router
from engine.acd.whatif import QUEUE_VARIABLE, CallOutcome, RouterDriver, WhatIfReport, figures
from engine.cdr.queue_log import AGENT_STATE_EVENTS, QueueEvent, QueueEventKind
from engine.errors import CallRouterError
from engine.simulator.clock import VirtualClock
from engine.simulator.population import Caller, PlannedCall
from engine.simulator.runner import Simulation
from engine.simulator.scenario import AgentSpec, CallerKind, Fixed, NodeSpec, Scenario
from engine.yamlfile import Value, load_node

ANSWERED, ABANDONED, LEFT, OPEN = "answered", "abandoned", "left", "open"
_LEFT_EVENTS = frozenset({QueueEventKind.TIMEOUT.value, QueueEventKind.OVERFLOW.value})
_END_EVENTS = frozenset({QueueEventKind.COMPLETE_CALLER.value, QueueEventKind.COMPLETE_AGENT.value,
                         QueueEventKind.TRANSFER.value})
NODE = "replay"
TOP_LEVEL = 10  # a generalist agent's level in every skill the queues require


class ReplayError(CallRouterError):
    """The recorded day cannot be replayed as asked (nothing recorded, nobody to staff it)."""


# --------------------------------------------------------------------------- the recorded calls
@dataclass(frozen=True)
class RecordedCall:
    call_uuid: str
    queue: str
    entered_at: float              # epoch seconds
    caller_id_number: str
    outcome: str                   # ANSWERED, ABANDONED, LEFT (timeout, overflow) or OPEN (no end logged)
    wait: float | None = None      # seconds in the queue until answered or gone
    handle: float | None = None    # talk + hold + wrap-up, when the log holds the call's end
    ring: float | None = None      # how long the agent who answered rang
    agent: str = ""

    @property
    def answered_at(self) -> float | None:
        return self.entered_at + self.wait if self.outcome == ANSWERED and self.wait is not None else None


@dataclass
class _Building:
    call: RecordedCall
    talk: float | None = None
    wrap_up: float = 0.0

    def done(self) -> RecordedCall:
        handle = None if self.talk is None else self.talk + self.wrap_up
        return dataclasses.replace(self.call, handle=handle)


def recorded_calls(events: Iterable[QueueEvent], since: datetime, until: datetime) -> list[RecordedCall]:
    """The calls that entered a queue in [since, until), in order of entry, from their events (which
    may end after `until`). A call entering the same queue twice counts twice."""
    ordered = sorted(events, key=lambda e: (e.time, e.event != QueueEventKind.ENTER.value))
    agent_states = {k.value for k in AGENT_STATE_EVENTS}
    open_calls: dict[tuple[str, str], _Building] = {}   # (call, queue) -> its latest entry
    unwrapped: dict[str, _Building] = {}                 # agent -> its last call ended, awaiting WRAP_UP
    built: list[_Building] = []
    for e in ordered:
        if e.event in agent_states:
            continue
        if e.event == QueueEventKind.ENTER.value:
            if since <= e.time < until and e.call_uuid:
                open_calls[(e.call_uuid, e.queue)] = entry = _Building(
                    RecordedCall(e.call_uuid, e.queue, e.time.timestamp(), e.caller_id_number, OPEN))
                built.append(entry)
            continue
        if e.event == QueueEventKind.WRAP_UP.value:
            entry = open_calls.get((e.call_uuid, e.queue)) if e.call_uuid else unwrapped.pop(e.agent, None)
            if entry is not None:
                entry.wrap_up += e.wrap_up_seconds or 0.0
                unwrapped.pop(e.agent, None)
            continue
        entry = open_calls.get((e.call_uuid, e.queue))
        if entry is None:
            continue
        call = entry.call
        if e.event == QueueEventKind.CONNECT.value and call.outcome == OPEN:
            entry.call = dataclasses.replace(call, outcome=ANSWERED, wait=e.wait_seconds, ring=e.ring_seconds,
                                             agent=e.agent)
        elif e.event == QueueEventKind.ABANDON.value and call.outcome == OPEN:
            entry.call = dataclasses.replace(call, outcome=ABANDONED, wait=e.wait_seconds)
        elif e.event in _LEFT_EVENTS and call.outcome == OPEN:
            entry.call = dataclasses.replace(call, outcome=LEFT, wait=e.wait_seconds)
        elif e.event in _END_EVENTS and call.outcome == ANSWERED and entry.talk is None:
            entry.talk = (e.talk_seconds or 0.0) + (e.hold_seconds or 0.0)
            unwrapped[e.agent or call.agent] = entry
    return [entry.done() for entry in built]


# --------------------------------------------------------------------------- patience
@dataclass(frozen=True)
class PatienceCurve:
    """P(patience > t): Kaplan-Meier steps at the abandon times, then an exponential tail."""

    times: tuple[float, ...]       # distinct waits after which someone abandoned, ascending
    survival: tuple[float, ...]    # P(patience > times[i])
    tail_rate: float               # per second, past the last step; 0: nobody abandoned, patience unbounded
    abandons: int
    censored: int

    def survival_at(self, t: float) -> float:
        i = bisect_right(self.times, t)
        if i < len(self.times):
            return self.survival[i - 1] if i else 1.0
        last_time, last = self._last_step()
        return last * math.exp(-self.tail_rate * (t - last_time))

    def quantile(self, share_left: float) -> float:
        """The shortest patience t with P(patience > t) <= share_left (inf: patience never ends)."""
        return self._first_below(share_left, after=-math.inf)

    def draw_beyond(self, waited: float, rng: random.Random) -> float:
        """A patience drawn from the curve given that it exceeded `waited` (inverse transform)."""
        return self._first_below(self.survival_at(waited) * (1.0 - rng.random()), after=waited)

    def _first_below(self, share_left: float, after: float) -> float:
        i = bisect_left(self.survival, -share_left, lo=bisect_right(self.times, after), key=operator.neg)
        if i < len(self.times):
            return self.times[i]
        if self.tail_rate <= 0:
            return math.inf
        last_time, last = self._last_step()
        return last_time + math.log(last / share_left) / self.tail_rate

    def _last_step(self) -> tuple[float, float]:
        return (self.times[-1], self.survival[-1]) if self.times else (0.0, 1.0)


def kaplan_meier(observations: Iterable[tuple[float, bool]]) -> PatienceCurve:
    """The patience curve of (wait, abandoned) pairs: abandoned=False is a censored wait (the
    caller was still there then). At a tie an abandon comes first: a caller censored at t was at
    risk at t."""
    obs = sorted(observations, key=lambda o: (o[0], not o[1]))
    at_risk = len(obs)
    survival, times, curve = 1.0, [], []
    abandons = sum(1 for _, abandoned in obs if abandoned)
    i = 0
    while i < len(obs):
        t = obs[i][0]
        gone = dead = 0
        while i < len(obs) and obs[i][0] == t:
            dead += obs[i][1]
            gone += 1
            i += 1
        if dead:
            survival *= 1.0 - dead / at_risk
            times.append(t)
            curve.append(survival)
        at_risk -= gone
    exposure = sum(w for w, _ in obs)
    rate = abandons / exposure if abandons and exposure > 0 else 0.0
    return PatienceCurve(tuple(times), tuple(curve), rate, abandons, len(obs) - abandons)


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Arrival:
    at: float                      # epoch seconds
    queue: str
    patience: float                # seconds; inf: never gives up
    handle: float
    caller_id_number: str = ""


@dataclass(frozen=True)
class ReplayPlan:
    arrivals: tuple[Arrival, ...]  # in order of arrival
    patience: PatienceCurve
    ring_seconds: float            # how long agents ring before they answer
    patience_drawn: int            # callers whose patience came from the curve
    handles_drawn: int             # calls whose handle time came from the others'


def replay_plan(calls: Sequence[RecordedCall], *, seed: int) -> ReplayPlan:
    """Every recorded call as an arrival with a patience and a handle time (see the module docstring)."""
    curve = kaplan_meier((max(0.0, c.wait), c.outcome == ABANDONED) for c in calls if c.wait is not None)
    handles: dict[str, list[float]] = {}
    for c in calls:
        if c.handle is not None:
            handles.setdefault(c.queue, []).append(c.handle)
    day = [h for hs in handles.values() for h in hs]
    if calls and not day:
        raise ReplayError("no call of that day has a recorded handle time (no COMPLETE_* or TRANSFER in the "
                          "queue log): there is nothing to size the agents' work with")
    rings = [c.ring for c in calls if c.outcome == ANSWERED and c.ring is not None]
    rng = random.Random(seed)
    arrivals, patience_drawn, handles_drawn = [], 0, 0
    for c in calls:
        if c.outcome == ABANDONED and c.wait is not None:
            patience = c.wait
        else:
            patience = curve.draw_beyond(max(0.0, c.wait or 0.0), rng)
            patience_drawn += 1
        handle = c.handle
        if handle is None:
            handle = rng.choice(handles.get(c.queue) or day)
            handles_drawn += 1
        arrivals.append(Arrival(c.entered_at, c.queue, patience, handle, c.caller_id_number))
    return ReplayPlan(tuple(arrivals), curve, sum(rings) / len(rings) if rings else 0.0, patience_drawn,
                      handles_drawn)


# --------------------------------------------------------------------------- staffing
@dataclass(frozen=True)
class StatusChange:
    at: float                      # epoch seconds
    agent: str
    status: AgentStatus


@dataclass(frozen=True)
class Roster:
    """Who staffs the replay: the agents with their skills, their tiers, and when each is Available
    (every agent is Logged Out until its first change)."""

    agents: tuple[Agent, ...]
    tiers: tuple[Tier, ...]
    changes: tuple[StatusChange, ...]  # ascending by time
    source: str

    def available_seconds(self, since: float, until: float) -> dict[str, float]:
        """Per agent, the seconds of [since, until) it spent in a status that takes calls."""
        seconds = {a.id: 0.0 for a in self.agents}
        from_: dict[str, float] = {}
        for change in self.changes:
            start = from_.pop(change.agent, None)
            if start is not None:
                seconds[change.agent] += max(0.0, min(change.at, until) - max(start, since))
            if change.status.takes_calls:
                from_[change.agent] = change.at
        for agent, start in from_.items():
            seconds[agent] += max(0.0, until - max(start, since))
        return seconds

    def serving(self) -> dict[str, set[str]]:
        served: dict[str, set[str]] = {}
        for tier in self.tiers:
            served.setdefault(tier.queue, set()).add(tier.agent)
        return served


def generalist(agent_id: str, queues: Sequence[Queue]) -> tuple[Agent, tuple[Tier, ...]]:
    """An agent who can take every call of `queues`: every skill they require, at the top level."""
    skills = {skill: TOP_LEVEL for q in queues for skill in q.skills}
    return Agent(agent_id, skills=skills), tuple(Tier(agent_id, q.name) for q in queues)


def recorded_roster(events: Iterable[QueueEvent], since: datetime, until: datetime, queues: Sequence[Queue],
                    configured: Sequence[Agent] = (), configured_tiers: Sequence[Tier] = ()) -> Roster:
    """The staffing the queue log shows: each agent's status at `since` (its last LOGIN / STATUS /
    LOGOUT before) and its changes until `until`. An agent the ACD configuration names keeps its
    skills and tiers; any other serves every queue as a generalist."""
    kinds = {k.value for k in AGENT_STATE_EVENTS}
    ordered = sorted((e for e in events if e.event in kinds and e.agent and e.time < until), key=lambda e: e.time)
    before: dict[str, StatusChange] = {}
    during: list[StatusChange] = []
    for e in ordered:
        status = (AgentStatus.LOGGED_OUT if e.event == QueueEventKind.LOGOUT.value
                  else _status(e.status or AgentStatus.AVAILABLE.value))
        if e.time < since:
            before[e.agent] = StatusChange(since.timestamp(), e.agent, status)
        else:
            during.append(StatusChange(e.time.timestamp(), e.agent, status))
    names = sorted({c.agent for c in (*before.values(), *during)})
    known = {a.id: a for a in configured}
    names_of_queues = {q.name for q in queues}
    agents, tiers = [], []
    for name in names:
        if name in known:
            agents.append(known[name])
            tiers.extend(t for t in configured_tiers if t.agent == name and t.queue in names_of_queues)
        else:
            agent, own = generalist(name, queues)
            agents.append(agent)
            tiers.extend(own)
    return Roster(tuple(agents), tuple(tiers), tuple(sorted(before.values(), key=lambda c: c.agent)) + tuple(during),
                  "recorded")


def _status(name: str) -> AgentStatus:
    try:
        return AgentStatus(name)
    except ValueError:
        return AgentStatus.ON_BREAK  # a status the engine no longer knows: not taking calls


def uniform_roster(agents: int, queues: Sequence[Queue], since: float, until: float) -> Roster:
    """`agents` generalists Available from `since` to `until`."""
    built = [generalist(f"agent-{i}", queues) for i in range(1, agents + 1)]
    changes = [StatusChange(at, a.id, status) for at, status in ((since, AgentStatus.AVAILABLE),
                                                                  (until, AgentStatus.LOGGED_OUT)) for a, _ in built]
    return Roster(tuple(a for a, _ in built), tuple(t for _, own in built for t in own), tuple(changes),
                  f"{agents} agents")


def opening_hours(recorded: Roster, calls: Sequence[RecordedCall], since: float, until: float) -> tuple[float, float]:
    """When the centre took calls that day: from the first agent Available to the last one leaving
    as recorded, else from the first call to the end of the last one's handling."""
    on = [c.at for c in recorded.changes if c.status.takes_calls]
    if on:
        last = {c.agent: c for c in recorded.changes}
        still_on = any(c.status.takes_calls for c in last.values())
        return max(since, min(on)), until if still_on else min(until, max(c.at for c in last.values()))
    ends = [c.entered_at + (c.wait or 0.0) + (c.handle or 0.0) for c in calls]
    return min(c.entered_at for c in calls), min(until, max(ends))


def load_roster(path: str | Path, day: date, zone: ZoneInfo, queues: Sequence[Queue]) -> Roster:
    """A staffing file: agent groups (skills, and the queues they serve with a tier level) and how
    many of each group are Available in each interval of the day (local time in `zone`):

        groups:
          general: {queues: [sales, support]}
          tech: {skills: {tech: 8}, queues: {support: 1, sales: 2}}   # queue: tier level
        intervals:
          - {from: "08:00", to: "12:00", agents: {general: 3, tech: 2}}
          - {from: "12:00", to: "24:00", agents: {general: 2, tech: 2}}

    The agents of a group are <group>-1, <group>-2, ...; intervals must not overlap. A group that
    names no queues serves all of `queues` (the queues a group may name).
    """
    root = load_node(path)
    top = root.fields(required=("groups", "intervals"))
    known = [q.name for q in queues]
    groups: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    for name, spec in top["groups"].mapping().items():
        f = spec.fields(optional=("skills", "queues"))
        skills = {s: v.integer(minimum=1, maximum=10) for s, v in f["skills"].mapping().items()} if "skills" in f else {}
        groups[name] = (skills, _group_queues(f["queues"], known) if "queues" in f else dict.fromkeys(known, 1))
    if not groups:
        raise top["groups"].error(f"{top['groups'].path} names no group of agents")
    windows: list[tuple[int, int, dict[str, int], Value]] = []
    for item in top["intervals"].sequence():
        f = item.fields(required=("from", "to", "agents"))
        start, end = f["from"].time_of_day(), _end_of_interval(f["to"])
        if end <= start:
            raise f["to"].error(f"{f['to'].path} must be later than from")
        counts = {}
        for group, count in f["agents"].mapping().items():
            if group not in groups:
                raise count.error(f"{count.path}: no group '{group}' under groups: ({', '.join(groups)})")
            counts[group] = count.integer(minimum=0)
        windows.append((start, end, counts, item))
    windows.sort(key=lambda w: w[0])
    for (_, end, _, _), (start, _, _, item) in itertools.pairwise(windows):
        if start < end:
            raise item.error(f"{item.path} overlaps the interval before it")
    midnight = datetime.combine(day, time())

    def at(seconds: int) -> float:  # wall-clock time of the day, whatever DST does that day
        return (midnight + timedelta(seconds=seconds)).replace(tzinfo=zone).timestamp()

    agents, tiers, changes = [], [], []
    for group, (skills, served) in groups.items():
        for n in range(1, max((w[2].get(group, 0) for w in windows), default=0) + 1):
            agent_id = f"{group}-{n}"
            agents.append(Agent(agent_id, skills=dict(skills)))
            tiers.extend(Tier(agent_id, queue, level) for queue, level in served.items())
            spans: list[list[int]] = []
            for start, end, counts, _ in windows:
                if counts.get(group, 0) < n:
                    continue
                if spans and spans[-1][1] == start:
                    spans[-1][1] = end  # on from one interval into the next: stays logged in
                else:
                    spans.append([start, end])
            for start, end in spans:
                changes += [StatusChange(at(start), agent_id, AgentStatus.AVAILABLE),
                            StatusChange(at(end), agent_id, AgentStatus.LOGGED_OUT)]
    return Roster(tuple(agents), tuple(tiers), tuple(sorted(changes, key=lambda c: c.at)), str(path))


def _group_queues(value: Value, known: list[str]) -> dict[str, int]:
    if value.is_mapping():
        served = {name: level.integer(minimum=1) for name, level in value.mapping().items()}
    else:
        served = dict.fromkeys((v.text() for v in value.sequence()), 1)
    unknown = sorted(set(served) - set(known))
    if unknown:
        raise value.error(f"{value.path}: no queue {', '.join(unknown)} (queues: {', '.join(known)})")
    return served


def _end_of_interval(value: Value) -> int:
    return 86400 if value.text() == "24:00" else value.time_of_day()


# --------------------------------------------------------------------------- the runs
class _ReplayedCaller(Caller):
    """A recorded caller: gives up after its own patience and, once an agent has it, the
    conversation lasts its own handle time, whatever the agent's softphone would have drawn."""

    def hang_up_after(self, seconds: float) -> None:
        super().hang_up_after(self.call.kind.talk.draw(self.rng))


def replay(plan: ReplayPlan, roster: Roster, queues: Sequence[Queue], *, since: float, until: float,
           answer_within: float, seed: int) -> WhatIfReport:
    """Play the plan with the roster through the Router on a virtual clock; figures over [since, until)."""
    clock = VirtualClock(start=since)
    ids = tuple(a.id for a in roster.agents)
    scenario = Scenario(
        source="<replay>", seed=seed, duration=until - since, start_time=0, nodes=(NodeSpec(NODE, 0),),
        park_variables=(), inbound=None, outbound=None,
        agents=(AgentSpec(ids=ids, node=NODE, ring=Fixed(plan.ring_seconds), answer_probability=1.0,
                          busy_probability=0.0, talk=Fixed(0.0), hangup_share=0.0),) if ids else ())
    sim = Simulation(scenario, clock=clock, serve=False, seed=seed)
    # The recorded handle times include the wrap-up: none is added on top.
    names = {q.name for q in queues}
    router = Router([dataclasses.replace(q, wrap_up_time=0.0) for q in queues],
                    [dataclasses.replace(a, wrap_up_time=0.0) for a in roster.agents],
                    [t for t in roster.tiers if t.queue in names], seed=seed)
    driver = RouterDriver(sim, router, lambda event: event.get(f"variable_{QUEUE_VARIABLE}") or "")
    driver.start()
    sim.start()
    rng = random.Random(seed)
    switch = sim.nodes[NODE].switch

    def place(arrival: Arrival) -> None:
        number = arrival.caller_id_number or "anonymous"
        kind = CallerKind("replayed", 1.0, (), Fixed(0.0), Fixed(arrival.patience), Fixed(arrival.handle))
        caller = _ReplayedCaller(PlannedCall(arrival.at - since, NODE, number, number, arrival.queue, kind,
                                             rng.getrandbits(64)), clock, sim.recorder)
        leg = switch.inbound_call(caller, number, number, arrival.queue, {QUEUE_VARIABLE: arrival.queue})
        caller.arrived(leg, clock.now())

    def play() -> None:
        # status changes before arrivals at the same moment: an agent logged in at 09:00 takes a 09:00 call
        steps = sorted([(c.at, 0, i) for i, c in enumerate(roster.changes)]
                       + [(a.at, 1, i) for i, a in enumerate(plan.arrivals)])
        for at, kind, i in steps:
            clock.sleep(at - clock.now())
            if kind == 0:
                driver.set_status(roster.changes[i].agent, roster.changes[i].status)
            else:
                place(plan.arrivals[i])

    player = gevent.spawn(play)
    driver.run(until)
    player.kill()
    report = driver.report(answer_within, since, until, roster.available_seconds(since, until))
    sim.stop()
    return report


def recorded_figures(calls: Sequence[RecordedCall], roster: Roster, queues: Sequence[Queue], *, since: float,
                     until: float, answer_within: float) -> WhatIfReport:
    """The day as it happened, counted as `replay` counts its run."""
    outcomes = []
    for c in calls:
        answered = c.answered_at
        left = c.entered_at + c.wait if c.outcome in (ABANDONED, LEFT) and c.wait is not None else None
        outcomes.append(CallOutcome(c.call_uuid, c.queue, c.entered_at, answered, left, c.agent,
                                    answered + c.handle if answered is not None and c.handle is not None else None))
    return figures(outcomes, since=since, until=until, answer_within=answer_within,
                   queue_within={q.name: q.service_level_seconds for q in queues},
                   staffed=roster.available_seconds(since, until), serving=roster.serving())


def queues_of_day(calls: Sequence[RecordedCall], configured: Sequence[Queue], answer_within: float) -> list[Queue]:
    """The queues the day's calls entered: as configured, else with default settings and T = answer_within."""
    known = {q.name: q for q in configured}
    return [known.get(name) or Queue(name, service_level_seconds=answer_within)
            for name in sorted({c.queue for c in calls})]


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """Local midnight to the next local midnight (23 or 25 hours on a DST change)."""
    start = datetime.combine(day, time(), zone)
    return start, datetime.combine(day + timedelta(days=1), time(), zone)


def read_queue_log(conn: psycopg.Connection, since: datetime, until: datetime) -> list[QueueEvent]:
    """The queue log rows a replay of [since, until) needs: every event of the calls that entered a
    queue then (to their end, however late), agent-less WRAP_UPs up to a day later, and each
    agent's last status change before `since` with those until `until`."""
    columns = [f.name for f in dataclasses.fields(QueueEvent)]
    query = f"""
        SELECT {', '.join(columns)} FROM queue_log
        WHERE time >= %(since)s AND (
              call_uuid IN (SELECT call_uuid FROM queue_log
                            WHERE event = 'ENTER' AND time >= %(since)s AND time < %(until)s AND call_uuid <> '')
              OR (event = 'WRAP_UP' AND call_uuid = '' AND time < %(until)s + interval '1 day')
              OR (event IN ('LOGIN', 'LOGOUT', 'STATUS') AND time < %(until)s))
        UNION ALL
        SELECT {', '.join(columns)} FROM (
            SELECT DISTINCT ON (agent) * FROM queue_log
            WHERE event IN ('LOGIN', 'LOGOUT', 'STATUS') AND agent <> '' AND time < %(since)s
            ORDER BY agent, time DESC, event_id DESC) AS latest"""
    with conn.cursor() as cur:
        cur.execute(query, {"since": since, "until": until})
        return [QueueEvent(**dict(zip(columns, row))) for row in cur.fetchall()]
