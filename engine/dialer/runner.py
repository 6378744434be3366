"""The live dialer in the daemon: one greenlet per running campaign places calls through the
engine's first node, and the Call handler for the calls it placed.

A campaign's greenlet asks the pacing how many calls to place, takes due contacts
(selection.next_contacts), checks each one right before it dials (refuse_dial, with the DNC
lookup done then), writes the attempt and the contact's DIALING state, then sends
`bgapi originate {...}sofia/gateway/<gw>/<number> &park()` with our own origination_uuid and the
campaign and contact ids as channel variables. A failed originate closes the attempt with the
hangup cause's disposition. An answered leg parks tagged callrouter_entry=dialer, so the
registry starts a Call for it (or adopts it after a restart) and `handle` runs it: AMD result,
machine (message or hang up), person -> the campaign's queue through the ACD; no agent within
2 s of the greeting's end -> the abandon message, then hang up. Every attempt is closed in
PostgreSQL with after_attempt's verdict on its contact.

Campaign states are read from PostgreSQL every `poll_seconds`, so `callrouter campaign
start|pause|resume|stop` works the same through the CLI (database) or the admin API.
"""
from __future__ import annotations

import collections
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

import gevent
from gevent.event import Event

from engine.acd.model import AgentState
from engine.calls.call import Call, Resumed
from engine.channelvars import VAR_CAMPAIGN, VAR_CONTACT, VAR_ENTRY, VAR_STAGE
from engine.config import DialerSettings
from engine.dialer import pacing, store
from engine.dialer.compliance import DialHistory, is_abandoned, period_of, refuse_dial, utc
from engine.dialer.model import (
    ABANDON_GRACE_SECONDS, CAUSE_DISPOSITIONS, Attempt, Campaign, CampaignState, Contact, ContactState, Disposition,
    Mode,
)
from engine.dialer.selection import after_attempt, next_contacts
from engine.errors import CallRouterError, EslError
from engine.esl import commands
from engine.ivr.ports import ANSWERED
from engine.metrics import CampaignSnapshot

log = logging.getLogger(__name__)

DIALER_ENTRY = "dialer"  # callrouter_entry of the calls the dialer places
AMD_POLL = 0.25
AMD_RESULTS = ("HUMAN", "MACHINE", "NOTSURE")
# The ACD checks a caller's max-wait once a second: leaving it 1 s before the grace ends means
# an agent is connected within 2 s of the greeting's end, or the abandon message plays.
QUEUE_WAIT = ABANDON_GRACE_SECONDS - 1.0
STAGE_ABANDONED = "abandoned"
HISTORY_SPAN = timedelta(hours=72)  # enough for attempts per local day and Ofcom's no-redial
JOB_MARGIN = 30.0  # a bgapi originate answers within ring_timeout; past this margin it is lost


