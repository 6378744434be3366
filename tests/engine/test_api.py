"""The admin API over real HTTP: loopback, bearer token compared in constant time, clear errors."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import yaml

from engine.api import AdminApi
from engine.api.acd_routes import acd_routes
from engine.api.campaign_routes import campaign_routes
from engine.config import Secret


@pytest.fixture
def api():
    server = AdminApi("127.0.0.1", 0, Secret("right-token"), lambda: {"calls_active": 3},
                      lambda: {"reloaded": False, "errors": ["f.yaml:3:5: no node named 'x'"], "version": "v1"})
    server.start()
    yield server
    server.stop()


def _get(api, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{api.port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_health_needs_no_token(api):
    assert _get(api, "/health") == (200, b'{"status": "ok"}')


def test_status_needs_the_token(api):
    status, body = _get(api, "/status")
    assert status == 401 and b"bearer token" in body
    status, _ = _get(api, "/status", "wrong-token")
    assert status == 401
    status, body = _get(api, "/status", "right-token")
    assert status == 200 and json.loads(body) == {"calls_active": 3}


def test_unknown_paths_and_methods(api):
    assert _get(api, "/nope", "right-token")[0] == 404


def test_openapi_document_describes_every_route(api):
    status, body = _get(api, "/openapi.yaml", "right-token")
    assert status == 200
    spec = yaml.safe_load(body)
    # The daemon serves these beside the ACD's and the dialer's tables (their routes are only called
    # on a request, so no ACD or dialer is needed to list them).
    served = {("GET", "/health"), ("GET", "/status"), ("POST", "/reload"), ("GET", "/openapi.yaml"),
              *acd_routes(None), *campaign_routes(None)}
    described = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert described == served


def test_reload_is_a_post_and_a_refusal_is_422_with_the_errors(api):
    assert _get(api, "/reload", "right-token")[0] == 405
    request = urllib.request.Request(f"http://127.0.0.1:{api.port}/reload", method="POST",
                                     headers={"Authorization": "Bearer right-token"})
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("a refused reload must not answer 200")
    except urllib.error.HTTPError as exc:
        assert exc.code == 422
        assert json.loads(exc.read())["errors"] == ["f.yaml:3:5: no node named 'x'"]
