"""The live dialer in the daemon: one greenlet per running campaign places calls through the
engine's first node, and the Call handler for the calls it placed.

A campaign's greenlet asks the pacing how many calls to place (agentless broadcast and survey
campaigns: up to their `max_lines` at once; preview: none, agents pull their contacts), takes
due contacts (selection.next_contacts), checks each one right before it dials (refuse_dial,
with the DNC lookup done then), writes the attempt and the contact's DIALING state, then sends
`bgapi originate {...}sofia/gateway/<gw>/<number> &park()` with our own origination_uuid and the
campaign and contact ids as channel variables. A failed originate closes the attempt with the
hangup cause's disposition. An answered leg parks tagged callrouter_entry=dialer, so the
registry starts a Call for it (or adopts it after a restart, ringing or not) and `handle` runs
it: AMD result, machine (the campaign's message once the greeting is over, or hang up), person
-> by mode: the campaign's queue through the ACD (no agent within 2 s of the greeting's end ->
the abandon message, then hang up), the broadcast message with its agent and opt-out keys, or
the survey's IVR flow. Preview and click-to-call ring the agent first; once the agent answers,
the contact is called from the agent's call and bridged.

Every attempt is closed once in PostgreSQL with after_attempt's verdict on its contact, also
across a restart or a takeover: an attempt left open is either still on the switch (the
registry adopts its leg, `handle` watches it to its answer or hangup) or gone, and then closed
from its CDR or as no-answer.

Campaign states are read from PostgreSQL every `poll_seconds`, so `callrouter campaign
start|pause|resume|stop` works the same through the CLI (database) or the admin API.
"""
from __future__ import annotations

import collections
import logging
import re
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

import gevent
from gevent.event import Event
from gevent.pool import Group

from engine.acd.model import AgentState
from engine.calls.call import Call, OriginateFailed, Resumed
from engine.channelvars import VAR_AGENT, VAR_CAMPAIGN, VAR_CONTACT, VAR_ENTRY, VAR_FLOW, VAR_NODE, VAR_STAGE
from engine.config import DialerSettings
from engine.dialer import pacing, store
from engine.dialer.compliance import (
    DialHistory, InvalidNumber, is_abandoned, normalise, period_of, refuse_dial, utc,
)
from engine.dialer.model import (
    ABANDON_GRACE_SECONDS, CAUSE_DISPOSITIONS, Attempt, Campaign, CampaignState, Contact, ContactState, Disposition,
    Mode,
)
from engine.dialer.selection import after_attempt, next_contacts
from engine.errors import CallGone, CallRouterError, EslError
from engine.esl import commands
from engine.ivr.ports import ANSWERED
from engine.ivr.runner import FlowEnded
from engine.metrics import CampaignSnapshot

log = logging.getLogger(__name__)

DIALER_ENTRY = "dialer"  # callrouter_entry of the calls the dialer places
# On an agent's leg rung first (preview, click-to-call): the endpoint and caller id to call once
# the agent answers, so a restarted engine that adopts the agent's leg knows whom it was for.
VAR_DIAL = "callrouter_dial"
VAR_DIAL_CID = "callrouter_dial_cid"
AMD_POLL = 0.25
AMD_RESULTS = ("HUMAN", "MACHINE", "NOTSURE")
# The ACD checks a caller's max-wait once a second: leaving it 1 s before the grace ends means
# an agent is connected within 2 s of the greeting's end, or the abandon message plays.
QUEUE_WAIT = ABANDON_GRACE_SECONDS - 1.0
STAGE_ABANDONED = "abandoned"
STAGE_MESSAGE = "message"  # a broadcast's message (and its keys) playing
STAGE_IVR = "ivr"
STAGE_TALKING = "talking"
HISTORY_SPAN = timedelta(hours=72)  # enough for attempts per local day and Ofcom's no-redial
JOB_MARGIN = 30.0  # a bgapi originate answers within ring_timeout; past this margin it is lost
KEY_WAIT_MS = 5000  # after the broadcast message, how long its keys are waited for
MANUAL_RING_TIMEOUT = 30.0  # a click-to-call outside any campaign rings the number this long
ADOPT_WAIT = 2.0  # an adopted agent-first call waits this long for reconciliation to hand it the contact's leg