def dial_history(zone: str, rows: list[tuple[datetime, bool]], now: datetime) -> DialHistory:
    """The dial check's view of one contact from its recent (started_at, abandoned) attempts."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    abandoned = [started for started, dropped in rows if dropped]
    return DialHistory(sum(1 for started, _ in rows if started.astimezone(tz).date() == today),
                       max(abandoned, default=None))


@dataclass
class _Open:
    attempt: Attempt
    contact: Contact
    ringing: bool = True   # placed, not yet through AMD to a person (the pacing's "in flight")


@dataclass
class _Figures:
    dialed: int = 0
    resolved: int = 0
    live: int = 0
    abandoned: int = 0
    answer_delay_total: float = 0.0
    answer_delay_count: int = 0
    handle_total: float = 0.0
    handle_count: int = 0
    period_start: datetime | None = None
    period_live: float = 0.0
    period_abandoned: float = 0.0
    recent_live: collections.deque = field(default_factory=collections.deque)
    last_ratio: float = 0.0


class CampaignRunner:
    """One running campaign: its dialling greenlet and the attempts it has open."""

    def __init__(self, dialer: "Dialer", campaign: Campaign, started_at: datetime) -> None:
        self.dialer = dialer
        self.campaign = campaign
        self.started_at = started_at
        self.open: dict[str, _Open] = {}
        self.figures = _Figures()
        self.contacts_left = 0
        self.wake = Event()
        self._greenlet: gevent.Greenlet | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Dial (again, after a pause); the figures are read from the attempts the first time."""
        if self.figures.period_start is None:
            self._load_figures()
        self._greenlet = gevent.spawn(self._run)

    def halt(self) -> None:
        """Stop dialling; calls in progress finish on their own greenlets."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    @property
    def dialling(self) -> bool:
        return self._greenlet is not None

    def _run(self) -> None:
        self._recover()
        while True:
            self.wake.clear()
            try:
                if self._dial_due():
                    self._greenlet = None
                    return
            except Exception:  # a database or switch hiccup must not end the campaign
                log.exception("campaign %s: dialling failed; retrying", self.campaign.name)
            self.wake.wait(self.dialer.settings.poll_seconds)

    def _load_figures(self) -> None:
        """The current abandon period's figures and the pacing's sample, from the attempts so far."""
        with self.dialer.connect() as conn:
            done = [a for a in store.attempts(conn, self.campaign.name) if a.ended_at is not None]
        now = utc(self.dialer.clock())
        f = self.figures
        f.period_start, _ = period_of(self.campaign.abandon_rule, self.started_at, now)
        for a in done:
            f.dialed += 1
            f.resolved += 1
            if a.answered_at is not None and a.amd_result != "MACHINE":
                f.live += 1
                f.abandoned += a.abandoned
                if a.answered_at >= f.period_start:
                    f.period_live += 1
                    f.period_abandoned += a.abandoned
            if a.connected_at is not None and a.ended_at is not None:
                f.handle_total += (a.ended_at - a.connected_at).total_seconds()
                f.handle_count += 1

    def _recover(self) -> None:
        """After a restart: attempts left open are either still on the switch (the registry adopts
        the call and `handle` closes it) or gone while no engine watched (closed here, so the
        contact is re-queued by its retry rule, never dialled twice at once)."""
        node = self.dialer.node()
        if node is None or not node.wait_up(30):
            return
        with self.dialer.connect() as conn:
            stale = [a for a in store.open_attempts(conn, self.campaign.name) if a.uuid not in self.open]
        for attempt in stale:
            try:
                alive = node.api(f"uuid_exists {commands.check_uuid(attempt.uuid)}").strip() == "true"
            except EslError as exc:
                log.warning("campaign %s: cannot check attempt %s: %s", self.campaign.name, attempt.uuid, exc)
                continue
            if alive:
                log.info("campaign %s: attempt %s still on the switch; adopting", self.campaign.name, attempt.uuid)
                continue
            with self.dialer.connect() as conn:
                contact = store.load_contact(conn, attempt.contact_id)
            log.warning("campaign %s: attempt %s to contact %d ended while no engine watched; closed as %s",
                        self.campaign.name, attempt.uuid, contact.id, Disposition.NO_ANSWER.value)
            self.dialer.close(self, attempt, contact, attempt.disposition or Disposition.NO_ANSWER.value)

    # ------------------------------------------------------------------ pacing
    def _agents(self, now: float) -> tuple[tuple[pacing.AgentView, ...], int]:
        """The campaign queue's logged-in agents as the pacing sees them, and the callers (inbound
        and answered campaign calls) waiting for one of them: inbound callers come first."""
        router = self.dialer.acd.router
        queue = self.campaign.queue
        if queue not in router.queues:
            return (), 0
        views, queues = [], set()
        for agent_id in router.tiers(queue):
            agent = router.agents[agent_id]
            if not agent.status.takes_calls:
                continue
            queues.update(q for q in router.queues if agent_id in router.tiers(q))
            state = agent.state
            if state is AgentState.WAITING and agent.can_take_call(now):
                views.append(pacing.AgentView(pacing.IDLE, now - agent.idle_since))
            elif state is AgentState.WRAP_UP:
                views.append(pacing.AgentView(pacing.WRAP_UP, 0.0, max(0.0, min(agent.wrap_ups) - now)))
            else:
                started = min(agent.last_bridge_start.values(), default=now)
                views.append(pacing.AgentView(pacing.TALKING, now - started))
        waiting = sum(len(router.waiting(q)) for q in queues)
        return tuple(views), waiting

    def calls_to_place(self, now: float) -> int:
        views, waiting = self._agents(now)
        in_flight = sum(1 for o in self.open.values() if o.ringing) + waiting
        idle = sum(1 for v in views if v.state == pacing.IDLE)
        if self.campaign.mode is not Mode.PREDICTIVE:
            calls = pacing.progressive_calls(views, in_flight)
            if calls or in_flight:
                log.info("pacing %s progressive: %d calls (%d idle agents, %d in flight or waiting)",
                         self.campaign.name, calls, idle, in_flight)
            self.figures.last_ratio = (calls + in_flight) / idle if idle else 0.0
            return calls
        f = self.figures
        start, end = period_of(self.campaign.abandon_rule, self.started_at, utc(now))
        if start != f.period_start:
            f.period_start, f.period_live, f.period_abandoned = start, 0.0, 0.0
        while f.recent_live and f.recent_live[0] < now - 3600:
            f.recent_live.popleft()
        decision = pacing.pace(pacing.PacingInputs(
            agents=views, in_flight=in_flight, attempts=f.resolved, live_answers=f.live,
            handle_time=f.handle_total / f.handle_count if f.handle_count else 0.0, handle_samples=f.handle_count,
            answer_delay=f.answer_delay_total / f.answer_delay_count if f.answer_delay_count else 0.0,
            period_live_answers=f.period_live, period_abandoned=f.period_abandoned,
            period_seconds_left=(end - utc(now)).total_seconds(),
            live_answers_per_second=len(f.recent_live) / min(3600.0, max(1.0, now - self.started_at.timestamp())),
            cap=self.campaign.abandon_cap))
        f.last_ratio = (decision.calls + in_flight) / idle if idle else 0.0
        return decision.calls

    # ------------------------------------------------------------------ dialling
    def _dial_due(self) -> bool:
        """Place the calls the pacing asks for; True once the campaign is done."""
        clock = self.dialer.clock
        with self.dialer.connect() as conn:
            contacts = store.load_contacts(conn, self.campaign.name)
        self.contacts_left = sum(c.state in (ContactState.NEW, ContactState.RETRY, ContactState.DIALING)
                                 for c in contacts)
        if self.contacts_left == 0 and not self.open:
            with self.dialer.connect() as conn:
                store.mark_done(conn, self.campaign.name)
            log.info("campaign %s: every contact reached or closed; done", self.campaign.name)
            return True
        count = self.calls_to_place(clock())
        if count > 0:
            now = utc(clock())
            histories = self._histories(contacts, now)
            for contact in next_contacts(self.campaign, contacts, now, count, history=histories):
                self._dial(contact, histories.get(contact.id, DialHistory()))
        return False

    def _histories(self, contacts: list[Contact], now: datetime) -> dict[int, DialHistory]:
        with self.dialer.connect() as conn:
            rows = store.recent_attempts(conn, self.campaign.name, now - HISTORY_SPAN)
        per: dict[int, list[tuple[datetime, bool]]] = collections.defaultdict(list)
        for contact_id, started, abandoned in rows:
            per[contact_id].append((started, abandoned))
        return {c.id: dial_history(c.timezones[0], per[c.id], now) for c in contacts if c.id in per}

    def _dial(self, contact: Contact, history: DialHistory) -> None:
        node = self.dialer.node()
        if node is None or not node.up:
            return
        now = utc(self.dialer.clock())
        with self.dialer.connect() as conn:
            # The last moment: an opt-out or a DNC import a second ago counts.
            listed = store.on_dnc(conn, self.campaign.name, contact.phone)
            refusal = refuse_dial(self.campaign, contact, now, listed, history)
            if refusal:
                log.info("campaign %s: not dialling contact %d: %s", self.campaign.name, contact.id, refusal)
                if listed:
                    contact.state, contact.next_attempt_at = ContactState.DNC, None
                    store.save_contact(conn, contact)
                return
            leg = str(uuidlib.uuid4())
            attempt = Attempt(self.campaign.name, contact.id, contact.phone, leg, now)
            contact.state = ContactState.DIALING
            store.record_attempt(conn, attempt)   # before the originate: a restart finds it
            store.save_contact(conn, contact)
        self.open[leg] = _Open(attempt, contact)
        self.figures.dialed += 1
        variables = {"origination_uuid": leg, "originate_timeout": f"{self.campaign.ring_timeout:g}",
                     "ignore_early_media": "true", "origination_caller_id_number": self.campaign.caller_id or "0",
                     VAR_ENTRY: DIALER_ENTRY, VAR_CAMPAIGN: self.campaign.name, VAR_CONTACT: str(contact.id)}
        command = commands.originate(f"sofia/gateway/{self.campaign.gateway}/{contact.phone}", variables)
        try:
            result = node.bgapi_async(command)
        except EslError as exc:
            log.warning("campaign %s: originate to contact %d not sent: %s", self.campaign.name, contact.id, exc)
            self.dialer.close(self, attempt, contact, Disposition.NO_ANSWER.value)
            return
        gevent.spawn(self._await_job, leg, result)

    def _await_job(self, leg: str, result: Any) -> None:
        """A failed originate closes its attempt; an answered one is the Call handler's."""
        try:
            body = (result.get(timeout=self.campaign.ring_timeout + JOB_MARGIN) or "").strip()
        except (EslError, gevent.Timeout) as exc:
            log.warning("campaign %s: originate %s unanswered (%s); left to the restart check", self.campaign.name,
                        leg, exc)
            return
        if body.startswith("+OK"):
            return
        entry = self.open.get(leg)
        if entry is None or not entry.ringing:
            return
        cause = body.removeprefix("-ERR").strip()
        disposition = CAUSE_DISPOSITIONS.get(cause, Disposition.NO_ANSWER)
        self.dialer.close(self, entry.attempt, entry.contact, disposition.value)

    # ------------------------------------------------------------------ what happened
    def answered_live(self, leg: str, greeting_end: float) -> None:
        entry = self.open.get(leg)
        if entry is not None:
            entry.ringing = False
            f = self.figures
            f.period_live += 1
            f.recent_live.append(greeting_end)
            f.answer_delay_total += greeting_end - entry.attempt.started_at.timestamp()
            f.answer_delay_count += 1

    def closed(self, attempt: Attempt) -> None:
        self.open.pop(attempt.uuid, None)
        f = self.figures
        f.resolved += 1
        if attempt.answered_at is not None and attempt.amd_result not in ("", "MACHINE"):
            f.live += 1
        if attempt.abandoned:
            f.abandoned += 1
            f.period_abandoned += 1
        if attempt.connected_at is not None and attempt.ended_at is not None:
            f.handle_total += (attempt.ended_at - attempt.connected_at).total_seconds()
            f.handle_count += 1
        self.wake.set()

    def snapshot(self) -> CampaignSnapshot:
        f = self.figures
        ratio = f.period_abandoned / f.period_live if f.period_live else 0.0
        return CampaignSnapshot(self.campaign.name, f.dialed, f.live, f.abandoned, ratio, self.campaign.abandon_cap,
                                f.last_ratio, self.contacts_left)


