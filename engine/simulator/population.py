"""The simulated people and trunks: callers, agents' softphones, outbound PSTN destinations.

Each is an Endpoint (engine.simulator.endpoint) acting on its Leg the way a SIP peer acts on a
FreeSWITCH channel; every wait goes through the clock and every choice through a seeded
random.Random, so a scenario and a seed always produce the same traffic. The call plan (when
each call arrives, from which number, what the caller will do) is drawn up front by
`arrival_plan`, a pure generator; `Population` places the plan's calls on the switches.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Protocol

import gevent

from engine.simulator.clock import Clock
from engine.simulator.endpoint import Endpoint, Leg
from engine.simulator.scenario import (
    AgentSpec, Arrivals, CallerKind, DestinationSpec, InboundSpec, PoissonArrivals, ProfileArrivals, Scenario,
    ScriptedArrivals,
)
from engine.simulator.truth import CallRecord, Heard, TruthRecorder

if TYPE_CHECKING:
    from engine.simulator.events import SimEvent
    from engine.simulator.switch import Switch

DAY = 86400.0
# On each node, a gateway per other node: `sofia/gateway/callrouter-<node>/<user>` rings <user>
# registered there (the name of freeswitch/'s example gateway for a node named node-b).
INTERNODE_GATEWAY = "callrouter-{node}"
# A voicemail system ends a recording after this much silence once its greeting has played.
MACHINE_SILENCE_TIMEOUT = 10.0


class Timer(Protocol):
    """What Clock.call_later returns (the callbacks here never block: they hang a leg up or
    land a detection), or a greenlet."""

    def kill(self, block: bool = False) -> None: ...


def _cancel(timer: Timer | None) -> None:
    if timer is not None:
        timer.kill(block=False)


# --------------------------------------------------------------------------- the call plan
def arrival_times(arrivals: Arrivals, start_time: float, rng: random.Random,
                  until: float | None = None) -> Iterator[float]:
    """Seconds after the start at which calls arrive, ascending, below `until` when given.

    A Poisson process whose rate may change at given times of day (the exponential gap is
    redrawn at each change, which is exact because the process is memoryless).
    """
    if isinstance(arrivals, ScriptedArrivals):
        yield from (c.at for c in arrivals.calls if until is None or c.at < until)
        return
    if isinstance(arrivals, PoissonArrivals):
        arrivals = ProfileArrivals(((0, arrivals.per_hour),))
    if not any(rate > 0 for _, rate in arrivals.steps):
        return
    t = 0.0
    while until is None or t < until:
        time_of_day = (start_time + t) % DAY
        change = t + arrivals.next_change(time_of_day) - time_of_day
        per_hour = arrivals.rate_at(time_of_day)
        gap = rng.expovariate(per_hour / 3600.0) if per_hour > 0 else float("inf")
        if t + gap < change:
            t += gap
            if until is not None and t >= until:
                return
            yield t
        else:
            t = change


@dataclass(frozen=True)
class PlannedCall:
    at: float      # seconds after the start of the simulation
    node: str
    number: str
    name: str
    dnis: str
    kind: CallerKind
    seed: int      # the caller's own behaviour (think, patience, talk) draws from this


def _weighted_choice(rng: random.Random, items: tuple[tuple[Any, float], ...]) -> Any:
    return rng.choices([v for v, _ in items], weights=[w for _, w in items])[0]


def _expand_number(pattern: str, rng: random.Random) -> str:
    return "".join(str(rng.randrange(10)) if ch == "X" else ch for ch in pattern)


def arrival_plan(inbound: InboundSpec, start_time: float, rng: random.Random,
                 until: float | None = None) -> Iterator[PlannedCall]:
    """Every inbound call of the scenario, drawn in order from `rng` alone."""
    kinds = tuple((k, k.weight) for k in inbound.kinds)
    by_name = {k.name: k for k in inbound.kinds}
    script = iter(inbound.arrivals.calls) if isinstance(inbound.arrivals, ScriptedArrivals) else iter(())
    for at in arrival_times(inbound.arrivals, start_time, rng, until):
        fixed = next(script, None)  # a scripted call's own number/dnis/kind win over the draws
        number = _expand_number((fixed and fixed.number) or rng.choice(inbound.numbers), rng)
        yield PlannedCall(
            at=at,
            node=rng.choice(inbound.nodes),
            number=number,
            name=rng.choice(inbound.names) if inbound.names else number,
            dnis=(fixed and fixed.dnis) or _weighted_choice(rng, inbound.dnis),
            kind=by_name[fixed.kind] if fixed and fixed.kind else _weighted_choice(rng, kinds),
            seed=rng.getrandbits(64),
        )


# --------------------------------------------------------------------------- endpoints
class _Party:
    """A caller or called party: the side a simulated agent talks to, which records the truth."""

    name: str
    _role = "caller"  # how the truth names this side when it hangs up itself

    def __init__(self, clock: Clock, rng: random.Random, recorder: TruthRecorder) -> None:
        self.clock = clock
        self.rng = rng
        self.recorder = recorder
        self.record: CallRecord | None = None
        self.leg: Leg | None = None
        self.gone = False
        self._talk: Timer | None = None
        self._agent_hung_up = False

    # Called by the Agent it is bridged to: the agent decides how long the conversation lasts.
    def hang_up_after(self, seconds: float) -> None:
        _cancel(self._talk)
        self._talk = self.clock.call_later(seconds, self._hang_up)

    def agent_hanging_up(self) -> None:
        self._agent_hung_up = True

    def _hang_up(self) -> None:
        if not self.gone and self.leg is not None:
            self.leg.hangup("NORMAL_CLEARING")

    def on_media(self, leg: Leg, kind: str, detail: str) -> None:
        if self.record is not None:
            self.record.heard.append(Heard(self.clock.now(), kind, detail))

    def on_bridge(self, leg: Leg, other: Endpoint | None) -> None:
        if isinstance(other, Agent) and self.record is not None and self.record.agent is None:
            self.record.agent = other.user_id
            self.record.bridged_at = self.clock.now()

    def on_unbridge(self, leg: Leg) -> None:
        _cancel(self._talk)

    def on_hangup(self, leg: Leg, cause: str, by_far_end: bool) -> None:
        self.gone = True
        self._stop_timers()
        if self.record is None:
            return
        self.record.hangup_at = self.clock.now()
        self.record.hangup_cause = cause
        if by_far_end:
            self.record.hung_up_by = self._role
        else:
            self.record.hung_up_by = "agent" if self._agent_hung_up else "switch"
        self.recorder.finish(self.record)

    def _stop_timers(self) -> None:
        _cancel(self._talk)


class Caller(_Party):
    """One inbound call: presses its digits at prompts, gives up after its patience unless an
    agent took the call, then talks as long as the agent (or its own talk time) says."""

    def __init__(self, call: PlannedCall, clock: Clock, recorder: TruthRecorder) -> None:
        super().__init__(clock, random.Random(call.seed), recorder)
        self.call = call
        self.name = f"caller:{call.number}"
        self._prompts = 0
        self._patience: Timer | None = None

    def arrived(self, leg: Leg, arrived_at: float) -> None:
        """The switch created the channel for this call: start the record and the patience."""
        self.leg = leg
        self.record = CallRecord(uuid=leg.uuid, node=self.call.node, direction="inbound",
                                 caller=self.call.number, destination=self.call.dnis,
                                 kind=self.call.kind.name, arrived_at=arrived_at)
        self._wait_patiently()

    def _wait_patiently(self) -> None:
        _cancel(self._patience)
        self._patience = self.clock.call_later(self.call.kind.patience.draw(self.rng), self._hang_up)

    def on_offer(self, leg: Leg) -> None:  # a caller's phone is not called by the switch
        leg.hangup("USER_BUSY")

    def on_media(self, leg: Leg, kind: str, detail: str) -> None:
        super().on_media(leg, kind, detail)
        if kind != "prompt":
            return
        digits = self.call.kind.digits
        press = digits[self._prompts] if self._prompts < len(digits) else ""
        self._prompts += 1
        if not press:
            return  # lets the prompt time out
        self.clock.sleep(self.call.kind.think.draw(self.rng))
        if not self.gone:
            leg.send_dtmf(press)
            if self.record is not None:
                self.record.pressed.append(press)

    def on_bridge(self, leg: Leg, other: Endpoint | None) -> None:
        super().on_bridge(leg, other)
        _cancel(self._patience)
        if not isinstance(other, Agent):  # nobody to decide for us how long this lasts
            self.hang_up_after(self.call.kind.talk.draw(self.rng))

    def on_unbridge(self, leg: Leg) -> None:
        super().on_unbridge(leg)
        if not self.gone:
            self._wait_patiently()  # back on hold: waits again, as long as its patience lets it

    def _stop_timers(self) -> None:
        super()._stop_timers()
        _cancel(self._patience)


class Destination(_Party):
    """The far end of one outbound call, its outcome drawn when the switch offers the call."""

    _role = "destination"

    def __init__(self, number: str, node: str, spec: DestinationSpec, clock: Clock, rng: random.Random,
                 recorder: TruthRecorder) -> None:
        super().__init__(clock, rng, recorder)
        self.number = number
        self.node = node
        self.spec = spec
        self.name = f"dest:{number}"
        self.outcome: str = _weighted_choice(rng, spec.outcomes)
        self._hangup_timer: Timer | None = None

    def on_offer(self, leg: Leg) -> None:
        self.leg = leg
        self.record = CallRecord(uuid=leg.uuid, node=self.node, direction="outbound", caller=self.number,
                                 destination=self.number, kind=self.outcome, arrived_at=self.clock.now())
        if self.outcome == "invalid":
            leg.hangup("UNALLOCATED_NUMBER")
            return
        if self.outcome == "busy":
            leg.hangup("USER_BUSY")
            return
        leg.ring()
        if self.outcome == "no_answer":
            return  # rings until the switch gives up (originate_timeout)
        self.clock.sleep(self.spec.answer_delay.draw(self.rng))
        if self.gone:
            return
        leg.answer()
        self.record.answered_at = self.clock.now()
        if self.outcome == "machine":
            greeting = self.spec.machine_greeting.draw(self.rng)
            self._announce(leg, "MACHINE", greeting)
            self._hangup_timer = self.clock.call_later(greeting + MACHINE_SILENCE_TIMEOUT, self._hang_up)
        else:
            greeting = self.spec.greeting.draw(self.rng)
            self._announce(leg, "HUMAN", greeting)
            # "Hello? ... Hello?": hangs up if nobody is put through in time.
            self._hangup_timer = self.clock.call_later(greeting + self.spec.patience.draw(self.rng),
                                                        self._hang_up)

    def _announce(self, leg: Leg, result: str, greeting: float) -> None:
        """Answering-machine detection concludes once it has heard the greeting: the result is
        put on the leg then, where the switch lets a far end's media analysis land (Channel.detect)."""
        detect = getattr(leg, "detect", None)
        if detect is not None:
            self.clock.call_later(greeting, self._conclude_amd, detect, result)

    def _conclude_amd(self, detect: Callable[[str, str], None], result: str) -> None:
        if not self.gone:
            detect("amd_result", result)

    def on_bridge(self, leg: Leg, other: Endpoint | None) -> None:
        super().on_bridge(leg, other)
        if self.outcome == "machine":
            return  # the machine keeps recording until its silence timeout
        _cancel(self._hangup_timer)
        if not isinstance(other, Agent):
            self.hang_up_after(self.spec.talk.draw(self.rng))

    def on_unbridge(self, leg: Leg) -> None:
        super().on_unbridge(leg)
        self._hang_up()  # the agent left; nobody here waits on silence

    def _stop_timers(self) -> None:
        super()._stop_timers()
        _cancel(self._hangup_timer)


