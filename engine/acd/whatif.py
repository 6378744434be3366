"""What-if runs: the real Router driving the simulated switch in-process, on a virtual clock.

`RouterDriver` is the smallest engine around the Router: a call that parks joins the queue; an
offer rings the agent (originate user/<agent> with our own origination_uuid, in a greenlet) and,
once answered, is bridged to the caller (uuid_bridge); hangups end the call or the wait. Nothing
here decides anything: it reports to the Router and does what the Router says.

`mmc_scenario` builds an M/M/c scenario (Poisson arrivals, exponential handle times, agents who
answer at once) to check the engine against Erlang C/A; `run` plays any scenario and measures
service level, ASA, abandon rate and occupancy from what happened on the switch. `figures` is
that measure as a pure function of the calls' outcomes, so a recorded day (engine.acd.replay)
is counted exactly as its replay is.
"""
from __future__ import annotations

import dataclasses
import math
import random
import uuid as uuidlib
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import gevent
from gevent.event import Event

from engine.acd.config import AcdConfig
from engine.acd.model import Agent, AgentStatus, Member, Offer, Queue, Tier
from engine.acd.routing import Router
from engine.errors import ConfigError
from engine.simulator.clock import VirtualClock
from engine.simulator.events import SimEvent
from engine.simulator.runner import Simulation
from engine.simulator.scenario import (
    AgentSpec, CallerKind, Exponential, Fixed, InboundSpec, NodeSpec, PoissonArrivals, Scenario,
)
from engine.simulator.truth import TruthRecorder

RING_TIMEOUT = 20.0
QUEUE_VARIABLE = "callrouter_queue"  # a scenario's park_variables may name the queue calls join


@dataclass
class CallOutcome:
    uuid: str
    queue: str
    joined_at: float
    answered_at: float | None = None
    left_at: float | None = None        # the caller hung up (or, recorded, left the queue unanswered)
    agent: str = ""
    handled_until: float | None = None  # the agent's work on it ended


@dataclass(frozen=True)
class QueueFigures:
    offered: int
    answered: int
    abandoned: int              # left the queue without an agent
    service_level: float        # answered within T / offered
    asa_seconds: float          # mean wait of the answered calls
    abandon_rate: float
    occupancy: float | None     # handle time / Available time of the agents serving it (None: none were)

    @classmethod
    def of(cls, calls: list[CallOutcome], answer_within: float, occupancy: float | None) -> "QueueFigures":
        waits = [c.answered_at - c.joined_at for c in calls if c.answered_at is not None]
        abandoned = sum(1 for c in calls if c.answered_at is None and c.left_at is not None)
        offered = len(calls)
        return cls(offered, len(waits), abandoned,
                   sum(w <= answer_within for w in waits) / offered if offered else 0.0,
                   sum(waits) / len(waits) if waits else math.inf, abandoned / offered if offered else 0.0,
                   occupancy)


@dataclass(frozen=True)
class WhatIfReport:
    offered: int
    answered: int
    abandoned: int
    service_level: float
    asa_seconds: float
    abandon_rate: float
    occupancy: float | None     # agents' handle time / their Available time
    agents: int                 # agents Available at some point of the measured time
    queues: dict[str, QueueFigures]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def figures(calls: Iterable[CallOutcome], *, since: float, until: float, answer_within: float,
            queue_within: Mapping[str, float], staffed: Mapping[str, float],
            serving: Mapping[str, Iterable[str]]) -> WhatIfReport:
    """The figures of the calls that joined in [since, until): in all with `answer_within` as the
    service level's T, per queue with `queue_within`'s (default `answer_within`). Occupancy is the
    handle time inside [since, until) over `staffed` (agent -> seconds Available in it); a queue's
    is its own calls' handle time over the Available time of the agents `serving` it."""
    calls = list(calls)

    def handled(chosen: Iterable[CallOutcome]) -> float:
        return sum(max(0.0, min(c.handled_until, until) - max(c.answered_at, since)) for c in chosen
                   if c.answered_at is not None and c.handled_until is not None)

    def occupancy(work: float, agents: Iterable[str]) -> float | None:
        available = sum(staffed.get(a, 0.0) for a in set(agents))
        return work / available if available > 0 else None

    offered = [c for c in calls if since <= c.joined_at < until]
    total = QueueFigures.of(offered, answer_within, occupancy(handled(calls), staffed))
    names = sorted({c.queue for c in offered})
    return WhatIfReport(
        **dataclasses.asdict(total),
        agents=sum(1 for seconds in staffed.values() if seconds > 0),
        queues={name: QueueFigures.of([c for c in offered if c.queue == name], queue_within.get(name, answer_within),
                                      occupancy(handled(c for c in calls if c.queue == name),
                                                serving.get(name, ())))
                for name in names})


