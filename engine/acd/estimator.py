"""Estimated wait time for a caller at a given place in a queue, from what the queue's agents
have recently been doing (handle times) and how many are staffed right now.

With n staffed agents all busy and handle times roughly exponential, the agents free up at a
rate n / AHT, so the p-th caller in line (after the agents free now have taken the first ones)
waits about p x AHT / n. The AHT is the mean of the queue's recent handle times (talk plus
wrap-up), over a sliding window of calls and of time, so it follows the day.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class HandleTimes:
    """The recent handle times of one queue: at most `keep` calls, none older than `horizon` s."""

    keep: int = 100
    horizon: float = 3600.0
    _samples: deque[tuple[float, float]] = field(default_factory=deque)  # (ended at, seconds)
    _total: float = 0.0

    def add(self, ended_at: float, seconds: float) -> None:
        self._samples.append((ended_at, seconds))
        self._total += seconds
        if len(self._samples) > self.keep:
            self._total -= self._samples.popleft()[1]

    def mean(self, now: float) -> float | None:
        while self._samples and self._samples[0][0] < now - self.horizon:
            self._total -= self._samples.popleft()[1]
        return self._total / len(self._samples) if self._samples else None


def estimated_wait(position: int, free_agents: int, staffed: int, aht: float | None) -> float | None:
    """Seconds the caller at `position` (1 = next) can expect to wait; None when nobody is staffed
    or no call has been handled yet to learn from."""
    if position <= free_agents:
        return 0.0
    if staffed <= 0 or aht is None:
        return None
    return (position - free_agents) * aht / staffed