class Agent:
    """An agent's softphone, registered as a directory user: rings, answers (or not), talks for a
    handling time; refuses a second call with USER_BUSY while it has one."""

    def __init__(self, user_id: str, spec: AgentSpec, clock: Clock, rng: random.Random) -> None:
        self.user_id = user_id
        self.name = f"agent:{user_id}"
        self.spec = spec
        self.clock = clock
        self.rng = rng
        self._legs: dict[str, Leg] = {}
        self._timers: dict[str, Timer] = {}

    def on_offer(self, leg: Leg) -> None:
        if self._legs:
            leg.hangup("USER_BUSY")
            return
        self._legs[leg.uuid] = leg
        choice = self.rng.random()
        if choice < self.spec.answer_probability:
            leg.ring()
            self.clock.sleep(self.spec.ring.draw(self.rng))
            if leg.uuid in self._legs:
                leg.answer()
        elif choice < self.spec.answer_probability + self.spec.busy_probability:
            leg.hangup("USER_BUSY")
        else:
            leg.ring()  # never picks up: the switch gives up with NO_ANSWER

    def on_media(self, leg: Leg, kind: str, detail: str) -> None:
        """Whispers and beeps to the agent change nothing."""

    def on_bridge(self, leg: Leg, other: Endpoint | None) -> None:
        handling = self.spec.talk.draw(self.rng)
        if isinstance(other, _Party) and self.rng.random() >= self.spec.hangup_share:
            other.hang_up_after(handling)
            return
        _cancel(self._timers.pop(leg.uuid, None))
        self._timers[leg.uuid] = self.clock.call_later(handling, self._end, leg, other)

    def _end(self, leg: Leg, other: Endpoint | None) -> None:
        if leg.uuid not in self._legs:
            return
        if isinstance(other, _Party):
            other.agent_hanging_up()
        leg.hangup("NORMAL_CLEARING")

    def on_unbridge(self, leg: Leg) -> None:
        # The caller is gone from the agent's ear; the agent hangs up rather than wait on silence.
        _cancel(self._timers.pop(leg.uuid, None))
        if leg.uuid in self._legs:
            leg.hangup("NORMAL_CLEARING")

    def on_hangup(self, leg: Leg, cause: str, by_far_end: bool) -> None:
        self._legs.pop(leg.uuid, None)
        _cancel(self._timers.pop(leg.uuid, None))


