"""Running totals of what happened to calls, for `status`, the demo summary and (later) metrics."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol


class Listener(Protocol):
    """Told of the same moments, e.g. engine.metrics' feed; called inline, must not block."""

    def queued(self, call: Any, queue: str) -> None: ...
    def connected(self, call: Any) -> None: ...
    def finished(self, call: Any) -> None: ...
    def handed_over(self, call: Any) -> None: ...


@dataclass
class CallStats:
    offered: int = 0
    answered: int = 0  # the caller was connected to an agent
    abandoned: int = 0  # the caller hung up before an agent answered
    finished_calls: int = 0
    handed_over_calls: int = 0  # still up when the engine stopped: left to FreeSWITCH for adoption
    active: int = 0
    by_entry: Counter = field(default_factory=Counter)
    by_queue: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    hangup_causes: Counter = field(default_factory=Counter)
    listener: Listener | None = None

    def offered_call(self, call: Any) -> None:
        self.offered += 1
        self.active += 1
        if entry := call.caller.variables.get("callrouter_entry"):
            self.by_entry[entry] += 1

    def queued(self, call: Any, queue: str) -> None:
        self.by_queue[queue] += 1
        if self.listener is not None:
            self.listener.queued(call, queue)

    def finished(self, call: Any) -> None:
        self.active -= 1
        self.finished_calls += 1
        outcome = call.outcome or "ended"
        self.outcomes[outcome] += 1
        if outcome == "abandoned":
            self.abandoned += 1
        self.hangup_causes[call.caller.hangup_cause or "UNKNOWN"] += 1
        if self.listener is not None:
            self.listener.finished(call)

    def connected(self, call: Any) -> None:
        """The caller was just bridged to an agent (counted now, so live views see it)."""
        self.answered += 1
        if self.listener is not None:
            self.listener.connected(call)

    def handed_over(self, call: Any) -> None:
        self.active -= 1
        self.handed_over_calls += 1
        if self.listener is not None:
            self.listener.handed_over(call)

    def summary(self) -> dict[str, Any]:
        return {
            "calls_offered": self.offered,
            "calls_answered": self.answered,
            "calls_abandoned": self.abandoned,
            "calls_finished": self.finished_calls,
            "calls_active": self.active,
            "calls_handed_over": self.handed_over_calls,
            "outcomes": dict(self.outcomes),
            "routed_per_entry": dict(self.by_entry),
            "routed_per_queue": dict(self.by_queue),
            "hangup_causes": dict(self.hangup_causes),
        }
