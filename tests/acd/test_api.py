"""The ACD through the admin API over HTTP: agents and queues listed, an agent's status changed
(and logged to the queue log), a call explained; mistakes are 422 with the reason."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from engine.acd.config import load_acd
from engine.acd.model import Member
from engine.acd.service import Acd
from engine.api import AdminApi
from engine.config import AcdSettings, Secret

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken"


class Journal:
    def __init__(self) -> None:
        self.sink = self
        self.records = []

    def submit(self, record) -> None:
        self.records.append(record)


class Registry:
    journal = Journal()


@pytest.fixture
def api():
    acd = Acd(load_acd(ROOT / "acd.yaml"), Registry(), AcdSettings(), Path("unused"), clock=lambda: 1000.0)
    server = AdminApi("127.0.0.1", 0, Secret(TOKEN), lambda: {}, acd=acd)
    server.start()

    def call(method: str, path: str) -> tuple[int, object]:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", method=method,
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    call.port = server.port
    yield call, acd
    server.stop()


def test_agents_and_queues_are_listed_and_a_break_with_its_reason_is_applied_and_logged(api):
    call, acd = api
    status, agents = call("GET", "/agents")
    assert status == 200 and [(a["agent"], a["status"]) for a in agents] == [("1001", "Available"),
                                                                             ("1002", "Available")]
    status, agent = call("POST", "/agents/status?agent=1002&status=On+Break&reason=lunch")
    assert status == 200 and (agent["status"], agent["reason"]) == ("On Break", "lunch")
    assert acd.router.agents["1002"].break_reason == "lunch"
    logged = Registry.journal.records[-1]
    assert (logged.event, logged.agent, logged.status, logged.reason) == ("STATUS", "1002", "On Break", "lunch")
    status, queues = call("GET", "/queues")
    support = next(q for q in queues if q["queue"] == "support")
    assert status == 200 and support["staffed"] == 1, "only 1001 (tier level 2) still serves support"


def test_mistakes_are_422_with_the_reason_and_why_explains_a_waiting_call(api):
    call, acd = api
    status, body = call("POST", "/agents/status?agent=9999&status=Available")
    assert status == 422 and "9999" in body["error"]
    status, body = call("POST", "/agents/status?agent=1001&status=Sleeping")
    assert status == 422 and "On Break" in body["error"]
    status, body = call("GET", "/queues/why?call=nope")
    assert status == 422
    acd.router.member_joined(Member("c1", "billing", 999.0), 1000.0)
    status, body = call("GET", "/queues/why?call=c1")
    assert status == 200 and "1001" in json.dumps(body)


def test_the_openapi_document_describes_each_acd_endpoint_as_it_answers(api):
    call, acd = api
    request = urllib.request.Request(f"http://127.0.0.1:{call.port}/openapi.yaml",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        spec = yaml.safe_load(response.read())
    schemas = spec["components"]["schemas"]
    acd.router.member_joined(Member("c1", "billing", 999.0), 1000.0)
    answers = {("get", "/agents"): call("GET", "/agents"), ("get", "/queues"): call("GET", "/queues"),
               ("post", "/agents/status"): call("POST", "/agents/status?agent=1001&status=On+Break&reason=lunch"),
               ("get", "/queues/why"): call("GET", "/queues/why?call=c1")}
    for (method, path), (status, body) in answers.items():
        assert status == 200, (path, body)
        schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        if schema.get("type") == "array":
            schema, body = schema["items"], body[0]
        described = schemas[schema["$ref"].rsplit("/", 1)[1]]
        assert set(body) == set(described["properties"]), path
        if "/agents/status" == path:
            parameters = {p["name"] for p in spec["paths"][path][method]["parameters"]}
            assert parameters == {"agent", "status", "reason"}
    verdict = answers[("get", "/queues/why")][1]["agents"][0]
    assert set(verdict) == set(schemas["AgentVerdict"]["properties"])
