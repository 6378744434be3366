"""The ACD driving real calls: the IVR's QueuePort over the Router, and the dispatcher that rings
the agents the Router offers.

Who does what (greenlets only here, at the edge):
- the caller's own greenlet (`Acd.enqueue`) joins the Router, plays hold music and the position /
  estimated-wait announcements, leaves on max-wait, no-agent or overflow, and does the bridge
  and the talk: everything that touches the caller's channel. During the talk the call holds no
  greenlet (engine.calls.call.Suspend): the agent's hangup, a transfer, the caller's hangup or an
  outage wakes it in a fresh one, which goes on where the talk left off (`_talk`, `_queue_on`);
- the dispatcher greenlet calls `router.assignments(now)` whenever something changed or at
  `router.next_wakeup()`, and spawns one ring greenlet per offer: it originates the agent's leg
  with our own origination_uuid (registered with the call first, so none of its events is
  missed) and reports the answer or the hangup cause back to the Router; an answered leg is
  posted into the caller's inbox (`AgentAnswered`) for the caller's greenlet to bridge.

Every way a call can end tells the Router (member_left / call_ended), including a node that
dropped while the agent's leg vanished: a resumed or adopted call checks its agent leg still
exists before it waits on it, so no agent stays Receiving or In a queue call for a call that is gone.
A ring whose answer was lost with the connection stays in doubt (its agent still reserved) until
the resumed caller asks the switch what became of the leg (`_settle`).

Transfers of a talking call (`transfer`), done by the caller's greenlet when it reads TransferTo:
blind to a queue (a new arrival there), to an agent (a one-shot wait in the agent's personal
queue, back to the caller's own queue at its original place if the agent does not answer) or to
a flow (ToFlow, out to the IVR); attended to an agent or a queue (`_attended`, driven by
model.consult_step): the target is rung as a Router member of its own (the consult), so the
target is reserved like any offer while the first agent keeps the caller. Recording pause and
resume mask the queue recording (`uuid_record mask|unmask`: silence written, timeline kept).
"""
from __future__ import annotations

import logging
import random
import time
import uuid as uuidlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

import gevent
from gevent.event import Event

from engine.acd.config import AcdConfig
from engine.acd.estimator import estimated_wait
from engine.acd.model import (
    AgentState, AgentStatus, Consult, ConsultAction, ConsultEvent, Member, MemberState, Queue, Target, TargetKind,
    Tier, consult_step, is_personal, personal_queue,
)
from engine.acd.routing import Router, RoutingError
from engine.calls.call import Call, Suspend, is_hangup_of
from engine.calls.leg import Leg
from engine.cdr.queue_log import QueueEvent, QueueEventKind
from engine.config import AcdSettings
from engine.channelvars import VAR_AGENT, VAR_PARENT_HEADER, VAR_QUEUE, VAR_QUEUE_JOINED, VAR_STAGE
from engine.errors import CallGone, CommandFailed, CommandTimeout, EslError, NotConnected
from engine.esl import commands
from engine.ivr.ports import (
    ANSWERED, DATA_PREFIX, EXIT_KEY, NO_AGENTS, TIMEOUT, Announce, Position, QueueOutcome, QueueStatus, ToFlow,
    call_data, data_text,
)

log = logging.getLogger(__name__)

# On a transferred caller's channel and every agent leg rung for it: where the call comes from,
# shown to the next agent.
VAR_CONTEXT = "callrouter_context"
AGENT_LEG_GONE_WAIT = 2.0  # after the caller hangs up, for the agent's leg to go before it is offered again
ADOPT_WAIT = 2.0  # a resumed talking call waits this long for reconciliation to hand it its agent leg
CANCEL_CAUSE = "LOSE_RACE"  # an agent leg no longer needed (another agent answered, the caller left)
EXIT_WITH_KEY = "EXIT_WITH_KEY"  # mod_callcenter's cc_cancel_reason for a caller leaving on a key
TRANSFER_WAIT = 30.0  # a transfer's target must answer within this (ringing included), else the caller goes back
RECORD_ACTIONS = {"pause": "mask", "resume": "unmask"}  # PCI pause: silence written, the timeline kept


@dataclass(frozen=True)
class AgentAnswered:
    """Posted into the caller's inbox: this agent answered its leg, bridge it."""

    agent: str
    leg: Leg
    rang_at: float


@dataclass(frozen=True)
class TransferTo:
    """Posted into a talking caller's inbox: transfer the call to `target`."""

    target: Target
    attended: bool
    by: str  # who asked (for the logs): the API's caller


@dataclass(frozen=True)
class ConsultControl:
    """Posted into the caller's inbox: complete or cancel its attended transfer."""

    event: ConsultEvent
    by: str


@dataclass(frozen=True)
class TargetFailed:
    """Posted into the caller's inbox: the one agent a transfer rang did not answer."""

    member: str
    cause: str


@dataclass(frozen=True)
class _Onward:
    """Where a caller waits next: `queue` in the Router from `joined` (None: now) at `priority`
    (0: the queue's). With `fallback` it is a one-shot wait for one agent (a personal queue),
    reported under the fallback's queue, where the caller goes if the agent does not answer.
    `again`: back in a queue it entered before (its place kept, no second ENTER)."""

    queue: str
    joined: float | None = None
    priority: int = 0
    fallback: "_Onward | None" = None
    again: bool = False

    @property
    def reported(self) -> str:
        return self.fallback.queue if self.fallback is not None else self.queue


@dataclass(frozen=True)
class _WaitRules:
    """How a caller waits, as the flow (or the dialer) asked: kept for every wait of one enqueue."""

    skills: tuple[str, ...]
    max_wait: float
    announce: Announce | None
    announce_every: float
    exit_keys: str


@dataclass
class _Talk:
    """The conversation under way: agent, its leg, the Router member it counts under."""

    agent: str
    leg: Leg
    member: str
    connected: float

    def wakes(self, item: Any) -> bool:
        """What a suspended conversation wakes for, beside the caller's hangup and an outage: the
        agent's leg hanging up, or a transfer."""
        return isinstance(item, TransferTo) or is_hangup_of(item, self.leg.uuid)


@dataclass
class _Consult:
    member: str  # the consult's own Router member id
    target: Target
    state: Consult | None = Consult.RINGING


@dataclass
class _Ring:
    call: Call
    member: str  # the Router member rung for: the caller's Unique-ID, or a consult's id
    agent: str
    queue: str
    leg: Leg
    started: float


