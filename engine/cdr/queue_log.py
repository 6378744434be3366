"""The queue and agent event log (table `queue_log`), after Asterisk's queue_log and
mod_callcenter's events: what the interval reports are computed from.

A caller's life in one queue: ENTER, then RING_AGENT / RING_NO_ANSWER per agent tried, then one
way out of the queue — CONNECT (an agent answered), ABANDON (the caller hung up, with position
and wait), TIMEOUT (max wait reached), OVERFLOW (sent on to another queue or target) — and after
a CONNECT one end: COMPLETE_CALLER / COMPLETE_AGENT (who hung up) or TRANSFER, each with talk
and hold seconds; WRAP_UP when the agent's after-call work ends. Agents: LOGIN, LOGOUT and
STATUS (status and reason code, e.g. 'On Break' / 'lunch'), which give logged-in and paused time.

Each event carries its own `event_id`, the natural key: `QueueEvent.key_for` derives it from
the call, the event and a per-call sequence number so the same event re-emitted after an engine
restart lands once; agent events get a random one unless the caller passes its own.
"""
from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import ClassVar

from engine.cdr.records import register

_KEY_NAMESPACE = uuidlib.UUID("5b0b5c1e-4e0c-4f43-9a57-63616c6c6c6f")


class QueueEventKind(str, Enum):
    ENTER = "ENTER"
    RING_AGENT = "RING_AGENT"
    RING_NO_ANSWER = "RING_NO_ANSWER"
    CONNECT = "CONNECT"
    ABANDON = "ABANDON"
    TIMEOUT = "TIMEOUT"
    OVERFLOW = "OVERFLOW"
    TRANSFER = "TRANSFER"
    COMPLETE_CALLER = "COMPLETE_CALLER"
    COMPLETE_AGENT = "COMPLETE_AGENT"
    WRAP_UP = "WRAP_UP"
    LOGIN = "LOGIN"
    LOGOUT = "LOGOUT"
    STATUS = "STATUS"


AGENT_STATE_EVENTS = (QueueEventKind.LOGIN, QueueEventKind.LOGOUT, QueueEventKind.STATUS)
AVAILABLE = "Available"  # mod_callcenter's agent status taking calls; any other logged-in status is paused


@register
@dataclass(frozen=True)
class QueueEvent:
    TABLE: ClassVar[str] = "queue_log"
    KEY: ClassVar[tuple[str, ...]] = ("event_id",)

    event_id: str
    time: datetime  # aware (timestamptz)
    event: str  # a QueueEventKind (or its name)
    queue: str = ""
    call_uuid: str = ""  # the caller's Unique-ID
    agent: str = ""
    campaign: str = ""
    caller_id_number: str = ""
    caller_id_name: str = ""
    position: int | None = None  # ENTER: position joined at; ABANDON: position left from
    wait_seconds: float | None = None  # CONNECT, ABANDON, TIMEOUT, OVERFLOW: time in this queue
    ring_seconds: float | None = None  # RING_NO_ANSWER, CONNECT: how long the agent rang
    talk_seconds: float | None = None  # COMPLETE_*, TRANSFER
    hold_seconds: float | None = None  # COMPLETE_*, TRANSFER
    wrap_up_seconds: float | None = None  # WRAP_UP
    status: str = ""  # LOGIN / STATUS: the agent status from then on ('Available', 'On Break', ...)
    reason: str = ""  # STATUS / LOGOUT reason code; RING_NO_ANSWER / ABANDON cause
    target: str = ""  # TRANSFER / OVERFLOW destination
    node: str = ""

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("queue_log times must be timezone-aware")
        # ValueError for an unknown name; stored as the plain string either way
        object.__setattr__(self, "event", QueueEventKind(self.event).value)

    @staticmethod
    def key_for(call_uuid: str, event: QueueEventKind | str, seq: int) -> str:
        """A deterministic event_id: the same call, event and per-call sequence number always
        give the same id, so re-emitting after a restart is harmless."""
        name = event.value if isinstance(event, QueueEventKind) else event
        return str(uuidlib.uuid5(_KEY_NAMESPACE, f"{call_uuid}/{name}/{seq}"))

    @staticmethod
    def new_id() -> str:
        return str(uuidlib.uuid4())
