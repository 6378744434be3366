"""Recording pause/resume for card payments: the engine masks the queue recording with
`uuid_record <caller> mask|unmask <the path record_session started>` (FreeSWITCH writes silence
while masked) and refuses calls that are not recorded, asserted from the commands the simulated
switch received over TCP."""
from __future__ import annotations

import pytest

from tests.acd.test_service_e2e import acd_file
from tests.acd.test_transfer_e2e import start, talking
from tests.engine.conftest import centre_factory, engine_factory  # noqa: F401 - fixtures
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

AGENT = ['  - {ids: ["1001"], ring: 0.1, answer_probability: 1.0, talk: 30, hangup_share: 1.0}']


def record_commands(events: list, uuid: str) -> list[str]:
    return [e.get("API-Command-Argument") for e in events
            if e.name == "API" and e.get("API-Command") == "uuid_record"
            and (e.get("API-Command-Argument") or "").startswith(uuid)]


def test_pause_masks_the_queue_recording_and_resume_unmasks_it(centre_factory, engine_factory, tmp_path):
    centre, engine, log, _ = start(centre_factory, engine_factory, tmp_path, AGENT,
                                   acd_file({"sales": {"recording": {"mode": "all"}}}, {"1001": {}},
                                            [("1001", "sales", 1)]))
    events: list = []
    centre.switch.subscribe(events.append)
    wait_until(lambda: talking(engine, "1001"), what="the agent to talk")
    call = engine.registry.calls[0]
    wait_until(lambda: "recording_path" in call.labels, what="the recording to start")
    path = call.labels["recording_path"]
    assert path in centre.switch.channels[call.uuid].recordings, "record_session runs on the caller"

    assert engine.acd.record(call.uuid, "pause") == {"call": call.uuid, "recording": path, "paused": True}
    assert engine.acd.calls_view()[0]["recording_paused"] is True
    assert engine.acd.record(call.uuid, "resume")["paused"] is False
    assert record_commands(events, call.uuid) == [f"{call.uuid} mask {path}", f"{call.uuid} unmask {path}"]

    with pytest.raises(ValueError, match="pause or resume"):
        engine.acd.record(call.uuid, "stop")
    call.labels["recording_path"] = path + ".other"  # a path the switch is not recording
    with pytest.raises(ValueError, match="Cannot mask recording session"):
        engine.acd.record(call.uuid, "pause")


def test_a_call_not_recorded_cannot_be_paused(centre_factory, engine_factory, tmp_path):
    centre, engine, log, _ = start(centre_factory, engine_factory, tmp_path, AGENT,
                                   acd_file({"sales": {}}, {"1001": {}}, [("1001", "sales", 1)]))
    wait_until(lambda: talking(engine, "1001"), what="the agent to talk")
    call = engine.registry.calls[0]
    with pytest.raises(ValueError, match="not being recorded"):
        engine.acd.record(call.uuid, "pause")
