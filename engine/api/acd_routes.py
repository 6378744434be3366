"""The ACD's endpoints: agents, queues, why a call went where it did, the calls under way, their
transfers (blind or attended, completed or cancelled) and recording pause/resume."""
from __future__ import annotations

from typing import Any

from engine.api.request import Route, answer

_YES = ("1", "true", "yes")


def acd_routes(acd: Any) -> dict[tuple[str, str], Route]:
    """Routes onto an engine.acd.service.Acd."""
    return {
        ("GET", "/agents"): lambda env: (200, acd.agents_view()),
        ("GET", "/queues"): lambda env: (200, acd.queues_view()),
        ("POST", "/agents/status"): lambda env: answer(lambda q: acd.change_status(
            q.get("agent", ""), q.get("status", ""), q.get("reason", "")), env),
        ("GET", "/queues/why"): lambda env: answer(lambda q: acd.why(q.get("call", "")), env),
        # GET /calls: every call; GET /calls?call=UUID: that call with its data and legs.
        ("GET", "/calls"): lambda env: answer(
            lambda q: acd.call_view(q["call"]) if "call" in q else acd.calls_view(), env),
        ("POST", "/calls/transfer"): lambda env: answer(lambda q: acd.transfer(
            q.get("call", ""), q.get("to", ""), attended=q.get("attended", "").lower() in _YES), env),
        ("POST", "/calls/transfer/complete"): lambda env: answer(
            lambda q: acd.transfer_control(q.get("call", ""), "complete"), env),
        ("POST", "/calls/transfer/cancel"): lambda env: answer(
            lambda q: acd.transfer_control(q.get("call", ""), "cancel"), env),
        ("POST", "/calls/record"): lambda env: answer(lambda q: acd.record(
            q.get("call", ""), q.get("action", "")), env),
    }
