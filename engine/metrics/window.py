"""Service level, abandon rate and speed of answer over rolling windows, per queue: pure data.

A call counts in a window when its wait in the queue ended inside it (answered, abandoned or
timed out), so a call still waiting never drags a live figure down before its outcome is known.
The formula is the reports' own (`engine.cdr.reports.service_level`), with the same definition
variant and short-abandon threshold, so the wallboard and the day's report name and compute the
same thing.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

from engine.cdr.reports import ReportSettings, service_level

# Label value -> length in seconds; the longest bounds the memory kept.
WINDOWS: dict[str, float] = {"5m": 300.0, "15m": 900.0, "1h": 3600.0}

ANSWERED, ABANDONED, TIMEOUT = "answered", "abandoned", "timeout"
OUTCOMES = (ANSWERED, ABANDONED, TIMEOUT)


@dataclass(frozen=True)
class WindowFigures:
    """What one queue's callers lived in one window."""

    calls: int  # waits that ended in the window: the service level's 'offered'
    answered: int
    answered_within: int  # answered with a wait <= the service-level threshold
    abandoned: int  # abandoned after the short-abandon threshold
    short_abandoned: int
    service_level: float | None  # None when no call counts under the definition
    abandon_rate: float | None  # abandoned / (calls - short abandons), as the reports compute it
    average_answer_seconds: float | None  # ASA


class QueueWindows:
    def __init__(self, settings: ReportSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._ended: dict[str, deque[tuple[float, str, float]]] = {}  # queue -> (ended at, outcome, wait)
        self._horizon = max(WINDOWS.values())

    def wait_ended(self, queue: str, outcome: str, wait_seconds: float) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
        now = self.clock()
        self._ended.setdefault(queue, deque()).append((now, outcome, max(0.0, wait_seconds)))
        self._expire(now)

    @property
    def queues(self) -> list[str]:
        return sorted(self._ended)

    def figures(self, queue: str, window: str) -> WindowFigures:
        now = self.clock()
        self._expire(now)
        since = now - WINDOWS[window]
        ended = [(outcome, wait) for at, outcome, wait in self._ended.get(queue, ()) if at > since]
        answered_waits = [wait for outcome, wait in ended if outcome == ANSWERED]
        abandon_waits = [wait for outcome, wait in ended if outcome == ABANDONED]
        short = sum(1 for wait in abandon_waits if wait < self.settings.short_abandon_seconds)
        within = sum(1 for wait in answered_waits if wait <= self.settings.service_level_seconds)
        real_offers = len(ended) - short
        return WindowFigures(
            calls=len(ended),
            answered=len(answered_waits),
            answered_within=within,
            abandoned=len(abandon_waits) - short,
            short_abandoned=short,
            service_level=service_level(self.settings.service_level_definition, answered_within=within,
                                        offered=len(ended), short_abandoned=short,
                                        answered=len(answered_waits)),
            abandon_rate=(len(abandon_waits) - short) / real_offers if real_offers > 0 else None,
            average_answer_seconds=sum(answered_waits) / len(answered_waits) if answered_waits else None,
        )

    def _expire(self, now: float) -> None:
        oldest = now - self._horizon
        for queue, ended in self._ended.items():
            while ended and ended[0][0] <= oldest:
                ended.popleft()
