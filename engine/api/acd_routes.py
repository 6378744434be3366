"""The ACD's endpoints: agents, queues, why a call went where it did, transfers."""
from __future__ import annotations

from typing import Any

from engine.api.request import Route, answer


def acd_routes(acd: Any) -> dict[tuple[str, str], Route]:
    """Routes onto an engine.acd.service.Acd."""
    return {
        ("GET", "/agents"): lambda env: (200, acd.agents_view()),
        ("GET", "/queues"): lambda env: (200, acd.queues_view()),
        ("POST", "/agents/status"): lambda env: answer(lambda q: acd.change_status(
            q.get("agent", ""), q.get("status", ""), q.get("reason", "")), env),
        ("GET", "/queues/why"): lambda env: answer(lambda q: acd.why(q.get("call", "")), env),
        ("POST", "/calls/transfer"): lambda env: answer(lambda q: acd.transfer(
            q.get("call", ""), q.get("to", "")), env),
    }
