"""`callrouter calls` as a supervisor runs it: separate processes against a running engine's admin
API (the engine on this test's loop, reaching the simulator over TCP). The supervisor lists the
calls, shows one with the account number the caller keyed in, pauses its recording, is refused a
transfer to an unknown agent, and sends the call to second-line billing, where it is answered."""
from __future__ import annotations

import json

import pytest

from tests.acd.test_cli import api_engine, callrouter  # noqa: F401 - fixture
from tests.acd.test_service_e2e import acd_file
from tests.acd.test_transfer_e2e import start, talking
from tests.engine.conftest import centre_factory  # noqa: F401 - fixture
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


def test_a_supervisor_lists_shows_pauses_the_recording_of_and_transfers_a_call(centre_factory, api_engine,
                                                                               tmp_path):
    engine_factory, config_file = api_engine
    centre, engine, log, _ = start(centre_factory, engine_factory, tmp_path, [
        '  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}',
        '  - {ids: ["1002"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}'],
        acd_file({"sales": {"recording": {"mode": "all"}}, "billing": {}}, {"1001": {}, "1002": {}},
                 [("1001", "sales", 1), ("1002", "billing", 1)]))
    wait_until(lambda: talking(engine, "1001") and "recording_path" in engine.registry.calls[0].labels,
               what="the first agent to talk, recorded")
    call = engine.registry.calls[0].uuid

    listed = callrouter(config_file, "calls", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["call"], row["queue"], row["agent"], row["stage"]) == (call, "sales", "1001", "talking")
    shown = callrouter(config_file, "calls", "show", call)
    assert shown.returncode == 0, shown.stderr
    assert "account" in shown.stdout and "4711" in shown.stdout and "Jane O'Hara" in shown.stdout

    paused = callrouter(config_file, "calls", "record", call, "pause")
    assert paused.returncode == 0, paused.stderr
    assert "recording paused" in paused.stdout
    assert json.loads(callrouter(config_file, "calls", "show", call, "--json").stdout)["recording_paused"] is True

    refused = callrouter(config_file, "calls", "transfer", call, "--to", "agent:nobody")
    assert refused.returncode == 1 and "no agent 'nobody'" in refused.stderr
    sent = callrouter(config_file, "calls", "transfer", call, "--to", "queue:billing")
    assert sent.returncode == 0, sent.stderr
    assert f"call {call} transferred from agent 1001 to queue:billing" in sent.stdout
    wait_until(lambda: talking(engine, "1002"), what="billing to take the call")
    assert [e.target for e in log.of("TRANSFER")] == ["queue:billing"]
    no_transfer = callrouter(config_file, "calls", "complete", call)
    assert no_transfer.returncode == 1 and "no attended transfer" in no_transfer.stderr
