"""What each capability tells the metrics at scrape time: plain snapshots, one source per capability.

A source is a function returning snapshots; the ACD and the dialer each register theirs with
`EngineMetrics` when they land. Until the ACD replaces it, `SpineQueues` reads the minimal route's
agent pool and the calls in the registry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from engine.channelvars import VAR_QUEUE, VAR_STAGE

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


class SpineQueues:
    """The interim queues (engine.ivr.poolport) until the ACD: every queue the flows name is served
    by the one shared agent list, open always.

    Agents not waiting are reported In a queue call while a caller talks to them, Idle otherwise
    (ringing, or resting after a call they let ring out).
    """

    def __init__(self, registry: Any, pool: Any, agents: int, queues: Callable[[], Iterable[str]],
                 clock: Callable[[], float], estimate: Callable[[str], float | None] = lambda queue: None) -> None:
        self.registry = registry
        self.pool = pool
        self.agents = agents
        self.queues = queues
        self.clock = clock
        self.estimate = estimate

    def __call__(self) -> list[QueueSnapshot]:
        now = self.clock()
        waits: dict[str, list[float]] = {q: [] for q in self.queues()}
        talking = 0
        for call in self.registry.calls:
            variables = call.caller.variables
            stage = variables.get(VAR_STAGE)
            if stage == "talking":
                talking += 1
            elif stage == "queue" and (queue := variables.get(VAR_QUEUE)):
                joined = call.marks.get("queued", call.started)
                waits.setdefault(queue, []).append(max(0.0, now - joined))
        free = self.pool.status()["agents_free"]
        agents = {(AVAILABLE, WAITING): free, (AVAILABLE, IN_QUEUE_CALL): min(talking, self.agents - free)}
        agents[(AVAILABLE, IDLE)] = max(0, self.agents - free - agents[(AVAILABLE, IN_QUEUE_CALL)])
        return [QueueSnapshot(queue=queue, waiting=len(found), longest_wait_seconds=max(found, default=0.0),
                              agents=agents, estimated_wait_seconds=self.estimate(queue))
                for queue, found in sorted(waits.items())]
