"""What every route table shares: the route's type and how a request with query parameters is
answered (200 with the action's result, 422 with the reason it was refused)."""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qs

Route = Callable[[dict[str, Any]], tuple[int, Any]]


def answer(action: Callable[[dict[str, str]], dict[str, Any]], env: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Run `action` on the request's query parameters; a ValueError is the API's 422 with its reason."""
    query = {k: v[-1] for k, v in parse_qs(env.get("QUERY_STRING", "")).items()}
    try:
        return 200, action(query)
    except ValueError as exc:
        return 422, {"error": str(exc)}
