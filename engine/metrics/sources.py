"""What each capability tells the metrics at scrape time: plain snapshots, one source per capability.

A source is a function returning snapshots; the ACD (`AcdQueues`) and the dialer each register
theirs with `EngineMetrics`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

# mod_callcenter's agent status (what the agent chose) and state (what the agent is doing).
LOGGED_OUT, AVAILABLE, ON_BREAK = "Logged Out", "Available", "On Break"
WAITING, IN_QUEUE_CALL, IDLE = "Waiting", "In a queue call", "Idle"  # and "Receiving" (ringing)

# callrouter_stage values, in the order a call goes through them; "new" until the first is set.
STAGES = ("new", "ivr", "queue", "talking", "wrapup")


@dataclass(frozen=True)
class QueueSnapshot:
    queue: str
    waiting: int  # callers in the queue now
    longest_wait_seconds: float  # of the callers waiting now; 0 when none
    agents: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, state) -> agents
    open: bool = True  # within the queue's opening hours
    estimated_wait_seconds: float | None = None  # for a caller joining now; None when unknown


@dataclass(frozen=True)
class CampaignSnapshot:
    campaign: str
    dialed: int  # attempts since start (counters: Prometheus takes rates)
    answered: int  # attempts answered by a person
    abandoned: int  # answered attempts dropped with no agent to take them
    abandon_ratio: float  # as the dialer regulates it, over its compliance period
    abandon_cap_ratio: float  # the campaign's cap on that ratio (e.g. 0.03)
    pacing_ratio: float  # lines dialled per available agent, as the pacer set it
    contacts_remaining: int


QueueSource = Callable[[], Iterable[QueueSnapshot]]
CampaignSource = Callable[[], Iterable[CampaignSnapshot]]


class AcdQueues:
    """The ACD's queues (engine.acd): callers waiting, the longest wait, the agents of each queue's
    tiers by status and state, and the Router's estimated wait for a caller joining now."""

    def __init__(self, acd: Any, clock: Callable[[], float]) -> None:
        self.acd = acd
        self.clock = clock

    def __call__(self) -> list[QueueSnapshot]:
        now = self.clock()
        router = self.acd.router
        snapshots = []
        for name in self.acd.queue_names():
            waiting = router.waiting(name)
            agents: dict[tuple[str, str], int] = {}
            for agent_id in router.tiers(name):
                agent = router.agents[agent_id]
                key = (agent.status.value, agent.callcenter_state())
                agents[key] = agents.get(key, 0) + 1
            snapshots.append(QueueSnapshot(
                queue=name, waiting=len(waiting),
                longest_wait_seconds=max((now - m.joined_at for m in waiting), default=0.0),
                agents=agents, estimated_wait_seconds=self.acd.estimated_wait(name)))
        return snapshots
