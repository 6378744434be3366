"""The live dialer in the daemon: the campaigns' runners (engine/dialer/campaign.py) started and
halted from the campaigns' states, and the Call handler for the calls they placed.

An answered leg parks tagged callrouter_entry=dialer, so the registry starts a Call for it (or
adopts it after a restart, ringing or not) and `handle` runs it: AMD result, machine (the
campaign's message once the greeting is over, or hang up), person -> by mode: the campaign's
queue through the ACD (no agent within 2 s of the greeting's end -> the abandon message, then
hang up), the broadcast message with its agent and opt-out keys, or the survey's IVR flow.
Preview and click-to-call ring the agent first (engine/dialer/agent_first.py).

A conversation with an agent suspends the call (no greenlet, engine.calls.call.Suspend): the
disposition and the attempt's closing are carried around the continuation and run once it ends.

Every attempt is closed once in PostgreSQL with after_attempt's verdict on its contact, also
across a restart or a takeover: an attempt left open is either still on the switch (the
registry adopts its leg, `handle` watches it to its answer or hangup) or gone, and then closed
from its CDR or as no-answer.

Campaign states are read from PostgreSQL every `poll_seconds`, so `callrouter campaign
start|pause|resume|stop` works the same through the CLI (database) or the admin API.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from functools import partial
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.pool import Group

from engine.calls.call import Call, Resumed, Suspend, and_then
from engine.channelvars import VAR_CAMPAIGN, VAR_FLOW, VAR_NODE, VAR_STAGE
from engine.config import DialerSettings
from engine.dialer import pacing, store
from engine.dialer.agent_first import AgentFirst
from engine.dialer.campaign import (
    ADOPT_WAIT, DIALER_ENTRY, JOB_MARGIN, STAGE_TALKING, CampaignRunner, OpenAttempt, label,
)
from engine.dialer.compliance import is_abandoned, utc
from engine.dialer.model import (
    ABANDON_GRACE_SECONDS, CAUSE_DISPOSITIONS, Attempt, Campaign, CampaignState, Contact, Disposition, Mode,
)
from engine.dialer.selection import after_attempt
from engine.errors import CallRouterError, EslError
from engine.esl import commands
from engine.ivr.ports import ANSWERED, QueueOutcome
from engine.metrics import CampaignSnapshot

__all__ = ["DIALER_ENTRY", "Dialer"]

log = logging.getLogger(__name__)

AMD_POLL = 0.25
AMD_RESULTS = ("HUMAN", "MACHINE", "NOTSURE")
# The ACD checks a caller's max-wait once a second: leaving it 1 s before the grace ends means
# an agent is connected within 2 s of the greeting's end, or the abandon message plays.
QUEUE_WAIT = ABANDON_GRACE_SECONDS - 1.0
STAGE_ABANDONED = "abandoned"
STAGE_MESSAGE = "message"  # a broadcast's message (and its keys) playing
STAGE_IVR = "ivr"
KEY_WAIT_MS = 5000  # after the broadcast message, how long its keys are waited for
INTRO_KEY_WAIT_MS = 2000  # after a survey's introduction, how long its opt-out key is waited for


def gone_disposition(record: tuple[datetime | None, str, str] | None) -> tuple[str, bool]:
    """(disposition, abandoned) of an attempt whose leg ended while no engine watched it, from the
    leg's CDR (answer_stamp, hangup_cause, agent) when an engine wrote one. A live answer with no
    agent on record counts as abandoned: the abandon rate is never understated for lack of data."""
    if record is None:
        return Disposition.NO_ANSWER.value, False
    answered, cause, agent = record
    if answered is None:
        return CAUSE_DISPOSITIONS.get(cause, Disposition.NO_ANSWER).value, False
    if agent:
        return Disposition.ANSWERED.value, False
    return Disposition.ABANDONED.value, True


class Dialer:
    """Every campaign of this engine: the runners of the running ones, the attempts open on this
    engine, the agent-first calls (preview, click-to-call), and the Call handler.

    `flows` and `ivr` (the engine's FlowsHolder and FlowRunner) run survey campaigns' flows."""

    def __init__(self, connect: Callable[[], Any], acd: Any, nodes: Callable[[], list[Any]], settings: DialerSettings, *,
                 flows: Any = None, ivr: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.connect = connect
        self.acd = acd
        self.nodes = nodes
        self.settings = settings
        self.flows = flows
        self.ivr = ivr
        self.clock = clock
        self.runners: dict[str, CampaignRunner] = {}
        self.open: dict[str, OpenAttempt] = {}          # leg Unique-ID -> its attempt, while not closed
        self.agent_first = AgentFirst(self)             # preview and click-to-call
        self._poke = Event()
        self._supervisor: gevent.Greenlet | None = None
        self._tasks = Group()                           # job watchers and settlements: stopped with the dialer
        self._stopped = False

    def node(self) -> Any:
        nodes = self.nodes()
        return nodes[0] if nodes else None

    def spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        self._tasks.spawn(fn, *args)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.settings.enabled:
            self._stopped = False
            self._supervisor = gevent.spawn(self._supervise)

    def stop(self) -> None:
        self._stopped = True
        if self._supervisor is not None:
            self._supervisor.kill()
        for runner in self.runners.values():
            runner.halt()
        self._tasks.kill(block=False)

    def _supervise(self) -> None:
        while True:
            self._poke.clear()
            try:
                self._sync()
            except Exception:
                log.exception("dialer: reading the campaigns failed; retrying")
            self._poke.wait(self.settings.poll_seconds)

    def _sync(self) -> None:
        """Start a runner per running campaign, halt the others' dialling (their calls go on)."""
        with self.connect() as conn:
            campaigns = store.list_campaigns(conn)
        for campaign, started_at in campaigns:
            runner = self.runners.get(campaign.name)
            running = campaign.state is CampaignState.RUNNING
            if runner is None and running:
                runner = self.runners[campaign.name] = CampaignRunner(self, campaign, started_at or utc(self.clock()))
            if runner is None:
                continue
            runner.campaign = campaign
            if running and not runner.dialling:
                log.info("campaign %s (%s) dialling", campaign.name, campaign.mode.value)
                runner.start()
            elif not running and runner.dialling:
                log.info("campaign %s %s: dialling stops", campaign.name, campaign.state.value)
                runner.halt()

    # ------------------------------------------------------------------ attempts no handler watches
    def settle(self, attempt: Attempt) -> None:
        """An open attempt no handler watches: still on the switch, the registry adopts its leg
        and `handle` watches it; gone, it is closed from its leg's CDR, else as no-answer."""
        node = self.node()
        try:
            alive = node.api(f"uuid_exists {commands.check_uuid(attempt.uuid)}").strip() == "true"
        except EslError as exc:
            log.warning("campaign %s: cannot check attempt %s: %s", attempt.campaign, attempt.uuid, exc)
            return
        if alive:
            # In flight until its handler (the registry adopts the leg) says otherwise: the pacing
            # must not dial for the agent this call is about to take.
            with self.connect() as conn:
                contact = store.load_contact(conn, attempt.contact_id)
                still_open = store.attempt(conn, attempt.uuid).ended_at is None
                if still_open:  # no I/O between the check and this (`close` pops after its write)
                    self.open.setdefault(attempt.uuid, OpenAttempt(attempt, contact))
            log.info("campaign %s: attempt %s still on the switch; adopted", attempt.campaign, attempt.uuid)
            return
        with self.connect() as conn:
            disposition, attempt.abandoned = gone_disposition(store.leg_record(conn, attempt.uuid))
            contact = store.load_contact(conn, attempt.contact_id)
        log.warning("campaign %s: attempt %s to contact %d ended while no engine watched; closed as %s",
                    attempt.campaign, attempt.uuid, contact.id, disposition)
        self.close(attempt, contact, disposition)

    def settle_when_back(self, leg: str) -> None:
        """An originate's result was lost with the connection: once the node is back (and its
        reconciliation has adopted the leg if it is still up), settle the attempt unless a
        handler took it."""
        node = self.node()
        while not self._stopped and node is not None and not node.wait_up(1.0):
            pass
        gevent.sleep(ADOPT_WAIT)
        entry = self.open.get(leg)
        if not self._stopped and entry is not None and not entry.handled:
            self.settle(entry.attempt)

    # ------------------------------------------------------------------ control (admin API)
    def control(self, name: str, action: str) -> dict[str, Any]:
        """start / pause / resume / stop; ValueError (the API's 422) when refused."""
        if action not in store.TRANSITIONS:
            raise ValueError(f"unknown action '{action}'; one of: {', '.join(store.TRANSITIONS)}")
        try:
            with self.connect() as conn:
                store.change_state(conn, name, action)
        except CallRouterError as exc:
            raise ValueError(str(exc)) from None
        self._sync()
        return self.status(name)

    def status(self, name: str) -> dict[str, Any]:
        try:
            with self.connect() as conn:
                figures = store.status(conn, name, utc(self.clock()))
        except CallRouterError as exc:
            raise ValueError(str(exc)) from None
        runner = self.runners.get(name)
        views, waiting = runner.agents(self.clock()) if runner is not None else ((), 0)
        figures.update({
            "dialling": runner is not None and runner.dialling,
            "calls_in_progress": len(runner.open) if runner is not None else 0,
            "pacing_ratio": round(runner.snapshot().pacing_ratio, 3) if runner is not None else None,
            "agents_idle": sum(v.state == pacing.IDLE for v in views),
            "agents_busy": sum(v.state != pacing.IDLE for v in views), "callers_waiting": waiting,
        })
        return {k: store.to_json(v) for k, v in figures.items()}

    def list(self) -> list[dict[str, Any]]:
        with self.connect() as conn:
            names = [c.name for c, _ in store.list_campaigns(conn)]
        return [self.status(name) for name in names]

    def snapshots(self) -> list[CampaignSnapshot]:
        return [runner.snapshot() for runner in self.runners.values()]

    # ------------------------------------------------------------------ preview and click-to-call
    # ------------------------------------------------------------------ the calls
    def handle(self, call: Call, resumed: bool) -> None:
        call.labels["entry"] = DIALER_ENTRY
        if self.agent_first.handle(call, resumed):
            return
        variables = call.caller.variables
        entry = self.open.get(call.uuid)
        if entry is None:  # adopted after a restart or a takeover
            with self.connect() as conn:
                attempt = store.attempt(conn, call.uuid)
                contact = store.load_contact(conn, attempt.contact_id) if attempt else None
            if attempt is None or contact is None or attempt.ended_at is not None:
                log.error("call %s: no open attempt of campaign %s; hanging up", call.uuid,
                          variables.get(VAR_CAMPAIGN, ""))
                call.hangup()
                return
            entry = self.open.setdefault(call.uuid, OpenAttempt(attempt, contact))
        entry.handled = True
        label(call, entry.attempt)
        self._close_after(call, entry, partial(self._answered, call, entry, resumed))

    def _close_after(self, call: Call, entry: OpenAttempt, converse: Callable[[], str]) -> None:
        """Close the attempt with the disposition `converse` returns, or with what the call's end
        under it means; a conversation with an agent suspends the call, and this goes on once woken."""
        try:
            disposition = converse()
        except Suspend as suspend:
            raise suspend.wrap(partial(self._close_after, call, entry))
        except (gevent.GreenletExit, Resumed):
            raise  # the call goes on: a restarted engine, or this one after the outage, carries on
        except BaseException:
            self.close(entry.attempt, entry.contact, self._interrupted(entry.attempt, call.caller.hangup_cause), call)
            raise
        self.close(entry.attempt, entry.contact, disposition, call)

    def _answered(self, call: Call, entry: OpenAttempt, resumed: bool) -> str:
        """The answered attempt's call, to its disposition."""
        runner = self.runners.get(entry.attempt.campaign)
        if runner is not None:
            campaign = runner.campaign
        else:
            with self.connect() as conn:
                campaign = store.load_campaign(conn, entry.attempt.campaign)
        # A leg adopted (or handed back after an outage) before its answer is watched to it.
        if resumed and not entry.answered:
            self._await_answer(call, campaign)
        entry.answered = True
        return self._converse(call, campaign, runner, entry)

    def _await_answer(self, call: Call, campaign: Campaign) -> None:
        """Wait for an adopted leg's answer (FreeSWITCH marks endpoint_disposition ANSWER then);
        CallGone when it ends unanswered, which `handle` closes with the hangup cause."""
        if call.api(commands.getvar(call.uuid, "endpoint_disposition")).strip() != "ANSWER":
            call.wait_for(lambda item: getattr(item, "name", "") in ("CHANNEL_ANSWER", "CHANNEL_PARK"),
                          campaign.ring_timeout + JOB_MARGIN, "answer of a ringing campaign call")

    @staticmethod
    def _interrupted(attempt: Attempt, cause: str) -> str:
        """The disposition of an attempt whose called party hung up (or whose handler failed)."""
        if attempt.answered_at is None:
            return CAUSE_DISPOSITIONS.get(cause, Disposition.NO_ANSWER).value  # ended while ringing
        if attempt.connected_at is not None:
            return Disposition.ANSWERED.value
        if attempt.abandoned:
            return Disposition.ABANDONED.value
        if attempt.amd_result == "MACHINE":
            return Disposition.MACHINE.value
        return Disposition.NO_ANSWER.value  # gone before AMD concluded, or before an agent within the grace

    def _converse(self, call: Call, campaign: Campaign, runner: CampaignRunner | None, entry: OpenAttempt) -> str:
        attempt = entry.attempt
        stage = call.caller.variables.get(VAR_STAGE, "")
        if stage == STAGE_ABANDONED:  # adopted after its message: it was abandoned already
            attempt.abandoned = True
            call.hangup()
            return Disposition.ABANDONED.value
        if attempt.answered_at is None:
            attempt.answered_at = utc(self.clock())
        if not stage:
            attempt.amd_result = self._amd(call)
            if attempt.amd_result == "MACHINE":
                # AMD concludes at the greeting's end: a message left now is recorded after the beep.
                if campaign.machine_message:
                    attempt.message_played = campaign.machine_message
                    call.playback(campaign.machine_message)
                call.hangup()
                return Disposition.MACHINE.value
        greeting_end = self.clock()
        entry.ringing = False
        if runner is not None and not stage:
            runner.answered_live(attempt, greeting_end)
        if campaign.mode is Mode.BROADCAST:
            return self._broadcast(call, campaign, attempt, queued=stage in ("queue", STAGE_TALKING))
        if campaign.mode is Mode.SURVEY:
            return self._survey(call, campaign, attempt, resumed=stage == STAGE_IVR)
        # No agent free now: none can be connected within the grace (the ACD's max-wait does not
        # run while an agent rings), so the called party hears the message at once.
        if campaign.queue and (stage or self.acd.router.available(campaign.queue)):
            return and_then(partial(self.acd.enqueue, call, campaign.queue, priority=self.settings.priority,
                                    max_wait=QUEUE_WAIT),
                            partial(self._after_queue, call, campaign, attempt, stage, greeting_end))
        return self._abandon(call, campaign, attempt)

    def _after_queue(self, call: Call, campaign: Campaign, attempt: Attempt, stage: str, greeting_end: float,
                     outcome: QueueOutcome) -> str:
        if outcome.result != ANSWERED:
            return self._abandon(call, campaign, attempt)
        connected = call.marks.get("connected", greeting_end)
        attempt.connected_at = utc(connected)
        attempt.agent = outcome.agent or ""
        attempt.abandoned = stage == "" and is_abandoned(greeting_end, connected)
        return Disposition.ANSWERED.value

    @staticmethod
    def _abandon(call: Call, campaign: Campaign, attempt: Attempt) -> str:
        """No agent for the called party within the grace: the abandon message, then hang up."""
        attempt.abandoned = True
        call.set_vars(**{VAR_STAGE: STAGE_ABANDONED})
        if campaign.abandon_message:
            attempt.message_played = campaign.abandon_message
            call.playback(campaign.abandon_message)
        call.hangup()
        return Disposition.ABANDONED.value

    def _broadcast(self, call: Call, campaign: Campaign, attempt: Attempt, *, queued: bool) -> str:
        """The message, then its keys: the agent key joins the campaign's queue (the called party
        chose to wait: no abandon grace), the opt-out key puts the number on the internal DNC list.
        An adopted call already in the queue goes on waiting there."""
        attempt.connected_at = attempt.connected_at or utc(self.clock())  # the message took the call
        attempt.message_played = campaign.message
        if queued:
            digit = campaign.agent_key
        else:
            digit = self._message(call, campaign.message, campaign.agent_key + campaign.opt_out_key, KEY_WAIT_MS)
        if digit and digit == campaign.opt_out_key:
            return self._opt_out(call, campaign, attempt)
        if digit and digit == campaign.agent_key:
            return and_then(partial(self.acd.enqueue, call, campaign.queue, priority=self.settings.priority),
                            partial(self._after_broadcast_queue, call, attempt))
        call.hangup()
        return Disposition.ANSWERED.value

    @staticmethod
    def _after_broadcast_queue(call: Call, attempt: Attempt, outcome: QueueOutcome) -> str:
        if outcome.result == ANSWERED:
            attempt.agent = outcome.agent or ""
        call.hangup()
        return Disposition.ANSWERED.value

    @staticmethod
    def _message(call: Call, message: str, keys: str, wait_ms: int) -> str:
        """Play a campaign's message listening for `keys` (for `wait_ms` after it); the key pressed or ""."""
        call.set_vars(**{VAR_STAGE: STAGE_MESSAGE})
        if not keys:
            call.playback(message)
            return ""
        return call.play_and_get_digits(message, tries=1, timeout_ms=wait_ms, terminators="none",
                                        regex=f"[{re.escape(keys)}]")

    def _opt_out(self, call: Call, campaign: Campaign, attempt: Attempt) -> str:
        """The number goes on the internal DNC list (every campaign) at once, then the confirmation."""
        with self.connect() as conn:
            store.add_dnc(conn, [attempt.phone], "internal", f"opt-out:{call.uuid}")
        log.info("campaign %s: %s opted out (call %s)", campaign.name, attempt.phone, call.uuid)
        if campaign.opt_out_message:
            call.playback(campaign.opt_out_message)
        call.hangup()
        return Disposition.DNC.value

    def _survey(self, call: Call, campaign: Campaign, attempt: Attempt, *, resumed: bool) -> str:
        """The campaign's IVR flow (answers stored by its survey nodes under this call's Unique-ID);
        an adopted call goes on at the node saved on its channel. With a message, that plays first
        as the survey's introduction, offering the opt-out key (automated calls must offer one)."""
        flows = self.flows.current
        flow = flows.flows[campaign.flow]
        variables = call.caller.variables
        start = variables.get(VAR_NODE) if resumed and variables.get(VAR_FLOW) == flow.name else None
        attempt.connected_at = attempt.connected_at or utc(self.clock())  # the flow took the call
        if start not in flow.nodes:
            start = None
            if campaign.message:
                attempt.message_played = campaign.message
                digit = self._message(call, campaign.message, campaign.opt_out_key, INTRO_KEY_WAIT_MS)
                if digit and digit == campaign.opt_out_key:
                    return self._opt_out(call, campaign, attempt)
            call.set_vars(**{VAR_STAGE: STAGE_IVR})
        # A queue in the flow suspends the call while it talks: the survey is answered once it ends.
        return and_then(partial(self.ivr.run, call, flows, flow, start), lambda _: Disposition.ANSWERED.value)

    def _amd(self, call: Call) -> str:
        """The AMD result left on the leg once the greeting is over (NOTSURE after amd_timeout)."""
        deadline = self.clock() + self.settings.amd_timeout
        while self.clock() < deadline:
            value = call.api(commands.getvar(call.uuid, "amd_result")).strip()
            if value in AMD_RESULTS:
                return value
            call.sleep(AMD_POLL)
        return "NOTSURE"

    # ------------------------------------------------------------------ closing
    def close(self, attempt: Attempt, contact: Contact, disposition: str, call: Call | None = None) -> None:
        """Record the attempt's end and what it means for its contact (retry rules), once; the
        attempt's `call`, if any, names the disposition in its CDRs."""
        self.open.pop(attempt.uuid, None)
        attempt.disposition = disposition
        attempt.ended_at = utc(self.clock())
        runner = self.runners.get(attempt.campaign)
        try:
            with self.connect() as conn:
                campaign = runner.campaign if runner is not None else store.load_campaign(conn, attempt.campaign)
                if not store.close_attempt(conn, attempt):
                    log.info("campaign %s: attempt %s was closed already", attempt.campaign, attempt.uuid)
                    return
                if call is not None:
                    call.labels["disposition"] = disposition
                contact = store.load_contact(conn, contact.id, lock=True)
                store.save_contact(conn, after_attempt(campaign, contact, disposition, attempt.ended_at))
        finally:
            self.open.pop(attempt.uuid, None)  # `settle` may have seen it open while this was written
        log.info("campaign %s: contact %d %s (attempt %s%s)", attempt.campaign, contact.id, disposition,
                 attempt.uuid, ", abandoned" if attempt.abandoned else "")
        if runner is not None:
            runner.closed(attempt)
