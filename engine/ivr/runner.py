"""Runs a flow on a Call: each node's action through the call's own primitives, then the edge
its outcome names. The runner is the only part of the IVR that talks to FreeSWITCH, and only
through engine/esl/commands builders and the applications in APPLICATIONS.

Where the caller is lives on the channel (callrouter_flow, callrouter_ivr_node) so a restarted
engine resumes there, and in call.labels for the CDR. A node failing in a way the flow did not
plan for goes to the flow's on_error node, else the caller hears an apology and is hung up:
never silence, never a dead end. The caller hanging up raises CallGone out of any wait.

The call's data — what the caller keyed in (collect) and what lookups found — is kept on the
caller's channel as callrouter_data_<name> as it is collected: the ACD copies it onto every agent
leg it rings (a softphone or CRM popup reads it there), `calls show` lists it, and a call that
resumes or is sent back to a flow by an agent (ToFlow) finds it again.

A queue node's conversation suspends the call (engine.calls.call.Suspend: no greenlet while it
talks); woken, the node's outcome picks the next node as usual, with the same Session.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from engine.calls.call import Call, OriginateFailed, Suspend
from engine.channelvars import VAR_ENTRY, VAR_FLOW, VAR_JOINED, VAR_NODE
from engine.errors import CallGone, CallRouterError, CommandFailed, UnsafeValue
from engine.esl import commands
from engine.ivr import expr
from engine.ivr.model import (
    Branch, Callback, Collect, Flow, FlowSet, Hangup, Lookup, Menu, Node, Play, Prompt, Queue, Record, Say,
    ScheduleCheck, SetVars, Survey, Transfer, next_node,
)
from engine.ivr.ports import (
    DATA_PREFIX, EXIT_KEY, Position, QueueOutcome, QueuePort, ToFlow, call_data, data_text,
)
from engine.ivr.schedule import WEEKDAYS, status_at, time_between, wall_clock
from engine.ivr.store import IvrStore, fill_url, http_lookup

log = logging.getLogger(__name__)

# The only dialplan applications the IVR executes.
APPLICATIONS = frozenset({"answer", "playback", "play_and_get_digits", "say", "record"})
MAX_STEPS = 500  # node visits per call: a runaway flow apologises instead of spinning
SAY = {  # say kind -> (FreeSWITCH say type, method, what the value must look like)
    "number": ("NUMBER", "PRONOUNCED", re.compile(r"-?\d{1,15}\Z")),
    "digits": ("NUMBER", "ITERATED", re.compile(r"[0-9*#]{1,32}\Z")),
    "currency": ("CURRENCY", "PRONOUNCED", re.compile(r"-?\d{1,12}(\.\d{1,2})?\Z")),
    "time": ("TIME_MEASUREMENT", "PRONOUNCED", re.compile(r"\d{1,7}\Z")),  # seconds
    "date": ("SHORT_DATE_TIME", "PRONOUNCED", re.compile(r"\d{9,11}\Z")),  # epoch seconds
}
_TEMPLATE = re.compile(r"\$\{(\w+)\}")
_DATA_NAME = re.compile(r"[a-z0-9_]{1,48}\Z")
_ANY_KEY = "[0-9*#]"


@dataclass(frozen=True)
class RunnerSettings:
    apology: str = "tone_stream://%(250,250,480,620);loops=3"  # a fast busy: "we cannot take your call"
    recordings_dir: Path = Path("/var/lib/freeswitch/recordings/callrouter")
    silence: str = "silence_stream://250"  # after a failed digit attempt, before our own prompt


@dataclass
class Session:
    """One caller's way through the flows of one FlowSet."""

    call: Call
    flows: FlowSet
    flow: Flow
    variables: dict[str, str] = field(default_factory=dict)
    steps: int = 0
    failures: int = 0
    queue_joined: float = 0.0  # when the caller joined the last queue it left: its place, for a callback


class FlowEnded(Exception):
    """The caller left the engine's hands (transferred elsewhere or hung up by a node)."""


def substitute(template: str, variables: dict[str, str]) -> str:
    return _TEMPLATE.sub(lambda m: variables.get(m[1], ""), template)


