"""The ACD's plain data: agents, queues, tiers and members (waiting calls), after mod_callcenter.

Agent *status* is what the agent (or a supervisor) chose: Logged Out, Available, Available (On
Demand), On Break with a reason code. Agent *state* is what the ACD is doing with the agent:
Waiting, Receiving, In a queue call, Wrap-up, Idle. mod_callcenter has no Wrap-up state: its
agent stays "Waiting" and is simply not offered calls until last_bridge_end + wrap_up_time; an
On-Demand agent goes "Idle" after a call until it asks for the next. We name wrap-up as its own
state so a supervisor sees it; `callcenter_state()` gives mod_callcenter's name for the wire.

The configuration fields of Agent come from the YAML or the database; its live fields (status,
counters, calls under way) belong to the Router, which keeps its indexes in step with them:
change them through the Router's methods only.

Transfers: a talking call goes to a `Target` (agent, queue or flow); an attended transfer is the
small state machine `consult_step` (ringing -> consulting -> complete or cancel), pure so its
every path is visible in one table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, NamedTuple


class AgentStatus(str, Enum):
    LOGGED_OUT = "Logged Out"
    AVAILABLE = "Available"
    AVAILABLE_ON_DEMAND = "Available (On Demand)"
    ON_BREAK = "On Break"

    @property
    def takes_calls(self) -> bool:
        return self in _TAKING_CALLS


_TAKING_CALLS = frozenset({AgentStatus.AVAILABLE, AgentStatus.AVAILABLE_ON_DEMAND})


class AgentState(str, Enum):
    WAITING = "Waiting"
    RECEIVING = "Receiving"
    IN_A_QUEUE_CALL = "In a queue call"
    WRAP_UP = "Wrap-up"
    IDLE = "Idle"


class Strategy(str, Enum):
    """mod_callcenter's strategy names, plus skills-best-match."""

    LONGEST_IDLE_AGENT = "longest-idle-agent"
    ROUND_ROBIN = "round-robin"
    TOP_DOWN = "top-down"
    RING_ALL = "ring-all"
    FEWEST_CALLS = "agent-with-fewest-calls"
    LEAST_TALK_TIME = "agent-with-least-talk-time"
    RANDOM = "random"
    SEQUENTIALLY_BY_AGENT_ORDER = "sequentially-by-agent-order"
    RING_PROGRESSIVELY = "ring-progressively"
    SKILLS_BEST_MATCH = "skills-best-match"


class MemberState(str, Enum):
    WAITING = "Waiting"
    TRYING = "Trying"      # an agent (or several: ring-all) is being rung for it
    ANSWERED = "Answered"


# Hangup causes of a failed agent leg that start the busy / reject delay; any other failure
# (NO_ANSWER, NO_USER_RESPONSE, USER_NOT_REGISTERED, ...) counts as a no-answer.
BUSY_CAUSES = frozenset({"USER_BUSY"})
REJECT_CAUSES = frozenset({"CALL_REJECTED"})
NO_ANSWER_REASON = "no-answer"  # the break reason after max-no-answer misses in a row


@dataclass(slots=True)
class Agent:
    id: str
    name: str = ""
    contacts: Mapping[str, str] = field(default_factory=dict)  # node name -> dial string
    skills: Mapping[str, int] = field(default_factory=dict)    # skill -> level 1..10
    max_calls: int = 1
    wrap_up_time: float = 0.0
    max_no_answer: int = 0  # 0: never put on break for missing calls
    reject_delay_time: float = 0.0
    busy_delay_time: float = 0.0
    no_answer_delay_time: float = 0.0

    # Live fields, owned by the Router.
    status: AgentStatus = AgentStatus.LOGGED_OUT
    break_reason: str = ""
    last_status_change: float = 0.0
    idle_since: float = 0.0         # when it last became free to take a call
    ready_time: float = 0.0         # not offered before this (delay after a busy/reject/no answer)
    last_offered_call: float = 0.0
    last_bridge_start: dict[str, float] = field(default_factory=dict)  # call uuid -> answered at
    last_bridge_end: float = 0.0
    no_answer_count: int = 0
    calls_answered: int = 0
    talk_time: float = 0.0
    offers: set[str] = field(default_factory=set)   # calls ringing this agent
    calls: set[str] = field(default_factory=set)    # calls connected to this agent
    wrap_ups: list[float] = field(default_factory=list)  # end times; each holds one unit of capacity
    on_demand_idle: bool = False    # an On-Demand agent after a call, until it asks for the next

    @property
    def used(self) -> int:
        return len(self.offers) + len(self.calls) + len(self.wrap_ups)

    @property
    def state(self) -> AgentState:
        if self.offers:
            return AgentState.RECEIVING
        if self.calls:
            return AgentState.IN_A_QUEUE_CALL
        if self.wrap_ups:
            return AgentState.WRAP_UP
        if self.on_demand_idle:
            return AgentState.IDLE
        return AgentState.WAITING

    def callcenter_state(self) -> str:
        """The state as mod_callcenter would report it (see the module docstring)."""
        state = self.state
        if state is AgentState.WRAP_UP:
            return (AgentState.IDLE if self.status is AgentStatus.AVAILABLE_ON_DEMAND else AgentState.WAITING).value
        return state.value

    def can_take_call(self, now: float) -> bool:
        return (self.status in _TAKING_CALLS and not self.on_demand_idle and self.ready_time <= now
                and len(self.offers) + len(self.calls) + len(self.wrap_ups) < self.max_calls)


