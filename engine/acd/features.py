"""Agent feature codes dialled from the agent's own phone: *50 login, *51 logout, *52 break.

The FreeSWITCH dialplan (freeswitch/dialplan/default/00_callrouter.xml) parks them with
callrouter_entry=agent_feature, callrouter_feature=login|logout|break and the agent's id from
the directory user's callrouter_agent_id variable, so a phone can only change its own agent.
The agent hears two short beeps when the change is made, one low tone when it is refused.
"""
from __future__ import annotations

import logging

from engine.acd.model import AgentStatus
from engine.acd.routing import RoutingError
from engine.calls.call import Call
from engine.esl import commands

log = logging.getLogger(__name__)

ENTRY = "agent_feature"
FEATURES = {
    "login": (AgentStatus.AVAILABLE, ""),
    "logout": (AgentStatus.LOGGED_OUT, ""),
    "break": (AgentStatus.ON_BREAK, "feature-code"),
}
CONFIRMED = "tone_stream://%(100,100,880);loops=2"
REFUSED = "tone_stream://%(600,0,300)"


class AgentFeatures:
    def __init__(self, acd) -> None:
        self.acd = acd

    def __call__(self, call: Call, resumed: bool) -> None:
        call.outcome = ENTRY
        feature = call.api(commands.getvar(call.uuid, "callrouter_feature")).strip()
        agent = call.api(commands.getvar(call.uuid, "callrouter_agent_id")).strip()
        call.answer()
        tone = REFUSED
        if feature not in FEATURES:
            log.warning("call %s: unknown agent feature %r from agent %r", call.uuid, feature, agent)
        else:
            status, reason = FEATURES[feature]
            try:
                self.acd.set_status(agent, status, reason)
                log.info("agent %s: %s by feature code", agent, status.value)
                tone = CONFIRMED
            except RoutingError as exc:
                log.warning("call %s: agent feature %s refused: %s", call.uuid, feature, exc)
        call.playback(tone, timeout=10)
        call.hangup()
