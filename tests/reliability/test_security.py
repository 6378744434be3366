"""Security through the real interfaces: what binds where by default, the admin API's bearer
token over HTTP (constant-time comparison, refusals, an audit line per request), secrets kept
out of the daemon's output and --help, and the event socket config in freeswitch/."""
from __future__ import annotations

import hmac
import http.client
import logging
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.api.server import AdminApi
from engine.config import Secret, load_config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0k3n-for-the-admin-api-0123456789"


def test_the_admin_api_and_metrics_bind_to_loopback_by_default():
    config = load_config(None)
    assert config.api.host == "127.0.0.1"
    assert config.metrics_listen.rsplit(":", 1)[0] == "127.0.0.1"


@pytest.fixture
def api():
    server = AdminApi("127.0.0.1", 0, Secret(TOKEN), lambda: {"calls": 0}, lambda: {"reloaded": True,
                                                                                   "errors": [], "version": "v"})
    server.start()
    yield server
    server.stop()


def request(api, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def raw_request(api, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", api.port), timeout=5) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n" not in reply and (chunk := sock.recv(65536)):
            reply += chunk
    return reply


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
    "Bearer \u00e9\u00e9", f"bearer  {TOKEN[:10]}",
])
def test_every_endpoint_but_health_needs_the_token(api, authorization):
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8").decode("latin-1")}
    for method, path in (("GET", "/status"), ("POST", "/reload"), ("GET", "/openapi.yaml")):
        status, _ = request(api, method, path, headers)
        assert status == 401, (method, path, authorization)
    assert request(api, "GET", "/health")[0] == 200


def test_the_right_token_is_compared_in_constant_time(api, monkeypatch):
    compared = []
    compare = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr("engine.api.server.hmac.compare_digest", spy)
    assert request(api, "GET", "/status", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert request(api, "GET", "/status", {"Authorization": "Bearer nope"})[0] == 401
    assert (b"nope", TOKEN.encode()) in compared and len(compared) == 2


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
    b"GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
])
def test_what_cannot_be_parsed_is_refused_and_never_authorised(api, data):
    reply = raw_request(api, data)
    status_line = reply.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 4"), reply[:300]
    assert request(api, "GET", "/health")[0] == 200, "the API still serves"


def test_each_request_leaves_an_audit_line_without_the_token(api, caplog):
    caplog.set_level(logging.INFO, logger="engine.api.audit")
    request(api, "POST", "/reload", {"Authorization": f"Bearer {TOKEN}"})
    request(api, "GET", "/status", {"Authorization": "Bearer guess"})
    lines = [r.getMessage() for r in caplog.records if r.name == "engine.api.audit"]
    assert any("127.0.0.1" in line and "POST /reload" in line and "200" in line for line in lines), lines
    assert any("127.0.0.1" in line and "GET /status" in line and "401" in line for line in lines), lines
    assert not any(TOKEN in r.getMessage() or "guess" in r.getMessage() for r in caplog.records)


@pytest.mark.timeout(60)
def test_esl_password_and_database_credentials_never_reach_the_output(tmp_path):
    esl_password, db_password = "esl-S3cret-pw", "db-S3cret-pw"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens there: connection errors are logged
    config = tmp_path / "config.yaml"
    config.write_text(f"""
freeswitch:
  - {{name: fs1, host: 127.0.0.1, port: {closed_port}, password: {esl_password}}}
data_dir: {tmp_path / "data"}
dialplans: {ROOT / "dialplans"}
database: {{dsn: "postgresql://callrouter:{db_password}@127.0.0.1:{closed_port}/callrouter?connect_timeout=1"}}
api: {{listen: "127.0.0.1:0"}}
metrics: {{listen: "127.0.0.1:0"}}
""")
    result = subprocess.run([sys.executable, "-m", "engine", "run", "--config", str(config)], capture_output=True,
                            text=True, cwd=ROOT, timeout=50)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and output, "the engine refused to run without its database"
    assert esl_password not in output and db_password not in output, output[-3000:]
    for command in ("run", "demo", "simulate", "status", "check", "db", "reload"):
        help_text = subprocess.run([sys.executable, "-m", "engine", command, "--help"], capture_output=True,
                                   text=True, cwd=ROOT, timeout=30,
                                   env={"PATH": "/usr/bin:/bin", "CALLROUTER_ESL_PASSWORD": esl_password}).stdout
        assert esl_password not in help_text and db_password not in help_text, command


def test_the_event_socket_listens_on_loopback_behind_a_deny_by_default_acl():
    conf = ET.parse(ROOT / "freeswitch" / "autoload_configs" / "event_socket.conf.xml").getroot()
    params = {p.get("name"): p.get("value") for p in conf.iter("param")}
    assert params["listen-ip"] in ("127.0.0.1", "::1")
    assert params["password"] != "ClueCon", "never the well-known default"
    acl_name = params["apply-inbound-acl"]
    acl = ET.parse(ROOT / "freeswitch" / "autoload_configs" / "acl.conf.xml").getroot()
    lists = {lst.get("name"): lst for lst in acl.iter("list")}
    assert acl_name in lists, f"the ACL {acl_name} is defined"
    engine_list = lists[acl_name]
    assert engine_list.get("default") == "deny"
    allowed = [n.get("cidr") for n in engine_list.iter("node") if n.get("type") == "allow"]
    assert allowed and all(cidr.endswith("/32") for cidr in allowed), "single hosts only"
