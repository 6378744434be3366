"""A call under the engine's control: the parked caller's leg plus the legs the engine originates
for it, driven by one greenlet that reads one inbox.

The ESL reader only drops events (and the engine's own messages) into the inbox; everything that
waits — an application's completion, an agent answering, the caller hanging up — waits here, in
the call's own greenlet, so a slow call never stalls the socket reader or another call. Every
wait is bounded by a timeout and released at once by the caller's hangup (CallGone).

A call with nothing to do but wait for its inbox (a conversation with an agent) holds no
greenlet: its handler raises Suspend, the greenlet ends, the inbox folds what arrives into the
legs, and the item that matters starts a fresh greenlet where the handler left off.
"""
from __future__ import annotations

import logging
import time
import uuid as uuidlib
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import gevent
import gevent.event

from engine.calls.leg import Leg
from engine.channelvars import VAR_JOINED, VAR_LEG, VAR_PARENT, VAR_STAGE
from engine.errors import CallGone, CommandFailed, CommandTimeout, EslError, NotConnected
from engine.esl import commands

if TYPE_CHECKING:
    from engine.calls.registry import CallRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

EXECUTE_TIMEOUT = 600.0  # an application that has not completed after 10 minutes is stuck
FINISH_TIMEOUT = 10.0  # how long to wait for CHANNEL_HANGUP_COMPLETE of every leg at the end
PARK_TIMEOUT_CAUSE = "RECOVERY_ON_TIMER_EXPIRE"  # a call the engine held too long without re-arming


# Messages the engine posts into a call's inbox beside FreeSWITCH's events.
@dataclass(frozen=True)
class NodeDown:
    reason: str


@dataclass(frozen=True)
class Resync:
    """After a reconnect: is the caller's channel still up on the switch?"""

    alive: bool


@dataclass(frozen=True)
class JobDone:
    """A bgapi command issued for this call has answered."""

    job: str
    body: str | None
    error: BaseException | None = None


@dataclass(frozen=True)
class AdoptLeg:
    """Reconciliation found a leg this call originated before the engine restarted."""

    leg: Leg


class Empty(Exception):
    """Nothing reached the inbox in time."""


class Inbox:
    """A call's FIFO: put from anywhere (the ESL reader, the ACD, hub callbacks), get by the call's
    own greenlet only. A list and an Event: a gevent Queue costs ~3.7 KB per call held.

    While the call is suspended every item goes to its `sleeper` instead (the call, which folds
    it or wakes up)."""

    __slots__ = ("_items", "_ready", "sleeper")

    def __init__(self) -> None:
        self._items: list[Any] = []  # a handful at a time: pop(0) is cheaper than a deque's block
        self._ready = gevent.event.Event()
        self.sleeper: Callable[[Any], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Any) -> None:
        if self.sleeper is not None:
            self.sleeper(item)
            return
        self._items.append(item)
        self._ready.set()

    def get(self, timeout: float) -> Any:
        """The oldest item; Empty if none comes within timeout."""
        if not self._items:
            self._ready.clear()
            if not self._ready.wait(timeout):
                raise Empty()
        return self._items.pop(0)


class Resumed(Exception):
    """The node came back after an outage: restart the call's handler from its saved stage."""


class Suspend(Exception):
    """Raised by a handler (through `Call.next_item_or_suspend`) when it has nothing to do until
    an inbox item comes: the call's greenlet ends and the call sleeps until `wake_on(item)`
    accepts an item (the caller's hangup and the node's outage wake it too); then `then()` runs
    in a fresh greenlet, reads that item from the inbox and carries on as the handler would have.

    Every frame the exception passes on its way up that had work left after the call it made
    (a result to map, an exception to handle) puts that work around `then` with `wrap`: after
    waking, the call goes on through the same frames' logic, rebuilt without their stacks."""

    def __init__(self, wake_on: Callable[[Any], bool], then: Callable[[], Any]) -> None:
        super().__init__("suspended")
        self.wake_on = wake_on
        self.then = then

    def wrap(self, rest: Callable[[Callable[[], Any]], Any]) -> "Suspend":
        """After waking, `rest(then)` runs instead of `then()`: rest calls then where its frame
        made the call that suspended."""
        self.then = partial(rest, self.then)
        return self


