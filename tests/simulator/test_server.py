"""The simulator's Event Socket server over real TCP: a plain-socket client and greenswitch's
InboundESL, slow-consumer kill, myevents binding, api holding events back, bgapi jobs,
event formats and fault injection."""
from __future__ import annotations

import json
import socket

import gevent
import pytest
from greenswitch.esl import InboundESL

from tests.simulator.conftest import EslClient, ScriptedEndpoint, wait_until


@pytest.mark.timeout(30)
def test_greenswitch_drives_a_call(switch, esl_server):
    """greenswitch's InboundESL: api, events by name, sendmsg execute, hangup events."""
    esl = InboundESL("127.0.0.1", esl_server.port, "ClueCon")
    esl.connect()
    try:
        seen = []
        for name in ("CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP_COMPLETE"):
            esl.register_handle(name, lambda event: seen.append(
                (event.headers["Event-Name"], event.headers.get("Application"),
                 event.headers.get("variable_callrouter"))))
        assert esl.send("event plain CHANNEL_PARK CHANNEL_ANSWER CHANNEL_EXECUTE_COMPLETE "
                        "CHANNEL_HANGUP_COMPLETE").data == "+OK event listener enabled plain"
        assert esl.send("api version").data == "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
        switch.park_variables = {"callrouter": "1"}
        channel = switch.inbound_call(ScriptedEndpoint(), "5551000", "Ann", "1000")
        wait_until(lambda: ("CHANNEL_PARK", None, "1") in seen)
        assert esl.send(f"api uuid_answer {channel.uuid}").data == "+OK\n"
        reply = esl.send(f"sendmsg {channel.uuid}\ncall-command: execute\nexecute-app-name: playback\n"
                         "execute-app-arg: silence_stream://100")
        assert reply.data == "+OK"
        wait_until(lambda: ("CHANNEL_EXECUTE_COMPLETE", "playback", "1") in seen)
        assert esl.send(f"api uuid_kill {channel.uuid}").data == "+OK\n"
        wait_until(lambda: ("CHANNEL_HANGUP_COMPLETE", None, "1") in seen)
        assert [s[:2] for s in seen] == [("CHANNEL_EXECUTE_COMPLETE", "set"), ("CHANNEL_PARK", None),
                                         ("CHANNEL_ANSWER", None), ("CHANNEL_EXECUTE_COMPLETE", "playback"),
                                         ("CHANNEL_EXECUTE_COMPLETE", "park"), ("CHANNEL_HANGUP_COMPLETE", None)]
    finally:
        esl.stop()


@pytest.mark.timeout(60)
def test_slow_consumer_is_killed_as_freeswitch_does(switch, esl_server):
    """behaviour.md §6 with small limits: the queue fills, more than max_missed events are
    lost, the listener gets what was already on the wire (no gaps), then the kill notice."""
    esl_server.queue_limit = 50
    esl_server.max_missed = 5
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", esl_server.port))
    client = EslClient.__new__(EslClient)
    client.sock, client.buffer, client.backlog = slow, b"", []
    client.frame()
    client.command("auth ClueCon")
    assert client.command("event plain CUSTOM esl::flood").get("Reply-Text") == "+OK event listener enabled plain"
    connection = next(iter(esl_server.connections))
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fired = 0
    while not connection.killed and fired < 200000:
        event = switch.new_event("CUSTOM", "esl::flood")
        event.add("Flood-Seq", fired)
        event.add("Padding", "x" * 200)
        switch.fire(event)
        fired += 1
        if fired % 50 == 0:
            gevent.sleep(0)
    assert connection.killed
    sequence = []
    while True:
        frame = client.frame(timeout=5)
        if frame.content_type == "text/disconnect-notice":
            break
        assert frame.event("Event-Subclass") == "esl::flood"
        sequence.append(int(frame.event("Flood-Seq")))
    assert frame.raw == (b"Content-Type: text/disconnect-notice\nContent-Length: 39\n\n"
                         b"killed listener because of lost events\n")
    assert sequence == list(range(len(sequence)))      # what was on the wire, without gaps
    assert len(sequence) < fired - esl_server.queue_limit
    assert client.closed()


