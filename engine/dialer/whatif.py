"""What-if runs of the dialer: the real pacing (and, for a campaign, the real selection, dial
check and retry rules) driving the simulated switch in-process on a virtual clock.

`DialerDriver` is the smallest live layer: it asks the pacing how many calls to place, originates
them through the simulated carrier gateway (commands built by engine.esl.commands), waits for the
AMD result the far end leaves on the leg, connects a live answer to a free simulated agent (originate
user/<agent>, uuid_bridge) or, when none is free within 2 s of the greeting's end, plays the
abandon message and hangs up. Contacts come from a `ContactSource`: an endless list for sizing
(`simulate`), or a `CampaignSource` that runs a real campaign's rules to completion.
"""
from __future__ import annotations

import array
import collections
import dataclasses
import itertools
import random
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo
from typing import NamedTuple, Protocol

import gevent
import gevent.event

from engine.dialer import pacing
from engine.dialer.compliance import DialHistory, abandon_periods, is_abandoned, period_of, refuse_dial, utc
from engine.dialer.model import (
    ABANDON_GRACE_SECONDS, CAUSE_DISPOSITIONS, AbandonRule, Attempt, Campaign, Contact, ContactState, Disposition, Mode,
)
from engine.dialer.selection import after_attempt, next_contacts
from engine.esl import commands
from engine.simulator.channel import wait_for
from engine.simulator.clock import VirtualClock
from engine.simulator.events import SimEvent
from engine.simulator.runner import Simulation
from engine.simulator.truth import TruthRecorder
from engine.simulator.scenario import (
    AgentSpec, DestinationSpec, Exponential, Fixed, NodeSpec, OutboundSpec, Scenario, Uniform,
)

MODES = ("predictive", "progressive", "ratio", "adaptive")
GATEWAY = "carrier"
AMD_RESULTS = ("HUMAN", "MACHINE", "NOTSURE")
ADAPT_INTERVAL = 15.0
TICK = 30.0
MESSAGE = "ivr/abandon-message.wav"
MESSAGE_SECONDS = 8.0


class ContactSource(Protocol):
    def take(self, count: int, now: datetime) -> list[tuple[int, str]]:
        """Up to `count` (contact id, E.164) to dial now, already checked right before dialling."""

    def finished(self, contact_id: int, disposition: str, now: datetime) -> None: ...


