"""The ACD driving real calls: the IVR's QueuePort over the Router, and the dispatcher that rings
the agents the Router offers.

Who does what (greenlets only here, at the edge):
- the caller's own greenlet (`Acd.enqueue`) joins the Router, plays hold music and the position /
  estimated-wait announcements, leaves on max-wait, no-agent or overflow, and does the bridge
  and the talk: everything that touches the caller's channel;
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
"""
from __future__ import annotations

import logging
import random
import time
import uuid as uuidlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

import gevent
from gevent.event import Event

from engine.acd.config import AcdConfig
from engine.acd.estimator import estimated_wait
from engine.acd.model import AgentState, AgentStatus, Member, MemberState, Queue
from engine.acd.routing import Router, RoutingError
from engine.calls.call import Call
from engine.calls.leg import Leg
from engine.cdr.queue_log import QueueEvent, QueueEventKind
from engine.config import AcdSettings
from engine.channelvars import VAR_AGENT, VAR_QUEUE, VAR_STAGE
from engine.errors import CallGone, CommandFailed, EslError, NotConnected
from engine.esl import commands
from engine.ivr.ports import (
    ANSWERED, EXIT_KEY, NO_AGENTS, TIMEOUT, Announce, Position, QueueOutcome, QueueStatus,
)

log = logging.getLogger(__name__)

# Kept on the caller's channel: the ORIGINAL time the caller joined its queue, so a call resumed
# after an outage or adopted by a restarted engine keeps its place in line.
VAR_QUEUE_JOINED = "callrouter_queue_joined"
# On a transferred caller's channel and every agent leg rung for it: where the call comes from,
# shown to the next agent.
VAR_CONTEXT = "callrouter_context"
ADOPT_WAIT = 2.0  # a resumed talking call waits this long for reconciliation to hand it its agent leg
CANCEL_CAUSE = "LOSE_RACE"  # an agent leg no longer needed (another agent answered, the caller left)
EXIT_WITH_KEY = "EXIT_WITH_KEY"  # mod_callcenter's cc_cancel_reason for a caller leaving on a key


@dataclass(frozen=True)
class AgentAnswered:
    """Posted into the caller's inbox: this agent answered its leg, bridge it."""

    agent: str
    leg: Leg
    rang_at: float


@dataclass(frozen=True)
class TransferTo:
    """Posted into a talking caller's inbox: release the agent, send the caller to `queue`."""

    queue: str
    by: str  # who asked (for the logs): the API's caller


