"""Which call owns which channel: events are routed by Unique-ID into the owning call's inbox.

`dispatch` runs in the ESL reader and never blocks. A CHANNEL_PARK of a channel that the
FreeSWITCH dialplan tagged for the engine (callrouter_entry) starts a new Call. After a node
(re)connects, `reconcile` compares the switch's own channel list with the calls in memory:
calls still up resume, calls gone are closed, and tagged channels nobody knows (a restarted
engine) are adopted from their channel variables.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable
from urllib.parse import unquote

import gevent
import gevent.event

from engine.calls.call import AdoptLeg, Call, NodeDown, Resync
from engine.calls.leg import Leg, kept_variables
from engine.config import EslSettings
from engine.channelvars import VAR_ENTRY, VAR_JOINED, VAR_LEG, VAR_PARENT, VAR_QUEUE_JOINED, VAR_STAGE
from engine.calls.stats import CallStats
from engine.cdr.journal import CallJournal
from engine.errors import EslError
from engine.esl import commands

log = logging.getLogger(__name__)

Handler = Callable[[Call, bool], None]


def by_entry(handlers: dict[str, Handler], default: Handler) -> Handler:
    """The registry's handler: each call to the handler of its callrouter_entry, others to default."""
    def handler(call: Call, resumed: bool) -> None:
        handlers.get(call.caller.variables.get(VAR_ENTRY, ""), default)(call, resumed)
    return handler


def dumped_vars(dump: str) -> dict[str, str]:
    """What a Leg keeps (the engine's variables and call data) of a `uuid_dump` reply
    (`Name: url-encoded value` lines; anything else, an -ERR included, has none)."""
    lines = (line.partition(": ") for line in dump.splitlines())
    return {name: unquote(value) for name, value in kept_variables((h, v) for h, sep, v in lines if sep)}


def _adoption_order(stranger: tuple[str, dict[str, str]]) -> tuple[float, str]:
    """A channel's place: when it joined its queue, else when it reached the engine; neither: last."""
    uuid, variables = stranger
    try:
        return float(variables.get(VAR_QUEUE_JOINED) or variables.get(VAR_JOINED, "inf")), uuid
    except ValueError:
        return float("inf"), uuid


