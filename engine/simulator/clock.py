"""Clocks for the simulator: real time (demo, end-to-end tests) and virtual time (what-if runs).

Simulated endpoints and channels never call time.time() or gevent.sleep() directly; they go
through a Clock, so the same code runs a live demo or a compressed day.
"""
from __future__ import annotations

import functools
import heapq
import itertools
import time
from typing import Any, Callable, Protocol

import gevent
from gevent.hub import Waiter, get_hub


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, on this clock."""

    def sleep(self, seconds: float) -> None:
        """Block the calling greenlet for `seconds` of this clock's time."""

    def spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> "gevent.Greenlet":
        """Run fn(*args) in a new greenlet after `seconds`; kill() the result to cancel."""


class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        gevent.sleep(max(0.0, seconds))

    def spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        return gevent.spawn_later(max(0.0, seconds), fn, *args)


class VirtualClock:
    """Discrete-event time: whenever every greenlet is idle, jump to the next wake-up.

    Only for in-process runs (no sockets): `run_until()` advances time when gevent's loop has
    nothing left to do, so a simulated day takes as long as its computation.

    A wake-up is a sleeper to resume or a `spawn_later` greenlet to start. The greenlet is
    created unstarted rather than spawned to sleep: most timers (timeouts, patience, hangups)
    are cancelled before they fire, and a killed unstarted greenlet never runs at all.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._wakeups: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        waiter = Waiter()
        resume = functools.partial(get_hub().loop.run_callback, waiter.switch, None)
        heapq.heappush(self._wakeups, (self._now + max(0.0, seconds), next(self._seq), resume))
        waiter.get()

    def spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        greenlet = gevent.Greenlet(fn, *args)
        heapq.heappush(self._wakeups, (self._now + max(0.0, seconds), next(self._seq), greenlet.start))
        return greenlet

    def run_until(self, deadline: float) -> None:
        """Advance time up to `deadline`, waking sleepers in time order."""
        while True:
            gevent.idle()
            if not self._wakeups or self._wakeups[0][0] > deadline:
                break
            at, _, wake = heapq.heappop(self._wakeups)
            self._now = max(self._now, at)
            wake()
        gevent.idle()
        self._now = max(self._now, deadline)