class FlowRunner:
    def __init__(self, queue_port: QueuePort, store: IvrStore, settings: RunnerSettings | None = None, *,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
                 on_node: Callable[[Call, str, str], None] | None = None,
                 on_node_error: Callable[[str, str], None] | None = None) -> None:
        self.queue_port = queue_port
        self.store = store
        self.settings = settings or RunnerSettings()
        self.now = now
        self.on_node = on_node  # (call, flow, node) as each node starts: metrics, tests
        self.on_node_error = on_node_error  # (flow, node) when a node fails: metrics

    # --- the loop ---------------------------------------------------------------------------
    def run(self, call: Call, flows: FlowSet, flow: Flow, start: str | None = None) -> None:
        """The flow from `start` (else its start node) to its end, or until the caller leaves the
        engine's hands; Suspend while the caller talks to an agent (see the module docstring)."""
        session = Session(call, flows, flow, self._initial_variables(call, flow))
        self._walk(session, start or flow.start)

    def _walk(self, s: Session, name: str, rest: Callable[[], Any] | None = None) -> None:
        """Node after node from `name`; `rest`: what was left of that node's action when the call woke."""
        try:
            if rest is not None:
                name = self._visit(s, s.flow.nodes[name], rest)
            while name is not None:
                s.steps += 1
                if s.steps > MAX_STEPS:
                    log.error("call %s: flow %s visited %d nodes; giving up", s.call.uuid, s.flow.name, MAX_STEPS)
                    self.apologise(s.call)
                    return
                node = s.flow.nodes[name]
                name = self._visit(s, node, partial(self._enter_and_act, s, node))
        except FlowEnded:
            pass

    def _enter_and_act(self, s: Session, node: Node) -> Any:
        self._enter(s, node)
        return self._act(s, node)

    def _visit(self, s: Session, node: Node, act: Callable[[], Any]) -> str | None:
        """The node after `act` (the node's action, or what was left of it when the call woke)."""
        try:
            outcome = act()
        except (CallGone, FlowEnded):
            raise
        except Suspend as suspend:  # a conversation: woken, the flow goes on from this node's outcome
            raise suspend.wrap(partial(self._walk, s, node.name))
        except (CallRouterError, OSError) as exc:  # a command refused or timed out, a value unsafe, ...
            log.error("call %s: node %s (%s) failed: %s", s.call.uuid, node.name, node.where, exc)
            if self.on_node_error is not None:
                self.on_node_error(s.flow.name, node.name)
            return self._recover(s, node)
        if isinstance(outcome, Flow):  # a transfer to another flow
            s.flow = outcome
            s.variables.update({k: v for k, v in outcome.variables.items() if k not in s.variables})
            s.variables["flow"] = outcome.name
            return outcome.start
        name = next_node(node, outcome)
        if name is None and not isinstance(node, Hangup):
            s.call.hangup("NORMAL_CLEARING")  # the flow's natural end (e.g. after a conversation)
        return name

    def _recover(self, session: Session, node: Node) -> str | None:
        """The flow's on_error node, once; a second failure (or none) ends in the apology."""
        session.failures += 1
        on_error = session.flow.on_error
        if on_error and session.failures == 1:
            return on_error
        self.apologise(session.call)
        return None

    def apologise(self, call: Call) -> None:
        """The last resort: something the caller hears, then a clean hangup."""
        try:
            call.execute("playback", self.settings.apology, timeout=30)
        except CallGone:
            raise
        except CallRouterError as exc:
            log.warning("call %s: apology not played: %s", call.uuid, exc)
        call.hangup("NORMAL_TEMPORARY_FAILURE")

    def _initial_variables(self, call: Call, flow: Flow) -> dict[str, str]:
        caller = call.caller
        return {**flow.variables, **call_data(caller.variables),
                "caller_id": caller.caller_id_number, "caller_name": caller.caller_id_name,
                "dnis": caller.destination_number, "entry": caller.variables.get(VAR_ENTRY, ""),
                "uuid": call.uuid, "flow": flow.name}

    def _enter(self, session: Session, node: Node) -> None:
        call = session.call
        values = {VAR_NODE: node.name}
        if call.caller.variables.get(VAR_FLOW) != session.flow.name:
            values[VAR_FLOW] = session.flow.name
        call.set_vars(**values)  # first on the channel: a caller gone by now was still at the previous node
        call.labels.update(flow=session.flow.name, ivr_node=node.name)
        if self.on_node is not None:
            self.on_node(call, session.flow.name, node.name)

    # --- actions: each returns an outcome (or the Flow to continue in) ------------------------------
    def _act(self, s: Session, node: Node) -> Any:
        handler = getattr(self, "_" + type(node).__name__.lower())
        return handler(s, node)

    def _execute(self, call: Call, app: str, arg: str = "", timeout: float = 600.0) -> Any:
        if app not in APPLICATIONS:
            raise UnsafeValue(f"the IVR does not run the application {app!r}")
        return call.execute(app, arg, timeout=timeout)

    @staticmethod
    def _keep(s: Session, names: Iterable[str]) -> None:
        """Put these variables on the caller's channel as call data (see the module docstring);
        a name a dial string cannot carry is left out, and said."""
        changed = {}
        for name in names:
            key = name.lower()
            if not _DATA_NAME.match(key):
                log.warning("call %s: variable %r is not kept as call data (names: a-z, 0-9, _)", s.call.uuid, name)
                continue
            value = data_text(s.variables.get(name, ""))
            if s.call.caller.variables.get(DATA_PREFIX + key, "") != value:
                changed[DATA_PREFIX + key] = value
        if changed:
            s.call.set_vars(**changed)

    def play(self, s: Session, prompt: Prompt) -> None:
        files: list[str] = []
        for item in prompt:
            if isinstance(item, Say):
                if files:
                    self._execute(s.call, "playback", commands.file_string(files))
                    files = []
                self._say(s, item)
            else:
                files.append(item)
        if files:
            self._execute(s.call, "playback", commands.file_string(files))

    def _say(self, s: Session, item: Say) -> None:
        say_type, method, shape = SAY[item.kind]
        text = substitute(item.template, s.variables).strip()
        if not shape.match(text):  # data that is not what the prompt reads out: skip it, say so
            log.warning("call %s: cannot say %r as %s; skipped", s.call.uuid, text[:40], item.kind)
            return
        self._execute(s.call, "say", commands.say(item.language[:2], say_type, method, text))

    def _digits(self, s: Session, prompt: Prompt, *, min_digits: int = 1, max_digits: int = 1, tries: int = 1,
                timeout_ms: int, terminators: str = "none", pattern: str = _ANY_KEY,
                invalid: Prompt = (), digit_timeout_ms: int = 3000) -> str:
        """play_and_get_digits; the digits entered ('' if none were valid)."""
        var = "callrouter_digits"
        arg = commands.play_and_get_digits(
            min_digits, max_digits, tries, timeout_ms, terminators, commands.file_string(prompt),
            commands.file_string(invalid) if invalid else self.settings.silence, var, pattern, digit_timeout_ms)
        done = self._execute(s.call, "play_and_get_digits", arg)
        # The variable keeps an earlier collection's digits when this one failed: read_result says.
        if done is None or done.get("variable_read_result") != "success":
            return ""
        digits = done.get("variable_" + var) or ""
        if not re.fullmatch(pattern, digits):
            return ""
        s.variables["digits"] = digits
        return digits

    def _play(self, s: Session, node: Play) -> str:
        self.play(s, node.prompt)
        return "next"

    def _menu(self, s: Session, node: Menu) -> str:
        for _ in range(node.tries):
            digit = self._digits(s, node.prompt, timeout_ms=node.timeout_ms)
            if digit in node.edges and len(digit) == 1:
                return digit
            follow_up = node.invalid_prompt if digit else node.timeout_prompt
            if follow_up:
                self.play(s, follow_up)
        return "failure"

    def _collect(self, s: Session, node: Collect) -> str:
        digits = self._digits(s, node.prompt, min_digits=node.min_digits, max_digits=node.max_digits,
                              tries=node.tries, timeout_ms=node.timeout_ms, terminators=node.terminators,
                              pattern=node.pattern, invalid=node.invalid_prompt,
                              digit_timeout_ms=node.digit_timeout_ms)
        if not digits:
            return "failure"
        s.variables[node.into] = digits
        self._keep(s, (node.into,))
        return "next"

    def _setvars(self, s: Session, node: SetVars) -> str:
        for name, template in node.values:
            s.variables[name] = substitute(template, s.variables)
        return "next"

    def _branch(self, s: Session, node: Branch) -> str:
        functions = self._functions(s)
        for i, (text, condition) in enumerate(node.cases):
            try:
                if expr.test(condition, s.variables, functions):
                    return f"case{i}"
            except expr.EvalError as exc:
                log.warning("call %s: condition %r of %s counted as false: %s", s.call.uuid, text, node.where, exc)
        return "else"

    def _functions(self, s: Session) -> dict[str, Callable[..., Any]]:
        now = self.now()
        wall = wall_clock(s.flow.timezone, now)
        port = self.queue_port
        return {
            "agents_available": lambda q: port.status(q).agents_available,
            "calls_waiting": lambda q: port.status(q).calls_waiting,
            "estimated_wait": lambda q: port.status(q).estimated_wait,
            "open": lambda name: status_at(s.flow.schedules[name], now) == "open",
            "time_between": lambda a, b: time_between(wall, a, b),
            "weekday": lambda: WEEKDAYS[wall.weekday()],
            "len": lambda v: len(v) if isinstance(v, (str, list)) else len(str(v)),
            "starts_with": lambda v, p: str(v).startswith(str(p)),
            "ends_with": lambda v, p: str(v).endswith(str(p)),
        }

    def _schedulecheck(self, s: Session, node: ScheduleCheck) -> str:
        return status_at(s.flow.schedules[node.schedule], self.now())

    def _queue(self, s: Session, node: Queue) -> Any:
        call = s.call
        call.labels["queue"] = node.queue

        def announce(where: Position) -> None:
            s.variables["queue_position"] = str(where.position)
            s.variables["queue_wait_minutes"] = str(max(1, round(where.estimated_wait / 60)))
            call.api(commands.break_media(call.uuid))
            self.play(s, node.announce)

        return self._queue_outcome(s, partial(
            self.queue_port.enqueue, call, node.queue, skills=node.skills, priority=node.priority,
            max_wait=node.max_wait, announce=announce if node.announce else None,
            announce_every=node.announce_every, exit_keys=node.exit_keys))

    def _queue_outcome(self, s: Session, wait: Callable[[], QueueOutcome]) -> Any:
        """The queue node's edge (or the Flow an agent sent the caller to) once `wait` is over."""
        call = s.call
        try:
            outcome = wait()
        except Suspend as suspend:  # talking to an agent
            raise suspend.wrap(partial(self._queue_outcome, s))
        except ToFlow as sent:
            flow = s.flows.flows.get(sent.flow)
            if flow is None:  # the ACD checks the name; a reload may have removed the flow since
                log.error("call %s: sent to flow %r, which this call's flows do not have", call.uuid, sent.flow)
                self.apologise(call)
                raise FlowEnded() from None
            log.info("call %s: an agent sent it to flow %s", call.uuid, flow.name)
            return flow
        if outcome.agent:
            call.labels["agent"] = outcome.agent
        s.queue_joined = outcome.joined or s.queue_joined
        return outcome.digit if outcome.result == EXIT_KEY else outcome.result

    def _transfer(self, s: Session, node: Transfer) -> Any:
        call = s.call
        if node.flow:
            return s.flows.flows[node.flow]
        if node.extension:
            call.labels["transfer_target"] = f"{node.extension}@{node.context}"
            try:
                call.api(commands.uuid_transfer(call.uuid, node.extension, "XML", node.context))
            except CommandFailed as exc:
                log.info("call %s: transfer to %s failed: %s", call.uuid, node.extension, exc)
                return "failure"
            call.outcome = "transferred"
            self._stay_until_hangup(call)
        call.labels["transfer_target"] = node.number
        try:
            leg = call.originate(f"sofia/gateway/{node.gateway}/{node.number}",
                                 {"origination_caller_id_number": call.caller.caller_id_number or "anonymous"},
                                 role="outbound", timeout=node.ring_seconds)
        except OriginateFailed as failed:
            log.info("call %s: transfer to %s failed: %s", call.uuid, node.number, failed.cause)
            return "failure"
        call.outcome = "transferred"
        call.api(commands.break_media(call.uuid))
        call.bridge(leg)
        while not leg.hungup:
            call.next_item(60.0)
        call.hangup("NORMAL_CLEARING")
        raise FlowEnded()

    @staticmethod
    def _stay_until_hangup(call: Call) -> None:
        """The channel runs someone else's dialplan now: keep its events (the CDR wants the end)
        without touching it, until it hangs up."""
        while True:
            call.next_item(3600.0)

    def _record(self, s: Session, node: Record) -> str:
        call = s.call
        self.play(s, node.prompt + (node.beep,))
        started = self.now()
        path = str(self.settings.recordings_dir / node.mailbox / f"{started:%Y%m%dT%H%M%S}-{call.uuid}.wav")
        call.outcome = call.outcome if call.outcome not in ("", "ended_in_ivr") else "message_left"
        began, seconds = call.clock(), 0.0
        try:
            done = self._execute(call, "record", commands.record(path, node.max_seconds),
                                 timeout=node.max_seconds + 30)
            seconds = _number(done.get("variable_record_seconds") if done is not None else None)
        except CallGone:
            # Most messages end with the caller hanging up: FreeSWITCH keeps the file, so do we the row.
            seconds = call.clock() - began
            raise
        finally:
            self.store.recording(call.uuid, node.mailbox, path, round(seconds, 1), flow=s.flow.name,
                                 caller_id=call.caller.caller_id_number, at=started)
        return "next"

    def _survey(self, s: Session, node: Survey) -> str:
        for question in node.questions:
            answer = self._digits(s, question.prompt, tries=node.tries, timeout_ms=node.timeout_ms,
                                  pattern=f"[{re.escape(question.answers)}]", invalid=node.invalid_prompt)
            if answer:
                self.store.survey_answer(s.call.uuid, node.survey, question.id, answer, flow=s.flow.name,
                                         caller_id=s.call.caller.caller_id_number, at=self.now())
        return "next"

    def _callback(self, s: Session, node: Callback) -> str:
        call = s.call
        if self._digits(s, node.prompt, timeout_ms=node.timeout_ms) != node.accept:
            return "declined"
        # A caller who waited in a queue keeps its place there; else its arrival orders the callbacks.
        joined = s.queue_joined or _number(call.caller.variables.get(VAR_JOINED)) or call.started
        if not call.caller.caller_id_number or not self.store.callback_request(
                call.uuid, node.queue, call.caller.caller_id_number, flow=s.flow.name, joined=joined, at=self.now()):
            return "declined"
        call.outcome = "callback_requested"
        self.play(s, node.confirm)
        return "accepted"

    def _lookup(self, s: Session, node: Lookup) -> str:
        try:
            if node.query:
                query = s.flow.queries[node.query]
                row = self.store.query(query.sql, {p: s.variables.get(p, "") for p in query.params}, node.timeout)
            else:
                row = http_lookup(fill_url(node.url, s.variables), node.timeout)
        except CallGone:
            raise
        except Exception as exc:  # whatever the database or the web service did: the flow's failure edge
            log.warning("call %s: lookup at %s failed: %s", s.call.uuid, node.where, exc)
            return "failure"
        if row is None:
            return "not_found"
        for var, source in node.into:
            s.variables[var] = row.get(source, "")
        self._keep(s, (var for var, _ in node.into))
        return "found"

    def _hangup(self, s: Session, node: Hangup) -> None:
        if node.prompt:
            self.play(s, node.prompt)
        s.call.hangup(node.cause)
        return "done"


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0