class Dialer:
    """Every campaign of this engine: the runners of the running ones, and the Call handler."""

    def __init__(self, connect: Callable[[], Any], acd: Any, nodes: Callable[[], list[Any]], settings: DialerSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.connect = connect
        self.acd = acd
        self.nodes = nodes
        self.settings = settings
        self.clock = clock
        self.runners: dict[str, CampaignRunner] = {}
        self._poke = Event()
        self._supervisor: gevent.Greenlet | None = None

    def node(self) -> Any:
        nodes = self.nodes()
        return nodes[0] if nodes else None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.settings.enabled:
            self._supervisor = gevent.spawn(self._supervise)

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.kill()
        for runner in self.runners.values():
            runner.halt()

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
                figures = store.status(conn, name)
        except CallRouterError as exc:
            raise ValueError(str(exc)) from None
        runner = self.runners.get(name)
        if runner is not None:
            views, waiting = runner._agents(self.clock())
            snap = runner.snapshot()
            figures.update({
                "dialling": runner.dialling, "calls_in_progress": len(runner.open),
                "period_abandon_rate": round(snap.abandon_ratio, 6), "pacing_ratio": round(snap.pacing_ratio, 3),
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

    # ------------------------------------------------------------------ the calls
    def handle(self, call: Call, resumed: bool) -> None:
        variables = call.caller.variables
        name = variables.get(VAR_CAMPAIGN, "")
        runner = self.runners.get(name)
        entry = runner.open.get(call.uuid) if runner is not None else None
        if entry is None:  # adopted after a restart, or its campaign no longer dials here
            with self.connect() as conn:
                campaign = store.load_campaign(conn, name)
                attempt = store.attempt(conn, call.uuid)
                contact = store.load_contact(conn, int(variables[VAR_CONTACT])) if attempt else None
            if attempt is None or contact is None or attempt.ended_at is not None:
                log.error("call %s: no open attempt of campaign %s; hanging up", call.uuid, name)
                call.hangup()
                return
            entry = _Open(attempt, contact)
            if runner is not None:
                runner.open[call.uuid] = entry
        else:
            campaign = runner.campaign
        call.labels["entry"] = DIALER_ENTRY
        attempt, contact = entry.attempt, entry.contact
        try:
            disposition = self._converse(call, campaign, runner, entry)
        except (gevent.GreenletExit, Resumed):
            raise  # the call goes on: a restarted engine, or this one after the outage, carries on
        except BaseException:
            self.close(runner, attempt, contact, self._interrupted(attempt))
            raise
        self.close(runner, attempt, contact, disposition)

    @staticmethod
    def _interrupted(attempt: Attempt) -> str:
        """The disposition of an attempt whose called party hung up (or whose handler failed)."""
        if attempt.connected_at is not None:
            return Disposition.ANSWERED.value
        if attempt.abandoned:
            return Disposition.ABANDONED.value
        if attempt.amd_result == "MACHINE":
            return Disposition.MACHINE.value
        return Disposition.NO_ANSWER.value  # gone before AMD concluded, or before an agent within the grace

    def _converse(self, call: Call, campaign: Campaign, runner: CampaignRunner | None, entry: _Open) -> str:
        attempt = entry.attempt
        stage = call.caller.variables.get(VAR_STAGE, "")
        if stage == STAGE_ABANDONED:  # adopted after its message: it was abandoned already
            attempt.abandoned = True
            call.hangup()
            return Disposition.ABANDONED.value
        if attempt.answered_at is None:
            attempt.answered_at = utc(self.clock())
        if stage not in ("queue", "talking"):
            attempt.amd_result = self._amd(call)
            if attempt.amd_result == "MACHINE":
                if campaign.machine_message:
                    call.playback(campaign.machine_message)
                    attempt.message_played = campaign.machine_message
                call.hangup()
                return Disposition.MACHINE.value
        greeting_end = self.clock()
        if runner is not None:
            runner.answered_live(call.uuid, greeting_end)
        # No agent free now: none can be connected within the grace (the ACD's max-wait does not
        # run while an agent rings), so the called party hears the message at once.
        if campaign.queue and (stage or self.acd.router.available(campaign.queue)):
            outcome = self.acd.enqueue(call, campaign.queue, priority=self.settings.priority, max_wait=QUEUE_WAIT)
            if outcome.result == ANSWERED:
                connected = call.marks.get("connected", greeting_end)
                attempt.connected_at = utc(connected)
                attempt.agent = outcome.agent or ""
                attempt.abandoned = stage == "" and is_abandoned(greeting_end, connected)
                return Disposition.ANSWERED.value
        else:
            log.error("campaign %s has no queue to put its answered calls through", campaign.name)
        attempt.abandoned = True
        call.set_vars(**{VAR_STAGE: STAGE_ABANDONED})
        if campaign.abandon_message:
            attempt.message_played = campaign.abandon_message
            call.playback(campaign.abandon_message)
        call.hangup()
        return Disposition.ABANDONED.value

    def _amd(self, call: Call) -> str:
        """The AMD result left on the leg once the greeting is over (NOTSURE after amd_timeout)."""
        deadline = self.clock() + self.settings.amd_timeout
        while self.clock() < deadline:
            value = call.api(commands.getvar(call.uuid, "amd_result")).strip()
            if value in AMD_RESULTS:
                return value
            call.sleep(AMD_POLL)
        return "NOTSURE"

    def close(self, runner: CampaignRunner | None, attempt: Attempt, contact: Contact, disposition: str) -> None:
        """Record the attempt's end and what it means for its contact (retry rules)."""
        attempt.disposition = disposition
        attempt.ended_at = utc(self.clock())
        campaign = runner.campaign if runner is not None else None
        with self.connect() as conn:
            campaign = campaign or store.load_campaign(conn, attempt.campaign)
            store.record_attempt(conn, attempt)
            store.save_contact(conn, after_attempt(campaign, contact, disposition, attempt.ended_at))
        log.info("campaign %s: contact %d %s (attempt %s%s)", attempt.campaign, contact.id, disposition,
                 attempt.uuid, ", abandoned" if attempt.abandoned else "")
        if runner is not None:
            runner.closed(attempt)
