"""engine.esl.protocol against byte-exact FreeSWITCH 1.10.12 captures: framing at any cut,
per-value decoding, event bodies, json/xml events, and malformed input."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.esl.protocol import MAX_HEADER_BYTES, Event, FrameParser, ProtocolError
from tests.esl.reference import REFERENCE, event_file, transcript_frames

LIFECYCLE = transcript_frames("call-lifecycle-raw.txt")
BASICS = transcript_frames("esl-session-basics.txt")
STREAM = b"".join(LIFECYCLE + BASICS)


def snapshot(frames: list[Event]) -> list[tuple]:
    return [(f.content_type, f.headers(), f.body) for f in frames]


WHOLE = snapshot(FrameParser().feed(STREAM))


def test_every_recorded_frame_is_framed():
    assert len(WHOLE) == len(LIFECYCLE) + len(BASICS)
    kinds = {content_type for content_type, _, _ in WHOLE}
    assert {"auth/request", "command/reply", "api/response", "text/event-plain", "text/event-json",
            "text/event-xml", "text/disconnect-notice"} <= kinds


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_stream_cut_at_any_offsets_yields_the_same_frames(cuts):
    parser = FrameParser()
    frames = []
    bounds = [0, *sorted(cuts), len(STREAM)]
    for start, end in zip(bounds, bounds[1:]):
        frames += parser.feed(STREAM[start:end])
    assert snapshot(frames) == WHOLE


def test_one_byte_at_a_time_around_a_frame_boundary():
    parser = FrameParser()
    frames = []
    for i in range(len(BASICS[0]) + len(BASICS[1])):
        frames += parser.feed((BASICS[0] + BASICS[1])[i:i + 1])
    assert [f.content_type for f in frames] == ["auth/request", "command/reply"]


def test_header_values_are_decoded_one_by_one_after_splitting():
    frame = (b"Content-Length: 96\nContent-Type: text/event-plain\n\n"
             b"Event-Name: CHANNEL_PARK\nCaller-Caller-ID-Name: Bob%0AUnique-ID%3A%20evil\n"
             b"Unique-ID: 42%2Ba%25\n\n")
    assert len(frame.split(b"\n\n", 1)[1]) == 96
    [event] = FrameParser().feed(frame)
    assert event["Caller-Caller-ID-Name"] == "Bob\nUnique-ID: evil"
    assert event.unique_id == "42+a%"  # '+' is not a space on this wire
    assert set(event.headers()) == {"Event-Name", "Caller-Caller-ID-Name", "Unique-ID"}


def test_background_job_body_is_kept_apart_from_headers():
    [event] = FrameParser().feed(event_file("plain", "BACKGROUND_JOB"))
    assert event.name == "BACKGROUND_JOB"
    assert event.job_uuid == "15cb4f5d-0206-49d1-a13f-d8d59c571148"
    assert event.body.startswith("UP 0 years") and event.body.endswith("240K/8192K\n")
    assert len(event.body.encode()) == int(event["Content-Length"])
    assert not any("FreeSWITCH (Version" in k or "FreeSWITCH (Version" in v for k, v in event.headers().items())


@pytest.mark.parametrize("name", sorted(p.stem for p in (REFERENCE / "events" / "json").glob("*.txt")))
def test_json_and_plain_frames_of_one_event_agree(name):
    [plain] = FrameParser().feed(event_file("plain", name))
    [as_json] = FrameParser().feed(event_file("json", name))
    assert as_json.content_type == "text/event-json"
    assert as_json.headers() == plain.headers()
    assert as_json.body == plain.body
    assert as_json.name == plain.name and as_json.unique_id == plain.unique_id
    assert as_json.subclass == plain.subclass


def test_xml_event_headers_are_url_decoded():
    [xml_event] = [f for f in FrameParser().feed(b"".join(BASICS)) if f.content_type == "text/event-xml"]
    assert xml_event.name == "BACKGROUND_JOB"
    assert xml_event["Event-Date-Local"] == "2026-11-22 20:59:11"
    assert xml_event.body.startswith("FreeSWITCH Version 1.10.12")


def test_custom_event_subclass_and_variables():
    [event] = FrameParser().feed(event_file("plain", "CUSTOM-callcenter-info-member-queue-start"))
    assert event.name == "CUSTOM" and event.subclass == "callcenter::info"
    assert event["CC-Action"] == "member-queue-start"
    [execute] = FrameParser().feed(event_file("plain", "CHANNEL_EXECUTE_COMPLETE-play_and_get_digits"))
    assert execute.variable("esl_ref_digits") == "123"
    assert execute.variable("no_such_variable") is None
    with pytest.raises(KeyError):
        execute["no_such_header"]


def test_replies_expose_envelope_headers_verbatim():
    replies = [f for f in FrameParser().feed(b"".join(BASICS)) if f.content_type == "command/reply"]
    assert replies[0].get("Reply-Text") == "-ERR invalid"
    job = next(r for r in replies if r.job_uuid)
    assert job["Reply-Text"] == f"+OK Job-UUID: {job.job_uuid}"


def test_invalid_percent_encoding_is_kept_and_bad_utf8_replaced():
    inner = b"Event-Name: CUSTOM\nA: 100%ZZ%4\nB: caf\xe9%FF\nC: ok\n\n"
    frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner
    [event] = FrameParser().feed(frame)
    assert event["A"] == "100%ZZ%4"
    assert event["B"] == "caf\ufffd\ufffd"
    assert event["C"] == "ok"


def test_a_short_content_length_costs_one_frame_not_the_stream():
    good = BASICS[1]
    body = b"-ERR no_such_command Command not found!\n"
    lying = b"Content-Type: api/response\nContent-Length: 10\n\n" + body  # 30 bytes too many
    frames = FrameParser().feed(lying + b"\n" + good)
    assert frames[0].body == body[:10].decode()
    assert frames[1].content_type == ""  # the leftover bytes, reported for the reader to skip
    assert frames[-1].content_type == "command/reply" and frames[-1]["Reply-Text"] == "-ERR invalid"


@pytest.mark.parametrize("frame", [
    b"Content-Type: api/response\nContent-Length: twelve\n\nhello",
    b"Content-Type: api/response\nContent-Length: -5\n\n",
    b"Content-Type: api/response\nContent-Length: 99999999999\n\n",
])
def test_unframeable_lengths_raise_protocol_error(frame):
    with pytest.raises(ProtocolError):
        FrameParser().feed(frame)


def test_huge_header_block_raises_protocol_error():
    parser = FrameParser()
    parser.feed(b"Content-Type: text/event-plain\nX: " + b"a" * (MAX_HEADER_BYTES // 2))
    with pytest.raises(ProtocolError, match="no end of frame headers"):
        parser.feed(b"a" * MAX_HEADER_BYTES)


def test_unparsable_json_event_yields_no_headers_instead_of_raising(caplog):
    frame = b"Content-Length: 7\nContent-Type: text/event-json\n\n{broken"
    [event] = FrameParser().feed(frame)
    assert event.name is None and event.headers() == {}
    assert "unparsable text/event-json" in caplog.text


def test_json_body_survives_reencoding():
    headers = {"Event-Name": "BACKGROUND_JOB", "Job-UUID": "x", "_body": "line1\nline2: not a header\n"}
    raw = json.dumps(headers).encode()
    [event] = FrameParser().feed(b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(raw) + raw)
    assert event.body == "line1\nline2: not a header\n"
    assert "line2" not in event.headers()


@pytest.mark.parametrize("prefix", ["variable_", "Caller-", "variable_sip_", "Event-", "Unique-ID", "Nothing-", ""])
def test_matching_gives_every_header_of_a_family_as_headers_does(prefix):
    for frame in FrameParser().feed(STREAM):
        expected = {name: value for name, value in frame.headers().items() if name.startswith(prefix)}
        assert frame.matching(prefix) == expected, frame


def test_matching_reads_the_first_line_and_a_bare_name_and_keeps_the_first_of_a_repeat():
    block = b"variable_a: 1%0A2\nvariable_b:\nOther: x\nvariable_a: again\nvariable_c: %25"
    frame = FrameParser().feed(b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(block), block))[0]
    assert frame.matching("variable_") == {"variable_a": "1\n2", "variable_b": "", "variable_c": "%"}
