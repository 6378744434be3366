"""A running campaign: its dialling greenlet (pacing, the last-moment check, the attempt's row,
then the originate) and the figures its pacing learns from. What the placed calls do once they
answer is engine/dialer/runner.py's; agent-first calls are engine/dialer/agent_first.py's.

A campaign's greenlet asks the pacing how many calls to place (agentless broadcast and survey
campaigns: up to their `max_lines` at once; preview: none, agents pull their contacts), takes
due contacts (selection.next_contacts), checks each one right before it dials (refuse_dial,
with the DNC lookup done then), writes the attempt and the contact's DIALING state, then sends
`bgapi originate {...}sofia/gateway/<gw>/<number> &park()` with our own origination_uuid and the
campaign and contact ids as channel variables. A failed originate closes the attempt with the
hangup cause's disposition; an answered leg parks tagged callrouter_entry=dialer for the Dialer.
"""
from __future__ import annotations

import collections
import logging
import re
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Mapping
from zoneinfo import ZoneInfo

import gevent
from gevent.event import Event

from engine.acd.model import AgentState
from engine.calls.call import Call
from engine.channelvars import VAR_CAMPAIGN, VAR_CONTACT, VAR_ENTRY
from engine.dialer import pacing, store
from engine.dialer.compliance import DialHistory, period_of, refuse_dial, utc
from engine.dialer.model import CAUSE_DISPOSITIONS, Attempt, Campaign, Contact, ContactState, Disposition, Mode
from engine.dialer.selection import next_contacts
from engine.errors import EslError
from engine.esl import commands
from engine.ivr.ports import DATA_PREFIX, data_text
from engine.metrics import CampaignSnapshot

if TYPE_CHECKING:
    from engine.dialer.runner import Dialer

log = logging.getLogger(__name__)

DIALER_ENTRY = "dialer"  # callrouter_entry of the calls the dialer places
HISTORY_SPAN = timedelta(hours=72)  # enough for attempts per local day and Ofcom's no-redial
JOB_MARGIN = 30.0  # a bgapi originate answers within ring_timeout; past this margin it is lost
STAGE_TALKING = "talking"  # callrouter_stage of a placed call connected to its agent
ADOPT_WAIT = 2.0  # after a reconnect, how long reconciliation may take to hand an adopted leg over


def contact_data(fields: Mapping[str, str]) -> dict[str, str]:
    """A contact's custom fields as call data on the legs of its call (callrouter_data_<name>: on
    the agent's phone and in a survey's flow): column names lower-cased, anything but a-z, 0-9
    and _ turned into _; values made safe for a dial string (data_text)."""
    data = {}
    for name, value in fields.items():
        key = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:48]
        if key and value:
            data[DATA_PREFIX + key] = data_text(value)
    return data


def dial_history(zone: str, rows: list[tuple[datetime, bool]], now: datetime) -> DialHistory:
    """The dial check's view of one contact from its recent (started_at, abandoned) attempts."""
    tz = ZoneInfo(zone)
    today = now.astimezone(tz).date()
    abandoned = [started for started, dropped in rows if dropped]
    return DialHistory(sum(1 for started, _ in rows if started.astimezone(tz).date() == today),
                       max(abandoned, default=None))


@dataclass
class OpenAttempt:
    """An attempt placed and not yet closed."""
    attempt: Attempt
    contact: Contact
    ringing: bool = True    # placed, not yet through AMD to a person (the pacing's "in flight")
    answered: bool = False  # its leg is known to be answered
    handled: bool = False   # a Call handler watches it (answered, or adopted from the switch)


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
    def open(self) -> list[OpenAttempt]:
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
    def agents(self, now: float) -> tuple[tuple[pacing.AgentView, ...], int]:
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
        waiting = sum(router.waiting_count(q) for q in queues)
        return tuple(views), waiting

    def calls_to_place(self, now: float) -> int:
        mode = self.campaign.mode
        if mode is Mode.PREVIEW:
            return 0  # agents pull their contacts (Dialer.preview)
        if self.campaign.agentless:
            return max(0, self.campaign.max_lines - len(self.open))
        views, waiting = self.agents(now)
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
            histories = self.histories(contacts, now)
            for contact in next_contacts(self.campaign, contacts, now, count, history=histories):
                if self._halting:
                    break
                self._dial(contact, histories.get(contact.id, DialHistory()))
        return False

    def histories(self, contacts: list[Contact], now: datetime) -> dict[int, DialHistory]:
        with self.dialer.connect() as conn:
            rows = store.recent_attempts(conn, self.campaign.name, now - HISTORY_SPAN)
        per: dict[int, list[tuple[datetime, bool]]] = collections.defaultdict(list)
        for contact_id, started, abandoned in rows:
            per[contact_id].append((started, abandoned))
        return {c.id: dial_history(c.timezones[0], per[c.id], now) for c in contacts if c.id in per}

    def history_of(self, contact: Contact, now: datetime) -> DialHistory:
        return self.histories([contact], now).get(contact.id, DialHistory())

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
        self.dialer.open[leg] = OpenAttempt(attempt, contact)
        self.figures.dialed += 1
        variables = {"origination_uuid": leg, "originate_timeout": f"{self.campaign.ring_timeout:g}",
                     "ignore_early_media": "true", "origination_caller_id_number": self.campaign.caller_id or "0",
                     VAR_ENTRY: DIALER_ENTRY, VAR_CAMPAIGN: self.campaign.name, VAR_CONTACT: str(contact.id),
                     **contact_data(contact.fields)}
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


def label(call: Call, attempt: Attempt) -> None:
    """What the call's CDRs name (engine.cdr.journal): its campaign and contact."""
    call.labels["campaign"] = attempt.campaign
    call.labels["contact"] = str(attempt.contact_id)
