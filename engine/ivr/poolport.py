"""The interim queue until the ACD (engine/acd) takes over: one shared list of agents serving
every queue, the longest-idle free agent to the caller waiting longest, behind the IVR's
QueuePort. Hold music, periodic position announcements, the agent rung with our own Unique-ID,
the bridge, the queue log events, and the caller back in the flow once the agent hangs up."""
from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

from engine.calls.call import Call, OriginateFailed
from engine.cdr.queue_log import QueueEventKind
from engine.channelvars import VAR_AGENT, VAR_JOINED, VAR_QUEUE, VAR_STAGE
from engine.config import RouteSettings
from engine.errors import CallGone, CommandTimeout
from engine.esl import commands
from engine.ivr.ports import ANSWERED, NO_AGENTS, TIMEOUT, Announce, Position, QueueOutcome, QueueStatus

log = logging.getLogger(__name__)

NO_ANSWER_PAUSE = 10.0  # an agent who let a call ring out is skipped for this long


@dataclass(frozen=True)
class AgentOffer:
    agent: str


class AgentPool:
    """A fixed list of agents; the longest idle free one goes to the caller waiting longest."""

    def __init__(self, agents: tuple[str, ...], clock: Callable[[], float]) -> None:
        self.clock = clock
        self._free_since: dict[str, float] = {a: clock() for a in agents}
        self._waiting: deque[Call] = deque()

    def request(self, call: Call) -> None:
        self._waiting.append(call)
        self._dispatch()

    def claim(self, agent: str) -> None:
        """An agent found talking on a call the engine adopted is not free."""
        self._free_since.pop(agent, None)

    def waiting(self) -> int:
        return len(self._waiting)

    def position(self, call: Call) -> int | None:
        """1 for the caller at the head of the line; None when not waiting."""
        return self._waiting.index(call) + 1 if call in self._waiting else None

    def cancel(self, call: Call) -> None:
        if call in self._waiting:
            self._waiting.remove(call)

    def release(self, agent: str, pause: float = 0.0) -> None:
        self._free_since[agent] = self.clock() + pause
        self._dispatch()

    def _dispatch(self) -> None:
        now = self.clock()
        while self._waiting:
            ready = [(since, a) for a, since in self._free_since.items() if since <= now]
            if not ready:
                return
            _, agent = min(ready)
            del self._free_since[agent]
            self._waiting.popleft().inbox.put(AgentOffer(agent))

    def tick(self) -> None:
        """Agents whose pause has run out become available to waiting callers."""
        self._dispatch()

    def status(self) -> dict[str, int]:
        now = self.clock()
        free = sum(1 for since in self._free_since.values() if since <= now)
        return {"agents_free": free, "callers_waiting": len(self._waiting)}


