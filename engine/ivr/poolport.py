"""QueuePort over the spine's AgentPool (engine.minimal_route), until the ACD provides its own:
hold music, periodic position announcements, the longest-idle free agent rung with our own
Unique-ID, the bridge, and the caller back in the flow once the agent hangs up."""
from __future__ import annotations

import logging
import math

from engine.calls.call import Call, OriginateFailed
from engine.calls.leg import VAR_AGENT, VAR_QUEUE, VAR_STAGE
from engine.config import RouteSettings
from engine.errors import CallGone, CommandTimeout
from engine.esl import commands
from engine.ivr.ports import ANSWERED, NO_AGENTS, TIMEOUT, Announce, Position, QueueOutcome, QueueStatus
from engine.minimal_route import NO_ANSWER_PAUSE, AgentOffer, AgentPool

log = logging.getLogger(__name__)


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
        if variables.get(VAR_STAGE) == "talking":  # resumed while connected to an agent
            agent = variables.get(VAR_AGENT, "")
            self.pool.claim(agent)
            return self._talk(call, agent, 0.0)
        if not self.settings.agents:
            return QueueOutcome(NO_AGENTS)
        started = call.clock()
        call.mark_stage("queue", **{VAR_QUEUE: queue})
        call.registry.stats.queued(call, queue)
        call.outcome = "abandoned"  # until an agent answers or the wait runs out
        # Once the agent hangs up the caller stays (parked) for what the flow does next.
        call.set_vars(park_after_bridge="true")
        deadline = started + max_wait
        next_announce = started + announce_every if announce is not None else math.inf
        self._hold(call)
        while (now := call.clock()) < deadline:
            self.pool.request(call)
            try:
                offer = call.wait_for(lambda item: isinstance(item, AgentOffer), min(deadline, next_announce) - now,
                                      "free agent")
            except CommandTimeout:
                offer = None
            finally:
                self.pool.cancel(call)
            if offer is not None:
                if self._ring(call, offer.agent):
                    return self._talk(call, offer.agent, call.clock() - started)
                continue
            if announce is not None and call.clock() >= next_announce:
                status = self.status(queue)
                announce(Position(status.calls_waiting + 1, status.estimated_wait))
                self._hold(call)
                next_announce = call.clock() + announce_every
        self._return_late_offers(call)
        call.outcome = "timeout"
        call.api(commands.break_media(call.uuid))
        call.mark_stage("ivr")
        return QueueOutcome(TIMEOUT, waited=call.clock() - started)

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
        try:
            leg = call.originate(endpoint, {"origination_caller_id_number": caller.caller_id_number or "anonymous",
                                            VAR_AGENT: agent}, role="agent", timeout=settings.ring_seconds)
        except OriginateFailed as failed:
            log.info("call %s: agent %s did not answer (%s)", call.uuid, agent, failed.cause)
            self.pool.release(agent, pause=NO_ANSWER_PAUSE)
            return False
        except CallGone:
            self.pool.release(agent)
            raise
        call.outcome = "answered"
        call.api(commands.break_media(call.uuid))
        call.bridge(leg)
        call.registry.stats.connected(call)
        call.mark_stage("talking", **{VAR_AGENT: agent})
        return True

    def _talk(self, call: Call, agent: str, waited: float) -> QueueOutcome:
        """Until the agent hangs up (the caller hanging up raises CallGone); the agent is free again."""
        call.outcome = "answered"
        try:
            while not any(leg.role == "agent" for leg in call.legs.values()) or not all(
                    leg.hungup for leg in call.legs.values() if leg.role == "agent"):
                call.next_item(60.0)
        finally:
            self.pool.release(agent)
        call.mark_stage("ivr")
        return QueueOutcome(ANSWERED, agent=agent, waited=waited)