class CallRegistry:
    def __init__(self, handler: Handler, stats: CallStats | None = None, journal: CallJournal | None = None,
                 clock: Callable[[], float] = time.time, lost_after: float = EslSettings.node_lost_after) -> None:
        self.handler = handler
        self.lost_after = lost_after  # a node away this long: its calls are written off as lost
        self.stats = stats or CallStats()
        self.journal = journal or CallJournal(None)
        self.clock = clock
        self.nodes: dict[str, Any] = {}
        self._owner: dict[str, Call] = {}  # Unique-ID -> the call that owns that channel
        self._calls: dict[str, Call] = {}  # caller's Unique-ID -> call
        self.accepting = True
        self._none_left = gevent.event.Event()  # set when the last call is forgotten (drain waits on it)
        self._write_offs: dict[str, gevent.Greenlet] = {}  # node name -> its pending write-off

    # --- called from the ESL reader: never blocks ---------------------------------------------------
    def dispatch(self, event: Any) -> None:
        uuid = event.unique_id
        if not uuid:
            return
        owner = self._owner.get(uuid)
        if owner is not None:
            owner.inbox.put(event)
        elif event.name == "CHANNEL_PARK" and event.get("variable_" + VAR_ENTRY):
            self._start_call(event.node, uuid, event, adopted=False)

    def node_down(self, node: Any, reason: str) -> None:
        for call in self._calls.values():
            if call.node is node:
                call.inbox.put(NodeDown(reason))
        self._cancel_write_off(node)
        if self.accepting:  # a draining engine hands its calls over instead (and stops its nodes itself)
            self._write_offs[node.name] = gevent.spawn_later(self.lost_after, self._write_off, node)

    def _write_off(self, node: Any) -> None:
        """The node stayed away: its calls end as lost (each writes its CDR), whatever they waited on.

        A call busy sending a command rides the outage out with its own bound; one waiting on a
        prompt, a queue or a bridge only hears of it here.
        """
        self._write_offs.pop(node.name, None)
        if node.up:
            return
        stranded = [call for call in self._calls.values() if call.node is node]
        if stranded:
            log.error("node %s away for %.0f s: writing off its %d calls as lost", node.name, self.lost_after,
                      len(stranded))
        for call in stranded:
            call.inbox.put(Resync(alive=False))

    def _cancel_write_off(self, node: Any) -> None:
        pending = self._write_offs.pop(node.name, None)
        if pending is not None:
            pending.kill(block=False)

    # --- calls --------------------------------------------------------------------------------------
    def _start_call(self, node_name: str, uuid: str, first_event: Any | None, *, adopted: bool,
                    variables: dict[str, str] | None = None) -> Call | None:
        if not self.accepting:
            return None  # draining for shutdown: FreeSWITCH's park_timeout ends the call
        node = self.nodes[node_name]
        leg = Leg(uuid=uuid, node=node_name)
        if first_event is not None:
            leg.apply(first_event)
        if variables:
            leg.variables.update(variables)
        call = Call(self, node, leg, self.handler, adopted=adopted, clock=self.clock)
        self._calls[uuid] = call
        self._owner[uuid] = call
        self.stats.offered_call(call)
        call.start()
        return call

    def register_leg(self, uuid: str, call: Call) -> None:
        self._owner[uuid] = call

    def finished(self, call: Call) -> None:
        self._forget(call)
        self.stats.finished(call)
        self.journal.call_finished(call)

    def released(self, call: Call) -> None:
        """The engine let go of a call that is still up (shutdown): not finished, handed over."""
        self._forget(call)
        self.stats.handed_over(call)
        self.journal.call_released(call)

    def _forget(self, call: Call) -> None:
        for uuid in call.legs:
            if self._owner.get(uuid) is call:
                del self._owner[uuid]
        self._calls.pop(call.uuid, None)
        if not self._calls:
            self._none_left.set()

    @property
    def calls(self) -> list[Call]:
        return list(self._calls.values())

    def owner_of(self, uuid: str) -> Call | None:
        return self._owner.get(uuid)

    # --- after a (re)connect ------------------------------------------------------------------------
    def reconcile(self, node: Any) -> None:
        """Resume, close or adopt calls from the switch's own list of channels."""
        self._cancel_write_off(node)
        try:
            listing = json.loads(node.api("show channels as json") or "{}")
        except (EslError, ValueError) as exc:
            log.error("reconcile with %s failed: %s; will retry at the next reconnect", node.name, exc)
            return
        alive = {row["uuid"] for row in listing.get("rows", [])}
        for call in [c for c in self._calls.values() if c.node is node]:
            call.inbox.put(Resync(alive=call.uuid in alive))
        strangers = {uuid: self._engine_vars(node, uuid) for uuid in alive - self._owner.keys()}
        # Oldest first: the adopted calls rejoin their queues in the order they were started, so
        # an agent already free is offered to the caller who has waited longest, not to whichever
        # rejoined first.
        for uuid, variables in sorted(strangers.items(), key=_adoption_order):
            if VAR_ENTRY in variables and variables.get(VAR_LEG, "caller") == "caller":
                log.info("adopting call %s on %s (stage %s)", uuid, node.name, variables.get(VAR_STAGE, "new"))
                self._start_call(node.name, uuid, None, adopted=True, variables=variables)
        for uuid, variables in strangers.items():
            parent = self._calls.get(variables.get(VAR_PARENT, ""))
            if parent is not None and uuid not in self._owner:
                # A leg the engine originated for a caller it now controls (e.g. the agent talking).
                parent.inbox.put(AdoptLeg(Leg(uuid=uuid, node=node.name, role=variables.get(VAR_LEG, ""),
                                              answered=True, variables=variables)))
                self._owner[uuid] = parent

    @staticmethod
    def _engine_vars(node: Any, uuid: str) -> dict[str, str]:
        """The engine's variables and call data on a channel: two look-ups for a channel that is
        not ours, then one uuid_dump (every variable, however many call data it carries)."""
        def has(name: str) -> bool:
            value = node.api(commands.getvar(uuid, name))
            return bool(value) and value != "_undef_" and not value.startswith("-ERR")

        try:
            # a caller parked for the engine, or a leg it originated
            if not (has(VAR_ENTRY) or has(VAR_PARENT)):
                return {}
            return dumped_vars(node.api(f"uuid_dump {commands.check_uuid(uuid)}"))
        except EslError:
            return {}

    # --- shutdown -----------------------------------------------------------------------------------
    def drain(self, grace: float) -> None:
        """Stop taking new calls and give the ones in progress up to `grace` seconds."""
        self.accepting = False
        if self._calls:  # suspended calls have no greenlet to join: wait for the registry to empty
            self._none_left.clear()
            self._none_left.wait(grace)
        for call in self.calls:
            call.kill()
