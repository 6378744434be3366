"""engine.esl.Node over real TCP against a scripted switch: the greenswitch 0.0.19 defects
(one test each), reconnection, reply correlation, the heartbeat watchdog."""
from __future__ import annotations

import time

import gevent
import gevent.queue
import pytest

from engine.errors import CommandFailed, CommandTimeout, NotConnected, UnsafeValue
from engine.esl import Node, NodeConfig
from tests.esl.fakeswitch import FakeSwitch, plain_event

pytestmark = pytest.mark.timeout(30)

CALL_A = "914b207d-013f-4b49-a228-01503f0f3769"
CALL_B = "f63cb31d-7674-4f7d-b9d5-cbca733e9196"


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        gevent.sleep(0.01)


class Recorder:
    """Callbacks of one node, recorded."""

    def __init__(self) -> None:
        self.events: list = []
        self.ups = 0
        self.downs: list[str] = []

    def on_event(self, event) -> None:
        self.events.append(event)

    def on_up(self, node) -> None:
        self.ups += 1

    def on_down(self, node, reason: str) -> None:
        self.downs.append(reason)

    def named(self, name: str) -> list:
        return [e for e in self.events if e.name == name]


@pytest.fixture
def switch():
    fake = FakeSwitch().start()
    yield fake
    fake.stop()


@pytest.fixture
def make_node(switch):
    nodes = []

    def make(on_event=None, **overrides):
        rec = Recorder()
        settings = dict(name="fs1", port=switch.port, events=("CHANNEL_PARK", "CHANNEL_ANSWER"),
                        command_timeout=2.0, connect_timeout=2.0, backoff_initial=0.05, backoff_max=0.2)
        settings.update(overrides)
        node = Node(NodeConfig(**settings), on_event=on_event or rec.on_event, on_up=rec.on_up, on_down=rec.on_down)
        node.start()
        nodes.append(node)
        return node, rec

    yield make
    for node in nodes:
        node.stop()


def started(make_node, switch, **kw):
    node, rec = make_node(**kw)
    assert node.wait_up(5)
    return node, rec, switch.wait_connections(1)


# -- greenswitch defect 1: whole-frame url-decoding lets %0A inject headers -----------------
def test_encoded_newline_in_caller_id_name_stays_in_its_value(make_node, switch):
    node, rec, _ = started(make_node, switch)
    switch.emit({"Event-Name": "CHANNEL_PARK", "Unique-ID": CALL_A,
                 "Caller-Caller-ID-Name": f"Mallory\nUnique-ID: {CALL_B}\nEvent-Name: CHANNEL_HANGUP"})
    wait_for(lambda: rec.events)
    [event] = rec.events
    assert event.name == "CHANNEL_PARK" and event.unique_id == CALL_A
    assert event["Caller-Caller-ID-Name"] == f"Mallory\nUnique-ID: {CALL_B}\nEvent-Name: CHANNEL_HANGUP"
    assert event.node == "fs1"


# -- defect 2: an event's body is not kept apart from its headers --------------------------
def test_bgapi_result_is_the_job_body_and_foreign_jobs_reach_on_event(make_node, switch):
    output = "UP 0 years\nUnique-ID: not-a-header\n\nsessions: 3\n"
    switch.api_handlers["status"] = lambda arg: output
    node, rec, conn = started(make_node, switch)
    assert node.bgapi("status") == output
    # A BACKGROUND_JOB that is not ours (another client's job) goes to the engine, body apart.
    conn.send_raw(plain_event({"Event-Name": "BACKGROUND_JOB", "Job-UUID": CALL_B}, output))
    wait_for(lambda: rec.named("BACKGROUND_JOB"))
    [foreign] = rec.named("BACKGROUND_JOB")
    assert foreign.body == output and foreign.get("Unique-ID") is None


# -- defect 3: JSON events are not parsed --------------------------------------------------
def test_json_event_frames_are_parsed(make_node, switch):
    node, rec, conn = started(make_node, switch)
    body = b'{"Event-Name":"CHANNEL_ANSWER","Unique-ID":"%s","Caller-Caller-ID-Name":"Jos\\u00e9 %%41"}' % CALL_A.encode()
    conn.send_raw(b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body)
    wait_for(lambda: rec.events)
    assert rec.events[0].name == "CHANNEL_ANSWER" and rec.events[0].unique_id == CALL_A
    assert rec.events[0]["Caller-Caller-ID-Name"] == "José %41"  # json values are not url-encoded


# -- defect 4: send() uses send (may write part of a frame) and waits without a timeout -----
def test_large_command_is_written_whole(make_node, switch):
    switch.channels.add(CALL_A)
    node, rec, conn = started(make_node, switch)
    arg = "x" * (4 * 1024 * 1024)  # several socket buffers
    node.execute(CALL_A, "set", f"big={arg}", event_uuid=CALL_B)
    first, headers, body = conn.commands[-1]
    assert first == f"sendmsg {CALL_A}" and body.decode() == f"big={arg}"