class EndlessSource:
    """Fresh numbers for ever: sizing a campaign, not running one."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def take(self, count: int, now: datetime) -> list[tuple[int, str]]:
        return [(i, f"+1212{5550000 + i % 10_000_000:07d}") for i in itertools.islice(self._ids, count)]

    def finished(self, contact_id: int, disposition: str, now: datetime) -> None:
        pass


class CampaignSource:
    """An in-memory campaign: selection, the last-moment dial check and the retry rules, as live."""

    def __init__(self, campaign: Campaign, contacts: list[Contact], dnc: set[str]) -> None:
        self.campaign = campaign
        self.contacts = {c.id: c for c in contacts}
        self.dnc = dnc
        self.dialled: dict[int, list[datetime]] = collections.defaultdict(list)
        self.abandoned_at: dict[int, datetime] = {}
        self.refused: list[tuple[int, str]] = []

    def history(self, contact: Contact, now: datetime) -> DialHistory:
        zone = ZoneInfo(contact.timezones[0])
        today = now.astimezone(zone).date()
        return DialHistory(sum(1 for t in self.dialled[contact.id] if t.astimezone(zone).date() == today),
                           self.abandoned_at.get(contact.id))

    def take(self, count: int, now: datetime) -> list[tuple[int, str]]:
        histories = {c.id: self.history(c, now) for c in self.contacts.values()}
        chosen = []
        for contact in next_contacts(self.campaign, self.contacts.values(), now, count, history=histories):
            reason = refuse_dial(self.campaign, contact, now, contact.phone in self.dnc, histories[contact.id])
            if reason:
                self.refused.append((contact.id, reason))
                if contact.phone in self.dnc:
                    self.contacts[contact.id] = dataclasses.replace(contact, state=ContactState.DNC)
                continue
            self.contacts[contact.id].state = ContactState.DIALING
            self.dialled[contact.id].append(now)
            chosen.append((contact.id, contact.phone))
        return chosen

    def finished(self, contact_id: int, disposition: str, now: datetime) -> None:
        if disposition == Disposition.ABANDONED.value:
            self.abandoned_at[contact_id] = now
        self.contacts[contact_id] = after_attempt(self.campaign, self.contacts[contact_id], disposition, now)

    def exhausted(self, now: datetime) -> bool:
        return all(c.state not in (ContactState.NEW, ContactState.RETRY, ContactState.DIALING)
                   for c in self.contacts.values())


@dataclass(frozen=True)
class WhatIfReport:
    mode: str
    agents: int
    hours: float
    attempts: int
    live_answers: int
    abandoned: int
    occupancy: float
    abandon_rate: float
    worst_period_abandon_rate: float
    calls_per_agent_hour: float
    periods: int

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class _Answered(NamedTuple):
    """What abandon_periods reads of an answered attempt."""
    answered_at: datetime
    amd_result: str
    abandoned: bool


# An answered attempt's (amd_result, abandoned), stored as its index: a 720-hour run answers half a
# million calls, kept as 9 bytes each out of the garbage collector's sight (as objects, every full
# collection walked them all and the run slowed down as it went).
_OUTCOMES = tuple((amd, abandoned) for amd in (*AMD_RESULTS, "") for abandoned in (False, True))


@dataclass
class _AgentSlot:
    id: str
    state: str = pacing.IDLE
    since: float = 0.0
    ready_at: float = 0.0


@dataclass
class Waiting:
    uuid: str
    deadline: float
    agent: str | None = None
    event: gevent.event.Event = field(default_factory=gevent.event.Event)


class DialerDriver:
    def __init__(self, sim: Simulation, source: ContactSource, *, mode: str, agents: list[str], campaign: Campaign,
                 wrap_up: float = 0.0, ratio: float = 2.0, delta: float = 0.05, amd_false_positive_rate: float = 0.0,
                 keep_decisions: bool = False, keep_attempts: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.sim = sim
        self.switch = next(iter(sim.nodes.values())).switch
        self.clock = sim.clock
        self.source = source
        self.mode = mode
        self.campaign = campaign
        self.wrap_up = wrap_up
        self.ratio = ratio
        self.delta = delta
        self.amd_fp = amd_false_positive_rate
        self.agents = {a: _AgentSlot(a) for a in agents}
        self.started = self.clock.now()
        # Every finished Attempt, unless a sizing run of hundreds of hours only wants the figures:
        # those come from the counters and the answered attempts' period figures below.
        self.attempts: list[Attempt] | None = [] if keep_attempts else None
        self._answered_at = array.array("d")
        self._answered_outcome = bytearray()
        self._finished_abandoned = self._finished_connected = 0
        self.decisions: list[pacing.PacingDecision] | None = [] if keep_decisions else None
        self.in_flight = 0
        self.resolved = 0
        self.live = 0
        self.handle_total = self.handle_count = 0.0
        self.delay_total = 0.0
        self.busy_seconds = 0.0
        self._recent_live: collections.deque[float] = collections.deque()
        self._waiting: list[Waiting] = []
        self._agent_legs: dict[str, tuple[str, float]] = {}   # agent leg uuid -> (agent, connected at)
        self._parked: dict[str, gevent.event.Event] = {}      # agent leg uuid -> set once parked or gone
        self._rng = random.Random(sim.seed)
        self._level = pacing.DialLevel()
        self._dialing = True
        self._deciding = False

    # ------------------------------------------------------------------ running
    def start(self) -> None:
        self.switch.subscribe(self._on_event, ("CHANNEL_HANGUP", "CHANNEL_PARK"))
        if self.mode == "adaptive":
            self.clock.spawn_later(ADAPT_INTERVAL, self._adapt)
        self.clock.spawn_later(TICK, self._tick)
        self._decide()

    def _tick(self) -> None:
        """Retries fall due and calling windows open with no call event to say so."""
        if self._dialing:
            self._decide()
            self.clock.spawn_later(TICK, self._tick)

    def stop_dialing(self) -> None:
        self._dialing = False

    def _uuid(self) -> str:
        return str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def _views(self) -> tuple[pacing.AgentView, ...]:
        now = self.clock.now()
        return tuple(pacing.AgentView(a.state, now - a.since, max(0.0, a.ready_at - now)) for a in self.agents.values())

    def calls_to_place(self) -> int:
        views = self._views()
        if self.mode == "progressive":
            return pacing.progressive_calls(views, self.in_flight)
        if self.mode == "ratio":
            return pacing.ratio_calls(views, self.in_flight, self.ratio)
        if self.mode == "adaptive":
            return pacing.ratio_calls(views, self.in_flight, self._level.level)
        now = self.clock.now()
        while self._recent_live and self._recent_live[0] < now - 3600:
            self._recent_live.popleft()
        window = min(3600.0, max(1.0, now - self.started))
        live, abandoned, left = self._period_figures(now)
        decision = pacing.pace(pacing.PacingInputs(
            agents=views, in_flight=self.in_flight, attempts=self.resolved, live_answers=self.live,
            handle_time=self.handle_total / self.handle_count if self.handle_count else 0.0,
            handle_samples=int(self.handle_count),
            answer_delay=self.delay_total / self.live if self.live else 0.0,
            period_live_answers=live, period_abandoned=abandoned, period_seconds_left=left,
            live_answers_per_second=len(self._recent_live) / window, cap=self.campaign.abandon_cap,
            delta=self.delta))
        if self.decisions is not None:
            self.decisions.append(decision)
        return decision.calls

    def _decide(self) -> None:
        if not self._dialing or self._deciding:
            return
        self._deciding = True
        try:
            count = self.calls_to_place()
            if count:
                for contact_id, number in self.source.take(count, utc(self.clock.now())):
                    self.in_flight += 1
                    gevent.spawn(self._dial, contact_id, number)
        finally:
            self._deciding = False

    def _adapt(self) -> None:
        live, abandoned, _ = self._period_figures(self.clock.now())
        idle = sum(1 for a in self.agents.values() if a.state == pacing.IDLE)
        self._level = pacing.adapt_level(self._level, abandoned / live if live else 0.0, self.campaign.abandon_cap,
                                         idle / max(1, len(self.agents)))
        if self._dialing:
            self.clock.spawn_later(ADAPT_INTERVAL, self._adapt)
            self._decide()

    # period figures are recomputed from the attempts; cached per instant (many decisions per event burst)
    _period_cache: tuple[float, tuple[float, float, float]] | None = None

    def _period_figures(self, now: float) -> tuple[float, float, float]:
        if self._period_cache is None or self._period_cache[0] != now:
            self._period_cache = (now, self._fast_period(now))
        return self._period_cache[1]

    _live_in_period = 0.0
    _abandoned_in_period = 0.0
    _period_start: datetime | None = None

    def _fast_period(self, now: float) -> tuple[float, float, float]:
        start, end = period_of(self.campaign.abandon_rule, utc(self.started), utc(now))
        if start != self._period_start:
            self._period_start = start
            self._live_in_period = self._abandoned_in_period = 0.0
        return self._live_in_period, self._abandoned_in_period, (end - utc(now)).total_seconds()

    def _count_live(self, attempt: Attempt) -> None:
        start, _ = period_of(self.campaign.abandon_rule, utc(self.started), attempt.answered_at)
        if start == self._period_start:
            self._live_in_period += 1
            self._abandoned_in_period += attempt.abandoned
            self._period_cache = None

    # ------------------------------------------------------------------ one attempt
    def _dial(self, contact_id: int, number: str) -> None:
        leg = self._uuid()
        started = self.clock.now()
        attempt = Attempt(self.campaign.name, contact_id, number, leg, utc(started))
        reply = self.switch.api(commands.originate(
            f"sofia/gateway/{GATEWAY}/{number}",
            {"origination_uuid": leg, "originate_timeout": f"{self.campaign.ring_timeout:g}",
             "ignore_early_media": "true", "origination_caller_id_number": self.campaign.caller_id or "0"}))
        if not reply.startswith("+OK"):
            cause = reply.removeprefix("-ERR").strip()
            self._finish(attempt, CAUSE_DISPOSITIONS.get(cause, Disposition.NO_ANSWER).value)
            return
        attempt.answered_at = utc(self.clock.now())
        amd = self._amd(leg)
        attempt.amd_result = amd
        if amd != "HUMAN":
            self.switch.api(commands.kill(leg))
            self._finish(attempt, Disposition.MACHINE.value if amd == "MACHINE" else Disposition.NO_ANSWER.value)
            return
        greeting_end = self.clock.now()
        self.live += 1
        self.delay_total += greeting_end - started
        self._recent_live.append(greeting_end)
        agent = self._free_agent()
        if agent is None:
            waiting = Waiting(leg, greeting_end + ABANDON_GRACE_SECONDS)
            self._waiting.append(waiting)
            self.clock.spawn_later(ABANDON_GRACE_SECONDS, waiting.event.set)
            waiting.event.wait()
            if waiting in self._waiting:
                self._waiting.remove(waiting)
            agent = waiting.agent
        connected = self.clock.now() if agent is not None else None
        if is_abandoned(greeting_end, connected) or not self._connect(leg, agent):
            if agent is not None:
                self._agent_ready(agent)
            attempt.abandoned = True
            if self.switch.api(commands.broadcast(leg, MESSAGE)).startswith("+OK"):
                attempt.message_played = MESSAGE
                self.clock.sleep(MESSAGE_SECONDS)
            self.switch.api(commands.kill(leg))
            self._finish(attempt, Disposition.ABANDONED.value)
            return
        attempt.connected_at = utc(connected)
        attempt.agent = agent
        self._finish(attempt, Disposition.ANSWERED.value)

    def _amd(self, leg: str) -> str:
        """The AMD result the far end leaves on the leg once its greeting is over ("" if it hung up
        first). In-process the driver waits on the channel itself (Channel.detect wakes it) where
        the live runner polls uuid_getvar: each 0.25 s poll cost an api call and a clock wake-up."""
        channel = self.switch.channels.get(leg)
        if channel is None:
            return ""
        wake = gevent.event.Event()
        channel.watchers.add(wake)
        try:
            wait_for(self.clock, wake,
                     lambda: not channel.is_up or channel.variables.get("amd_result") in AMD_RESULTS, None)
        finally:
            channel.watchers.discard(wake)
        return channel.variables.get("amd_result", "") if channel.is_up else ""

    def _connect(self, leg: str, agent: str) -> bool:
        agent_leg = self._uuid()
        reply = self.switch.api(commands.originate(f"user/{agent}", {"origination_uuid": agent_leg}))
        if not reply.startswith("+OK"):
            return False
        self._agent_legs[agent_leg] = (agent, self.clock.now())
        # The simulated switch loses a uuid_bridge sent before the leg's &park() has started.
        parked = self._parked[agent_leg] = gevent.event.Event()
        parked.wait(timeout=5)
        if not self.switch.api(commands.uuid_bridge(agent_leg, leg)).startswith("+OK"):
            self.switch.api(commands.kill(agent_leg))
            return False
        return True

    def _finish(self, attempt: Attempt, disposition: str) -> None:
        attempt.disposition = disposition
        attempt.ended_at = utc(self.clock.now())
        if self.attempts is not None:
            self.attempts.append(attempt)
        if attempt.answered_at is not None:
            self._answered_at.append(attempt.answered_at.timestamp())
            self._answered_outcome.append(_OUTCOMES.index((attempt.amd_result, attempt.abandoned)))
        self._finished_abandoned += attempt.abandoned
        self._finished_connected += attempt.connected_at is not None
        if attempt.answered_at is not None and attempt.amd_result == "HUMAN":
            self._count_live(attempt)
        self.in_flight -= 1
        self.resolved += 1
        self.source.finished(attempt.contact_id, disposition, attempt.ended_at)
        self._decide()

    # ------------------------------------------------------------------ agents
    def _free_agent(self) -> str | None:
        for agent in self.agents.values():
            if agent.state == pacing.IDLE:
                agent.state, agent.since = pacing.TALKING, self.clock.now()
                return agent.id
        return None

    def _agent_ready(self, agent_id: str) -> None:
        now = self.clock.now()
        agent = self.agents[agent_id]
        if self._waiting:
            waiting = self._waiting.pop(0)
            waiting.agent = agent_id
            agent.state, agent.since = pacing.TALKING, now
            waiting.event.set()
            return
        agent.state, agent.since = pacing.IDLE, now
        self._decide()

    def _on_event(self, event: SimEvent) -> None:
        name = event.name
        if name != "CHANNEL_HANGUP" and name != "CHANNEL_PARK":
            return
        parked = self._parked.pop(event.unique_id or "", None)
        if parked is not None:
            parked.set()
        if name != "CHANNEL_HANGUP":
            return
        owner = self._agent_legs.pop(event.unique_id or "", None)
        if owner is None:
            return
        agent_id, connected = owner
        now = self.clock.now()
        agent = self.agents[agent_id]
        self.handle_total += now - connected + self.wrap_up
        self.handle_count += 1
        self.busy_seconds += now - max(connected, self.started)
        if self.wrap_up > 0:
            agent.state, agent.since, agent.ready_at = pacing.WRAP_UP, now, now + self.wrap_up
            self.clock.spawn_later(self.wrap_up, self._agent_ready, agent_id)
        else:
            self._agent_ready(agent_id)

    # ------------------------------------------------------------------ figures
    def report(self, until: float) -> WhatIfReport:
        hours = (until - self.started) / 3600
        busy = self.busy_seconds + sum(until - max(c, self.started) for _, c in self._agent_legs.values())
        answered = (_Answered(utc(at), *_OUTCOMES[outcome])
                    for at, outcome in zip(self._answered_at, self._answered_outcome))
        periods = abandon_periods(self.campaign.abandon_rule, answered, utc(self.started),
                                  cap=self.campaign.abandon_cap, amd_false_positive_rate=self.amd_fp)
        live = sum(1 for outcome in self._answered_outcome if _OUTCOMES[outcome][0] == "HUMAN")
        abandoned, connected = self._finished_abandoned, self._finished_connected
        staffed = len(self.agents) * hours
        return WhatIfReport(self.mode, len(self.agents), hours, self.resolved, live, abandoned,
                            busy / (staffed * 3600) if staffed else 0.0, abandoned / live if live else 0.0,
                            max((p.rate for p in periods), default=0.0), connected / staffed if staffed else 0.0,
                            len(periods))


def sizing_scenario(agents: int, answer_rate: float, aht: float, seed: int) -> Scenario:
    """Agents who answer at once and talk an exponential `aht`; destinations answered live with
    `answer_rate`, the rest split between no answer, busy, machines and invalid numbers."""
    rest = 1.0 - answer_rate
    outcomes = (("answer", answer_rate), ("no_answer", rest * 0.6), ("busy", rest * 0.15),
                ("machine", rest * 0.15), ("invalid", rest * 0.1))
    destination = DestinationSpec(match=re.compile("."), outcomes=outcomes,
                                  answer_delay=Uniform(3.0, 12.0), greeting=Uniform(0.8, 2.0),
                                  machine_greeting=Uniform(6.0, 15.0), patience=Uniform(3.0, 6.0),
                                  talk=Exponential(aht))
    return Scenario(source="<dialer sizing>", seed=seed, duration=None, start_time=9 * 3600,
                    nodes=(NodeSpec("sim1", 0),), park_variables=(), inbound=None,
                    agents=(AgentSpec(ids=tuple(str(2001 + i) for i in range(agents)), node="sim1", ring=Fixed(0.0),
                                      answer_probability=1.0, busy_probability=0.0, talk=Exponential(aht),
                                      hangup_share=1.0),),
                    outbound=OutboundSpec(GATEWAY, (destination,)))


def simulate(mode: str, *, agents: int, answer_rate: float, aht: float, hours: float, seed: int,
             wrap_up: float = 0.0, rule: AbandonRule = AbandonRule.TSR, ratio: float = 2.0, delta: float = 0.05,
             start: float = 1_800_000_000.0) -> WhatIfReport:
    """Size a campaign: `hours` of dialling fresh numbers with `agents` agents in `mode`."""
    scenario = sizing_scenario(agents, answer_rate, aht, seed)
    clock = VirtualClock(start=start)
    sim = Simulation(scenario, clock=clock, recorder=TruthRecorder(keep=False), serve=False, seed=seed)
    sim.start()
    campaign = Campaign("what-if", mode=Mode.PREDICTIVE,
                        gateway=GATEWAY, abandon_rule=rule)
    driver = DialerDriver(sim, EndlessSource(), mode=mode, agents=list(scenario.agents[0].ids), campaign=campaign,
                          wrap_up=wrap_up, ratio=ratio, delta=delta, keep_attempts=False)
    driver.start()
    until = start + hours * 3600
    clock.run_until(until)
    driver.stop_dialing()
    report = driver.report(until)
    sim.stop()
    return report