def test_myevents_binds_the_connection_to_the_channel(switch, esl_server, client):
    other = EslClient(esl_server.port)
    other.frame()
    other.command("auth ClueCon")
    channel = switch.inbound_call(ScriptedEndpoint(), "5551234", "Bob", "7000")
    wait_until(lambda: channel.parked)
    assert client.command(f"myevents {channel.uuid}").get("Reply-Text") == "+OK Events Enabled"
    assert client.command(f"myevents {channel.uuid}").get("Reply-Text") == "-ERR aready enabled."
    assert other.command("bgapi status").get("Reply-Text").startswith("+OK Job-UUID: ")
    other.command(f"api uuid_kill {channel.uuid}")
    names = [f.event("Event-Name") for f in client.events("CHANNEL_HANGUP_COMPLETE")]
    assert names == ["CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE",
                     "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    notice = client.frame()
    assert notice.raw == (f"Content-Type: text/disconnect-notice\nControlled-Session-UUID: {channel.uuid}\n"
                          "Content-Disposition: disconnect\nContent-Length: 67\n\n"
                          "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n").encode()
    assert client.closed()
    fresh = EslClient(esl_server.port)
    fresh.frame()
    fresh.command("auth ClueCon")
    assert fresh.command(f"myevents {channel.uuid} json").get("Reply-Text") == "-ERR invalid uuid"
    assert fresh.command(f"myevents {channel.uuid}").get("Reply-Text") == "+OK Events Enabled"


def test_blocking_api_holds_events_until_its_reply(switch, client):
    """behaviour-api-blocks-events: originate's own events arrive after its +OK, which comes
    at early media."""
    switch.register_user("1001", ScriptedEndpoint(on_offer="early"))
    client.command("event plain CHANNEL_CREATE CHANNEL_PROGRESS_MEDIA CHANNEL_ANSWER")
    client.send("api originate {origination_uuid=6d5c6041-ea7e-406d-b581-353aca346d17}user/1001 &park()")
    first = client.frame()
    assert first.content_type == "api/response"
    assert first.body == b"+OK 6d5c6041-ea7e-406d-b581-353aca346d17\n"
    names = [f.event("Event-Name") for f in client.events("CHANNEL_PROGRESS_MEDIA")]
    assert names == ["CHANNEL_CREATE", "CHANNEL_PROGRESS_MEDIA"]
    assert switch.channels["6d5c6041-ea7e-406d-b581-353aca346d17"].answer_state == "early"


def test_bgapi_originate_failure_and_job_uuid(switch, client):
    client.command("event json BACKGROUND_JOB")
    reply = client.command("bgapi originate {originate_timeout=1}user/1002 &park()",
                           {"Job-UUID": "11111111-2222-3333-4444-555555555555"})
    assert reply.raw == (b"Content-Type: command/reply\n"
                         b"Reply-Text: +OK Job-UUID: 11111111-2222-3333-4444-555555555555\n"
                         b"Job-UUID: 11111111-2222-3333-4444-555555555555\n\n")
    job = json.loads(client.events("BACKGROUND_JOB")[0].body)
    assert job["Job-UUID"] == "11111111-2222-3333-4444-555555555555"
    assert job["Job-Command"] == "originate"
    assert job["Job-Command-Arg"] == "{originate_timeout=1}user/1002 &park()"
    assert job["_body"] == "-ERR SUBSCRIBER_ABSENT\n"
    assert job["Content-Length"] == str(len(job["_body"]))


def test_event_lock_queue_vanishes_on_hangup(switch, client):
    """behaviour-eventlock-hangup: the running locked playback completes with PLAYBACK ERROR,
    the queued one never produces an event; sendmsg to the gone channel is refused."""
    channel = switch.inbound_call(ScriptedEndpoint(), "5551234", "Bob", "7000")
    wait_until(lambda: channel.parked)
    client.command(f"api uuid_answer {channel.uuid}")
    client.command("event plain CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP")
    client.command(f"filter Unique-ID {channel.uuid}")
    for tone in ("440", "880"):
        assert client.command(f"sendmsg {channel.uuid}", {
            "call-command": "execute", "execute-app-name": "playback",
            "execute-app-arg": f"tone_stream://%(5000,0,{tone})", "event-lock": "true"}).get("Reply-Text") == "+OK"
    client.events("CHANNEL_EXECUTE")
    client.command(f"api uuid_kill {channel.uuid}")
    frames = client.events("CHANNEL_EXECUTE_COMPLETE", uuid=channel.uuid)
    frames += client.events("CHANNEL_EXECUTE_COMPLETE", uuid=channel.uuid)
    summary = [(f.event("Event-Name"), f.event("Application"), f.event("Application-Data"),
                f.event("Application-Response")) for f in frames]
    assert summary == [("CHANNEL_HANGUP", None, None, None),
                       ("CHANNEL_EXECUTE_COMPLETE", "playback", "tone_stream://%(5000,0,440)", "PLAYBACK ERROR"),
                       ("CHANNEL_EXECUTE_COMPLETE", "park", None, "PLAYBACK ERROR")]
    wait_until(lambda: channel.uuid not in switch.channels)
    reply = client.command(f"sendmsg {channel.uuid}", {"call-command": "execute", "execute-app-name": "answer"})
    assert reply.get("Reply-Text") == f"-ERR invalid session id [{channel.uuid}]"


def test_sendmsg_body_argument_and_event_uuid(switch, client):
    channel = switch.inbound_call(ScriptedEndpoint(), "5551234", "Bob", "7000")
    wait_until(lambda: channel.parked)
    client.command("event plain CHANNEL_EXECUTE_COMPLETE")
    client.send(f"sendmsg {channel.uuid}\ncall-command: execute\nexecute-app-name: set\n"
                "Event-UUID: d682f7c3-6501-451c-bc04-a695e9cf5a50\ncontent-type: text/plain",
                body="esl_ref_body_arg=value with spaces")
    assert client.frame().get("Reply-Text") == "+OK"
    done = client.events("CHANNEL_EXECUTE_COMPLETE")[-1]
    assert done.event("Application-UUID") == "d682f7c3-6501-451c-bc04-a695e9cf5a50"
    assert done.event("Application-Data") == "esl_ref_body_arg=value with spaces"
    assert switch.api(f"uuid_getvar {channel.uuid} esl_ref_body_arg") == "value with spaces"


def test_url_encoding_keeps_existing_escapes(switch, client):
    """switch_url_encode leaves a '%' followed by two hex digits alone."""
    client.command("event plain CUSTOM sim::test")
    event = switch.new_event("CUSTOM", "sim::test")
    event.add("Value", "50%41 off: a=b & c")
    switch.fire(event)
    frame = client.events("CUSTOM")[0]
    headers = frame.event_headers()
    assert headers[0] == ("Event-Subclass", "sim%3A%3Atest")
    assert headers[1] == ("Event-Name", "CUSTOM")
    assert ("Value", "50%41%20off%3A%20a%3Db%20%26%20c") in headers


def test_fault_injection_and_abrupt_close(esl_server, client):
    connection = next(iter(esl_server.connections))
    connection.send_raw(b"Garbage-\xff\xfe: x\n\n")
    assert client.frame().raw == b"Garbage-\xff\xfe: x\n\n"
    connection.close()
    assert client.closed()
    assert connection not in esl_server.connections


def test_server_stop_closes_every_connection(esl_server, client):
    esl_server.stop()
    assert client.frame().raw == (b"Content-Type: text/disconnect-notice\nContent-Length: 31\n\n"
                                  b"The system is being shut down.\n")
    assert client.closed()
