"""The dialer's plain data: campaigns and their rules, contacts (leads), attempts, dispositions."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, time


class Mode(str, enum.Enum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"
    BROADCAST = "broadcast"
    SURVEY = "survey"


class AbandonRule(str, enum.Enum):
    TSR = "TSR"        # US TSR/FCC: abandoned / live answers over each successive 30-day period
    OFCOM = "Ofcom"    # UK: per 24 h, AMD false positives counted, no redial for 72 h


class CampaignState(str, enum.Enum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DONE = "done"


class Disposition(str, enum.Enum):
    """System dispositions of an attempt; agents add their own (free text) at wrap-up."""
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    MACHINE = "machine"
    INVALID = "invalid"
    DNC = "DNC"
    ABANDONED = "abandoned"


class ContactState(str, enum.Enum):
    NEW = "new"            # never dialled
    RETRY = "retry"        # dialled, due again at next_attempt_at
    DIALING = "dialing"    # an attempt is in flight: never picked twice, even after a restart
    DONE = "done"          # reached, or rules say stop
    DNC = "dnc"
    INVALID = "invalid"


# The hangup causes a failed originate returns, as dispositions.
CAUSE_DISPOSITIONS = {
    "USER_BUSY": Disposition.BUSY,
    "NO_ANSWER": Disposition.NO_ANSWER,
    "NO_USER_RESPONSE": Disposition.NO_ANSWER,
    "ORIGINATOR_CANCEL": Disposition.NO_ANSWER,
    "UNALLOCATED_NUMBER": Disposition.INVALID,
    "NO_ROUTE_DESTINATION": Disposition.INVALID,
    "INVALID_NUMBER_FORMAT": Disposition.INVALID,
    "CALL_REJECTED": Disposition.BUSY,
}

MIN_RING_TIMEOUT = 15.0
ABANDON_CAP = 0.03
ABANDON_GRACE_SECONDS = 2.0   # an agent must be on the line within this of the greeting's end


@dataclass(frozen=True)
class RetryRule:
    """After `disposition`, dial again `delay` seconds later, at most `max_retries` times for it."""
    disposition: str
    delay: float
    max_retries: int


DEFAULT_RETRY_RULES = (
    RetryRule(Disposition.BUSY.value, 600.0, 5),
    RetryRule(Disposition.NO_ANSWER.value, 7200.0, 5),
    RetryRule(Disposition.MACHINE.value, 86400.0, 2),
    RetryRule(Disposition.ABANDONED.value, 3600.0, 3),
)


@dataclass(frozen=True)
class CallingWindow:
    """Local time of day in which a contact may be called, e.g. 08:00-21:00 (end excluded)."""
    start: time = time(8, 0)
    end: time = time(21, 0)
    weekdays: frozenset[int] = frozenset(range(7))  # Monday = 0


@dataclass
class Campaign:
    name: str
    mode: Mode = Mode.PROGRESSIVE
    caller_id: str = ""
    gateway: str = ""
    queue: str = ""                     # where answered calls go (progressive/predictive; broadcast's agent key)
    flow: str = ""                      # the IVR flow a survey's answered calls run
    message: str = ""                   # broadcast: what an answered call hears
    agent_key: str = ""                 # broadcast: the key that reaches an agent in `queue` ("" = none)
    opt_out_key: str = "9"              # broadcast and survey: the key that puts the number on the internal DNC
    opt_out_message: str = ""           # the opt-out's confirmation
    max_lines: int = 10                 # broadcast and survey: calls at once (no agents to pace against)
    max_attempts: int = 6
    max_attempts_per_day: int = 3
    retry_rules: tuple[RetryRule, ...] = DEFAULT_RETRY_RULES
    retry_first: bool = False           # retries due before fresh contacts (else fresh first)
    ring_timeout: float = 25.0
    window: CallingWindow = field(default_factory=CallingWindow)
    abandon_rule: AbandonRule = AbandonRule.TSR
    abandon_cap: float = ABANDON_CAP
    abandon_message: str = ""           # who is calling and a number to call back
    machine_message: str = ""           # left on an answering machine; empty: hang up on machines
    region: str = "US"                  # default region for numbers without a country code
    state: CampaignState = CampaignState.DRAFT

    def __post_init__(self) -> None:
        if self.ring_timeout < MIN_RING_TIMEOUT:
            raise ValueError(f"ring timeout must be at least {MIN_RING_TIMEOUT:g} s, not {self.ring_timeout:g}")
        if not 0.0 < self.abandon_cap <= ABANDON_CAP:
            raise ValueError(f"abandon cap must be above 0 and at most {ABANDON_CAP:.0%}")
        keys = [k for k in (self.agent_key, self.opt_out_key) if k]
        if any(len(k) != 1 or k not in "0123456789*#" for k in keys) or len(set(keys)) != len(keys):
            raise ValueError("the agent and opt-out keys must be two different single keys (0-9, *, #)")
        if self.max_lines < 1:
            raise ValueError("max lines must be at least 1")

    @property
    def agentless(self) -> bool:
        """Broadcast and survey calls are answered by the engine, not paced against agents."""
        return self.mode in (Mode.BROADCAST, Mode.SURVEY)

    def retry_rule(self, disposition: str) -> RetryRule | None:
        return next((r for r in self.retry_rules if r.disposition == disposition), None)


@dataclass
class Contact:
    id: int
    phone: str                          # E.164
    timezones: tuple[str, ...]          # IANA names: the explicit field, else every zone the number may be in
    fields: dict[str, str] = field(default_factory=dict)
    state: ContactState = ContactState.NEW
    attempts: int = 0
    retries: dict[str, int] = field(default_factory=dict)   # disposition -> retries used
    next_attempt_at: datetime | None = None
    priority: int = 0                   # higher first
    imported_at: datetime | None = None


@dataclass
class Attempt:
    campaign: str
    contact_id: int
    phone: str
    uuid: str
    started_at: datetime
    answered_at: datetime | None = None
    connected_at: datetime | None = None   # an agent (or the flow) took the call
    ended_at: datetime | None = None
    disposition: str = ""
    amd_result: str = ""                   # HUMAN / MACHINE / NOTSURE as AMD said
    abandoned: bool = False
    message_played: str = ""
    agent: str = ""
