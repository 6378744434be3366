"""The IVR as the engine's route handler, and the live set of flows it runs.

`FlowsHolder` keeps the current FlowSet and swaps in a new one only when every file of the
directory validates (SIGHUP, `callrouter reload`); a call keeps the FlowSet it started with
until it ends, so an edit never changes a call half way through. `IvrRoute(call, resumed)` picks
the flow by the channel's callrouter_entry (the flow that declares that entry, else the default
flow, else an apology), answers, and runs it; a resumed or adopted call continues at the node
saved on its channel.
"""
from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Callable

from gevent.lock import RLock

from engine.calls.call import Call
from engine.channelvars import VAR_ENTRY, VAR_FLOW, VAR_NODE, VAR_STAGE
from engine.ivr.loader import Checks, load_flows
from engine.ivr.model import FlowSet
from engine.ivr.runner import FlowRunner

log = logging.getLogger(__name__)


class FlowsHolder:
    def __init__(self, directory: str | Path, checks: Checks | None = None,
                 loader: Callable[[Path, Checks | None], FlowSet] = load_flows) -> None:
        self.directory = Path(directory)
        self.checks = checks
        self._loader = loader
        self._lock = RLock()
        self._current = loader(self.directory, checks)  # the engine does not start on broken flows

    @property
    def current(self) -> FlowSet:
        return self._current

    def reload(self) -> FlowSet:
        """Validate every file again; swap only if all pass (else FlowErrors, and nothing changes)."""
        with self._lock:
            fresh = self._loader(self.directory, self.checks)
            old, self._current = self._current, fresh
        log.info("flows reloaded: version %s -> %s (%d flows)", old.version, fresh.version, len(fresh.flows))
        return fresh


class IvrRoute:
    def __init__(self, flows: FlowsHolder, runner: FlowRunner, *, park_timeout_seconds: int = 3600) -> None:
        self.flows = flows
        self.runner = runner
        self.park_timeout_seconds = park_timeout_seconds
        self._pinned: weakref.WeakKeyDictionary[Call, FlowSet] = weakref.WeakKeyDictionary()

    def __call__(self, call: Call, resumed: bool) -> None:
        flows = self._pinned.setdefault(call, self.flows.current)
        variables = call.caller.variables
        entry = variables.get(VAR_ENTRY, "")
        call.labels["entry"] = entry
        call.outcome = call.outcome or "ended_in_ivr"
        flow, start = flows.for_entry(entry), None
        saved = flows.flows.get(variables.get(VAR_FLOW, "")) if resumed else None
        if saved is not None and variables.get(VAR_NODE) in saved.nodes:
            flow, start = saved, variables[VAR_NODE]
            log.info("call %s resumes flow %s at %s", call.uuid, flow.name, start)
        # A flow from its start marks the stage; with the park timer, in one round trip.
        stage = call.stage_vars("ivr") if flow is not None and start is None else {}
        # Taking control re-parks the call: for a resumed call that also stops what was playing,
        # except a call talking to an agent, whose bridge a re-park would break.
        if variables.get(VAR_STAGE) != "talking" or not resumed:
            call.take_control(self.park_timeout_seconds, **stage)
        elif stage:
            call.set_vars(**stage)
        if flow is None:
            log.error("call %s: no flow for entry %r and no default flow", call.uuid, entry)
            call.labels["flow"] = ""
            self.runner.apologise(call)
            return
        if start is None:
            call.answer()
        self.runner.run(call, flows, flow, start)