class AgentPoolPort:
    def __init__(self, pool: AgentPool, settings: RouteSettings, *, handle_seconds: float = 180.0) -> None:
        self.pool = pool
        self.settings = settings
        self.handle_seconds = handle_seconds  # assumed mean talk time, for the wait estimate

    def status(self, queue: str) -> QueueStatus:
        now = self.pool.status()
        agents = max(1, len(self.settings.agents))
        wait = 0.0 if now["agents_free"] else (now["callers_waiting"] + 1) * self.handle_seconds / agents
        return QueueStatus(now["agents_free"], now["callers_waiting"], wait)

    def enqueue(self, call: Call, queue: str, *, skills: tuple[str, ...] = (), priority: int = 0,
                max_wait: float = 300.0, announce: Announce | None = None,
                announce_every: float = 30.0) -> QueueOutcome:
        variables = call.caller.variables
        call.labels["queue"] = queue
        if variables.get(VAR_STAGE) == "talking":  # resumed while connected to an agent
            agent = variables.get(VAR_AGENT, "")
            call.labels["agent"] = agent
            self.pool.claim(agent)
            return self._talk(call, agent, 0.0)
        if not self.settings.agents:
            return QueueOutcome(NO_AGENTS)
        if variables.get(VAR_STAGE) != "queue":  # not a call resumed while it waited
            call.marks["queued"] = call.clock()
            call.mark_stage("queue", **{VAR_QUEUE: queue})
            call.registry.stats.queued(call, queue)
            call.journal(QueueEventKind.ENTER, position=self.pool.waiting() + 1)
        started = call.marks.setdefault("queued", float(variables.get(VAR_JOINED, call.clock())))
        call.outcome = "abandoned"  # until an agent answers or the wait runs out
        # Once the agent hangs up the caller stays (parked) for what the flow does next.
        call.set_vars(park_after_bridge="true")
        deadline = started + max_wait
        next_announce = call.clock() + announce_every if announce is not None else math.inf
        self._hold(call)
        while (now := call.clock()) < deadline:
            self.pool.request(call)
            try:
                offer = call.wait_for(lambda item: isinstance(item, AgentOffer), min(deadline, next_announce) - now,
                                      "free agent")
            except CommandTimeout:
                offer = None
            except CallGone:
                call.journal(QueueEventKind.ABANDON, position=self.pool.position(call), wait_seconds=self._waited(call))
                raise
            finally:
                self.pool.cancel(call)
            if offer is not None:
                if self._ring(call, offer.agent):
                    return self._talk(call, offer.agent, call.marks["connected"] - started)
                continue
            if announce is not None and call.clock() >= next_announce:
                status = self.status(queue)
                announce(Position(status.calls_waiting + 1, status.estimated_wait))
                self._hold(call)
                next_announce = call.clock() + announce_every
        self._return_late_offers(call)
        call.outcome = "timeout"
        call.marks["left_queue"] = call.clock()
        call.journal(QueueEventKind.TIMEOUT, wait_seconds=self._waited(call))
        call.api(commands.break_media(call.uuid))
        call.mark_stage("ivr")
        return QueueOutcome(TIMEOUT, waited=call.clock() - started)

    @staticmethod
    def _waited(call: Call) -> float:
        return round(call.clock() - call.marks["queued"], 3)

    def _hold(self, call: Call) -> None:
        call.api(commands.broadcast(call.uuid, self.settings.hold_music))

    def _return_late_offers(self, call: Call) -> None:
        """An agent offered just as the wait ran out goes back to the pool."""
        while (item := call.next_item(0)) is not None:
            if isinstance(item, AgentOffer):
                self.pool.release(item.agent)

    def _ring(self, call: Call, agent: str) -> bool:
        settings = self.settings
        endpoint = f"user/{agent}@{settings.agent_domain}" if settings.agent_domain else f"user/{agent}"
        caller = call.caller
        call.journal(QueueEventKind.RING_AGENT, agent=agent)
        rang = call.clock()

        def rung() -> float:
            call.marks["ringing"] = call.marks.get("ringing", 0.0) + call.clock() - rang
            return round(call.clock() - rang, 3)

        try:
            leg = call.originate(endpoint, {"origination_caller_id_number": caller.caller_id_number or "anonymous",
                                            "origination_caller_id_name": caller.caller_id_name or "",
                                            VAR_AGENT: agent, VAR_QUEUE: call.labels["queue"]},
                                 role="agent", timeout=settings.ring_seconds)
        except OriginateFailed as failed:
            log.info("call %s: agent %s did not answer (%s)", call.uuid, agent, failed.cause)
            call.journal(QueueEventKind.RING_NO_ANSWER, agent=agent, ring_seconds=rung(), reason=failed.cause)
            self.pool.release(agent, pause=NO_ANSWER_PAUSE)
            return False
        except CallGone:
            rung()
            call.journal(QueueEventKind.ABANDON, position=1, wait_seconds=self._waited(call))
            self.pool.release(agent)
            raise
        rung()
        call.marks["connected"] = call.clock()
        call.labels["agent"] = agent
        call.outcome = "answered"
        call.api(commands.break_media(call.uuid))
        call.bridge(leg)
        call.registry.stats.connected(call)
        call.journal(QueueEventKind.CONNECT, agent=agent, wait_seconds=round(call.marks["connected"] -
                                                                             call.marks["queued"], 3),
                     ring_seconds=round(call.marks["ringing"], 3))
        call.mark_stage("talking", **{VAR_AGENT: agent})
        return True

    def _talk(self, call: Call, agent: str, waited: float) -> QueueOutcome:
        """Until the agent hangs up (the caller hanging up raises CallGone); the agent is free again."""
        call.outcome = "answered"
        connected = call.marks.get("connected", call.clock())

        def complete(kind: QueueEventKind) -> None:
            call.journal(kind, agent=agent, talk_seconds=round(call.clock() - connected, 3))

        try:
            while not any(leg.role == "agent" for leg in call.legs.values()) or not all(
                    leg.hungup for leg in call.legs.values() if leg.role == "agent"):
                call.next_item(60.0)
            complete(QueueEventKind.COMPLETE_AGENT)
        except CallGone:
            complete(QueueEventKind.COMPLETE_CALLER)
            raise
        finally:
            self.pool.release(agent)
        call.mark_stage("ivr")
        return QueueOutcome(ANSWERED, agent=agent, waited=waited)