def test_unanswered_command_times_out(make_node, switch):
    node, rec, conn = started(make_node, switch, command_timeout=0.2)
    switch.muted = True
    with pytest.raises(CommandTimeout):
        node.api("status")
    with pytest.raises(CommandTimeout):
        node.bgapi("status")


# -- defect 5: a drop leaves commands hanging, no DISCONNECT, no reconnect ------------------
def test_api_in_flight_when_the_connection_drops_raises_not_connected(make_node, switch):
    switch.api_block = 10.0
    node, rec, conn = started(make_node, switch, command_timeout=20.0)
    gevent.spawn_later(0.1, conn.close)
    with pytest.raises(NotConnected):
        node.api("status")
    wait_for(lambda: rec.downs)
    switch.api_block = 0.0
    wait_for(lambda: node.up and rec.ups == 2)
    assert node.api("status") == "UP 0 years\n"
    assert len(rec.downs) == 1


def test_pending_bgapi_is_released_when_the_connection_drops(make_node, switch):
    switch.job_delays["status"] = 10.0
    node, rec, conn = started(make_node, switch)
    job = node.bgapi_async("status")
    wait_for(lambda: conn.commands[-1][0] == "bgapi status")
    conn.close()
    with pytest.raises(NotConnected):
        job.get(timeout=5)


def test_reconnects_after_the_server_stops_and_comes_back(make_node, switch):
    node, rec, _ = started(make_node, switch)
    switch.stop()
    wait_for(lambda: rec.downs)
    assert not node.up
    with pytest.raises(NotConnected):
        node.api("status")
    gevent.sleep(0.3)  # a few failed attempts with backoff while the switch is away
    switch.start()
    assert node.wait_up(5)
    conn = switch.live()[-1]
    assert {"CHANNEL_PARK", "CHANNEL_ANSWER", "BACKGROUND_JOB", "HEARTBEAT"} <= conn.subscribed
    wait_for(lambda: rec.ups == 2)
    assert len(rec.downs) == 1
    switch.emit({"Event-Name": "CHANNEL_PARK", "Unique-ID": CALL_A})
    wait_for(lambda: rec.named("CHANNEL_PARK"))


def test_killed_listener_notice_is_the_reason_given(make_node, switch):
    node, rec, conn = started(make_node, switch)
    notice = b"killed listener because of lost events\n"
    conn.send_raw(b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(notice) + notice)
    conn.close()
    wait_for(lambda: rec.downs)
    assert "killed listener because of lost events" in rec.downs[0]
    assert node.wait_up(5)


# -- defect 6: a non-UTF-8 byte kills the reader while `connected` stays true ---------------
def test_non_utf8_bytes_do_not_kill_the_reader(make_node, switch):
    node, rec, conn = started(make_node, switch)
    inner = b"Event-Name: CHANNEL_PARK\nUnique-ID: " + CALL_A.encode() + b"\nCaller-Caller-ID-Name: caf\xe9\xff\n\n"
    conn.send_raw(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner)
    conn.send_raw(b"Content-Type: api/response\nContent-Length: 2\n\n\xff\xfe")  # an unsolicited reply
    wait_for(lambda: rec.events)
    assert rec.events[0]["Caller-Caller-ID-Name"] == "caf\ufffd\ufffd"
    assert node.api("status") == "UP 0 years\n"
    assert node.up and not rec.downs


# -- defect 7: a socket closed mid-body makes the reader spin ------------------------------
def test_socket_closed_mid_body_ends_the_session(make_node, switch):
    node, rec, conn = started(make_node, switch)
    reader = node._conn._receive_events_greenlet
    conn.send_raw(b"Content-Length: 1000\nContent-Type: text/event-plain\n\nEvent-Name: CHAN")
    gevent.sleep(0.05)
    conn.close()
    wait_for(lambda: rec.downs)
    assert reader.dead
    assert node.wait_up(5)


