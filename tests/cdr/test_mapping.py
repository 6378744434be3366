"""cdr_from_event on the byte-exact CHANNEL_HANGUP_COMPLETE frames of a real FreeSWITCH 1.10.12."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from engine.cdr import CallFacts, cdr_from_event
from engine.cdr.records import from_json, to_json
from engine.esl.protocol import FrameParser
from tests.esl.reference import REFERENCE, event_file

HANGUPS = sorted(p.stem for p in (REFERENCE / "events" / "plain").glob("CHANNEL_HANGUP_COMPLETE*.txt"))


def hangup(name: str, kind: str = "plain"):
    [event] = FrameParser().feed(event_file(kind, name))
    assert event.name == "CHANNEL_HANGUP_COMPLETE"
    return event


def utc(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, timezone.utc)


def test_answered_bridged_caller_leg():
    cdr = cdr_from_event(hangup("CHANNEL_HANGUP_COMPLETE"))
    assert cdr.uuid == "2a95dfd0-f445-4f90-8252-920a3a4ea869"
    assert cdr.bleg_uuid == "891966e3-5c5c-4cf6-80d1-8205f1429627"
    assert (cdr.direction, cdr.caller_id_name, cdr.caller_id_number, cdr.destination_number) == \
        ("inbound", "ESL Ref Caller", "5551234", "7000")
    # the *_uepoch variables, to the microsecond, in UTC
    assert cdr.start_stamp == utc(1795381201467811)
    assert cdr.answer_stamp == utc(1795381201487809)
    assert cdr.end_stamp == utc(1795381211027814)
    assert (cdr.duration, cdr.billsec) == (10, 10)
    assert (cdr.hangup_cause, cdr.sip_hangup_disposition, cdr.node) == ("NORMAL_CLEARING", "recv_bye", "vm")
    # bridged at bridge_uepoch 1795381206207804, hung up at 1795381211027814: 4.820010 s
    assert cdr.talk_seconds == pytest.approx(4.82)
    assert cdr.hold_seconds == 0
    assert cdr.rtp_audio_in_mos == 4.5 and cdr.rtp_audio_in_quality_percentage == 100.0
    # 40 packets received, 0 flaws: no loss, although FreeSWITCH filled 477 gaps with comfort noise
    assert (cdr.rtp_audio_in_packet_count, cdr.rtp_audio_in_skip_packet_count, cdr.rtp_audio_in_flaw_total) == \
        (40, 477, 0)
    assert cdr.packet_loss_percent == 0.0
    assert cdr.rtp_audio_in_jitter_max_variance == 0.0


def test_b_leg_points_back_at_the_caller():
    cdr = cdr_from_event(hangup("CHANNEL_HANGUP_COMPLETE-bleg"))
    assert cdr.uuid == "891966e3-5c5c-4cf6-80d1-8205f1429627"
    assert cdr.bleg_uuid == "2a95dfd0-f445-4f90-8252-920a3a4ea869"
    assert (cdr.direction, cdr.destination_number, cdr.sip_hangup_disposition) == ("outbound", "7301", "send_bye")
    assert (cdr.duration, cdr.billsec) == (5, 5)
    # no packets and no flaws: loss is unknown, not 0 %
    assert cdr.packet_loss_percent is None


@pytest.mark.parametrize("name, cause, disposition, duration", [
    ("CHANNEL_HANGUP_COMPLETE-cause-ORIGINATOR_CANCEL", "ORIGINATOR_CANCEL", "recv_cancel", 2),
    ("CHANNEL_HANGUP_COMPLETE-cause-NO_ANSWER", "NO_ANSWER", None, 3),
    ("CHANNEL_HANGUP_COMPLETE-cause-USER_BUSY", "USER_BUSY", "recv_refuse", 0),
])
def test_unanswered_legs_have_no_answer_stamp_and_no_billsec(name, cause, disposition, duration):
    cdr = cdr_from_event(hangup(name))
    assert cdr.answer_stamp is None  # answer_uepoch 0 means never
    assert cdr.billsec == 0 and cdr.duration == duration
    assert (cdr.hangup_cause, cdr.sip_hangup_disposition) == (cause, disposition)
    assert cdr.talk_seconds is None and cdr.bleg_uuid is None


def test_engine_facts_fill_the_engine_columns_and_win_over_channel_variables():
    facts = CallFacts(node="fs-paris", role="caller", flow="main", ivr_node="menu.sales", queue="sales",
                      agent="1001", wait_seconds=12.5, ring_seconds=3.0, talk_seconds=61.0, wrap_up_seconds=15.0,
                      transfer_target="2000", campaign="spring", contact="c-42", disposition="SALE",
                      recording_path="/rec/x.wav")
    cdr = cdr_from_event(hangup("CHANNEL_HANGUP_COMPLETE"), facts)
    assert (cdr.node, cdr.role, cdr.flow, cdr.ivr_node, cdr.queue, cdr.agent) == \
        ("fs-paris", "caller", "main", "menu.sales", "sales", "1001")
    assert (cdr.wait_seconds, cdr.ring_seconds, cdr.talk_seconds, cdr.wrap_up_seconds) == (12.5, 3.0, 61.0, 15.0)
    assert (cdr.transfer_target, cdr.campaign, cdr.contact, cdr.disposition, cdr.recording_path) == \
        ("2000", "spring", "c-42", "SALE", "/rec/x.wav")


def test_engine_channel_variables_are_read_when_the_engine_has_no_facts():
    # a call adopted after an engine restart: the engine's variables are on the channel
    raw = event_file("plain", "CHANNEL_HANGUP_COMPLETE")
    head, body = raw.split(b"\n\n", 1)
    extra = (b"variable_callrouter_queue: support\nvariable_callrouter_agent: 1002\n"
             b"variable_callrouter_flow: main\nvariable_callrouter_ivr_node: menu%2Esupport\n"
             b"variable_callrouter_leg: caller\n")
    body = extra + body
    head = head.replace(b"Content-Length: 12114", f"Content-Length: {len(body)}".encode())
    [event] = FrameParser().feed(head + b"\n\n" + body)
    cdr = cdr_from_event(event, CallFacts(agent="1003"))
    assert (cdr.queue, cdr.agent, cdr.flow, cdr.ivr_node, cdr.role) == ("support", "1003", "main", "menu.support", "caller")


@pytest.mark.parametrize("name", [n for n in HANGUPS if (REFERENCE / "events" / "json" / f"{n}.txt").exists()])
def test_plain_and_json_frames_give_the_same_cdr(name):
    assert cdr_from_event(hangup(name, "json")) == cdr_from_event(hangup(name, "plain"))


@pytest.mark.parametrize("name", HANGUPS)
def test_every_reference_hangup_maps_and_survives_the_spool_encoding(name):
    cdr = cdr_from_event(hangup(name))
    assert cdr.end_stamp is not None and cdr.start_stamp <= cdr.end_stamp
    assert cdr.hangup_cause == hangup(name)["Hangup-Cause"]
    assert from_json(to_json(cdr)) == cdr


def test_an_event_without_a_unique_id_is_refused():
    with pytest.raises(ValueError):
        cdr_from_event({"Event-Name": "CHANNEL_HANGUP_COMPLETE"})


def test_call_facts_name_the_call_on_every_leg_and_what_happened_on_the_callers():
    """journal.call_facts: every leg names its call (the caller's Unique-ID) even when its channel
    no longer can (an agent leg lost with its node); the caller's leg carries the transfer target
    and the recording; an agent leg names its agent from its own variables."""
    from types import SimpleNamespace

    from engine.cdr.journal import call_facts

    call = SimpleNamespace(uuid="caller-1", marks={"queued": 10.0, "connected": 14.5},
                           labels={"flow": "main", "queue": "sales", "agent": "1001",
                                   "transfer_target": "queue:billing", "recording_path": "/rec/caller-1.wav"})
    caller = SimpleNamespace(node="fs1", role="caller", variables={})
    agent = SimpleNamespace(node="fs2", role="agent", variables={"callrouter_agent": "1001"})
    facts = call_facts(call, caller)
    assert (facts.call_uuid, facts.wait_seconds, facts.transfer_target, facts.recording_path) == \
        ("caller-1", 4.5, "queue:billing", "/rec/caller-1.wav")
    facts = call_facts(call, agent)
    assert (facts.call_uuid, facts.node, facts.agent, facts.transfer_target, facts.recording_path) == \
        ("caller-1", "fs2", "1001", None, None)
