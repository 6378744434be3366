"""A small WSGI app served by gevent's pywsgi from the daemon's own loop."""
from __future__ import annotations

import hmac
import json
import logging
from importlib import resources
from typing import Any, Callable, Iterable

from gevent.pywsgi import WSGIServer

from engine.api.acd_routes import acd_routes
from engine.api.campaign_routes import campaign_routes
from engine.api.request import Route
from engine.config import Secret

log = logging.getLogger(__name__)
audit = logging.getLogger("engine.api.audit")


class AdminApi:
    def __init__(self, host: str, port: int, token: Secret, status: Callable[[], dict[str, Any]],
                 reload: Callable[[], dict[str, Any]] | None = None, acd: Any = None, dialer: Any = None) -> None:
        self.host = host
        self._requested_port = port
        self._token = token.reveal().encode()
        self._routes: dict[tuple[str, str], Route] = {
            ("GET", "/health"): lambda env: (200, {"status": "ok"}),
            ("GET", "/status"): lambda env: (200, status()),
            ("GET", "/openapi.yaml"): lambda env: (200, resources.files("engine.api").joinpath("openapi.yaml")
                                                   .read_text(encoding="utf-8")),
        }
        if reload is not None:
            self._routes[("POST", "/reload")] = lambda env: _reloaded(reload())
        if acd is not None:
            self._routes.update(acd_routes(acd))
        if dialer is not None:
            self._routes.update(campaign_routes(dialer))
        self._server: WSGIServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self._requested_port

    def start(self) -> None:
        self._server = WSGIServer((self.host, self._requested_port), self._app, log=None, error_log=log)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=2)

    def _authorised(self, env: dict[str, Any]) -> bool:
        header = env.get("HTTP_AUTHORIZATION", "")
        scheme, _, supplied = header.partition(" ")
        # compare_digest: the time taken does not tell how much of the token was right
        return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), self._token)

    def _app(self, env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method, path = env["REQUEST_METHOD"], env.get("PATH_INFO", "/")
        route = self._routes.get((method, path))
        who = env.get("REMOTE_ADDR", "?")
        if route is None:
            known_paths = {p for _, p in self._routes}
            status, body = (405, {"error": f"{method} not allowed on {path}"}) if path in known_paths \
                else (404, {"error": f"no such endpoint: {path}"})
        elif path != "/health" and not self._authorised(env):
            status, body = 401, {"error": "missing or wrong bearer token (see api.token in the config)"}
        else:
            try:
                status, body = route(env)
            except Exception:
                log.exception("admin API %s %s failed", method, path)
                status, body = 500, {"error": "internal error; see the engine's log"}
        if path != "/health":
            audit.info("%s %s %s -> %d", who, method, path, status)
        if isinstance(body, str):
            payload, ctype = body.encode(), "application/yaml"
        else:
            payload, ctype = json.dumps(body).encode(), "application/json"
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
                  422: "Unprocessable Entity", 500: "Internal Server Error"}[status]
        headers = [("Content-Type", ctype), ("Content-Length", str(len(payload)))]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="callrouter"'))
        start_response(f"{status} {reason}", headers)
        return [payload]


def _reloaded(result: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """200 when the new flows are in force; 422 with every error when they were refused."""
    return (200 if result["reloaded"] else 422), result