# --------------------------------------------------------------------------- the population
class Population:
    """Everyone in a scenario, attached to the switches of its nodes.

    `start()` registers the agents, installs the inter-node and outbound gateways and starts placing the inbound
    calls of the plan; `arrival_listeners` are told of each call placed (a what-if runner drives
    the calls from there, with the switch's own events via `Switch.subscribe`), the recorder's
    listeners of each call finished.
    """

    def __init__(self, scenario: Scenario, switches: Mapping[str, "Switch"], clock: Clock, *,
                 recorder: TruthRecorder, seed: int | None = None, duration: float | None = None) -> None:
        self.scenario = scenario
        self.switches = switches
        self.clock = clock
        self.recorder = recorder
        self.duration = duration if duration is not None else scenario.duration
        root = random.Random(seed if seed is not None else scenario.seed)
        # Independent streams, so the inbound plan does not depend on what the engine does.
        self._traffic_rng = random.Random(root.getrandbits(64))
        self._outbound_rng = random.Random(root.getrandbits(64))
        self.agents = [Agent(user_id, spec, clock, random.Random(root.getrandbits(64)))
                       for spec in scenario.agents for user_id in spec.ids]
        self.arrival_listeners: list[Callable[[Caller], None]] = []
        self.placed = 0
        self._generator: gevent.Greenlet | None = None
        self._unanswered: dict[str, Caller] = {}  # inbound calls the switch has not answered yet
        self._subscriptions: list[tuple["Switch", int]] = []
        recorder.listeners.append(lambda record: self._unanswered.pop(record.uuid, None))

    def start(self) -> None:
        for switch in self.switches.values():
            self._subscriptions.append((switch, switch.subscribe(self._on_event, ("CHANNEL_ANSWER",))))
        for agent in self.agents:
            self.switches[agent.spec.node].register_user(agent.user_id, agent)
        for node, switch in self.switches.items():
            for other, far in self.switches.items():
                if other != node:
                    # The inter-node trunk (freeswitch/sip_profiles/external/callrouter_internode.xml):
                    # the far node's public dialplan bridges the number to its registered user.
                    switch.add_trunk(INTERNODE_GATEWAY.format(node=other), far)
        if self.scenario.outbound is not None:
            for node, switch in self.switches.items():
                switch.add_gateway(self.scenario.outbound.gateway, self._resolver(node))
        if self.scenario.inbound is not None:
            self._generator = gevent.spawn(self._place_calls, self.scenario.inbound)

    def stop(self) -> None:
        """Stop placing calls and take the agents' phones off the network; calls up stay up."""
        _cancel(self._generator)
        for agent in self.agents:
            self.switches[agent.spec.node].unregister_user(agent.user_id)
        for switch, token in self._subscriptions:
            switch.unsubscribe(token)
        self._subscriptions.clear()

    def _on_event(self, event: "SimEvent") -> None:
        """The 200 OK a caller's phone gets when the switch answers it (uuid_answer, answer app)."""
        if event.name == "CHANNEL_ANSWER":
            caller = self._unanswered.pop(event.unique_id or "", None)
            if caller is not None and caller.record is not None:
                caller.record.answered_at = self.clock.now()

    def _place_calls(self, inbound: InboundSpec) -> None:
        started = self.clock.now()
        for call in arrival_plan(inbound, self.scenario.start_time, self._traffic_rng, self.duration):
            self.clock.sleep(started + call.at - self.clock.now())
            self.place(call)

    def place(self, call: PlannedCall) -> Caller:
        """Make one planned call arrive at its node now."""
        caller = Caller(call, self.clock, self.recorder)
        arrived_at = self.clock.now()
        leg = self.switches[call.node].inbound_call(caller, call.number, call.name, call.dnis)
        caller.arrived(leg, arrived_at)
        if not caller.gone:
            self._unanswered[leg.uuid] = caller
        self.placed += 1
        for listener in self.arrival_listeners:
            listener(caller)
        return caller

    def _resolver(self, node: str) -> Callable[[str], Destination | None]:
        outbound = self.scenario.outbound
        assert outbound is not None

        def resolve(number: str) -> Destination | None:
            spec = outbound.destination_for(number)
            if spec is None:
                return None  # the carrier has no route: NO_ROUTE_DESTINATION
            return Destination(number, node, spec, self.clock, random.Random(self._outbound_rng.getrandbits(64)),
                               self.recorder)

        return resolve