class RouterDriver:
    """Connects a Router to the switches of an in-process Simulation (see the module docstring)."""

    def __init__(self, sim: Simulation, router: Router, queue_for: Callable[[SimEvent], str]) -> None:
        self.sim = sim
        self.router = router
        self.clock = sim.clock
        self.queue_for = queue_for
        self.outcomes: dict[str, CallOutcome] = {}
        self._node_of: dict[str, str] = {}                  # caller uuid -> node
        self._legs: dict[tuple[str, str], str] = {}         # (caller uuid, agent) -> agent leg uuid
        self._leg_owner: dict[str, tuple[str, str]] = {}    # agent leg uuid -> (caller uuid, agent)
        self._leg_settled: dict[str, Event] = {}            # agent leg uuid -> set once parked or gone
        self._rng = random.Random(sim.seed)
        self._timer: gevent.Greenlet | None = None
        self._timer_at: float | None = None

    def start(self) -> None:
        for name, node in self.sim.nodes.items():
            node.switch.subscribe(lambda event, name=name: self._on_event(name, event))

    def set_status(self, agent_id: str, status: AgentStatus) -> None:
        """An agent logs in, out or takes a break now (a staffing plan's changes)."""
        self.router.set_status(agent_id, status, self.clock.now())
        self._dispatch()

    # ------------------------------------------------------------------ events from the switch
    def _on_event(self, node: str, event: SimEvent) -> None:
        uuid = event.unique_id or ""
        now = self.clock.now()
        if event.name in ("CHANNEL_PARK", "CHANNEL_HANGUP") and uuid in self._leg_settled:
            self._leg_settled.pop(uuid).set()
        if event.name == "CHANNEL_PARK" and uuid not in self._leg_owner and uuid not in self.outcomes:
            queue = self.queue_for(event)
            self._node_of[uuid] = node
            self.outcomes[uuid] = CallOutcome(uuid, queue, now)
            self.router.member_joined(Member(uuid, queue, joined_at=now,
                                             caller_id_number=event.get("Caller-Caller-ID-Number") or ""), now)
        elif event.name == "CHANNEL_HANGUP":
            if uuid in self.outcomes and self.outcomes[uuid].left_at is None:
                self.outcomes[uuid].left_at = now
                self._end_talk(uuid, now)
                for agent in self.router.member_left(uuid, now):
                    self._kill(uuid, agent)
            elif uuid in self._leg_owner:
                caller, agent = self._leg_owner.pop(uuid)
                self._legs.pop((caller, agent), None)
                member = self.router.members.get(caller)
                if member is None or member.agent != agent:
                    return  # a leg that rang and was stopped (ring-all): the call goes on elsewhere
                self._end_talk(caller, now)
                self.router.call_ended(caller, now)
            else:
                return
        else:
            return
        self._dispatch()

    def _end_talk(self, caller: str, now: float) -> None:
        outcome = self.outcomes.get(caller)
        if outcome is not None and outcome.answered_at is not None and outcome.handled_until is None:
            outcome.handled_until = now

    # ------------------------------------------------------------------ doing what the Router says
    def _dispatch(self) -> None:
        now = self.clock.now()
        for offer in self.router.assignments(now):
            gevent.spawn(self._ring, offer)
        wake = self.router.next_wakeup()
        if wake is not None and (self._timer_at is None or wake < self._timer_at):
            if self._timer is not None:
                self._timer.kill(block=False)
            self._timer_at = wake
            self._timer = self.clock.spawn_later(max(0.0, wake - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        self._dispatch()

    def _ring(self, offer: Offer) -> None:
        caller, agent_id = offer.call_uuid, offer.agent
        node = self._node_of[caller]
        switch = self.sim.nodes[node].switch
        agent = self.router.agents[agent_id]
        leg = str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))
        self._legs[(caller, agent_id)] = leg
        self._leg_owner[leg] = (caller, agent_id)
        settled = self._leg_settled[leg] = Event()
        contact = agent.contacts.get(node, f"user/{agent_id}")
        reply = switch.api(f"originate {{origination_uuid={leg},originate_timeout={RING_TIMEOUT:g},"
                           f"ignore_early_media=true}}{contact} &park()")
        now = self.clock.now()
        member = self.router.members.get(caller)
        if not reply.startswith("+OK"):
            self._leg_owner.pop(leg, None)
            self._leg_settled.pop(leg, None)
            self.router.offer_failed(caller, agent_id, reply.removeprefix("-ERR").strip() or "NO_ANSWER", now)
        elif member is None or agent_id not in member.offers:
            switch.api(f"uuid_kill {leg} ORIGINATOR_CANCEL")  # the caller left, or another agent won
        else:
            for other in self.router.offer_answered(caller, agent_id, now):
                self._kill(caller, other)
            self.outcomes[caller].answered_at = now
            self.outcomes[caller].agent = agent_id
            # The simulated switch loses a uuid_bridge sent before the leg's &park() has started
            # (its interrupt outlives the bridge); FreeSWITCH does not, but waiting costs nothing.
            settled.wait()
            if not switch.api(f"uuid_bridge {leg} {caller}").startswith("+OK"):
                switch.api(f"uuid_kill {leg}")  # the caller hung up meanwhile: free the agent's phone
        self._dispatch()

    def _kill(self, caller: str, agent_id: str) -> None:
        leg = self._legs.pop((caller, agent_id), None)
        if leg is not None:
            self.sim.nodes[self._node_of[caller]].switch.api(f"uuid_kill {leg} ORIGINATOR_CANCEL")

    # ------------------------------------------------------------------ results
    def run(self, until: float, drain_limit: float = 6 * 3600) -> None:
        """Run the clock to `until`, then on (up to `drain_limit` more) until every call is over."""
        self.clock.run_until(until)
        deadline = until + drain_limit
        while any(c.left_at is None for c in self.outcomes.values()) and self.clock.now() < deadline:
            self.clock.run_until(self.clock.now() + 600)

    def report(self, answer_within: float, since: float, until: float, staffed: Mapping[str, float]) -> WhatIfReport:
        """`figures` of this run, each queue with its own T and served by the agents of its tiers."""
        return figures(self.outcomes.values(), since=since, until=until, answer_within=answer_within,
                       queue_within={n: q.queue.service_level_seconds for n, q in self.router.queues.items()},
                       staffed=staffed, serving={n: self.router.tiers(n) for n in self.router.queues})


