"""Calls that ring the agent first — preview (the agent pulls a contact, sees its data, accepts or
skips) and click-to-call — then call the contact from the agent's call and bridge them. The
attempt is keyed by the agent leg's Unique-ID, known before anything is dialled; the agent leg
carries whom it was for (callrouter_dial), so a restarted engine that adopts it carries on.
"""
from __future__ import annotations

import logging
import uuid as uuidlib
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import gevent

from engine.acd.model import AgentState
from engine.calls.call import Call, OriginateFailed, Suspend, is_hangup_of
from engine.channelvars import VAR_AGENT, VAR_CAMPAIGN, VAR_CONTACT, VAR_ENTRY, VAR_STAGE
from engine.dialer import store
from engine.dialer.campaign import (
    ADOPT_WAIT, DIALER_ENTRY, JOB_MARGIN, STAGE_TALKING, CampaignRunner, contact_data, label,
)
from engine.dialer.compliance import InvalidNumber, normalise, utc
from engine.dialer.model import CAUSE_DISPOSITIONS, Attempt, Contact, ContactState, Disposition, Mode
from engine.dialer.selection import next_contacts
from engine.errors import CallGone, CallRouterError, EslError
from engine.esl import commands

if TYPE_CHECKING:
    from engine.dialer.runner import Dialer

log = logging.getLogger(__name__)

# On an agent's leg rung first: the endpoint and caller id to call once the agent answers.
VAR_DIAL = "callrouter_dial"
VAR_DIAL_CID = "callrouter_dial_cid"
MANUAL_RING_TIMEOUT = 30.0  # a click-to-call outside any campaign rings the number this long


@dataclass(frozen=True)
class Plan:
    """A call that rings the agent first (preview, click-to-call); the contact once the agent answers."""
    agent: str
    endpoint: str          # what to call once the agent answers
    caller_id: str
    ring_timeout: float
    campaign: str = ""     # "" for a click-to-call outside any campaign
    contact_id: int = 0