def dial_history(zone: str, rows: list[tuple[datetime, bool]], now: datetime) -> DialHistory:
    """The dial check's view of one contact from its recent (started_at, abandoned) attempts."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    abandoned = [started for started, dropped in rows if dropped]
    return DialHistory(sum(1 for started, _ in rows if started.astimezone(tz).date() == today),
                       max(abandoned, default=None))


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


@dataclass
class _Open:
    attempt: Attempt
    contact: Contact
    ringing: bool = True    # placed, not yet through AMD to a person (the pacing's "in flight")
    answered: bool = False  # its leg is known to be answered
    handled: bool = False   # a Call handler watches it (answered, or adopted from the switch)


@dataclass(frozen=True)
class _AgentFirst:
    """A call that rings the agent first (preview, click-to-call); the contact once the agent answers."""
    agent: str
    endpoint: str          # what to call once the agent answers
    caller_id: str
    ring_timeout: float
    campaign: str = ""     # "" for a click-to-call outside any campaign
    contact_id: int = 0


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
    """One running campaign: its dialling greenlet and its pacing figures."""

    def __init__(self, dialer: "Dialer", campaign: Campaign, started_at: datetime) -> None:
        self.dialer = dialer
        self.campaign = campaign
        self.started_at = started_at
        self.figures = _Figures()
        self.contacts_left = 0
        self.wake = Event()
        self._greenlet: gevent.Greenlet | None = None
        self._halting = False

    @property
    def open(self) -> list[_Open]:
        return [o for o in self.dialer.open.values() if o.attempt.campaign == self.campaign.name]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Dial (again, after a pause); the figures are read from the attempts the first time."""
        if self.figures.period_start is None:
            self._load_figures()
        self._halting = False
        self._greenlet = gevent.spawn(self._run)

    def halt(self, grace: float = 5.0) -> None:
        """Stop dialling between two contacts (never between an attempt's row and its originate);
        calls in progress finish on their own greenlets."""
        greenlet, self._greenlet = self._greenlet, None
        if greenlet is None:
            return
        self._halting = True
        self.wake.set()
        if not greenlet.join(grace) and not greenlet.dead:
            greenlet.kill(block=False)

    @property
    def dialling(self) -> bool:
        return self._greenlet is not None

    def _run(self) -> None:
        self._recover()
        while not self._halting:
            self.wake.clear()
            try:
                if self._dial_due():
                    self._greenlet = None
                    return
            except Exception:  # a database or switch hiccup must not end the campaign
                log.exception("campaign %s: dialling failed; retrying", self.campaign.name)
            self.wake.wait(self.dialer.settings.poll_seconds)

    def _load_figures(self) -> None:
        """The current abandon period's figures and the pacing's sample, from the attempts so far:
        a restarted engine (or a standby taking over) paces on what the campaign has learnt, not
        progressively again until its first live answer."""
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
                # The answer, not the greeting's end (not stored): a slightly short answer delay.
                f.answer_delay_total += (a.answered_at - a.started_at).total_seconds()
                f.answer_delay_count += 1
                if a.answered_at >= f.period_start:
                    f.period_live += 1
                    f.period_abandoned += a.abandoned
            if a.connected_at is not None and a.ended_at is not None:
                f.handle_total += (a.ended_at - a.connected_at).total_seconds()
                f.handle_count += 1
        hour_ago = now - timedelta(hours=1)
        f.recent_live.extend(sorted(a.answered_at.timestamp() for a in done if a.answered_at is not None
                                    and a.amd_result != "MACHINE" and a.answered_at >= hour_ago))

    def _recover(self) -> None:
        """After a restart or a takeover: the attempts left open that no handler watches yet are
        settled (adopted from the switch, or closed), so no contact is ever dialled twice at once."""
        node = self.dialer.node()
        if node is None or not node.wait_up(30):
            return
        with self.dialer.connect() as conn:
            stale = [a for a in store.open_attempts(conn, self.campaign.name) if a.uuid not in self.dialer.open]
        for attempt in stale:
            self.dialer.settle(attempt)

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
        mode = self.campaign.mode
        if mode is Mode.PREVIEW:
            return 0  # agents pull their contacts (Dialer.preview)
        if self.campaign.agentless:
            return max(0, self.campaign.max_lines - len(self.open))
        views, waiting = self._agents(now)
        in_flight = sum(1 for o in self.open if o.ringing) + waiting
        idle = sum(1 for v in views if v.state == pacing.IDLE)
        if mode is not Mode.PREDICTIVE:
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

    def _unready(self) -> str | None:
        """Why the campaign's answered calls would have nowhere to go, or None."""
        campaign = self.campaign
        if campaign.mode is Mode.SURVEY:
            flows = self.dialer.flows
            if flows is None or campaign.flow not in flows.current.flows:
                return f"no IVR flow '{campaign.flow}' loaded for the survey"
        elif campaign.mode is Mode.BROADCAST:
            if not campaign.message:
                return "a broadcast needs a message"
            if campaign.agent_key and campaign.queue not in self.dialer.acd.router.queues:
                return f"no ACD queue '{campaign.queue}' for the agent key"
        elif campaign.queue not in self.dialer.acd.router.queues:
            return f"no ACD queue '{campaign.queue}' for the answered calls"
        return None

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
            unready = self._unready()
            if unready:
                log.error("campaign %s: not dialling: %s", self.campaign.name, unready)
                return False
            now = utc(clock())
            histories = self._histories(contacts, now)
            for contact in next_contacts(self.campaign, contacts, now, count, history=histories):
                if self._halting:
                    break
                self._dial(contact, histories.get(contact.id, DialHistory()))
        return False

    def _histories(self, contacts: list[Contact], now: datetime) -> dict[int, DialHistory]:
        with self.dialer.connect() as conn:
            rows = store.recent_attempts(conn, self.campaign.name, now - HISTORY_SPAN)
        per: dict[int, list[tuple[datetime, bool]]] = collections.defaultdict(list)
        for contact_id, started, abandoned in rows:
            per[contact_id].append((started, abandoned))
        return {c.id: dial_history(c.timezones[0], per[c.id], now) for c in contacts if c.id in per}

    def history_of(self, contact: Contact, now: datetime) -> DialHistory:
        return self._histories([contact], now).get(contact.id, DialHistory())

    def refusal(self, conn: Any, contact: Contact, history: DialHistory) -> str | None:
        """The last-moment check (an opt-out or a DNC import a second ago counts); a listed
        contact is marked DNC for good."""
        listed = store.on_dnc(conn, self.campaign.name, contact.phone)
        refusal = refuse_dial(self.campaign, contact, utc(self.dialer.clock()), listed, history)
        if refusal:
            log.info("campaign %s: not dialling contact %d: %s", self.campaign.name, contact.id, refusal)
            if listed:
                contact.state, contact.next_attempt_at = ContactState.DNC, None
                store.save_contact(conn, contact)
        return refusal

    def _dial(self, contact: Contact, history: DialHistory) -> None:
        node = self.dialer.node()
        if node is None or not node.up:
            return
        with self.dialer.connect() as conn:
            if self.refusal(conn, contact, history):
                return
            leg = str(uuidlib.uuid4())
            attempt = Attempt(self.campaign.name, contact.id, contact.phone, leg, utc(self.dialer.clock()))
            contact.state = ContactState.DIALING
            store.record_attempt(conn, attempt)   # before the originate: a restart finds it
            store.save_contact(conn, contact)
        self.dialer.open[leg] = _Open(attempt, contact)
        self.figures.dialed += 1
        variables = {"origination_uuid": leg, "originate_timeout": f"{self.campaign.ring_timeout:g}",
                     "ignore_early_media": "true", "origination_caller_id_number": self.campaign.caller_id or "0",
                     VAR_ENTRY: DIALER_ENTRY, VAR_CAMPAIGN: self.campaign.name, VAR_CONTACT: str(contact.id)}
        command = commands.originate(f"sofia/gateway/{self.campaign.gateway}/{contact.phone}", variables)
        try:
            result = node.bgapi_async(command)
        except EslError as exc:
            log.warning("campaign %s: originate to contact %d not sent: %s", self.campaign.name, contact.id, exc)
            self.dialer.close(attempt, contact, Disposition.NO_ANSWER.value)
            return
        self.dialer.spawn(self._await_job, leg, result)

    def _await_job(self, leg: str, result: Any) -> None:
        """A failed originate closes its attempt; an answered one is the Call handler's. A result
        lost with the connection is settled from the switch once it is back."""
        try:
            body = (result.get(timeout=self.campaign.ring_timeout + JOB_MARGIN) or "").strip()
        except (EslError, gevent.Timeout) as exc:
            log.warning("campaign %s: originate %s unanswered (%s); asking the switch once it is back",
                        self.campaign.name, leg, exc)
            self.dialer.settle_when_back(leg)
            return
        if body.startswith("+OK"):
            return
        entry = self.dialer.open.get(leg)
        if entry is None or entry.handled:
            return
        cause = body.removeprefix("-ERR").strip()
        disposition = CAUSE_DISPOSITIONS.get(cause, Disposition.NO_ANSWER)
        self.dialer.close(entry.attempt, entry.contact, disposition.value)

    # ------------------------------------------------------------------ what happened
    def answered_live(self, attempt: Attempt, greeting_end: float) -> None:
        f = self.figures
        f.period_live += 1
        f.recent_live.append(greeting_end)
        f.answer_delay_total += greeting_end - attempt.started_at.timestamp()
        f.answer_delay_count += 1

    def closed(self, attempt: Attempt) -> None:
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
        self.open: dict[str, _Open] = {}                # leg Unique-ID -> its attempt, while not closed
        self.agent_first: dict[str, _AgentFirst] = {}   # agent leg Unique-ID -> whom to call once it answers
        self.offered: dict[int, str] = {}               # contact id -> the agent it is offered to (preview)
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
                    self.open.setdefault(attempt.uuid, _Open(attempt, contact))
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
        views, waiting = runner._agents(self.clock()) if runner is not None else ((), 0)
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
    def _free_agent(self, agent_id: str) -> Any:
        agent = self.acd.router.agents.get(agent_id)
        if agent is None:
            raise ValueError(f"no agent '{agent_id}' in the ACD")
        if not agent.status.takes_calls or agent.state is not AgentState.WAITING \
                or not agent.can_take_call(self.clock()):
            raise ValueError(f"agent {agent_id} is not free ({agent.status.value}, {agent.callcenter_state})")
        return agent

    def _preview_runner(self, name: str) -> CampaignRunner:
        runner = self.runners.get(name)
        if runner is None or not runner.dialling:
            raise ValueError(f"campaign '{name}' is not running on this engine")
        if runner.campaign.mode is not Mode.PREVIEW:
            raise ValueError(f"campaign '{name}' is {runner.campaign.mode.value}, not preview")
        return runner

    def preview(self, name: str, agent_id: str) -> dict[str, Any]:
        """Offer the agent the campaign's next due contact, with its data, until it accepts or skips."""
        runner = self._preview_runner(name)
        self._free_agent(agent_id)
        offered = next((cid for cid, agent in self.offered.items() if agent == agent_id), None)
        now = utc(self.clock())
        with self.connect() as conn:
            if offered is None:
                contacts = [c for c in store.load_contacts(conn, name) if c.id not in self.offered]
                histories = runner._histories(contacts, now)
                dnc = {c.phone for c in contacts if store.on_dnc(conn, name, c.phone)}
                chosen = next_contacts(runner.campaign, contacts, now, 1, history=histories, dnc=dnc)
                if not chosen:
                    return {"campaign": name, "agent": agent_id, "contact": None}
                offered = chosen[0].id
                self.offered[offered] = agent_id
            contact = store.load_contact(conn, offered)
        return {"campaign": name, "agent": agent_id,
                "contact": {"id": contact.id, "phone": contact.phone, "fields": contact.fields,
                            "attempts": contact.attempts, "timezones": list(contact.timezones)}}

    def preview_answer(self, name: str, agent_id: str, action: str) -> dict[str, Any]:
        """accept: ring the agent, then call the contact; skip: the contact goes back to the pool."""
        runner = self._preview_runner(name)
        offered = next((cid for cid, agent in self.offered.items() if agent == agent_id), None)
        if offered is None:
            raise ValueError(f"agent {agent_id} has no contact offered in '{name}' (GET /campaigns/preview first)")
        if action == "skip":
            del self.offered[offered]
            return {"campaign": name, "agent": agent_id, "skipped": offered}
        if action != "accept":
            raise ValueError(f"unknown action '{action}'; accept or skip")
        campaign = runner.campaign
        with self.connect() as conn:
            contact = store.load_contact(conn, offered)
        plan = _AgentFirst(agent_id, f"sofia/gateway/{campaign.gateway}/{contact.phone}", campaign.caller_id,
                           campaign.ring_timeout, name, contact.id)
        return {"campaign": name, "contact": contact.id, **self._ring_agent(plan, contact.phone)}

    def click_to_call(self, agent_id: str, number: str, *, campaign: str = "", gateway: str = "",
                      caller_id: str = "", region: str = "US") -> dict[str, Any]:
        """Ring the agent, then call `number` (through the campaign's gateway and caller id, or
        the ones given); refused when the number is on the national or internal DNC list."""
        if campaign:
            with self.connect() as conn:
                try:
                    settings = store.load_campaign(conn, campaign)
                except CallRouterError as exc:
                    raise ValueError(str(exc)) from None
            gateway, caller_id, region = gateway or settings.gateway, caller_id or settings.caller_id, settings.region
        if not gateway:
            raise ValueError("which gateway? give a campaign or a gateway")
        try:
            phone = normalise(number, region)
        except InvalidNumber as exc:
            raise ValueError(str(exc)) from None
        with self.connect() as conn:
            if store.on_dnc(conn, campaign, phone):
                raise ValueError(f"{phone} is on a do-not-call list")
        plan = _AgentFirst(agent_id, f"sofia/gateway/{gateway}/{phone}", caller_id, MANUAL_RING_TIMEOUT)
        return {"number": phone, **self._ring_agent(plan, phone)}

    def _ring_agent(self, plan: _AgentFirst, phone: str) -> dict[str, Any]:
        agent = self._free_agent(plan.agent)
        node = self.node()
        if node is None or not node.up:
            raise ValueError("FreeSWITCH is not connected")
        leg = str(uuidlib.uuid4())
        variables = {"origination_uuid": leg, "originate_timeout": f"{self.acd.settings.ring_seconds:g}",
                     "ignore_early_media": "true", "origination_caller_id_number": phone,
                     VAR_ENTRY: DIALER_ENTRY, VAR_AGENT: plan.agent, VAR_DIAL: plan.endpoint,
                     VAR_DIAL_CID: plan.caller_id or "0", VAR_CAMPAIGN: plan.campaign,
                     VAR_CONTACT: str(plan.contact_id or "")}
        self.agent_first[leg] = plan
        try:
            result = node.bgapi_async(commands.originate(agent.contacts.get(node.name) or f"user/{plan.agent}",
                                                         variables))
        except EslError as exc:
            del self.agent_first[leg]
            raise ValueError(f"cannot ring agent {plan.agent}: {exc}") from None
        self.spawn(self._await_agent, leg, result)
        log.info("ringing agent %s first for %s (leg %s)", plan.agent, phone, leg)
        return {"agent": plan.agent, "agent_leg": leg}

    def _await_agent(self, leg: str, result: Any) -> None:
        """The agent did not answer: the contact was never called, so it goes back to the pool."""
        try:
            body = (result.get(timeout=self.acd.settings.ring_seconds + JOB_MARGIN) or "").strip()
        except (EslError, gevent.Timeout):
            body = ""
        if body.startswith("+OK"):
            return
        plan = self.agent_first.pop(leg, None)
        if plan is not None:
            self.offered.pop(plan.contact_id, None)
            log.info("agent %s did not take the call to %s: %s", plan.agent, plan.endpoint, body or "no answer")

    # ------------------------------------------------------------------ the calls
    def handle(self, call: Call, resumed: bool) -> None:
        call.labels["entry"] = DIALER_ENTRY
        plan = self.agent_first.pop(call.uuid, None) or (self._adopted_plan(call) if resumed else None)
        if plan is not None:
            self._agent_first_call(call, plan, resumed)
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
            entry = self.open.setdefault(call.uuid, _Open(attempt, contact))
        entry.handled = True
        runner = self.runners.get(entry.attempt.campaign)
        attempt, contact = entry.attempt, entry.contact
        self._label(call, attempt)
        try:
            if runner is not None:
                campaign = runner.campaign
            else:
                with self.connect() as conn:
                    campaign = store.load_campaign(conn, attempt.campaign)
            # A leg adopted (or handed back after an outage) before its answer is watched to it.
            if resumed and not entry.answered:
                self._await_answer(call, campaign)
            entry.answered = True
            disposition = self._converse(call, campaign, runner, entry)
        except (gevent.GreenletExit, Resumed):
            raise  # the call goes on: a restarted engine, or this one after the outage, carries on
        except BaseException:
            self.close(attempt, contact, self._interrupted(attempt, call.caller.hangup_cause), call)
            raise
        self.close(attempt, contact, disposition, call)

    @staticmethod
    def _label(call: Call, attempt: Attempt) -> None:
        """What the call's CDRs name (engine.cdr.journal): its campaign and contact."""
        call.labels["campaign"] = attempt.campaign
        call.labels["contact"] = str(attempt.contact_id)

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

    def _converse(self, call: Call, campaign: Campaign, runner: CampaignRunner | None, entry: _Open) -> str:
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
            outcome = self.acd.enqueue(call, campaign.queue, priority=self.settings.priority, max_wait=QUEUE_WAIT)
            if outcome.result == ANSWERED:
                connected = call.marks.get("connected", greeting_end)
                attempt.connected_at = utc(connected)
                attempt.agent = outcome.agent or ""
                attempt.abandoned = stage == "" and is_abandoned(greeting_end, connected)
                return Disposition.ANSWERED.value
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
        keys = campaign.agent_key + campaign.opt_out_key
        if queued:
            digit = campaign.agent_key
        elif keys:
            call.set_vars(**{VAR_STAGE: STAGE_MESSAGE})
            digit = call.play_and_get_digits(campaign.message, tries=1, timeout_ms=KEY_WAIT_MS, terminators="none",
                                             regex=f"[{re.escape(keys)}]")
        else:
            call.set_vars(**{VAR_STAGE: STAGE_MESSAGE})
            call.playback(campaign.message)
            digit = ""
        if digit and digit == campaign.opt_out_key:
            with self.connect() as conn:
                store.add_dnc(conn, [attempt.phone], "internal", f"opt-out:{call.uuid}")
            log.info("campaign %s: %s opted out (call %s)", campaign.name, attempt.phone, call.uuid)
            if campaign.opt_out_message:
                call.playback(campaign.opt_out_message)
            call.hangup()
            return Disposition.DNC.value
        if digit and digit == campaign.agent_key:
            outcome = self.acd.enqueue(call, campaign.queue, priority=self.settings.priority)
            if outcome.result == ANSWERED:
                attempt.agent = outcome.agent or ""
        call.hangup()
        return Disposition.ANSWERED.value

    def _survey(self, call: Call, campaign: Campaign, attempt: Attempt, *, resumed: bool) -> str:
        """The campaign's IVR flow (answers stored by its survey nodes under this call's Unique-ID);
        an adopted call goes on at the node saved on its channel."""
        flows = self.flows.current
        flow = flows.flows[campaign.flow]
        variables = call.caller.variables
        start = variables.get(VAR_NODE) if resumed and variables.get(VAR_FLOW) == flow.name else None
        if start not in flow.nodes:
            start = None
            call.set_vars(**{VAR_STAGE: STAGE_IVR})
        attempt.connected_at = attempt.connected_at or utc(self.clock())  # the flow took the call
        try:
            self.ivr.run(call, flows, flow, start)
        except FlowEnded:
            pass
        return Disposition.ANSWERED.value

    def _amd(self, call: Call) -> str:
        """The AMD result left on the leg once the greeting is over (NOTSURE after amd_timeout)."""
        deadline = self.clock() + self.settings.amd_timeout
        while self.clock() < deadline:
            value = call.api(commands.getvar(call.uuid, "amd_result")).strip()
            if value in AMD_RESULTS:
                return value
            call.sleep(AMD_POLL)
        return "NOTSURE"

    # ------------------------------------------------------------------ agent first
    def _adopted_plan(self, call: Call) -> _AgentFirst | None:
        """An agent's leg rung first, adopted after a restart: its plan from its channel variables."""
        endpoint = call.api(commands.getvar(call.uuid, VAR_DIAL)).strip()
        if not endpoint or endpoint == "_undef_" or endpoint.startswith("-ERR"):
            return None
        variables = call.caller.variables
        contact = variables.get(VAR_CONTACT, "")
        return _AgentFirst(variables.get(VAR_AGENT, ""), endpoint, "", 0.0, variables.get(VAR_CAMPAIGN, ""),
                           int(contact) if contact.isdigit() else 0)

    def _agent_first_call(self, call: Call, plan: _AgentFirst, resumed: bool) -> None:
        """The agent answered: call the contact from the agent's call, bridge, and close the attempt
        (keyed by the agent leg's Unique-ID, known before anything is dialled) when either hangs up."""
        call.labels["agent"] = plan.agent
        self.offered.pop(plan.contact_id, None)
        attempt = contact = None
        if resumed:
            with self.connect() as conn:
                attempt = store.attempt(conn, call.uuid)
                contact = store.load_contact(conn, attempt.contact_id) if attempt else None
            if attempt is not None and attempt.ended_at is None:
                self._label(call, attempt)
                self._adopted_talk(call, attempt, contact)
            else:
                call.hangup()
            return
        if plan.campaign:
            attempt, contact = self._agent_first_attempt(call, plan)
            if attempt is None:
                call.hangup()
                return
            self._label(call, attempt)
        try:
            leg = call.originate(plan.endpoint, {"origination_caller_id_number": plan.caller_id or "0"},
                                 role="outbound", timeout=plan.ring_timeout)
        except OriginateFailed as failed:
            log.info("call %s: %s not reached: %s", call.uuid, plan.endpoint, failed.cause)
            if attempt is not None:
                disposition = CAUSE_DISPOSITIONS.get(failed.cause, Disposition.NO_ANSWER).value
                self.close(attempt, contact, disposition, call)
            call.hangup()
            return
        except BaseException:
            if attempt is not None:
                self.close(attempt, contact, Disposition.NO_ANSWER.value, call)
            raise
        if attempt is not None:
            attempt.answered_at = attempt.connected_at = utc(self.clock())
        call.bridge(leg)
        call.set_vars(**{VAR_STAGE: STAGE_TALKING})
        self._talk(call, leg, attempt, contact)

    def _agent_first_attempt(self, call: Call, plan: _AgentFirst) -> tuple[Attempt | None, Contact | None]:
        """The last-moment check, then the attempt's row before the contact is dialled."""
        runner = self.runners.get(plan.campaign)
        if runner is None:
            log.error("call %s: campaign %s no longer runs here; the contact is not called", call.uuid, plan.campaign)
            return None, None
        now = utc(self.clock())
        with self.connect() as conn:
            contact = store.load_contact(conn, plan.contact_id)
        history = runner.history_of(contact, now)
        with self.connect() as conn:
            if runner.refusal(conn, contact, history):
                return None, None
            attempt = Attempt(plan.campaign, contact.id, contact.phone, call.uuid, now, agent=plan.agent)
            contact.state = ContactState.DIALING
            store.record_attempt(conn, attempt)
            store.save_contact(conn, contact)
        runner.figures.dialed += 1
        return attempt, contact

    def _talk(self, call: Call, leg: Any, attempt: Attempt | None, contact: Contact | None) -> None:
        """Until the contact or the agent hangs up; then the attempt is answered."""
        try:
            while not leg.hungup:
                call.next_item(60.0)
        except CallGone:
            pass
        finally:
            if attempt is not None and contact is not None:
                self.close(attempt, contact, Disposition.ANSWERED.value, call)
        call.hangup()

    def _adopted_talk(self, call: Call, attempt: Attempt, contact: Contact) -> None:
        """An agent-first call adopted after a restart: its contact's leg comes from reconciliation
        (callrouter_parent); without one the contact was never reached."""
        deadline = self.clock() + ADOPT_WAIT
        leg = None
        while leg is None and self.clock() < deadline:
            leg = next((l for l in call.legs.values() if l.role == "outbound"), None)
            if leg is None:
                call.next_item(deadline - self.clock())
        if leg is None:
            self.close(attempt, contact, Disposition.NO_ANSWER.value, call)
            call.hangup()
            return
        attempt.answered_at = attempt.answered_at or utc(self.clock())
        attempt.connected_at = attempt.connected_at or attempt.answered_at
        self._talk(call, leg, attempt, contact)

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