@dataclass
class _Ring:
    call: Call
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
                 status_listener: Callable[[str], None] = lambda agent_id: None) -> None:
        """`statuses`: agent id -> (status, reason) as persisted; they win over the file's first status."""
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
        self._rings: dict[str, _Ring] = {}  # agent leg Unique-ID -> the ring under way
        self._answered: dict[str, AgentAnswered] = {}  # caller's Unique-ID -> its agent leg, not yet bridged
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

    def queues_view(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [{"queue": name, "strategy": index.queue.strategy.value, "waiting": len(self.router.waiting(name)),
                 "available": len(self.router.available(name)), "staffed": self.router.staffed(name),
                 "estimated_wait_seconds": round(self._estimate(name, len(self.router.waiting(name)) + 1, now), 1)}
                for name, index in sorted(self.router.queues.items())]

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

    def transfer(self, call_uuid: str, to: str, by: str = "api") -> dict[str, Any]:
        """Blind transfer of a talking call (`to` = queue:NAME); ValueError (the API's 422) if refused."""
        kind, _, target = to.partition(":")
        if kind != "queue":
            raise ValueError(f"cannot transfer to '{to}': only queue:NAME targets are supported")
        if target not in self.router.queues:
            raise ValueError(f"no queue '{target}'")
        member = self.router.members.get(call_uuid)
        call = self.registry.owner_of(call_uuid)
        if call is None or member is None or member.state is not MemberState.ANSWERED:
            raise ValueError(f"call {call_uuid} is not talking to an agent")
        call.inbox.put(TransferTo(target, by))
        return {"call": call_uuid, "to": to, "agent": call.labels.get("agent", "")}

    # ------------------------------------------------------------------ ringing (dispatcher side)
    def _start_ring(self, call_uuid: str, queue: str, agent_id: str) -> None:
        call = self.registry.owner_of(call_uuid)
        if call is None or call.caller.hungup:
            self._cancel(call_uuid, self.router.member_left(call_uuid, self.clock()))
            return
        agent = self.router.agents[agent_id]
        endpoint = agent.contacts.get(call.caller.node) or f"user/{agent_id}"
        caller = call.caller
        variables = {"origination_caller_id_number": caller.caller_id_number or "anonymous",
                     "origination_caller_id_name": commands.display_text(
                         f"{queue}: {caller.caller_id_name or caller.caller_id_number}"),
                     VAR_AGENT: agent_id, VAR_QUEUE: queue}
        if caller.variables.get(VAR_CONTEXT):
            variables[VAR_CONTEXT] = caller.variables[VAR_CONTEXT]
        leg, result = call.originate_async(endpoint, variables, role="agent", timeout=self.settings.ring_seconds)
        ring = _Ring(call, agent_id, queue, leg, self.clock())
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
                others = self.router.offer_answered(ring.call.uuid, ring.agent, now)
            except RoutingError:  # the caller left the instant the agent answered
                self._hang_up(ring.call, ring.leg)
                return
            self._cancel(ring.call.uuid, others)
            # Kept until bridged: an outage may swallow the inbox item, the resumed caller finds it here.
            answered = self._answered[ring.call.uuid] = AgentAnswered(ring.agent, ring.leg, ring.started)
            ring.call.inbox.put(answered)
            return
        cause = body.removeprefix("-ERR").strip() or "NO_ANSWER"
        ring.leg.hungup = True
        ring.leg.hangup_cause = cause
        self._ring_failed(ring.call, ring.agent, cause, rang)

    def _ring_failed(self, call: Call, agent_id: str, cause: str, rang: float) -> None:
        agent = self.router.agents[agent_id]
        before = agent.status
        self.router.offer_failed(call.uuid, agent_id, cause, self.clock())
        call.marks["ringing"] = call.marks.get("ringing", 0.0) + rang
        call.journal(QueueEventKind.RING_NO_ANSWER, agent=agent_id, ring_seconds=rang, reason=cause)
        if agent.status is not before:
            log.info("agent %s: %s after %d missed calls", agent_id, agent.status.value, agent.no_answer_count)
            self._log_status(agent_id, before)
        self.poke()

    def _cancel(self, call_uuid: str, agents: list[str]) -> None:
        """Hang up the legs still ringing these agents for this call (the Router released them)."""
        for leg_uuid, ring in list(self._rings.items()):
            if ring.call.uuid == call_uuid and ring.agent in agents:
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
        waiting = len(self.router.waiting(queue))
        return QueueStatus(len(self.router.available(queue)), waiting,
                           self._estimate(queue, waiting + 1, self.clock()))

    def estimated_wait(self, queue: str) -> float | None:
        """For a caller joining `queue` now (metrics)."""
        if queue not in self.router.queues:
            return None
        return self._estimate(queue, len(self.router.waiting(queue)) + 1, self.clock())

    def _estimate(self, queue: str, position: int, now: float) -> float:
        index = self.router.queues[queue]
        aht = index.handle_times.mean(now) or self.settings.assumed_handle_seconds
        wait = estimated_wait(position, len(index.available), index.staffed(), aht)
        return wait if wait is not None else position * aht

    def enqueue(self, call: Call, queue: str, *, skills: tuple[str, ...] = (), priority: int = 0,
                max_wait: float = 300.0, announce: Announce | None = None,
                announce_every: float = 30.0, exit_keys: str = "") -> QueueOutcome:
        variables = call.caller.variables
        if variables.get(VAR_STAGE) == "talking":  # resumed or adopted while connected to an agent
            queue = variables.get(VAR_QUEUE) or queue
            call.labels["queue"] = queue
            outcome, onward = self._resume_talk(call, queue, variables.get(VAR_AGENT, ""))
            if onward is None:
                return outcome
            queue, resumed = onward, False
        elif queue not in self.router.queues:
            log.error("call %s: no queue '%s' in the ACD configuration", call.uuid, queue)
            return QueueOutcome(NO_AGENTS)
        else:
            resumed = variables.get(VAR_STAGE) == "queue"
            if resumed:
                queue = variables.get(VAR_QUEUE) or queue
        joined = self._joined_at(call, resumed)
        while True:  # overflows and transfers go on to the next queue
            call.labels["queue"] = queue
            outcome, onward = self._wait(call, queue, joined, resumed, skills, priority, max_wait, announce,
                                         announce_every, exit_keys)
            if onward is None:
                return outcome
            queue, joined, resumed = onward, self.clock(), False

    def _joined_at(self, call: Call, resumed: bool) -> float:
        if resumed:
            if VAR_QUEUE_JOINED not in call.caller.variables:  # an adopted call: ask the channel
                value = call.api(commands.getvar(call.uuid, VAR_QUEUE_JOINED)).strip()
                if value and not value.startswith("-ERR") and value != "_undef_":
                    call.caller.variables[VAR_QUEUE_JOINED] = value
            try:
                return float(call.caller.variables[VAR_QUEUE_JOINED])
            except (KeyError, ValueError):
                pass
        return self.clock()

    def _wait(self, call: Call, queue: str, joined: float, resumed: bool, skills: tuple[str, ...], priority: int,
              max_wait: float, announce: Announce | None, announce_every: float,
              exit_keys: str) -> tuple[QueueOutcome, str | None]:
        """One queue's wait: (the outcome, or the queue to go on to: an overflow or a transfer)."""
        settings = self.router.queues[queue].queue
        caller = call.caller
        if resumed and (answered := self._settle(call)) is not None:
            return self._connect(call, queue, answered, joined)
        self._cancel(call.uuid, self.router.member_left(call.uuid, self.clock()))  # a resumed call rejoins
        if not resumed:
            call.mark_stage("queue", **{VAR_QUEUE: queue, VAR_QUEUE_JOINED: f"{joined:.3f}"})
        # No I/O from joining to ENTER: the dispatcher cannot ring an agent before the call entered.
        self.router.member_joined(Member(call.uuid, queue, joined, priority=priority or None,
                                         skills={s: 1 for s in skills}, caller_id_number=caller.caller_id_number,
                                         caller_id_name=caller.caller_id_name), self.clock())
        call.marks.setdefault("queued", joined)
        if not resumed:
            call.registry.stats.queued(call, queue)
            call.journal(QueueEventKind.ENTER, position=self.router.position(call.uuid))
        self.poke()
        call.outcome = "abandoned"  # until an agent answers or the wait ends otherwise
        call.set_vars(park_after_bridge="true")  # once the agent hangs up, the caller stays for the flow
        call.caller.take_digits()  # keys typed at the menus before joining are not an exit
        limit = min(w for w in (max_wait, settings.max_wait) if w > 0) if max_wait > 0 or settings.max_wait > 0 else 0
        every = settings.announcements.every or (announce_every if announce is not None else 0)
        next_announce = self.clock() + every if every else float("inf")
        self._hold(call, settings)
        try:
            while True:
                now = self.clock()
                member = self.router.members.get(call.uuid)
                if member is not None and member.state is MemberState.WAITING:
                    reason = self._exit_due(settings, joined, limit, now)
                    if reason:
                        return self._leave(call, settings, joined, reason)
                deadlines = [next_announce, now + 1.0]  # once a second: the no-agent and max-wait checks
                item = call.next_item(max(0.0, min(deadlines) - now))
                # An AgentAnswered settled otherwise by a resume (leg gone, or connected already) is stale.
                if isinstance(item, AgentAnswered) and self._answered.get(call.uuid) is item:
                    return self._connect(call, queue, item, joined)
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
            self._abandoned(call, joined)
            raise

    def _exit_due(self, queue: Queue, joined: float, limit: float, now: float) -> str:
        """'max-wait', 'no-agent' (nobody logged in to serve the queue for max_wait_no_agent; 0
        means at once, as the interim queue did and a flow's on_no_agents expects), or ''."""
        if limit and now - joined >= limit:
            return "max-wait"
        if self.router.staffed(queue.name) == 0 and now - joined >= queue.max_wait_no_agent:
            return "no-agent"
        return ""

    def _leave(self, call: Call, queue: Queue, joined: float, reason: str,
               digit: str = "") -> tuple[QueueOutcome, str | None]:
        """Out of the queue without an agent: overflow to another queue, or back to the flow (an
        exit key always goes back to the flow, which maps it)."""
        now = self.clock()
        self._cancel(call.uuid, self.router.member_left(call.uuid, now))
        waited = round(now - joined, 3)
        target_kind, _, target = queue.overflow.partition(":")
        call.api(commands.break_media(call.uuid))
        if target_kind == "queue" and not digit:
            call.journal(QueueEventKind.OVERFLOW, wait_seconds=waited, target=queue.overflow)
            return QueueOutcome(TIMEOUT, waited=waited), target
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
                 joined: float) -> tuple[QueueOutcome, str | None]:
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
        return self._talk(call, queue, answered.agent, answered.leg, now - joined)

    def _settle(self, call: Call) -> AgentAnswered | None:
        """A queued caller resumed after an outage: the answers to its rings may have been lost
        with the connection (the BACKGROUND_JOB never came) or in its inbox. Ask the switch about
        each agent leg: the first one up and answered is the caller's agent (returned, the Router
        told); the others are hung up (one still ringing is offered again) or gone. No agent is
        blamed for a no-answer: rejoining the queue releases their offers."""
        rings = {uuid: ring for uuid, ring in self._rings.items() if ring.call is call}
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

    def _resume_talk(self, call: Call, queue: str, agent_id: str) -> tuple[QueueOutcome, str | None]:
        """A call resumed after an outage, or adopted by a restarted engine, while it talked."""
        deadline = self.clock() + ADOPT_WAIT
        while (leg := self._agent_leg(call)) is None and self.clock() < deadline:
            call.next_item(deadline - self.clock())
        if leg is not None and not leg.hungup and not self._exists(call, leg):
            leg.hungup = True  # gone while the node was away: its hangup events never came
        if queue in self.router.queues and agent_id in self.router.agents and (
                leg is not None and not leg.hungup):
            member = self.router.members.get(call.uuid)
            if member is None or member.state is not MemberState.ANSWERED:
                joined = self._joined_at(call, True)
                self.router.member_joined(Member(call.uuid, queue, joined), self.clock())
                self._cancel(call.uuid, self.router.offer_answered(call.uuid, agent_id, self.clock()))
        call.labels["agent"] = agent_id
        if leg is None or leg.hungup:
            self.router.call_ended(call.uuid, self.clock())
            self.poke()
            call.mark_stage("ivr")
            return QueueOutcome(ANSWERED, agent=agent_id), None
        return self._talk(call, queue, agent_id, leg, 0.0)

    @staticmethod
    def _agent_leg(call: Call) -> Leg | None:
        legs = [leg for leg in call.legs.values() if leg.role == "agent" and leg.answered]
        return next((leg for leg in legs if not leg.hungup), legs[-1] if legs else None)

    @staticmethod
    def _exists(call: Call, leg: Leg) -> bool:
        return call.api(f"uuid_exists {leg.uuid}").strip() == "true"

    def _talk(self, call: Call, queue: str, agent_id: str, leg: Leg,
              waited: float) -> tuple[QueueOutcome, str | None]:
        """Until the agent hangs up (the caller hanging up raises CallGone) or transfers the call
        (then: the queue to go on to); then wrap-up."""
        call.outcome = "answered"
        connected = call.marks.get("connected", self.clock())

        def complete(kind: QueueEventKind, **fields: Any) -> None:
            call.journal(kind, agent=agent_id, talk_seconds=round(self.clock() - connected, 3), **fields)

        # Resumed (the node dropped) passes through: the call is still on, the Router keeps it.
        try:
            while not leg.hungup:
                item = call.next_item(60.0)
                if isinstance(item, TransferTo):
                    # Blind: the agent's leg goes (its wrap-up starts), the caller stays parked
                    # (park_after_bridge) and joins the target as a new arrival there.
                    log.info("call %s: %s transfers it from agent %s to queue %s", call.uuid, item.by, agent_id,
                             item.queue)
                    complete(QueueEventKind.TRANSFER, target=f"queue:{item.queue}")
                    call.labels["transfer_target"] = f"queue:{item.queue}"
                    call.set_vars(**{VAR_CONTEXT: commands.display_text(f"from {queue} agent {agent_id}")})
                    self._hang_up(call, leg)
                    self._ended(call, agent_id)
                    return QueueOutcome(ANSWERED, agent=agent_id, waited=waited), item.queue
        except CallGone:
            complete(QueueEventKind.COMPLETE_CALLER)
            self._ended(call, agent_id)
            raise
        complete(QueueEventKind.COMPLETE_AGENT)
        self._ended(call, agent_id)
        call.mark_stage("ivr")
        return QueueOutcome(ANSWERED, agent=agent_id, waited=waited), None

    def _ended(self, call: Call, agent_id: str) -> None:
        agent = self.router.agents.get(agent_id)
        self.router.call_ended(call.uuid, self.clock())
        self.poke()
        if agent is not None and agent.state is AgentState.WRAP_UP and agent.wrap_ups:
            wrap = round(agent.wrap_ups[-1] - self.clock(), 3)
            gevent.spawn_later(max(0.0, wrap), self.agent_event, QueueEventKind.WRAP_UP, agent_id,
                               queue=call.labels.get("queue", ""), wrap_up_seconds=wrap)

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