class Acd:
    """The Router with its driver; one per engine. `status_listener(agent_id)` is told after every
    status change the ACD makes on its own (max-no-answer breaks), for persistence."""

    def __init__(self, config: AcdConfig, registry: Any, settings: AcdSettings, recordings_dir: Path, *,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 statuses: Mapping[str, tuple[AgentStatus, str]] | None = None,
                 status_listener: Callable[[str], None] = lambda agent_id: None,
                 flow_names: Callable[[], Collection[str]] | None = None) -> None:
        """`statuses`: agent id -> (status, reason) as persisted; they win over the file's first status.
        `flow_names`: the flows a call may be transferred to (None: not checked before the transfer)."""
        self.router = Router(config.queues, [replace(a, status=AgentStatus.LOGGED_OUT) for a in config.agents],
                             config.tiers)
        for agent in config.agents:
            if agent.status is not AgentStatus.LOGGED_OUT:
                self.router.set_status(agent.id, agent.status, clock(), "")
        self.registry = registry
        self.settings = settings
        self.recordings_dir = recordings_dir
        self.clock = clock
        self.rng = rng or random.Random()
        self.status_listener = status_listener
        self.flow_names = flow_names
        self.transfer_wait = TRANSFER_WAIT
        self._rings: dict[str, _Ring] = {}  # agent leg Unique-ID -> the ring under way
        self._answered: dict[str, AgentAnswered] = {}  # Router member -> its agent leg, not yet bridged
        self._consults: dict[str, _Consult] = {}  # caller's Unique-ID -> its attended transfer under way
        self._consult_calls: dict[str, Call] = {}  # a consult's member id -> the caller's call
        self._talking_as: dict[str, str] = {}  # caller's Unique-ID -> the consult member it talks under since
        self._one_shot: set[str] = set()  # members that ring one agent once: a miss ends their wait
        self._masked: set[str] = set()  # callers whose recording is paused (masked)
        self._changed = Event()
        self._driver: gevent.Greenlet | None = None
        self.restore(statuses or {})

    def restore(self, statuses: Mapping[str, tuple[AgentStatus, str]]) -> None:
        """Seed the agents' status as persisted (before any call); agents no longer configured are skipped."""
        for agent_id, (status, reason) in statuses.items():
            if agent_id in self.router.agents:
                self.router.set_status(agent_id, status, self.clock(), reason)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._driver = gevent.spawn(self._drive)

    def stop(self) -> None:
        if self._driver is not None:
            self._driver.kill()

    def poke(self) -> None:
        """Something changed: let the dispatcher ask the Router again."""
        self._changed.set()

    def _drive(self) -> None:
        while True:
            self._changed.clear()
            try:
                for offer in self.router.assignments(self.clock()):
                    self._start_ring(offer.call_uuid, offer.queue, offer.agent)
            except Exception:  # a bug in one decision must not stop every queue
                log.exception("ACD: routing failed; retrying shortly")
                gevent.sleep(1.0)
            wake = self.router.next_wakeup()
            self._changed.wait(None if wake is None else max(0.0, wake - self.clock()) + 0.001)

    def summary(self) -> dict[str, int]:
        """For `callrouter status`: callers waiting in any queue, agents free to take a call now."""
        now = self.clock()
        return {"callers_waiting": sum(m.state is MemberState.WAITING for m in self.router.members.values()),
                "agents_free": sum(a.can_take_call(now) for a in self.router.agents.values())}

    # ------------------------------------------------------------------ the admin API's views
    def agents_view(self) -> list[dict[str, Any]]:
        return [{"agent": a.id, "name": a.name, "status": a.status.value, "reason": a.break_reason,
                 "state": a.state.value, "skills": dict(a.skills), "calls_answered": a.calls_answered,
                 "no_answer_count": a.no_answer_count} for a in sorted(self.router.agents.values(), key=lambda a: a.id)]

    def queue_names(self) -> list[str]:
        """The configured queues, without the per-agent ones transfers to an agent wait in."""
        return sorted(name for name in self.router.queues if not is_personal(name))

    def queues_view(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [{"queue": name, "strategy": self.router.queues[name].queue.strategy.value,
                 "waiting": self.router.waiting_count(name),
                 "available": len(self.router.available(name)), "staffed": self.router.staffed(name),
                 "estimated_wait_seconds": round(self._estimate(name, self.router.waiting_count(name) + 1, now), 1)}
                for name in self.queue_names()]

    def change_status(self, agent_id: str, status: str, reason: str = "") -> dict[str, Any]:
        """ValueError (the API's 422) for an unknown agent or status."""
        try:
            wanted = AgentStatus(status)
        except ValueError:
            raise ValueError(f"unknown status '{status}'; one of: {', '.join(s.value for s in AgentStatus)}") from None
        try:
            self.set_status(agent_id, wanted, reason)
        except RoutingError as exc:
            raise ValueError(str(exc)) from None
        return next(a for a in self.agents_view() if a["agent"] == agent_id)

    def why(self, call_uuid: str) -> dict[str, Any]:
        try:
            return self.router.explain(call_uuid, self.clock()).to_dict()
        except RoutingError as exc:
            raise ValueError(str(exc)) from None

    # ------------------------------------------------------------------ agents
    def set_status(self, agent_id: str, status: AgentStatus, reason: str = "") -> None:
        """Login, logout, break, back: RoutingError for an unknown agent."""
        agent = self.router.agents.get(agent_id)
        if agent is None:
            raise RoutingError(f"no agent '{agent_id}'")
        before = agent.status
        self.router.set_status(agent_id, status, self.clock(), reason)
        self._log_status(agent_id, before)
        self.poke()

    def _log_status(self, agent_id: str, before: AgentStatus) -> None:
        agent = self.router.agents[agent_id]
        if agent.status is AgentStatus.LOGGED_OUT:
            kind = QueueEventKind.LOGOUT
        elif before is AgentStatus.LOGGED_OUT:
            kind = QueueEventKind.LOGIN
        else:
            kind = QueueEventKind.STATUS
        self.agent_event(kind, agent_id, status=agent.status.value, reason=agent.break_reason)
        self.status_listener(agent_id)

    def agent_event(self, kind: QueueEventKind, agent_id: str, *, queue: str = "", **fields: Any) -> None:
        sink = self.registry.journal.sink
        if sink is not None:
            sink.submit(QueueEvent(event_id=str(uuidlib.uuid4()), time=datetime.now(timezone.utc), event=kind.value,
                                   queue=queue, agent=agent_id, **fields))

    def transfer(self, call_uuid: str, to: str, *, attended: bool = False, by: str = "api") -> dict[str, Any]:
        """Transfer a talking call to `to` (agent:ID, queue:NAME, flow:NAME), blind or attended
        (agent or queue); ValueError (the API's 422) if refused."""
        target = Target.parse(to)
        call, talk_agent = self._talking(call_uuid)
        if call_uuid in self._consults:
            raise ValueError(f"call {call_uuid} has an attended transfer under way: complete or cancel it first")
        if target.kind is TargetKind.QUEUE and (target.name not in self.router.queues or is_personal(target.name)):
            raise ValueError(f"no queue '{target.name}'")
        if target.kind is TargetKind.AGENT:
            agent = self.router.agents.get(target.name)
            if agent is None:
                raise ValueError(f"no agent '{target.name}'")
            if agent.id == talk_agent:
                raise ValueError(f"agent {agent.id} already has call {call_uuid}")
            if not agent.status.takes_calls:
                raise ValueError(f"agent {agent.id} is {agent.status.value}: it cannot take the call")
        if target.kind is TargetKind.FLOW:
            if attended:
                raise ValueError("a transfer to a flow is blind: nobody answers to consult")
            if "flow" not in call.labels:
                raise ValueError(f"call {call_uuid} did not come through an IVR flow: it cannot be sent to one")
            if self.flow_names is not None and target.name not in self.flow_names():
                raise ValueError(f"no flow '{target.name}'")
        call.inbox.put(TransferTo(target, attended, by))
        return {"call": call_uuid, "to": str(target), "attended": attended, "agent": talk_agent}

    def transfer_control(self, call_uuid: str, action: str, by: str = "api") -> dict[str, Any]:
        """Complete or cancel the call's attended transfer; ValueError (the API's 422) if there is
        none, or to complete before the target answered."""
        if action not in (ConsultEvent.COMPLETE.value, ConsultEvent.CANCEL.value):
            raise ValueError(f"unknown transfer action '{action}': complete or cancel")
        consult = self._consults.get(call_uuid)
        call = self.registry.owner_of(call_uuid)
        if consult is None or consult.state is None or call is None:
            raise ValueError(f"call {call_uuid} has no attended transfer under way")
        if action == ConsultEvent.COMPLETE.value and consult.state is not Consult.CONSULTING:
            raise ValueError(f"the transfer of call {call_uuid} to {consult.target} is {consult.state.value}: "
                             "it can be completed once the target has answered")
        call.inbox.put(ConsultControl(ConsultEvent(action), by))
        return {"call": call_uuid, "to": str(consult.target), "action": action}

    def record(self, call_uuid: str, action: str) -> dict[str, Any]:
        """Pause (mask: silence is recorded in its place, for card numbers) or resume the call's
        queue recording; ValueError (the API's 422) if the call is not recorded or the switch refuses."""
        if action not in RECORD_ACTIONS:
            raise ValueError(f"unknown recording action '{action}': pause or resume")
        call = self.registry.owner_of(call_uuid)
        path = call.labels.get("recording_path") if call is not None and call.uuid == call_uuid else None
        if call is None or not path or call.caller.hungup:
            raise ValueError(f"call {call_uuid} is not being recorded")
        command = f"uuid_record {commands.check_uuid(call.uuid)} {RECORD_ACTIONS[action]} {commands.api_arg(path)}"
        try:
            reply = call.node.api(command).strip()
        except EslError as exc:
            raise ValueError(f"the switch did not take the command: {exc}") from None
        if not reply.startswith("+OK"):
            raise ValueError(f"FreeSWITCH refused to {action} the recording: {reply}")
        (self._masked.add if action == "pause" else self._masked.discard)(call.uuid)
        log.info("call %s: recording %s (%s)", call.uuid, "paused" if action == "pause" else "resumed", path)
        return {"call": call.uuid, "recording": path, "paused": call.uuid in self._masked}

    def _talking(self, call_uuid: str) -> tuple[Call, str]:
        """The call and its agent, if it is talking to one; else ValueError."""
        call = self.registry.owner_of(call_uuid)
        member = self.router.members.get(self._talking_as.get(call_uuid, call_uuid))
        if call is None or call.uuid != call_uuid or member is None or member.state is not MemberState.ANSWERED:
            raise ValueError(f"call {call_uuid} is not talking to an agent")
        return call, member.agent

    # ------------------------------------------------------------------ calls, for the admin API
    def calls_view(self) -> list[dict[str, Any]]:
        """Every call the engine controls, oldest first."""
        return [self._call_summary(call) for call in sorted(self.registry.calls, key=lambda c: c.started)]

    def call_view(self, call_uuid: str) -> dict[str, Any]:
        """One call with its data (what the caller keyed in, what lookups found) and its legs."""
        call = self.registry.owner_of(call_uuid)
        if call is None or call.uuid != call_uuid:
            raise ValueError(f"no call {call_uuid} (give the caller's Unique-ID)")
        legs = [{"uuid": leg.uuid, "role": leg.role, "agent": leg.variables.get(VAR_AGENT, ""),
                 "answered": leg.answered, "hungup": leg.hungup} for leg in call.legs.values()]
        return {**self._call_summary(call), "data": call_data(call.caller.variables), "legs": legs}

    def _call_summary(self, call: Call) -> dict[str, Any]:
        member = self.router.members.get(self._talking_as.get(call.uuid, call.uuid))
        consult = self._consults.get(call.uuid)
        return {"call": call.uuid, "caller_id_number": call.caller.caller_id_number,
                "caller_id_name": call.caller.caller_id_name, "stage": call.caller.variables.get(VAR_STAGE, ""),
                "flow": call.labels.get("flow", ""), "queue": call.labels.get("queue", ""),
                "agent": member.agent if member is not None else "",
                "state": member.state.value if member is not None else "",
                "seconds": round(self.clock() - call.started, 1),
                "recording": call.labels.get("recording_path", ""), "recording_paused": call.uuid in self._masked,
                "transfer": None if consult is None or consult.state is None else {
                    "to": str(consult.target), "state": consult.state.value}}

    # ------------------------------------------------------------------ ringing (dispatcher side)
    def _start_ring(self, member: str, queue: str, agent_id: str) -> None:
        call = self._consult_calls.get(member) or self.registry.owner_of(member)
        if call is None or call.caller.hungup:
            self._cancel(member, self.router.member_left(member, self.clock()))
            return
        agent = self.router.agents[agent_id]
        endpoint = agent.contacts.get(call.caller.node) or f"user/{agent_id}"
        caller = call.caller
        reported = call.labels.get("queue", "") if is_personal(queue) else queue
        variables = {"origination_caller_id_number": caller.caller_id_number or "anonymous",
                     "origination_caller_id_name": commands.display_text(
                         f"{reported}: {caller.caller_id_name or caller.caller_id_number}"),
                     VAR_AGENT: agent_id, VAR_QUEUE: reported,
                     # An agent on another node: that node's legs name this call in their CDRs.
                     VAR_PARENT_HEADER: call.uuid}
        if caller.variables.get(VAR_CONTEXT):
            variables[VAR_CONTEXT] = caller.variables[VAR_CONTEXT]
        # The call data for the agent's softphone / CRM popup (made safe when the IVR collected it).
        variables.update({DATA_PREFIX + name: data_text(value) for name, value in call_data(caller.variables).items()})
        leg, result = call.originate_async(endpoint, variables, role="agent", timeout=self.settings.ring_seconds)
        ring = _Ring(call, member, agent_id, queue, leg, self.clock())
        self._rings[leg.uuid] = ring
        call.journal(QueueEventKind.RING_AGENT, agent=agent_id)
        gevent.spawn(self._await_answer, ring, result)

    def _await_answer(self, ring: _Ring, result: Any) -> None:
        body = ""
        try:
            body = (result.get(timeout=self.settings.ring_seconds + 10) or "").strip()
        except EslError as exc:
            # The node dropped: the job's answer is lost, the leg may be up and answered. The
            # caller, on the same node, rides the outage out and settles the ring when it resumes
            # (or, written off, cancels it); until then its agent stays reserved for it.
            log.info("call %s: answer of agent %s's leg %s lost (%s); settled when the caller resumes",
                     ring.call.uuid, ring.agent, ring.leg.uuid, exc)
            return
        except gevent.Timeout:
            body = "-ERR NO_ANSWER"
            gevent.spawn(self._kill_when_up, ring.call.node, ring.leg.uuid)
        if self._rings.pop(ring.leg.uuid, None) is None:
            # Cancelled while ringing (another agent answered, the caller left): the Router knows.
            self._hang_up(ring.call, ring.leg)
            return
        now = self.clock()
        rang = round(now - ring.started, 3)
        if body.startswith("+OK"):
            ring.leg.answered = True
            try:
                others = self.router.offer_answered(ring.member, ring.agent, now)
            except RoutingError:  # the caller left the instant the agent answered
                self._hang_up(ring.call, ring.leg)
                return
            self._cancel(ring.member, others)
            # Kept until bridged: an outage may swallow the inbox item, the resumed caller finds it here.
            answered = self._answered[ring.member] = AgentAnswered(ring.agent, ring.leg, ring.started)
            ring.call.inbox.put(answered)
            return
        cause = body.removeprefix("-ERR").strip() or "NO_ANSWER"
        ring.leg.hungup = True
        ring.leg.hangup_cause = cause
        self._ring_failed(ring.call, ring.member, ring.agent, cause, rang)

    def _ring_failed(self, call: Call, member: str, agent_id: str, cause: str, rang: float) -> None:
        agent = self.router.agents[agent_id]
        before = agent.status
        self.router.offer_failed(member, agent_id, cause, self.clock())
        if member in self._one_shot:
            # A transfer's target missed it: out of the Router at once (never rung again), the
            # caller's greenlet decides where the caller goes.
            self._cancel(member, self.router.member_left(member, self.clock()))
            call.inbox.put(TargetFailed(member, cause))
        call.marks["ringing"] = call.marks.get("ringing", 0.0) + rang
        call.journal(QueueEventKind.RING_NO_ANSWER, agent=agent_id, ring_seconds=rang, reason=cause)
        if agent.status is not before:
            log.info("agent %s: %s after %d missed calls", agent_id, agent.status.value, agent.no_answer_count)
            self._log_status(agent_id, before)
        self.poke()

    def _cancel(self, member: str, agents: list[str]) -> None:
        """Hang up the legs still ringing these agents for this member (the Router released them)."""
        for leg_uuid, ring in list(self._rings.items()):
            if ring.member == member and ring.agent in agents:
                del self._rings[leg_uuid]
                self._hang_up(ring.call, ring.leg)
        self.poke()

    @classmethod
    def _hang_up(cls, call: Call, leg: Leg) -> None:
        if not leg.hungup:
            try:
                call.node.api(commands.kill(leg.uuid, CANCEL_CAUSE))
            except NotConnected:  # the leg may outlive the outage: hang it up once the node is back
                gevent.spawn(cls._kill_when_up, call.node, leg.uuid)
            except EslError as exc:
                log.debug("hangup of agent leg %s not sent: %s", leg.uuid, exc)

    @staticmethod
    def _kill_when_up(node: Any, leg_uuid: str) -> None:
        if node.wait_up(60):
            try:
                node.api(commands.kill(leg_uuid, CANCEL_CAUSE))
            except EslError:
                pass  # already gone: what we wanted

    # ------------------------------------------------------------------ the QueuePort (caller side)
    def status(self, queue: str) -> QueueStatus:
        index = self.router.queues.get(queue)
        if index is None:
            return QueueStatus(0, 0, 0.0)
        waiting = self.router.waiting_count(queue)
        return QueueStatus(len(self.router.available(queue)), waiting,
                           self._estimate(queue, waiting + 1, self.clock()))

    def estimated_wait(self, queue: str) -> float | None:
        """For a caller joining `queue` now (metrics)."""
        if queue not in self.router.queues:
            return None
        return self._estimate(queue, self.router.waiting_count(queue) + 1, self.clock())

    def _estimate(self, queue: str, position: int, now: float) -> float:
        index = self.router.queues[queue]
        aht = index.handle_times.mean(now) or self.settings.assumed_handle_seconds
        wait = estimated_wait(position, len(index.available), index.staffed(), aht)
        return wait if wait is not None else position * aht

    def enqueue(self, call: Call, queue: str, *, skills: tuple[str, ...] = (), priority: int = 0,
                max_wait: float = 300.0, announce: Announce | None = None,
                announce_every: float = 30.0, exit_keys: str = "") -> QueueOutcome:
        """The QueuePort's wait; a conversation under way suspends the call (Suspend) and carries
        on in `_queue_on` once it wakes."""
        rules = _WaitRules(skills, max_wait, announce, announce_every, exit_keys)
        variables = call.caller.variables
        # Resumed or adopted while connected to an agent: the channel says so, or (resumed after
        # an ESL cut that came before the channel could be told) the Router still has it answered.
        member = self.router.members.get(call.uuid)
        answered = member is not None and member.state is MemberState.ANSWERED
        if variables.get(VAR_STAGE) == "talking" or answered:
            queue = variables.get(VAR_QUEUE) or (member.queue if answered else queue)
            call.labels["queue"] = queue
            first = partial(self._resume_talk, call, queue, variables.get(VAR_AGENT) or
                            (member.agent if answered else ""))
        elif queue not in self.router.queues:
            log.error("call %s: no queue '%s' in the ACD configuration", call.uuid, queue)
            return QueueOutcome(NO_AGENTS)
        else:
            resumed = variables.get(VAR_STAGE) == "queue"
            if resumed:
                queue = variables.get(VAR_QUEUE) or queue
            first = partial(self._wait, call, _Onward(queue, self._joined_at(call, resumed), priority), resumed, rules)
        return self._queue_on(call, rules, first)

    def _queue_on(self, call: Call, rules: _WaitRules,
                  step: Callable[[], tuple[QueueOutcome, _Onward | None]]) -> QueueOutcome:
        """`step` (a wait, or a conversation), then the waits it leads to (overflows, transfers),
        until one ends the caller's time in the ACD."""
        while True:
            try:
                outcome, onward = step()
            except Suspend as suspend:  # a conversation: woken, it goes on here
                raise suspend.wrap(partial(self._queue_on, call, rules))
            if onward is None:
                return outcome
            step = partial(self._wait, call, onward, False, rules)

    def _joined_at(self, call: Call, resumed: bool) -> float:
        # A call resumed after an outage or adopted by a restarted engine keeps its original place
        # in line: the time it joined is on its channel (an engine variable, read on adoption).
        if resumed:
            try:
                return float(call.caller.variables[VAR_QUEUE_JOINED])
            except (KeyError, ValueError):
                pass
        return self.clock()

    def _wait(self, call: Call, onward: _Onward, resumed: bool,
              rules: _WaitRules) -> tuple[QueueOutcome, _Onward | None]:
        """One wait: (the outcome, or where to go on to: an overflow, a transfer, or back from a
        transferred-to agent who did not answer to the caller's own queue)."""
        queue, reported, direct = onward.queue, onward.reported, onward.fallback is not None
        call.labels["queue"] = reported
        announce, exit_keys = rules.announce, rules.exit_keys
        settings = self.router.queues[reported].queue
        started = self.clock()
        joined = onward.joined if onward.joined is not None else started
        caller = call.caller
        if resumed and (answered := self._settle(call)) is not None:
            return self._connect(call, reported, answered, joined)
        self._cancel(call.uuid, self.router.member_left(call.uuid, self.clock()))  # a resumed call rejoins
        # Once the agent hangs up, the caller stays for the flow (park_after_bridge); a restarted
        # engine finds the caller's own queue and place on the channel, whatever agent it waited for.
        # One round trip for both.
        if resumed:
            call.set_vars(park_after_bridge="true")
        else:
            call.mark_stage("queue", park_after_bridge="true",
                            **{VAR_QUEUE: reported, VAR_QUEUE_JOINED: f"{joined:.3f}"})
        # No I/O from joining to ENTER: the dispatcher cannot ring an agent before the call entered.
        self.router.member_joined(Member(call.uuid, queue, joined, priority=onward.priority or None,
                                         skills={} if direct else {s: 1 for s in rules.skills},
                                         caller_id_number=caller.caller_id_number,
                                         caller_id_name=caller.caller_id_name), self.clock())
        call.marks.setdefault("queued", joined)
        if direct:
            self._one_shot.add(call.uuid)
        elif not resumed and not onward.again:
            call.registry.stats.queued(call, queue)
            call.journal(QueueEventKind.ENTER, position=self.router.position(call.uuid))
        self.poke()
        call.outcome = "abandoned"  # until an agent answers or the wait ends otherwise
        call.caller.take_digits()  # keys typed at the menus before joining are not an exit
        if direct:  # the one agent answers soon, or the caller goes back: no exits, no announcements
            limit, exit_keys, every = self.transfer_wait, "", 0.0
        else:
            limit = min(w for w in (rules.max_wait, settings.max_wait) if w > 0) \
                if rules.max_wait > 0 or settings.max_wait > 0 else 0
            every = settings.announcements.every or (rules.announce_every if announce is not None else 0)
        next_announce = self.clock() + every if every else float("inf")
        self._hold(call, settings)
        try:
            while True:
                now = self.clock()
                member = self.router.members.get(call.uuid)
                if direct and (member is None or (member.state is not MemberState.ANSWERED
                                                  and now - started >= limit)):
                    return self._back(call, onward)
                if not direct and member is not None and member.state is MemberState.WAITING:
                    reason = self._exit_due(settings, joined, limit, now)
                    if reason:
                        return self._leave(call, settings, joined, reason)
                deadlines = [next_announce, now + 1.0]  # once a second: the no-agent and max-wait checks
                item = call.next_item(max(0.0, min(deadlines) - now))
                # An AgentAnswered settled otherwise by a resume (leg gone, or connected already) is stale.
                if isinstance(item, AgentAnswered) and self._answered.get(call.uuid) is item:
                    self._one_shot.discard(call.uuid)
                    return self._connect(call, reported, item, started if direct else joined)
                digit = next((d for d in call.caller.take_digits() if d in exit_keys), "") if exit_keys else ""
                member = self.router.members.get(call.uuid)
                # Once an agent answered, its AgentAnswered is on the way: the key comes too late.
                if digit and member is not None and member.state is not MemberState.ANSWERED:
                    return self._leave(call, settings, joined, EXIT_WITH_KEY, digit)
                if self.clock() >= next_announce:
                    if self.router.position(call.uuid) is not None:
                        self._announce(call, settings, announce)
                    next_announce = self.clock() + every
        except CallGone:
            self._one_shot.discard(call.uuid)
            self._abandoned(call, joined)
            raise

    def _back(self, call: Call, onward: _Onward) -> tuple[QueueOutcome, _Onward | None]:
        """The agent a call was transferred to did not answer: back to the caller's own queue,
        where it keeps its original place."""
        self._one_shot.discard(call.uuid)
        self._cancel(call.uuid, self.router.member_left(call.uuid, self.clock()))
        call.api(commands.break_media(call.uuid))
        log.info("call %s: %s did not take the transfer; back to queue %s", call.uuid, onward.queue,
                 onward.reported)
        return QueueOutcome(TIMEOUT), onward.fallback

    def _personal(self, agent_id: str) -> str:
        """The agent's personal queue, made the first time a transfer needs it."""
        queue = personal_queue(agent_id)
        if queue.name not in self.router.queues:
            self.router.add_queue(queue)
            self.router.set_tier(Tier(agent_id, queue.name))
        return queue.name

    def _exit_due(self, queue: Queue, joined: float, limit: float, now: float) -> str:
        """'max-wait', 'no-agent' (nobody logged in to serve the queue for max_wait_no_agent; 0
        means at once, as the interim queue did and a flow's on_no_agents expects), or ''."""
        if limit and now - joined >= limit:
            return "max-wait"
        if self.router.staffed(queue.name) == 0 and now - joined >= queue.max_wait_no_agent:
            return "no-agent"
        return ""

    def _leave(self, call: Call, queue: Queue, joined: float, reason: str,
               digit: str = "") -> tuple[QueueOutcome, _Onward | None]:
        """Out of the queue without an agent: overflow to another queue, or back to the flow (an
        exit key always goes back to the flow, which maps it)."""
        now = self.clock()
        self._cancel(call.uuid, self.router.member_left(call.uuid, now))
        waited = round(now - joined, 3)
        target_kind, _, target = queue.overflow.partition(":")
        call.api(commands.break_media(call.uuid))
        if target_kind == "queue" and not digit:
            call.journal(QueueEventKind.OVERFLOW, wait_seconds=waited, target=queue.overflow)
            return QueueOutcome(TIMEOUT, waited=waited), _Onward(target)
        call.marks["left_queue"] = now
        call.journal(QueueEventKind.TIMEOUT, wait_seconds=waited, reason=reason)
        call.outcome = "timeout"
        call.mark_stage("ivr")
        if digit:
            return QueueOutcome(EXIT_KEY, waited=waited, digit=digit, joined=joined), None
        return QueueOutcome(NO_AGENTS if reason == "no-agent" else TIMEOUT, waited=waited, joined=joined), None

    def _abandoned(self, call: Call, joined: float) -> None:
        self._answered.pop(call.uuid, None)  # its leg is hung up with the call
        member = self.router.members.get(call.uuid)
        if member is None or member.state is MemberState.ANSWERED:
            return
        position = self.router.position(call.uuid)
        self._cancel(call.uuid, self.router.member_left(call.uuid, self.clock()))
        call.journal(QueueEventKind.ABANDON, position=position, wait_seconds=round(self.clock() - joined, 3))

    def _hold(self, call: Call, queue: Queue) -> None:
        call.api(commands.broadcast(call.uuid, queue.moh))

    def _announce(self, call: Call, queue: Queue, announce: Announce | None) -> None:
        position = self.router.position(call.uuid) or 1
        wait = self.router.estimated_wait(call.uuid, self.clock())
        if wait is None:
            wait = self._estimate(queue.name, position, self.clock())
        if announce is not None:  # the flow's own words, with ${queue_position} / ${queue_wait_minutes}
            announce(Position(position, wait))
        elif queue.announcements.sound:
            call.api(commands.break_media(call.uuid))
            call.playback(queue.announcements.sound)
        self._hold(call, queue)

    # ------------------------------------------------------------------ the conversation
    def _connect(self, call: Call, queue: str, answered: AgentAnswered,
                 joined: float) -> tuple[QueueOutcome, _Onward | None]:
        settings = self.router.queues[queue].queue
        call.legs.setdefault(answered.leg.uuid, answered.leg)
        now = self.clock()
        call.marks["ringing"] = call.marks.get("ringing", 0.0) + now - answered.rang_at
        call.marks["connected"] = now
        call.labels["agent"] = answered.agent
        call.outcome = "answered"
        try:
            if settings.announcements.to_agent and settings.announcements.sound:
                call.execute("playback", settings.announcements.sound, leg=answered.leg)
            call.api(commands.break_media(call.uuid))
            self._start_recording(call, settings)
            call.bridge(answered.leg)
        except (CommandFailed, CallGone) as exc:
            # The agent's leg went away before the bridge: the call is over for that agent.
            self._answered.pop(call.uuid, None)
            self.router.call_ended(call.uuid, self.clock())
            self.poke()
            if isinstance(exc, CallGone) or call.caller.hungup:
                raise
            raise CallGone(f"agent leg gone before the bridge: {exc}") from None
        call.registry.stats.connected(call)
        call.journal(QueueEventKind.CONNECT, agent=answered.agent, wait_seconds=round(now - joined, 3),
                     ring_seconds=round(call.marks["ringing"], 3))
        call.mark_stage("talking", **{VAR_AGENT: answered.agent})
        self._answered.pop(call.uuid, None)  # from now on a resumed call finds its agent as talking
        return self._talk(call, queue, _Talk(answered.agent, answered.leg, call.uuid, now), now - joined)

    def _settle(self, call: Call) -> AgentAnswered | None:
        """A queued caller resumed after an outage: the answers to its rings may have been lost
        with the connection (the BACKGROUND_JOB never came) or in its inbox. Ask the switch about
        each agent leg: the first one up and answered is the caller's agent (returned, the Router
        told); the others are hung up (one still ringing is offered again) or gone. No agent is
        blamed for a no-answer: rejoining the queue releases their offers."""
        rings = {uuid: ring for uuid, ring in self._rings.items() if ring.member == call.uuid}
        candidates = [AgentAnswered(ring.agent, ring.leg, ring.started) for ring in rings.values()]
        if (pending := self._answered.get(call.uuid)) is not None:
            candidates.insert(0, pending)
        chosen = next((c for c in candidates if self._up_and_answered(call, c.leg)), None)
        for uuid in rings:  # only once the switch answered: a second outage leaves them in doubt
            self._rings.pop(uuid, None)
        for candidate in candidates:
            if candidate is not chosen:
                self._hang_up(call, candidate.leg)
        self._answered.pop(call.uuid, None)
        if chosen is None:
            return None
        log.info("call %s: agent %s answered during the outage; connecting", call.uuid, chosen.agent)
        member = self.router.members.get(call.uuid)
        if member is None or member.state is not MemberState.ANSWERED or member.agent != chosen.agent:
            try:
                self._cancel(call.uuid, self.router.offer_answered(call.uuid, chosen.agent, self.clock()))
            except RoutingError:  # not in the Router any more: nothing to connect
                self._hang_up(call, chosen.leg)
                return None
        chosen.leg.answered = True
        self._answered[call.uuid] = chosen
        return chosen

    def _up_and_answered(self, call: Call, leg: Leg) -> bool:
        if leg.hungup or not self._exists(call, leg):
            leg.hungup = True  # gone while the node was away: its hangup events never came
            return False
        # FreeSWITCH sets endpoint_disposition to ANSWER when it marks the channel answered.
        return leg.answered or call.api(commands.getvar(leg.uuid, "endpoint_disposition")).strip() == "ANSWER"

    def _resume_talk(self, call: Call, queue: str, agent_id: str) -> tuple[QueueOutcome, _Onward | None]:
        """A call resumed after an outage, or adopted by a restarted engine, while it talked."""
        deadline = self.clock() + ADOPT_WAIT
        while (leg := self._agent_leg(call)) is None and self.clock() < deadline:
            call.next_item(deadline - self.clock())
        if leg is not None and not leg.hungup and not self._exists(call, leg):
            leg.hungup = True  # gone while the node was away: its hangup events never came
        # After a completed attended transfer the conversation counts under the consult's member.
        member_id = self._talking_as.get(call.uuid, call.uuid)
        if queue in self.router.queues and agent_id in self.router.agents and (
                leg is not None and not leg.hungup):
            member = self.router.members.get(member_id)
            if member is None or member.state is not MemberState.ANSWERED:
                self._talking_as.pop(call.uuid, None)
                member_id = call.uuid
                joined = self._joined_at(call, True)
                self.router.member_joined(Member(call.uuid, queue, joined), self.clock())
                self._cancel(call.uuid, self.router.offer_answered(call.uuid, agent_id, self.clock()))
        call.labels["agent"] = agent_id
        if leg is None or leg.hungup:
            self._ended(call, agent_id, member_id)
            call.mark_stage("ivr")
            return QueueOutcome(ANSWERED, agent=agent_id), None
        return self._talk(call, queue, _Talk(agent_id, leg, member_id, call.marks.get("connected", self.clock())),
                          0.0)

    @staticmethod
    def _agent_leg(call: Call) -> Leg | None:
        legs = [leg for leg in call.legs.values() if leg.role == "agent" and leg.answered]
        return next((leg for leg in legs if not leg.hungup), legs[-1] if legs else None)

    @staticmethod
    def _exists(call: Call, leg: Leg) -> bool:
        return call.api(f"uuid_exists {leg.uuid}").strip() == "true"

    def _talk(self, call: Call, queue: str, talk: _Talk, waited: float) -> tuple[QueueOutcome, _Onward | None]:
        """Until the agent hangs up (the caller hanging up raises CallGone) or transfers the call
        (then: where the caller goes on to; ToFlow for a flow); then wrap-up. An attended
        transfer completed changes who the caller talks to and the loop goes on with the target.

        Between those the call holds no greenlet: with its inbox empty it suspends until
        `talk.wakes`, and carries on here in a fresh one."""
        call.outcome = "answered"
        # Resumed (the node dropped) passes through: the call is still on, the Router keeps it.
        try:
            while not talk.leg.hungup:
                item = call.next_item_or_suspend(talk.wakes, partial(self._talk, call, queue, talk, waited))
                if not isinstance(item, TransferTo):
                    continue
                log.info("call %s: %s transfers it %s from agent %s to %s", call.uuid, item.by,
                         "attended" if item.attended else "blind", talk.agent, item.target)
                onward = (self._attended(call, queue, talk, item.target) if item.attended
                          else self._blind(call, queue, talk, item.target))
                if onward is not None:
                    return QueueOutcome(ANSWERED, agent=talk.agent, waited=waited), onward
        except CallGone:
            # The agent is free once its own leg is gone (the switch ends it with the bridge), not
            # when the caller's is: offered a call before that, a phone answers 486 Busy.
            call.await_hangup(talk.leg, AGENT_LEG_GONE_WAIT)
            self._finish_talk(call, talk, QueueEventKind.COMPLETE_CALLER)
            raise
        self._finish_talk(call, talk, QueueEventKind.COMPLETE_AGENT)
        call.mark_stage("ivr")
        return QueueOutcome(ANSWERED, agent=talk.agent, waited=waited), None

    def _finish_talk(self, call: Call, talk: _Talk, kind: QueueEventKind, **fields: Any) -> None:
        """The queue log's end of this agent's part of the call, and the agent's wrap-up."""
        call.journal(kind, agent=talk.agent, talk_seconds=round(self.clock() - talk.connected, 3), **fields)
        self._ended(call, talk.agent, talk.member)

    def _blind(self, call: Call, queue: str, talk: _Talk, target: Target) -> _Onward:
        """The agent's leg goes (its wrap-up starts), the caller stays parked (park_after_bridge)
        and waits for the target; a flow takes the caller out of the ACD (ToFlow)."""
        own = self._own_place(call, queue, talk)
        call.labels["transfer_target"] = str(target)
        call.set_vars(**{VAR_CONTEXT: commands.display_text(f"from {queue} agent {talk.agent}")})
        self._hang_up(call, talk.leg)
        self._finish_talk(call, talk, QueueEventKind.TRANSFER, target=str(target))
        if target.kind is TargetKind.FLOW:
            call.mark_stage("ivr")
            raise ToFlow(target.name)
        if target.kind is TargetKind.AGENT:
            return _Onward(self._personal(target.name), own.joined, own.priority, fallback=own)
        return _Onward(target.name)

    def _attended(self, call: Call, queue: str, talk: _Talk, target: Target) -> _Onward | None:
        """The caller holds (music) while the target is rung as a consult member of its own; the
        first agent talks with the target once it answers; then complete (the caller to the
        target, `talk` becomes the target's) or cancel (back to the first agent). Returns where
        the caller goes on to if nobody is left to talk to, else None (the conversation goes on)."""
        settings = self.router.queues[queue].queue
        consult = self._consults[call.uuid] = _Consult(commands.new_uuid(), target)
        self._consult_calls[consult.member] = call
        self._one_shot.add(consult.member)
        own = self._own_place(call, queue, talk)
        # The first agent must outlive a bridge with the target that ends (cancel, target hangs up).
        call.set_vars(leg=talk.leg, park_after_bridge="true")
        self._hold(call, settings)
        rung_in = self._personal(target.name) if target.kind is TargetKind.AGENT else target.name
        self.router.member_joined(Member(consult.member, rung_in, self.clock(), caller_id_number=
                                         call.caller.caller_id_number, caller_id_name=call.caller.caller_id_name),
                                  self.clock())
        self.poke()
        deadline = self.clock() + self.transfer_wait
        answered: AgentAnswered | None = None
        agent_gone = agent_parked = False
        try:
            while consult.state is not None:
                item = call.next_item(max(0.0, deadline - self.clock()) if answered is None else 60.0)
                event = None
                if getattr(item, "unique_id", None) == talk.leg.uuid and item.name == "CHANNEL_PARK":
                    agent_parked = True
                if isinstance(item, ConsultControl):
                    event = item.event
                elif isinstance(item, AgentAnswered) and self._answered.get(consult.member) is item:
                    answered = self._answered.pop(consult.member)
                    call.legs.setdefault(answered.leg.uuid, answered.leg)
                    event = ConsultEvent.ANSWERED
                elif isinstance(item, TargetFailed) and item.member == consult.member or (
                        answered is None and self.clock() >= deadline):
                    event = ConsultEvent.FAILED
                elif talk.leg.hungup and not agent_gone:
                    agent_gone, event = True, ConsultEvent.AGENT_GONE
                elif answered is not None and answered.leg.hungup:
                    event = ConsultEvent.TARGET_GONE
                if event is None:
                    continue
                before = consult.state
                consult.state, action = consult_step(consult.state, event)
                log.info("call %s: attended transfer to %s: %s -> %s (%s)", call.uuid, target, before.value,
                         consult.state.value if consult.state else "over", action.value)
                if action is ConsultAction.CONSULT:
                    agent_parked = False
                    call.api(commands.uuid_bridge(talk.leg.uuid, answered.leg.uuid))
                    call.api(commands.break_media(call.uuid))  # the caller, out of the bridge, parks:
                    self._hold(call, settings)  # music again
                elif action is ConsultAction.RETURN and not talk.leg.hungup:
                    self._end_consult(call, consult, answered)
                    call.api(commands.break_media(call.uuid))
                    if before is Consult.CONSULTING:  # the caller had left the bridge for the consult
                        if not agent_parked:  # out of the bridge with the target first (park_after_bridge)
                            self._await_park(call, talk.leg)
                        call.bridge(talk.leg)
                elif action is ConsultAction.CONNECT and answered is not None and not answered.leg.hungup:
                    self._connect_target(call, talk, consult, answered)
                elif action in (ConsultAction.RETURN, ConsultAction.CONNECT, ConsultAction.REQUEUE):
                    # Whom the caller should have talked to is gone: back to its queue, at its place.
                    self._end_consult(call, consult, answered)
                    self._hang_up(call, talk.leg)
                    self._finish_talk(call, talk, QueueEventKind.COMPLETE_AGENT)
                    call.labels["queue"] = queue
                    return own
            return None
        except CallGone:
            self._end_consult(call, consult, answered)
            raise
        finally:
            self._consults.pop(call.uuid, None)
            if consult.member != talk.member:  # the consult did not become the conversation
                self._consult_calls.pop(consult.member, None)
            self._one_shot.discard(consult.member)

    @staticmethod
    def _await_park(call: Call, leg: Leg) -> None:
        try:
            call.wait_for(lambda item: getattr(item, "unique_id", None) == leg.uuid and item.name in (
                "CHANNEL_PARK", "CHANNEL_HANGUP"), 5.0, f"agent leg {leg.uuid} parked")
        except CommandTimeout as exc:
            log.warning("call %s: %s; bridging anyway", call.uuid, exc)

    def _own_place(self, call: Call, queue: str, talk: _Talk) -> _Onward:
        """The caller's place in its own queue, where it goes back if a transfer finds nobody:
        its original join time (kept on the channel) and priority."""
        member = self.router.members.get(talk.member)
        priority = member.priority or 0 if member is not None and member.queue == queue else 0
        return _Onward(queue, self._joined_at(call, True), priority, again=True)

    def _end_consult(self, call: Call, consult: _Consult, answered: AgentAnswered | None) -> None:
        """Release the consult's target: its ring or its leg, and its place in the Router (a
        consultation is no queue call: no wrap-up for it)."""
        member = self.router.members.get(consult.member)
        if member is not None and member.state is MemberState.ANSWERED:
            self.router.call_ended(consult.member, self.clock())
            self.router.wrap_up_done(member.agent, self.clock())
        else:
            self._cancel(consult.member, self.router.member_left(consult.member, self.clock()))
        if answered is not None:
            self._hang_up(call, answered.leg)
        self.poke()

    def _connect_target(self, call: Call, talk: _Talk, consult: _Consult, answered: AgentAnswered) -> None:
        """Complete: the caller to the target, the first agent released into wrap-up; `talk` is
        the target's from now on, under the consult's member."""
        call.api(commands.break_media(call.uuid))
        call.bridge(answered.leg)
        self._hang_up(call, talk.leg)
        call.labels["transfer_target"] = str(consult.target)
        self._finish_talk(call, talk, QueueEventKind.TRANSFER, target=str(consult.target))
        now = self.clock()
        if consult.target.kind is TargetKind.QUEUE:
            call.labels["queue"] = consult.target.name
            call.journal(QueueEventKind.ENTER)
        call.journal(QueueEventKind.CONNECT, agent=answered.agent, wait_seconds=round(now - answered.rang_at, 3))
        call.labels["agent"] = answered.agent
        call.mark_stage("talking", **{VAR_AGENT: answered.agent, VAR_QUEUE: call.labels.get("queue", "")})
        self._talking_as[call.uuid] = consult.member
        talk.agent, talk.leg, talk.member, talk.connected = answered.agent, answered.leg, consult.member, now

    def _ended(self, call: Call, agent_id: str, member: str) -> None:
        agent = self.router.agents.get(agent_id)
        self.router.call_ended(member, self.clock())
        if member != call.uuid:
            self._consult_calls.pop(member, None)
            self._talking_as.pop(call.uuid, None)
        self.poke()
        if agent is not None and agent.state is AgentState.WRAP_UP and agent.wrap_ups:
            wrap = round(agent.wrap_ups[-1] - self.clock(), 3)
            # The call's uuid: the reports add this wrap-up to that call's handle time.
            gevent.spawn_later(max(0.0, wrap), self.agent_event, QueueEventKind.WRAP_UP, agent_id,
                               queue=call.labels.get("queue", ""), call_uuid=call.uuid, wrap_up_seconds=wrap)

    def _start_recording(self, call: Call, queue: Queue) -> None:
        """record_session per the queue's policy (all, none, a sampled percentage), after its
        announcement; started before the bridge so it covers the whole conversation. The path
        goes to the CDR through the call's labels."""
        policy = queue.recording
        if policy.mode == "none" or (policy.mode == "sampled" and self.rng.random() * 100 >= policy.percent):
            return
        path = str(self.recordings_dir / queue.name / f"{call.uuid}.wav")
        if policy.announce:
            call.playback(policy.announce)
        call.execute("record_session", path)
        call.labels["recording_path"] = path
        self._masked.discard(call.uuid)  # a new recording starts unmasked