HANGUPS = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")


def is_hangup_of(item: Any, leg_uuid: str) -> bool:
    """Whether an inbox item is the hangup of that leg (what wakes a call suspended on it)."""
    return getattr(item, "unique_id", None) == leg_uuid and item.name in HANGUPS


def and_then(step: Callable[[], T], rest: Callable[[T], R]) -> R:
    """rest(step()); when step suspends the call, rest runs on what step returns once woken."""
    try:
        value = step()
    except Suspend as suspend:
        raise suspend.wrap(partial(and_then, rest=rest))
    return rest(value)


class OriginateFailed(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Call:
    # Thousands are up at once: no per-instance __dict__ (a weakref slot for the IVR's pinning).
    __slots__ = ("registry", "node", "caller", "legs", "inbox", "handler", "adopted", "clock", "started", "outcome",
                 "labels", "marks", "_journal_seq", "_greenlet", "_wake_on", "_then", "__weakref__")

    def __init__(self, registry: "CallRegistry", node: Any, caller: Leg,
                 handler: Callable[["Call", bool], None], *, adopted: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.node = node
        self.caller = caller
        self.legs: dict[str, Leg] = {caller.uuid: caller}
        self.inbox = Inbox()
        self.handler = handler
        self.adopted = adopted
        self.clock = clock
        self.started = clock()
        self.outcome = ""  # what happened, for stats and logs: answered, abandoned, lost, ...
        self.labels: dict[str, str] = {}  # entry, flow, ivr_node, queue, agent: what the call went through
        self.marks: dict[str, float] = {}  # when things happened (queued, connected, ...), for the CDR
        # Queue-log sequence numbers; an adopted call starts past anything its first engine wrote.
        self._journal_seq = int(self.started * 1000) * 1000 if adopted else 0
        self._greenlet: gevent.Greenlet | None = None  # None while suspended, or once over
        self._wake_on: Callable[[Any], bool] | None = None  # while suspended: what wakes it ...
        self._then: Callable[[], Any] | None = None  # ... and what it does then

    @property
    def uuid(self) -> str:
        return self.caller.uuid

    def next_journal_seq(self) -> int:
        self._journal_seq += 1
        return self._journal_seq

    def journal(self, kind: Any, **fields: Any) -> None:
        """A queue-log event about this call, now (engine.cdr.queue_log)."""
        self.registry.journal.queue_event(self, kind, **fields)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._main, partial(self.handler, self, self.adopted))

    @property
    def suspended(self) -> bool:
        return self._wake_on is not None

    def kill(self) -> None:
        """Let go of the call (shutdown): it stays up on the switch for another engine to adopt."""
        greenlet = self._greenlet
        if greenlet is not None and not greenlet.dead:
            unstarted = greenlet.gr_frame is None  # spawned (or woken) but never ran: nobody to let go
            greenlet.kill(block=True, timeout=1.0)
            if unstarted:
                self._let_go()
        elif self.suspended:
            self._wake_on = self._then = self.inbox.sleeper = None
            self._let_go()

    def _let_go(self) -> None:
        """Hand the call over, still up: hang nothing up (a standby or restarted engine adopts it
        from its channel variables). What already arrived is folded in first, so legs already
        over get their CDRs."""
        while len(self.inbox):
            self._apply(self.inbox.get(timeout=0))
        self.registry.released(self)

    def _main(self, step: Callable[[], Any]) -> None:
        try:
            while True:
                try:
                    step()
                    break
                except Resumed:
                    step = partial(self.handler, self, True)
        except Suspend as suspend:
            self._sleep(suspend.wake_on, suspend.then)
            return
        except gevent.GreenletExit:  # the engine is going away with the call still up
            self._let_go()
            return
        except CallGone as gone:
            log.info("call %s ended: %s", self.uuid, gone)
        except Exception:
            log.exception("call %s: handler failed; hanging up", self.uuid)
            self.outcome = self.outcome or "error"
            self._hangup_quietly(self.caller, "NORMAL_TEMPORARY_FAILURE")
        self._finish()

    # --- suspended: no greenlet until an item that matters ----------------------------------------
    def next_item_or_suspend(self, wake_on: Callable[[Any], bool], then: Callable[[], Any]) -> Any:
        """The next inbox item already there; with none, Suspend(wake_on, then) (see Suspend)."""
        if not self.inbox and not self.caller.hungup:
            raise Suspend(wake_on, then)
        return self.next_item(0.0)

    def _sleep(self, wake_on: Callable[[Any], bool], then: Callable[[], Any]) -> None:
        self._greenlet = None
        self._wake_on, self._then = wake_on, then
        pending = []
        while len(self.inbox):  # came while the Suspend went up: sorted like any later item
            pending.append(self.inbox.get(timeout=0))
        self.inbox.sleeper = self._while_asleep
        for item in pending:
            self.inbox.put(item)

    def _while_asleep(self, item: Any) -> None:
        """An item for the suspended call (in whoever put it, the ESL reader often: no blocking):
        folded into the legs, or, if it wakes the call, left in the inbox for the fresh greenlet."""
        if not self._wakes(item):
            self._apply(item)
            return
        then = self._then
        self._wake_on = self._then = self.inbox.sleeper = None
        self.inbox.put(item)
        self._greenlet = gevent.spawn(self._main, then)

    def _wakes(self, item: Any) -> bool:
        if isinstance(item, (NodeDown, Resync)):  # an outage is ridden out in a greenlet
            return True
        if is_hangup_of(item, self.caller.uuid):
            return True
        return self._wake_on(item)

    def _finish(self) -> None:
        for leg in list(self.legs.values()):
            if not leg.hungup:
                self._hangup_quietly(leg, "NORMAL_CLEARING")
        self._fold_until(lambda: all(leg.complete for leg in self.legs.values()), FINISH_TIMEOUT)
        self.registry.finished(self)

    def await_hangup(self, leg: Leg, timeout: float) -> bool:
        """After the caller is gone: wait (up to timeout) for the switch to report `leg` hung up;
        True once it is."""
        return self._fold_until(lambda: leg.hungup, timeout)

    def _fold_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Fold inbox items into the legs until `done()` (True) or timeout (False); gives up at
        once while the node is away, whose events cannot come."""
        deadline = self.clock() + timeout
        while not done():
            remaining = deadline - self.clock()
            if remaining <= 0 or not self.node.up:
                return False
            try:
                self._apply(self.inbox.get(timeout=remaining))
            except Empty:
                return False
        return True

    def _hangup_quietly(self, leg: Leg, cause: str) -> None:
        try:
            self.node.api(commands.kill(leg.uuid, cause))
        except EslError as exc:
            log.debug("hangup of %s not sent: %s", leg.uuid, exc)

    # --- the inbox ---------------------------------------------------------------------------
    def _apply(self, item: Any) -> Any:
        """Fold one inbox item into the legs' state; return it."""
        if isinstance(item, AdoptLeg):
            self.legs[item.leg.uuid] = item.leg
        elif hasattr(item, "unique_id"):
            leg = self.legs.get(item.unique_id)
            if leg is not None:
                leg.apply(item)
        return item

    def next_item(self, timeout: float) -> Any:
        """The next inbox item within timeout (None on timeout); CallGone once the caller is gone."""
        if self.caller.hungup:
            raise CallGone(f"caller hung up ({self.caller.hangup_cause})")
        try:
            item = self._apply(self.inbox.get(timeout=max(0.0, timeout)))
        except Empty:
            return None
        if isinstance(item, NodeDown):
            self._ride_out_outage(item)
        if self.caller.hungup:
            raise CallGone(f"caller hung up ({self.caller.hangup_cause})")
        return item

    def _ride_out_outage(self, down: NodeDown) -> None:
        """The node dropped: wait for the reconciliation's verdict on this call."""
        log.warning("call %s: node %s down (%s); waiting for it", self.uuid, self.caller.node, down.reason)
        deadline = self.clock() + self.registry.lost_after
        while True:
            try:
                item = self._apply(self.inbox.get(timeout=max(0.0, deadline - self.clock())))
            except Empty:
                item = Resync(alive=False)
            if isinstance(item, Resync):
                if item.alive and not self.caller.hungup:
                    raise Resumed()
                self.caller.hungup = True
                self.caller.hangup_cause = self.caller.hangup_cause or "LOST_DURING_OUTAGE"
                self.outcome = self.outcome or "lost"
                for leg in self.legs.values():
                    leg.hungup = True
                raise CallGone("the channel was gone when the node came back")

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float, what: str) -> Any:
        deadline = self.clock() + timeout
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise CommandTimeout(f"call {self.uuid}: no {what} within {timeout:.0f} s")
            item = self.next_item(remaining)
            if item is not None and predicate(item):
                return item

    def sleep(self, seconds: float) -> None:
        """Let time pass on this call, still noticing its events and its hangup."""
        deadline = self.clock() + seconds
        while (remaining := deadline - self.clock()) > 0:
            self.next_item(remaining)

    # --- operations (call greenlet only) --------------------------------------------------------
    def execute(self, app: str, arg: str = "", *, leg: Leg | None = None,
                timeout: float = EXECUTE_TIMEOUT) -> Any:
        """Run a dialplan application on a leg and wait for its CHANNEL_EXECUTE_COMPLETE,
        matched by our own Event-UUID (FreeSWITCH echoes it as Application-UUID)."""
        leg = leg or self.caller
        app_uuid = str(uuidlib.uuid4())
        self._send(lambda: self.node.execute(leg.uuid, app, arg, event_uuid=app_uuid), leg)

        def completed(item: Any) -> bool:
            if getattr(item, "unique_id", None) != leg.uuid:
                return False
            if item.name == "CHANNEL_EXECUTE_COMPLETE" and item.get("Application-UUID") == app_uuid:
                return True
            if item.name == "CHANNEL_HANGUP":
                raise CallGone(f"{leg.role} leg hung up during {app}")
            return False

        return self.wait_for(completed, timeout, f"completion of {app}")

    def _send(self, action: Callable[[], Any], leg: Leg | None = None) -> Any:
        """Send a command; while the node is away, wait for the outage to resolve first.

        A command refused because its channel no longer exists means that leg is gone: for the
        caller's leg that ends the call.
        """
        try:
            return action()
        except NotConnected as exc:
            self._ride_out_outage(NodeDown(str(exc)))
        except CommandFailed as exc:
            leg = leg or self.caller
            if "invalid session id" in str(exc) or "No such channel" in str(exc):
                leg.hungup = True
                if leg is self.caller:
                    raise CallGone(str(exc)) from None
            raise

    def api(self, command: str) -> str:
        return self._send(lambda: self.node.api(command))

    def set_vars(self, leg: Leg | None = None, **values: str) -> None:
        """Channel variables the engine keeps on the channel (they survive an engine restart)."""
        leg = leg or self.caller
        values = {name: str(value) for name, value in values.items()}
        if not values:
            return
        self.api(commands.setvar_multi(leg.uuid, values))  # one round trip, however many
        leg.variables.update(values)

    def answer(self) -> None:
        if not self.caller.answered:
            self.execute("answer")

    def playback(self, path: str, *, timeout: float = EXECUTE_TIMEOUT) -> None:
        self.execute("playback", path, timeout=timeout)

    def play_and_get_digits(self, prompt: str, *, min_digits: int = 1, max_digits: int = 1, tries: int = 1,
                            timeout_ms: int = 5000, terminators: str = "#", invalid: str = "silence_stream://250",
                            regex: str = r"\d+", digit_timeout_ms: int = 3000) -> str:
        var = "callrouter_digits"
        arg = commands.play_and_get_digits(min_digits, max_digits, tries, timeout_ms, terminators, prompt,
                                           invalid, var, regex, digit_timeout_ms)
        done = self.execute("play_and_get_digits", arg)
        return done.get("variable_" + var) or ""

    def take_control(self, park_timeout: int, **also: str) -> None:
        """Re-arm FreeSWITCH's park timer for the engine's time with the call; `also`: more
        variables for the caller's channel, set in the same round trip.

        The dialplan parks with a short park_timeout as a safety net for calls no engine picks
        up. FreeSWITCH reads park_timeout only when a park starts, and checks it between the
        applications executed inside that park, so the engine sets its own, longer, bound and
        re-parks (uuid_park ends the current park and starts a new one that reads it).
        """
        self.set_vars(park_timeout=f"{park_timeout}:{PARK_TIMEOUT_CAUSE}", **also)
        self.api(commands.park(self.caller.uuid))

    def originate(self, endpoint: str, variables: dict[str, str], *, role: str, timeout: float) -> Leg:
        """Call out on this node with our own Unique-ID and wait for the answer (not early media).

        The leg is registered before the command is sent, so none of its events is missed; a node
        away makes the job fail with NotConnected (OriginateFailed here).
        """
        leg, result = self.originate_async(endpoint, variables, role=role, timeout=timeout)
        job = str(uuidlib.uuid4())
        result.rawlink(lambda r: self.inbox.put(JobDone(job, r.value if r.successful() else None, r.exception)))
        try:
            done = self.wait_for(lambda item: isinstance(item, JobDone) and item.job == job, timeout + 10,
                                 f"answer from {endpoint}")
        except CallGone:
            self._hangup_quietly(leg, "ORIGINATOR_CANCEL")
            raise
        body = (done.body or "").strip()
        if done.error is not None or not body.startswith("+OK"):
            cause = body.removeprefix("-ERR").strip() or type(done.error).__name__
            leg.hungup = True
            leg.hangup_cause = cause
            raise OriginateFailed(cause)
        leg.answered = True
        return leg

    def bridge(self, other: Leg) -> None:
        self.api(commands.uuid_bridge(self.caller.uuid, other.uuid))

    def hangup(self, cause: str = "NORMAL_CLEARING", leg: Leg | None = None) -> None:
        leg = leg or self.caller
        if not leg.hungup:
            self._hangup_quietly(leg, cause)

    def mark_stage(self, stage: str, **more: str) -> None:
        self.set_vars(**self.stage_vars(stage, **more))

    def stage_vars(self, stage: str, **more: str) -> dict[str, str]:
        """The caller's variables that say where the call is (a restarted engine resumes there),
        for a caller that sets them along with others in one round trip."""
        values = {VAR_STAGE: stage, **more}
        if VAR_JOINED not in self.caller.variables:
            values[VAR_JOINED] = f"{self.started:.3f}"
        return values

    def originate_async(self, endpoint: str, variables: dict[str, str], *, role: str,
                        timeout: float) -> tuple[Leg, Any]:
        """Start calling out on this node with our own Unique-ID without waiting: for a driver
        outside the call's greenlet (the ACD rings agents while the caller hears its queue).
        Returns the leg, registered before the command is sent so none of its events is missed,
        and the job's AsyncResult ('+OK <uuid>' once answered, '-ERR <cause>' otherwise, or an
        EslError such as NotConnected when the node is away)."""
        leg_uuid = str(uuidlib.uuid4())
        leg = Leg(uuid=leg_uuid, node=self.caller.node, role=role)
        self.legs[leg_uuid] = leg
        self.registry.register_leg(leg_uuid, self)
        all_vars = {"origination_uuid": leg_uuid, "ignore_early_media": "true",
                    "originate_timeout": str(int(timeout)), VAR_LEG: role, VAR_PARENT: self.uuid, **variables}
        return leg, self.node.bgapi_async(commands.originate(endpoint, all_vars, app="park"))
