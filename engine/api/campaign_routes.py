"""The dialer's endpoints: campaigns listed, their live status, and their control."""
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
    }