@dataclass(frozen=True)
class TierRules:
    """mod_callcenter's tier rules: a call reaches the agents of tier level L only after waiting
    L x wait_second (multiply_level) or wait_second; no_agent_no_wait skips the wait when the
    level before has nobody logged in. The lowest level is always reachable."""

    apply: bool = False
    wait_second: float = 300.0
    multiply_level: bool = True
    no_agent_no_wait: bool = True


@dataclass(frozen=True)
class RelaxStep:
    """app_queue's penalty rules, as skill levels: after `after` seconds of waiting the call
    accepts agents with level `min_level` in the named skills (every required skill if none)."""

    after: float
    min_level: int
    skills: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Announcements:
    every: float = 0.0              # seconds between announcements; 0: none
    position: bool = False
    estimated_wait: bool = False
    sound: str = ""                 # mod_callcenter's announce-sound, played every `every` seconds
    to_agent: bool = False          # whisper the queue's name to the agent before the bridge


@dataclass(frozen=True)
class Recording:
    """Which of a queue's conversations are recorded: all, none, or a sampled percentage, after an
    optional announcement to the caller."""

    mode: str = "none"  # all | none | sampled
    percent: float = 0.0
    announce: str = ""


@dataclass(frozen=True)
class Queue:
    name: str
    strategy: Strategy = Strategy.LONGEST_IDLE_AGENT
    skills: Mapping[str, int] = field(default_factory=dict)  # required skill -> minimum level
    priority: int = 0                  # a member's priority unless it brings its own
    service_level_seconds: float = 20.0  # T of "answered within T"
    service_level_target: float = 0.8
    max_wait: float = 0.0              # 0: no limit
    max_wait_no_agent: float = 0.0
    overflow: str = ""                 # where max-wait and no-agent exits go: "queue:NAME", "flow:NAME"
    announcements: Announcements = Announcements()
    moh: str = "local_stream://moh"
    wrap_up_time: float | None = None  # overrides the agents' own
    recording: Recording = Recording()
    tier_rules: TierRules = TierRules()
    relax: tuple[RelaxStep, ...] = ()  # ascending by `after`
    ring_progressively_delay: float = 10.0
    # A head call passed over this many times for an agent it could have had gets the next one,
    # whatever the other queues' priorities: no queue sharing agents starves.
    starvation_limit: int = 3


@dataclass(frozen=True)
class Tier:
    agent: str
    queue: str
    level: int = 1
    position: int = 1


@dataclass(slots=True)
class Member:
    """A waiting call. joined_at is the ORIGINAL join time: a restarted engine restores it from
    the channel variable, so the call keeps its place and its wait counts from the start."""

    uuid: str
    queue: str
    joined_at: float
    priority: int | None = None        # None: the queue's
    skills: Mapping[str, int] = field(default_factory=dict)  # needs beyond the queue's (IVR choices)
    caller_id_number: str = ""
    caller_id_name: str = ""

    # Live fields, owned by the Router.
    state: MemberState = MemberState.WAITING
    offers: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)   # agents that missed it (top-down moves past them)
    passed_over: int = 0
    rung_at: float = 0.0               # when the last agent started ringing for it
    agent: str = ""                    # who answered


class Offer(NamedTuple):
    """Ring this agent for this call (ring-all gives several offers for one call)."""

    call_uuid: str
    queue: str
    agent: str