def mmc_scenario(calls_per_hour: float, aht: float, agents: int, hours: float, *, seed: int,
                 patience: float | None = None) -> Scenario:
    """Poisson arrivals, exponential handle times, agents who answer at once and end the call;
    callers wait (practically) forever unless a mean patience is given."""
    waiting = Exponential(patience) if patience is not None else Fixed(1e9)
    return Scenario(
        source="<M/M/c>", seed=seed, duration=hours * 3600, start_time=9 * 3600,
        nodes=(NodeSpec("sim1", 0),), park_variables=(),
        inbound=InboundSpec(arrivals=PoissonArrivals(calls_per_hour), numbers=("+1555XXXXXXX",), names=(),
                            dnis=(("100", 1.0),),
                            kinds=(CallerKind("caller", 1.0, (), Fixed(1.0), waiting, Fixed(aht)),),
                            nodes=("sim1",)),
        agents=(AgentSpec(ids=tuple(str(1000 + i) for i in range(1, agents + 1)), node="sim1", ring=Fixed(0.0),
                          answer_probability=1.0, busy_probability=0.0, talk=Exponential(aht), hangup_share=1.0),),
        outbound=None)


def with_agents(scenario: Scenario, agents: int) -> Scenario:
    """The scenario with `agents` agents, all behaving like its first group (the what-if staffing)."""
    if not scenario.agents:
        raise ConfigError(f"{scenario.source}: the scenario has no agents to take as a model for --agents")
    model = scenario.agents[0]
    first = model.ids[0]
    base = int(first) if first.isdigit() else 1000
    ids = tuple(str(base + i) for i in range(agents))
    return dataclasses.replace(scenario, agents=(dataclasses.replace(model, ids=ids),))


def run(scenario: Scenario, *, answer_within: float, acd: AcdConfig | None = None, seed: int | None = None,
        routes: Mapping[str, str] | None = None, start: float = 1_800_000_000.0,
        recorder: TruthRecorder | None = None) -> WhatIfReport:
    """Play the scenario with the Router in charge and report what the callers got (the
    simulator's ground truth of every call goes to `recorder`).

    A call joins the queue `routes` gives for its destination number, else the one its
    callrouter_queue channel variable names, else the first queue. Without an ACD configuration
    every agent of the scenario serves one longest-idle-agent queue.
    """
    clock = VirtualClock(start=start)
    sim = Simulation(scenario, clock=clock, serve=False, seed=seed, recorder=recorder)
    ids = [agent.user_id for agent in sim.population.agents]
    if acd is None:
        queue = Queue("default", service_level_seconds=answer_within)
        acd = AcdConfig((queue,), tuple(Agent(i) for i in ids), tuple(Tier(i, queue.name) for i in ids))
    if not acd.queues:
        raise ConfigError("the ACD configuration has no queue for the calls to join")
    router = Router(acd.queues, [dataclasses.replace(a) for a in acd.agents], acd.tiers, seed=sim.seed)
    default_queue = acd.queues[0].name
    routes = dict(routes or {})
    for number, queue_name in routes.items():
        if queue_name not in router.queues:
            raise ConfigError(f"route {number}={queue_name}: no queue '{queue_name}' in the ACD configuration")

    def queue_for(event: SimEvent) -> str:
        routed = routes.get(event.get("Caller-Destination-Number") or "")
        named = event.get(f"variable_{QUEUE_VARIABLE}")
        return routed or (named if named in router.queues else default_queue)

    driver = RouterDriver(sim, router, queue_for)
    driver.start()
    sim.start()
    # An agent with no phone in the scenario would only fail every offer: it stays logged out.
    staffed = [agent_id for agent_id in router.agents if agent_id in set(ids)]
    for agent_id in staffed:
        router.set_status(agent_id, AgentStatus.AVAILABLE, clock.now())
    duration = scenario.duration or 3600.0
    driver.run(start + duration)  # the plan places no call after `duration`; the calls in the system finish
    report = driver.report(answer_within, start, start + duration, dict.fromkeys(staffed, duration))
    sim.stop()
    return report