# -- defect 8: one slow handler delays every event behind it --------------------------------
def test_a_slow_call_does_not_hold_back_other_calls_or_replies(make_node, switch):
    inboxes = {CALL_A: gevent.queue.Queue(), CALL_B: gevent.queue.Queue()}
    handled = {CALL_A: [], CALL_B: []}
    release_a = gevent.event.Event()

    def call_worker(uuid):  # the engine's per-call greenlet
        for event in inboxes[uuid]:
            if uuid == CALL_A:
                release_a.wait()  # call A is busy (e.g. a slow database write)
            handled[uuid].append(event.name)

    workers = [gevent.spawn(call_worker, uuid) for uuid in inboxes]
    node, rec, _ = started(make_node, switch, on_event=lambda ev: inboxes[ev.unique_id].put(ev))
    switch.emit({"Event-Name": "CHANNEL_PARK", "Unique-ID": CALL_A})
    switch.emit({"Event-Name": "CHANNEL_PARK", "Unique-ID": CALL_B})
    switch.emit({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": CALL_B})
    wait_for(lambda: handled[CALL_B] == ["CHANNEL_PARK", "CHANNEL_ANSWER"])
    assert node.api("status") == "UP 0 years\n"
    assert handled[CALL_A] == []
    release_a.set()
    wait_for(lambda: handled[CALL_A] == ["CHANNEL_PARK"])
    gevent.killall(workers)


def test_a_failing_handler_does_not_kill_the_reader(make_node, switch):
    seen = []

    def on_event(event):
        seen.append(event.unique_id)
        raise RuntimeError("bug in the engine")

    node, rec, _ = started(make_node, switch, on_event=on_event)
    switch.emit({"Event-Name": "CHANNEL_PARK", "Unique-ID": CALL_A})
    switch.emit({"Event-Name": "CHANNEL_PARK", "Unique-ID": CALL_B})
    wait_for(lambda: seen == [CALL_A, CALL_B])
    assert node.api("status") == "UP 0 years\n" and not rec.downs


# -- correlation ---------------------------------------------------------------------------
def test_two_bgapi_answered_out_of_order_get_their_own_results(make_node, switch):
    switch.api_handlers["slow"] = lambda arg: f"slow {arg}\n"
    switch.api_handlers["fast"] = lambda arg: f"fast {arg}\n"
    switch.job_delays["slow 1"] = 0.3
    node, rec, conn = started(make_node, switch)
    slow = node.bgapi_async("slow 1")
    fast = node.bgapi_async("fast 2")
    assert fast.get(timeout=5) == "fast 2\n"
    assert not slow.ready()
    assert slow.get(timeout=5) == "slow 1\n"
    jobs = [headers["Job-UUID"] for first, headers, _ in conn.commands if first.startswith("bgapi")]
    assert len(set(jobs)) == 2
    assert not rec.named("BACKGROUND_JOB")  # ours are consumed by the node


def test_execute_sends_event_uuid_and_lock_and_reports_a_gone_channel(make_node, switch):
    switch.channels.add(CALL_A)
    node, rec, conn = started(make_node, switch)
    node.execute(CALL_A, "playback", "/sounds/hello world.wav", event_uuid=CALL_B)
    first, headers, body = conn.commands[-1]
    assert headers["Event-UUID"] == CALL_B and headers["event-lock"] == "true"
    assert headers["execute-app-name"] == "playback" and body == b"/sounds/hello world.wav"
    with pytest.raises(CommandFailed, match="invalid session id"):
        node.execute(CALL_B, "playback", "x.wav", event_uuid=CALL_A)
    with pytest.raises(CommandFailed, match="invalid session id"):
        node.hangup(CALL_B, "USER_BUSY")
    node.hangup(CALL_A)
    assert conn.commands[-1][1] == {"call-command": "hangup", "hangup-cause": "NORMAL_CLEARING"}


def test_unsafe_command_never_reaches_the_wire(make_node, switch):
    node, rec, conn = started(make_node, switch)
    sent = len(conn.commands)
    with pytest.raises(UnsafeValue):
        node.api("status\n\nexit")
    with pytest.raises(UnsafeValue):
        node.execute(CALL_A, "playback", "a\nexecute-app-name: hangup", event_uuid=CALL_B)
    assert len(conn.commands) == sent and node.up


# -- watchdog, auth, stop ------------------------------------------------------------------
def test_silent_switch_is_detected_and_the_connection_reset(make_node, switch):
    node, rec, conn = started(make_node, switch, heartbeat_timeout=0.2, command_timeout=0.2)
    switch.muted = True  # the TCP session stays open, nothing comes back
    wait_for(lambda: rec.downs)
    assert "api status" in rec.downs[0]
    assert any(first == "api status" for first, _, _ in conn.commands)
    switch.muted = False
    assert node.wait_up(5)


def test_heartbeats_keep_a_quiet_connection_up(make_node, switch):
    node, rec, conn = started(make_node, switch, heartbeat_timeout=0.3, command_timeout=0.2)
    for _ in range(8):
        switch.emit({"Event-Name": "HEARTBEAT"})
        gevent.sleep(0.1)
    assert not any(first == "api status" for first, _, _ in conn.commands)
    assert not rec.downs and len(rec.named("HEARTBEAT")) == 8


def test_wrong_password_keeps_retrying_and_never_comes_up(make_node, switch):
    node, rec = make_node(password="wrong")
    wait_for(lambda: len(switch.connections) >= 3)
    assert not node.up and rec.ups == 0 and rec.downs == []


def test_stop_says_exit_and_releases_waiters(make_node, switch):
    switch.job_delays["status"] = 10.0
    node, rec, conn = started(make_node, switch)
    job = node.bgapi_async("status")
    wait_for(lambda: conn.commands[-1][0] == "bgapi status")
    node.stop()
    with pytest.raises(NotConnected):
        job.get(timeout=1)
    assert conn.commands[-1][0] == "exit"
    assert rec.downs == ["stopped"] and not node.up
    with pytest.raises(NotConnected):
        node.api("status")
