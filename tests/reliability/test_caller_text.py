"""Caller-controlled text on the wire: caller id names carrying CR, LF, quotes, braces, `^^`, `&`,
`|`, `;`, `${...}` and invalid UTF-8 reach the engine through the simulated switch over TCP; the
test records every command the switch received and checks that none carries that text raw (each
command frame is whole, the dial string gives back exactly the name, or the name was refused),
and that every caller still reached an agent."""
from __future__ import annotations

import json
import re

import pytest

from engine.simulator import fsparse
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

# Names FreeSWITCH's parsers can be given escaped, and names that cannot be carried on a
# command line at all (CR, LF, NUL, `${`): those must be refused or cleaned, never sent.
ESCAPABLE = ["O'Hara \"Jack\"", "a{b}c", "{x=y}", "^^:evil=1", "Tom & Jerry | Co; ltd", "100% off",
             "back\\slash", "comma, sep", "line\\nbreak", "tab\there", "caf\udce9 latin-1"]
UNSAFE = ["cr\rinjected", "lf\napi uuid_kill all", "nul\x00byte", "${system(rm -rf /)}"]
SCENARIO = """
seed: 2
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "60"}}
inbound:
  arrivals:
    calls:
{calls}
  numbers: ["+1555010XXXX"]
  names: {names}
  dnis: "+18005550100"
  kinds:
    sales: {{digits: "1", think: 0.1, patience: 60, talk: 60}}
agents:
  - ids: "1001-1004"
    ring: 0.1
    talk: 0.3
    hangup_share: 1.0
"""


def scenario(names: list[str]) -> str:
    calls = "\n".join(f"      - {{at: {0.2 + 0.1 * i:.1f}, kind: sales}}" for i in range(len(names)))
    # JSON is YAML: each name as a double-quoted scalar with its escapes (\\r, \\u0000, ...)
    return SCENARIO.format(calls=calls, names=json.dumps(names))


@pytest.mark.parametrize("names", [
    pytest.param(ESCAPABLE, id="escapable"),
    pytest.param(UNSAFE, id="unsafe"),
])
def test_hostile_caller_names_never_reach_a_command_line_raw_and_every_call_is_served(
        centre_factory, engine_factory, tmp_path, names):
    # The scenario picks a name at random per caller; one call per name.
    centre = centre_factory(scenario(names))
    centre.server.received = []
    engine = engine_factory(centre.config(tmp_path))
    wait_until(lambda: centre.truth.count == len(names), timeout=20, what="every call to end")
    wait_until(lambda: not engine.registry.calls, what="the engine to close every call")

    records = centre.truth.finished
    assert all(r.agent and r.hung_up_by == "agent" for r in records), \
        [(r.caller, r.agent, r.hung_up_by, r.hangup_cause) for r in records]
    assert engine.stats.outcomes == {"answered": len(names)}, "no call was taken down by its caller's name"

    requests = centre.server.received
    assert requests, "the switch recorded what it received"
    known_commands = {"auth", "event", "api", "bgapi", "sendmsg", "exit"}
    for request in requests:
        assert request.line.split(" ", 1)[0] in known_commands, f"an injected command line: {request.line!r}"
        for text in (request.line, *request.headers.values(), request.body):
            assert "\r" not in text and "\x00" not in text, request
            assert "${" not in text, f"an expansion reached the switch: {request!r}"
    originates = [r.line for r in requests if r.line.startswith("bgapi originate ")]
    assert originates, "agents were called"
    for line in originates:
        _, dial, _app = fsparse.api_args(line.removeprefix("bgapi "))
        variables, endpoint = fsparse.dial_string(dial)
        shown = variables["origination_caller_id_name"]
        assert endpoint.startswith("user/")
        # The agent's display shows the queue and the caller's name as typed, with only what cannot
        # travel safely neutralised (a control character shown as a space, `${` as `$ {`): never
        # a half-parsed fragment. An invalid UTF-8 byte arrives as U+FFFD (decoded with replacement).
        readable = {re.sub(r"[\x00-\x1f\x7f]", " ", n.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
                    .replace("${", "$ {").strip() for n in names}
        name = shown.split(": ", 1)[1]
        assert name in readable or name.startswith("+1555010"), shown
