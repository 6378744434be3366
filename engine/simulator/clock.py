"""Clocks for the simulator: real time (demo, end-to-end tests) and virtual time (what-if runs).

Simulated endpoints and channels never call time.time() or gevent.sleep() directly; they go
through a Clock, so the same code runs a live demo or a compressed day.
"""
from __future__ import annotations

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

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Any:
        """Like spawn_later for an fn that never blocks (a timeout setting a flag, a hangup), which
        a clock runs without a greenlet of its own; kill() the result to cancel."""


class _LoopTimer:
    """A call_later callback on gevent's loop (a libev timer, run by the hub: no greenlet of its
    own); kill() as a Greenlet's, so callers cancel either alike."""

    __slots__ = ("watcher", "fn", "args")

    def __init__(self, seconds: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.watcher = get_hub().loop.timer(max(0.0, seconds))
        self.watcher.start(self._fire)

    def _fire(self) -> None:
        self.watcher.close()
        self.fn(*self.args)

    def kill(self, block: bool = False) -> None:
        self.watcher.close()


class RealClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        gevent.sleep(max(0.0, seconds))

    def spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        return gevent.spawn_later(max(0.0, seconds), fn, *args)

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> _LoopTimer:
        return _LoopTimer(seconds, fn, args)


class _Call:
    """A call_later callback on the virtual clock; kill() as a Greenlet's, so callers cancel either alike."""

    __slots__ = ("fn", "args", "killed")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args, self.killed = fn, args, False

    def kill(self, block: bool = False) -> None:
        self.killed = True


class VirtualClock:
    """Discrete-event time: whenever every greenlet is idle, jump to the next wake-up.

    Only for in-process runs (no sockets): `run_until()` advances time when gevent's loop has
    nothing left to do, so a simulated day takes as long as its computation.

    A wake-up is a sleeper to resume, a `spawn_later` greenlet to start or a `call_later` callback
    to run from the loop itself. The greenlet is created unstarted rather than spawned to sleep:
    most timers (timeouts, patience, hangups) are cancelled before they fire, and a killed
    unstarted greenlet never runs; a cancelled wake-up costs no trip through gevent's loop.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._wakeups: list[tuple[float, int, Waiter | gevent.Greenlet | _Call]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def _at(self, seconds: float, wakeup: Waiter | gevent.Greenlet | _Call) -> None:
        heapq.heappush(self._wakeups, (self._now + max(0.0, seconds), next(self._seq), wakeup))

    def sleep(self, seconds: float) -> None:
        waiter = Waiter()
        self._at(seconds, waiter)
        waiter.get()

    def spawn_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> gevent.Greenlet:
        greenlet = gevent.Greenlet(fn, *args)
        self._at(seconds, greenlet)
        return greenlet

    def call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> _Call:
        call = _Call(fn, args)
        self._at(seconds, call)
        return call

    def run_until(self, deadline: float) -> None:
        """Advance time up to `deadline`, waking sleepers in time order."""
        wakeups = self._wakeups
        loop = get_hub().loop
        while True:
            gevent.idle()
            while wakeups and wakeups[0][0] <= deadline:
                at, _, wakeup = heapq.heappop(wakeups)
                self._now = max(self._now, at)
                if isinstance(wakeup, Waiter):
                    loop.run_callback(wakeup.switch, None)
                elif isinstance(wakeup, _Call):
                    if wakeup.killed:
                        continue
                    wakeup.fn(*wakeup.args)
                elif wakeup.dead:
                    continue
                else:
                    wakeup.start()
                break
            else:
                break
        gevent.idle()
        self._now = max(self._now, deadline)