# ---------------------------------------------------------------------- transfers
class TargetKind(str, Enum):
    AGENT = "agent"  # rung directly (a personal queue), back to the caller's queue if it does not answer
    QUEUE = "queue"  # second or third line: the caller joins that queue
    FLOW = "flow"    # an IVR flow of dialplans/, from its start node, with the data collected so far


@dataclass(frozen=True)
class Target:
    """Where a talking call is transferred: `agent:ID`, `queue:NAME` or `flow:NAME`."""

    kind: TargetKind
    name: str

    @classmethod
    def parse(cls, text: str) -> "Target":
        """ValueError (the API's 422) unless `text` is kind:name with a known kind."""
        kind, _, name = text.partition(":")
        if not name or kind not in {k.value for k in TargetKind}:
            raise ValueError(f"cannot transfer to '{text}': give agent:ID, queue:NAME or flow:NAME")
        return cls(TargetKind(kind), name)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.name}"


PERSONAL_PREFIX = "agent:"  # a personal queue is named after the target it stands for
PERSONAL_PRIORITY = 1000  # a call transferred to an agent is that agent's next call, before any queue's


def personal_queue(agent_id: str) -> Queue:
    """The queue that routes a call to one agent only (its sole tier): blind and attended
    transfers to an agent wait there, so the Router reserves the agent like any offer."""
    return Queue(name=PERSONAL_PREFIX + agent_id, strategy=Strategy.TOP_DOWN, priority=PERSONAL_PRIORITY)


def is_personal(queue_name: str) -> bool:
    return queue_name.startswith(PERSONAL_PREFIX)


class Consult(str, Enum):
    """An attended transfer under way: the first agent and the caller (on hold) wait for the target."""

    RINGING = "ringing"        # the target is being rung; the first agent is still on the call
    CONSULTING = "consulting"  # the target answered and talks with the first agent; the caller holds
    UNATTENDED = "unattended"  # the first agent hung up while the target rang: blind from now on


class ConsultEvent(str, Enum):
    ANSWERED = "answered"        # the target's leg answered
    FAILED = "failed"            # the target did not answer (or was never free in time)
    COMPLETE = "complete"        # the first agent (or a supervisor) completes the transfer
    CANCEL = "cancel"            # ... or cancels it
    TARGET_GONE = "target_gone"  # the target hung up during the consultation
    AGENT_GONE = "agent_gone"    # the first agent hung up


class ConsultAction(str, Enum):
    NONE = "none"
    CONSULT = "consult"    # bridge the first agent with the target; the caller hears music
    RETURN = "return"      # the caller back to the first agent; the target released
    CONNECT = "connect"    # the caller to the target; the first agent released into wrap-up
    REQUEUE = "requeue"    # nobody left to talk to: the caller back to its queue, at its place


_CONSULT_STEPS: dict[tuple[Consult, ConsultEvent], tuple[Consult | None, ConsultAction]] = {
    (Consult.RINGING, ConsultEvent.ANSWERED): (Consult.CONSULTING, ConsultAction.CONSULT),
    (Consult.RINGING, ConsultEvent.FAILED): (None, ConsultAction.RETURN),
    (Consult.RINGING, ConsultEvent.CANCEL): (None, ConsultAction.RETURN),
    (Consult.RINGING, ConsultEvent.AGENT_GONE): (Consult.UNATTENDED, ConsultAction.NONE),
    (Consult.CONSULTING, ConsultEvent.COMPLETE): (None, ConsultAction.CONNECT),
    (Consult.CONSULTING, ConsultEvent.CANCEL): (None, ConsultAction.RETURN),
    (Consult.CONSULTING, ConsultEvent.TARGET_GONE): (None, ConsultAction.RETURN),
    # A PBX's rule: the first agent hanging up during the consultation completes the transfer.
    (Consult.CONSULTING, ConsultEvent.AGENT_GONE): (None, ConsultAction.CONNECT),
    (Consult.UNATTENDED, ConsultEvent.ANSWERED): (None, ConsultAction.CONNECT),
    (Consult.UNATTENDED, ConsultEvent.FAILED): (None, ConsultAction.REQUEUE),
}


def consult_step(state: Consult, event: ConsultEvent) -> tuple[Consult | None, ConsultAction]:
    """The attended transfer's next state (None: over) and what to do; an event that means
    nothing in `state` (complete while the target still rings) changes nothing."""
    return _CONSULT_STEPS.get((state, event), (state, ConsultAction.NONE))
