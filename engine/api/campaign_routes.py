"""The dialer's endpoints: campaigns listed, their live status and control, preview offers to
agents, and click-to-call (the agent's phone rings first, then the number)."""
from __future__ import annotations

from typing import Any

from engine.api.request import Route, answer


def campaign_routes(dialer: Any) -> dict[tuple[str, str], Route]:
    """Routes onto an engine.dialer.runner.Dialer."""
    return {
        ("GET", "/campaigns"): lambda env: (200, dialer.list()),
        ("GET", "/campaigns/status"): lambda env: answer(lambda q: dialer.status(q.get("campaign", "")), env),
        ("POST", "/campaigns/control"): lambda env: answer(lambda q: dialer.control(
            q.get("campaign", ""), q.get("action", "")), env),
        ("GET", "/campaigns/preview"): lambda env: answer(lambda q: dialer.agent_first.preview(
            q.get("campaign", ""), q.get("agent", "")), env),
        ("POST", "/campaigns/preview"): lambda env: answer(lambda q: dialer.agent_first.preview_answer(
            q.get("campaign", ""), q.get("agent", ""), q.get("action", "")), env),
        ("POST", "/campaigns/call"): lambda env: answer(lambda q: dialer.agent_first.click_to_call(
            q.get("agent", ""), q.get("number", ""), campaign=q.get("campaign", ""), gateway=q.get("gateway", ""),
            caller_id=q.get("caller_id", ""), region=q.get("region", "US")), env),
    }
