"""The spine's built-in route, until the IVR (engine/ivr) and the ACD (engine/acd) replace it:
answer, greet, a one-digit menu, hold music, then the longest-idle free agent from a fixed list,
first come first served; a caller nobody answers within max_wait is told goodbye.

It exercises every primitive the real capabilities use (execute with Event-UUID, digits,
originate with our own Unique-ID, uuid_bridge, stage variables for adoption) and keeps the demo
and the end-to-end tests honest until then.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Callable

from engine.calls.call import Call, OriginateFailed
from engine.channelvars import VAR_AGENT, VAR_ENTRY, VAR_JOINED, VAR_QUEUE, VAR_STAGE
from engine.cdr.queue_log import QueueEventKind
from engine.config import RouteSettings
from engine.errors import CallGone, CommandTimeout
from engine.esl import commands

log = logging.getLogger(__name__)

MENU = {"1": "sales", "2": "support"}
DEFAULT_QUEUE = "general"
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


class MinimalRoute:
    def __init__(self, settings: RouteSettings, pool: AgentPool) -> None:
        self.settings = settings
        self.pool = pool

    def __call__(self, call: Call, resumed: bool) -> None:
        variables = call.caller.variables
        call.labels["entry"] = variables.get(VAR_ENTRY, "")
        call.outcome = call.outcome or "ended_in_ivr"
        stage = variables.get(VAR_STAGE, "") if resumed else ""
        if stage == "talking":  # resumed or adopted while connected to an agent
            call.outcome = "answered"
            agent = variables.get(VAR_AGENT, "")
            call.labels.update(queue=variables.get(VAR_QUEUE, DEFAULT_QUEUE), agent=agent)
            self.pool.claim(agent)
            self._supervise_talk(call, agent)
            return
        # A resumed call is re-parked too: that also stops whatever was playing when contact was lost.
        call.take_control(self.settings.park_timeout_seconds)
        if not resumed:
            call.mark_stage("ivr")
            call.answer()
            call.playback(self.settings.greeting)
        queue = call.caller.variables.get(VAR_QUEUE) if stage == "queue" else None
        if queue is None:
            digit = call.play_and_get_digits(self.settings.menu_prompt, timeout_ms=self.settings.menu_timeout_ms,
                                             regex="[0-9*#]")
            queue = MENU.get(digit, DEFAULT_QUEUE)
            call.labels["queue"] = queue
            call.marks["queued"] = call.clock()
            call.mark_stage("queue", **{VAR_QUEUE: queue})
            call.registry.stats.queued(call, queue)
            call.journal(QueueEventKind.ENTER, position=self.pool.waiting() + 1)
        call.labels["queue"] = queue
        call.marks.setdefault("queued", float(call.caller.variables.get(VAR_JOINED, call.clock())))
        call.outcome = "abandoned"  # until an agent answers or the wait runs out
        self._wait_for_agent(call)

    def _wait_for_agent(self, call: Call) -> None:
        settings = self.settings
        deadline = call.clock() + settings.max_wait_seconds
        self._start_hold_music(call)
        while call.clock() < deadline:
            self.pool.request(call)
            try:
                offer = call.wait_for(lambda item: isinstance(item, AgentOffer), deadline - call.clock(),
                                      "free agent")
            except CommandTimeout:
                break
            except CallGone:
                call.journal(QueueEventKind.ABANDON, position=self.pool.position(call),
                             wait_seconds=round(call.clock() - call.marks["queued"], 3))
                raise
            finally:
                self.pool.cancel(call)
            if self._ring(call, offer.agent):
                return
        call.outcome = "timeout"
        call.marks["left_queue"] = call.clock()
        call.journal(QueueEventKind.TIMEOUT, wait_seconds=round(call.marks["left_queue"] - call.marks["queued"], 3))
        call.api(commands.break_media(call.uuid))
        call.hangup("NORMAL_CLEARING")

    def _start_hold_music(self, call: Call) -> None:
        """Music on hold runs without waiting: uuid_broadcast plays it while the engine looks for an agent."""
        call.api(commands.broadcast(call.uuid, self.settings.hold_music))

    def _ring(self, call: Call, agent: str) -> bool:
        settings = self.settings
        endpoint = f"user/{agent}@{settings.agent_domain}" if settings.agent_domain else f"user/{agent}"
        caller = call.caller
        call.journal(QueueEventKind.RING_AGENT, agent=agent)
        rang = call.clock()
        try:
            leg = call.originate(endpoint, {"origination_caller_id_number": caller.caller_id_number,
                                            "origination_caller_id_name": caller.caller_id_name,
                                            VAR_AGENT: agent, VAR_QUEUE: call.labels["queue"]},
                                 role="agent", timeout=settings.ring_seconds)
        except OriginateFailed as failed:
            log.info("call %s: agent %s did not answer (%s)", call.uuid, agent, failed.cause)
            call.marks["ringing"] = call.marks.get("ringing", 0.0) + call.clock() - rang
            call.journal(QueueEventKind.RING_NO_ANSWER, agent=agent, ring_seconds=round(call.clock() - rang, 3),
                         reason=failed.cause)
            self.pool.release(agent, pause=NO_ANSWER_PAUSE)
            return False
        except CallGone:
            call.marks["ringing"] = call.marks.get("ringing", 0.0) + call.clock() - rang
            call.journal(QueueEventKind.ABANDON, position=1, wait_seconds=round(call.clock() - call.marks["queued"], 3))
            self.pool.release(agent)
            raise
        call.marks["ringing"] = call.marks.get("ringing", 0.0) + call.clock() - rang
        call.marks["connected"] = call.clock()
        call.labels["agent"] = agent
        call.outcome = "answered"
        call.api(commands.break_media(call.uuid))
        call.bridge(leg)
        call.registry.stats.connected(call)
        call.journal(QueueEventKind.CONNECT, agent=agent,
                     wait_seconds=round(call.marks["connected"] - call.marks["queued"], 3),
                     ring_seconds=round(call.marks["ringing"], 3))
        call.mark_stage("talking", **{VAR_AGENT: agent})
        self._supervise_talk(call, agent)
        return True

    def _supervise_talk(self, call: Call, agent: str) -> None:
        """Until either side hangs up; then the other side is hung up and the agent is free again."""
        def agent_gone() -> bool:
            agent_legs = [leg for leg in call.legs.values() if leg.role == "agent"]
            return bool(agent_legs) and all(leg.hungup for leg in agent_legs)

        connected = call.marks.get("connected", float(call.caller.variables.get(VAR_JOINED, call.clock())))

        def complete(kind: QueueEventKind) -> None:
            call.journal(kind, agent=agent, talk_seconds=round(call.clock() - connected, 3))

        try:
            while not agent_gone():
                call.next_item(60.0)
            complete(QueueEventKind.COMPLETE_AGENT)
            call.hangup("NORMAL_CLEARING")
        except CallGone:
            complete(QueueEventKind.COMPLETE_CALLER)
            raise
        finally:
            if agent:
                self.pool.release(agent)
