"""Estimated wait time for a caller at a given place in a queue, from what the queue's agents
have recently been doing (handle times) and how many are staffed right now.

With n staffed agents all busy and handle times roughly exponential, the agents free up at a
rate n / AHT, so the p-th caller in line (after the agents free now have taken the first ones)
waits about p x AHT / n. The AHT is the mean of the queue's recent handle times (talk plus
wrap-up), over a sliding window of calls and of time, so it follows the day.
"""
from __future__ import annotations

from array import array


class HandleTimes:
    """The recent handle times of one queue: at most `keep` calls, none older than `horizon` s.

    Two fixed arrays used as a ring: a call ending allocates nothing and frees nothing (a deque of
    tuples freed a sample a hundred calls old each time, one more cold read per assignment)."""

    def __init__(self, keep: int = 100, horizon: float = 3600.0) -> None:
        self.keep, self.horizon = keep, horizon
        self._ended = array("d", bytes(8 * keep))    # when each sample's call ended
        self._seconds = array("d", bytes(8 * keep))  # its handle time
        self._oldest = 0                             # the slot of the oldest sample
        self._count = 0
        self._total = 0.0

    def add(self, ended_at: float, seconds: float) -> None:
        slot = (self._oldest + self._count) % self.keep
        if self._count == self.keep:  # full: the oldest goes
            self._total -= self._seconds[slot]
            self._oldest = (slot + 1) % self.keep
        else:
            self._count += 1
        self._ended[slot] = ended_at
        self._seconds[slot] = seconds
        self._total += seconds

    def mean(self, now: float) -> float | None:
        while self._count and self._ended[self._oldest] < now - self.horizon:
            self._total -= self._seconds[self._oldest]
            self._oldest = (self._oldest + 1) % self.keep
            self._count -= 1
        if not self._count:
            self._total = 0.0  # no rounding left over from the samples gone
            return None
        return self._total / self._count


def estimated_wait(position: int, free_agents: int, staffed: int, aht: float | None) -> float | None:
    """Seconds the caller at `position` (1 = next) can expect to wait; None when nobody is staffed
    or no call has been handled yet to learn from."""
    if position <= free_agents:
        return 0.0
    if staffed <= 0 or aht is None:
        return None
    return (position - free_agents) * aht / staffed