class AgentFirst:
    """The agent-first calls of one Dialer: whom each agent leg rung is for, and the contacts
    offered to agents in preview."""

    def __init__(self, dialer: "Dialer") -> None:
        self.dialer = dialer
        self.plans: dict[str, Plan] = {}    # agent leg Unique-ID -> whom to call once it answers
        self.offered: dict[int, str] = {}   # contact id -> the agent it is offered to (preview)

    def handle(self, call: Call, resumed: bool) -> bool:
        """Run `call` if it is an agent leg rung first (or one adopted after a restart); False if not."""
        plan = self.plans.pop(call.uuid, None) or (self._adopted_plan(call) if resumed else None)
        if plan is None:
            return False
        self._call(call, plan, resumed)
        return True

    def _free_agent(self, agent_id: str) -> Any:
        agent = self.dialer.acd.router.agents.get(agent_id)
        if agent is None:
            raise ValueError(f"no agent '{agent_id}' in the ACD")
        if not agent.status.takes_calls or agent.state is not AgentState.WAITING \
                or not agent.can_take_call(self.dialer.clock()):
            raise ValueError(f"agent {agent_id} is not free ({agent.status.value}, {agent.callcenter_state})")
        return agent

    def _preview_runner(self, name: str) -> CampaignRunner:
        runner = self.dialer.runners.get(name)
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
        now = utc(self.dialer.clock())
        with self.dialer.connect() as conn:
            if offered is None:
                contacts = [c for c in store.load_contacts(conn, name) if c.id not in self.offered]
                histories = runner.histories(contacts, now)
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
        with self.dialer.connect() as conn:
            contact = store.load_contact(conn, offered)
        plan = Plan(agent_id, f"sofia/gateway/{campaign.gateway}/{contact.phone}", campaign.caller_id,
                           campaign.ring_timeout, name, contact.id)
        return {"campaign": name, "contact": contact.id,
                **self._ring_agent(plan, contact.phone, contact_data(contact.fields))}

    def click_to_call(self, agent_id: str, number: str, *, campaign: str = "", gateway: str = "",
                      caller_id: str = "", region: str = "US") -> dict[str, Any]:
        """Ring the agent, then call `number` (through the campaign's gateway and caller id, or
        the ones given); refused when the number is on the national or internal DNC list."""
        if campaign:
            with self.dialer.connect() as conn:
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
        with self.dialer.connect() as conn:
            if store.on_dnc(conn, campaign, phone):
                raise ValueError(f"{phone} is on a do-not-call list")
        plan = Plan(agent_id, f"sofia/gateway/{gateway}/{phone}", caller_id, MANUAL_RING_TIMEOUT)
        return {"number": phone, **self._ring_agent(plan, phone)}

    def _ring_agent(self, plan: Plan, phone: str, data: dict[str, str] | None = None) -> dict[str, Any]:
        agent = self._free_agent(plan.agent)
        node = self.dialer.node()
        if node is None or not node.up:
            raise ValueError("FreeSWITCH is not connected")
        leg = str(uuidlib.uuid4())
        variables = {"origination_uuid": leg, "originate_timeout": f"{self.dialer.acd.settings.ring_seconds:g}",
                     "ignore_early_media": "true", "origination_caller_id_number": phone,
                     VAR_ENTRY: DIALER_ENTRY, VAR_AGENT: plan.agent, VAR_DIAL: plan.endpoint,
                     VAR_DIAL_CID: plan.caller_id or "0", VAR_CAMPAIGN: plan.campaign,
                     VAR_CONTACT: str(plan.contact_id or ""), **(data or {})}
        self.plans[leg] = plan
        try:
            result = node.bgapi_async(commands.originate(agent.contacts.get(node.name) or f"user/{plan.agent}",
                                                         variables))
        except EslError as exc:
            del self.plans[leg]
            raise ValueError(f"cannot ring agent {plan.agent}: {exc}") from None
        self.dialer.spawn(self._await_agent, leg, result)
        log.info("ringing agent %s first for %s (leg %s)", plan.agent, phone, leg)
        return {"agent": plan.agent, "agent_leg": leg}

    def _await_agent(self, leg: str, result: Any) -> None:
        """The agent did not answer: the contact was never called, so it goes back to the pool."""
        try:
            body = (result.get(timeout=self.dialer.acd.settings.ring_seconds + JOB_MARGIN) or "").strip()
        except (EslError, gevent.Timeout):
            body = ""
        if body.startswith("+OK"):
            return
        plan = self.plans.pop(leg, None)
        if plan is not None:
            self.offered.pop(plan.contact_id, None)
            log.info("agent %s did not take the call to %s: %s", plan.agent, plan.endpoint, body or "no answer")


    def _adopted_plan(self, call: Call) -> Plan | None:
        """An agent's leg rung first, adopted after a restart: its plan from its channel variables."""
        endpoint = call.api(commands.getvar(call.uuid, VAR_DIAL)).strip()
        if not endpoint or endpoint == "_undef_" or endpoint.startswith("-ERR"):
            return None
        variables = call.caller.variables
        contact = variables.get(VAR_CONTACT, "")
        return Plan(variables.get(VAR_AGENT, ""), endpoint, "", 0.0, variables.get(VAR_CAMPAIGN, ""),
                           int(contact) if contact.isdigit() else 0)

    def _call(self, call: Call, plan: Plan, resumed: bool) -> None:
        """The agent answered: call the contact from the agent's call, bridge, and close the attempt
        (keyed by the agent leg's Unique-ID, known before anything is dialled) when either hangs up."""
        call.labels["agent"] = plan.agent
        self.offered.pop(plan.contact_id, None)
        attempt = contact = None
        if resumed:
            with self.dialer.connect() as conn:
                attempt = store.attempt(conn, call.uuid)
                contact = store.load_contact(conn, attempt.contact_id) if attempt else None
            if attempt is not None and attempt.ended_at is None:
                label(call, attempt)
                self._adopted_talk(call, attempt, contact)
            else:
                call.hangup()
            return
        if plan.campaign:
            attempt, contact = self._attempt(call, plan)
            if attempt is None:
                call.hangup()
                return
            label(call, attempt)
        try:
            leg = call.originate(plan.endpoint, {"origination_caller_id_number": plan.caller_id or "0"},
                                 role="outbound", timeout=plan.ring_timeout)
        except OriginateFailed as failed:
            log.info("call %s: %s not reached: %s", call.uuid, plan.endpoint, failed.cause)
            if attempt is not None:
                disposition = CAUSE_DISPOSITIONS.get(failed.cause, Disposition.NO_ANSWER).value
                self.dialer.close(attempt, contact, disposition, call)
            call.hangup()
            return
        except BaseException:
            if attempt is not None:
                self.dialer.close(attempt, contact, Disposition.NO_ANSWER.value, call)
            raise
        if attempt is not None:
            attempt.answered_at = attempt.connected_at = utc(self.dialer.clock())
        call.bridge(leg)
        call.set_vars(**{VAR_STAGE: STAGE_TALKING})
        self._talk(call, leg, attempt, contact)

    def _attempt(self, call: Call, plan: Plan) -> tuple[Attempt | None, Contact | None]:
        """The last-moment check, then the attempt's row before the contact is dialled."""
        runner = self.dialer.runners.get(plan.campaign)
        if runner is None:
            log.error("call %s: campaign %s no longer runs here; the contact is not called", call.uuid, plan.campaign)
            return None, None
        now = utc(self.dialer.clock())
        with self.dialer.connect() as conn:
            contact = store.load_contact(conn, plan.contact_id)
        history = runner.history_of(contact, now)
        with self.dialer.connect() as conn:
            if runner.refusal(conn, contact, history):
                return None, None
            attempt = Attempt(plan.campaign, contact.id, contact.phone, call.uuid, now, agent=plan.agent)
            contact.state = ContactState.DIALING
            store.record_attempt(conn, attempt)
            store.save_contact(conn, contact)
        runner.figures.dialed += 1
        return attempt, contact

    def _talk(self, call: Call, leg: Any, attempt: Attempt | None, contact: Contact | None) -> None:
        """Until the contact or the agent hangs up, with no greenlet in between (suspended until
        the contact's leg hangs up; the agent's is the call's own); then the attempt is answered."""
        try:
            while not leg.hungup:
                call.next_item_or_suspend(partial(is_hangup_of, leg_uuid=leg.uuid),
                                          partial(self._talk, call, leg, attempt, contact))
        except Suspend:
            raise  # the conversation goes on: nothing to close yet
        except CallGone:
            pass
        except BaseException:
            self._answered(call, attempt, contact)
            raise
        self._answered(call, attempt, contact)
        call.hangup()

    def _answered(self, call: Call, attempt: Attempt | None, contact: Contact | None) -> None:
        if attempt is not None and contact is not None:
            self.dialer.close(attempt, contact, Disposition.ANSWERED.value, call)

    def _adopted_talk(self, call: Call, attempt: Attempt, contact: Contact) -> None:
        """An agent-first call adopted after a restart: its contact's leg comes from reconciliation
        (callrouter_parent); without one the contact was never reached."""
        deadline = self.dialer.clock() + ADOPT_WAIT
        leg = None
        while leg is None and self.dialer.clock() < deadline:
            leg = next((l for l in call.legs.values() if l.role == "outbound"), None)
            if leg is None:
                call.next_item(deadline - self.dialer.clock())
        if leg is None:
            self.dialer.close(attempt, contact, Disposition.NO_ANSWER.value, call)
            call.hangup()
            return
        attempt.answered_at = attempt.answered_at or utc(self.dialer.clock())
        attempt.connected_at = attempt.connected_at or attempt.answered_at
        self._talk(call, leg, attempt, contact)
