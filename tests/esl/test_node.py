"""engine.esl.Node over real TCP against the simulated switch (engine.simulator): the
greenswitch 0.0.19 defects (one test each, provoked by real calls, real api/bgapi and the
server's fault injection), reconnection, reply correlation, the heartbeat watchdog."""
from __future__ import annotations

import time

import gevent
import gevent.event
import gevent.queue
import gevent.socket
import pytest
from gevent.server import StreamServer

from engine.errors import CommandFailed, CommandTimeout, NotConnected, UnsafeValue
from engine.esl import Node, NodeConfig
from engine.simulator import wire
from engine.simulator.clock import RealClock
from engine.simulator.server import EslServer
from engine.simulator.switch import Switch
from tests.simulator.conftest import EslClient, ScriptedEndpoint

pytestmark = pytest.mark.timeout(30)

NOBODY = "1001"  # a registered phone that rings and is never answered
SUBSCRIBED = {"CHANNEL_PARK", "CHANNEL_ANSWER", "BACKGROUND_JOB", "HEARTBEAT"}
PLAY = "0b4cbd38-36a4-4a4c-9f46-2c6cc9a1b7a1"
SET = "5d0f2f5e-7a66-4f3e-8d44-0d5a0a1f6c2b"


def wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        gevent.sleep(0.01)


def unanswered(seconds: float) -> str:
    """An originate that holds FreeSWITCH's listener for `seconds` (the phone only rings)."""
    return f"originate {{originate_timeout={seconds}}}user/{NOBODY} &park()"


def background(fn, *args):
    """fn(*args) in a greenlet whose value is fn's result or the exception it raised."""
    def run():
        try:
            return fn(*args)
        except Exception as exc:
            return exc

    return gevent.spawn(run)


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


class Bus:
    """What the switch itself did, from its own event bus (every api and bgapi fires API)."""

    def __init__(self, switch: Switch) -> None:
        self.events: list = []
        switch.subscribe(self.events.append)

    def named(self, name: str, uuid: str | None = None) -> list:
        return [e for e in self.events if e.name == name and (uuid is None or e.unique_id == uuid)]

    def api_commands(self) -> list[str]:
        return [e.get("API-Command") for e in self.named("API")]


class WireTap:
    """A TCP relay between a node and the simulator that keeps every byte the node wrote."""

    def __init__(self, upstream_port: int) -> None:
        self.written = bytearray()
        self._upstream_port = upstream_port
        self._server = StreamServer(("127.0.0.1", 0), self._relay)
        self._server.start()
        self.port = self._server.server_port

    def _relay(self, client, address) -> None:
        upstream = gevent.socket.create_connection(("127.0.0.1", self._upstream_port))
        back = gevent.spawn(self._pump, upstream, client, None)
        self._pump(client, upstream, self.written)
        back.join()

    @staticmethod
    def _pump(src, dst, record: bytearray | None) -> None:
        try:
            while data := src.recv(65536):
                if record is not None:
                    record += data
                dst.sendall(data)
        except OSError:
            pass
        finally:  # either side's close ends both, as a cut cable would
            src.close()
            dst.close()

    def stop(self) -> None:
        self._server.stop(timeout=1)


@pytest.fixture
def switch():
    sw = Switch(clock=RealClock(), hostname="sim1", switchname="sim1", seed=11)
    sw.register_user(NOBODY, ScriptedEndpoint("phone:1001", on_offer="ignore"))
    yield sw
    sw.shutdown()


@pytest.fixture
def server(switch):
    srv = EslServer(switch, host="127.0.0.1", port=0, password="ClueCon")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def make_node(server):
    nodes = []

    def make(on_event=None, **overrides):
        rec = Recorder()
        settings = dict(name="fs1", port=server.port, events=("CHANNEL_PARK", "CHANNEL_ANSWER"),
                        command_timeout=2.0, connect_timeout=2.0, backoff_initial=0.05, backoff_max=0.2)
        settings.update(overrides)
        node = Node(NodeConfig(**settings), on_event=on_event or rec.on_event, on_up=rec.on_up, on_down=rec.on_down)
        node.start()
        nodes.append(node)
        return node, rec

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture
def tap(server):
    relay = WireTap(server.port)
    yield relay
    relay.stop()


def listener(server: EslServer):
    """The server's side of the one subscribed client connection."""
    wait_for(lambda: any(c.listening for c in server.connections))
    [conn] = [c for c in server.connections if c.listening]
    return conn


def started(make_node, server, **kw):
    node, rec = make_node(**kw)
    assert node.wait_up(5)
    return node, rec, listener(server)


def parked_call(switch: Switch, cid_name: str = "Bob", variables: dict[str, str] | None = None):
    channel = switch.inbound_call(ScriptedEndpoint(), "5551000", cid_name, "1000", variables)
    wait_for(lambda: channel.parked)
    return channel


# -- greenswitch defect 1: whole-frame url-decoding lets %0A inject headers -----------------
def test_encoded_newline_in_caller_id_name_stays_in_its_value(make_node, switch, server):
    node, rec, _ = started(make_node, server)
    evil = ("Evil\nContent-Type: api/response\nUnique-ID: 00000000-0000-4000-8000-000000000000"
            "\nEvent-Name: CHANNEL_HANGUP")
    channel = parked_call(switch, evil)
    wait_for(lambda: rec.events)
    [event] = rec.events
    assert event.name == "CHANNEL_PARK" and event.unique_id == channel.uuid
    assert event["Caller-Caller-ID-Name"] == evil
    assert event.node == "fs1"
    assert node.api("status").startswith("UP ")  # the forged Content-Type took no reply slot


# -- defect 2: an event's body is not kept apart from its headers --------------------------
def test_bgapi_result_is_the_job_body_and_foreign_jobs_reach_on_event(make_node, switch, server):
    note = "first\nUnique-ID: not-a-header\n\nContent-Length: 3\nlast"
    node, rec, _ = started(make_node, server)
    other, _ = make_node(name="fs2")  # another client of the same switch
    assert other.wait_up(5)
    channel = parked_call(switch, variables={"note": note})
    assert node.bgapi(f"uuid_getvar {channel.uuid} note") == note
    assert not rec.named("BACKGROUND_JOB")  # our own job's event is consumed by the node
    # FreeSWITCH sends every BACKGROUND_JOB to every subscriber: the other client's reaches
    # on_event, its body apart.
    assert other.bgapi(f"uuid_getvar {channel.uuid} note") == note
    wait_for(lambda: rec.named("BACKGROUND_JOB"))
    [foreign] = rec.named("BACKGROUND_JOB")
    assert foreign.body == note and foreign.get("Unique-ID") is None
    assert foreign["Job-Command"] == "uuid_getvar"


# -- defect 3: JSON events are not parsed --------------------------------------------------
def test_json_event_frames_are_parsed(make_node, switch, server):
    bus = Bus(switch)
    node, rec, conn = started(make_node, server)
    channel = parked_call(switch, "José Müller")
    wait_for(lambda: rec.named("CHANNEL_PARK"))
    [park] = bus.named("CHANNEL_PARK", channel.uuid)
    conn.send_raw(wire.event_frame(park.headers, park.body, "json"))  # the same event, as json
    wait_for(lambda: len(rec.named("CHANNEL_PARK")) == 2)
    plain, as_json = rec.named("CHANNEL_PARK")
    assert (plain.content_type, as_json.content_type) == ("text/event-plain", "text/event-json")
    assert as_json.unique_id == channel.uuid and as_json["Caller-Caller-ID-Name"] == "José Müller"
    assert as_json.headers() == plain.headers()


# -- defect 4: send() uses send (may write part of a frame) and waits without a timeout -----
def test_large_command_is_written_whole(make_node, switch, server):
    node, rec, _ = started(make_node, server)
    channel = parked_call(switch)
    big = "x" * (4 * 1024 * 1024)  # several socket buffers
    node.execute(channel.uuid, "set", f"big={big}", event_uuid=SET)
    wait_for(lambda: "big" in channel.variables)
    assert channel.variables["big"] == big
    assert node.api(f"uuid_getvar {channel.uuid} big") == big  # and a 4 MiB reply read whole


def test_unanswered_command_times_out(make_node, switch, server):
    node, rec, _ = started(make_node, server, command_timeout=0.2)
    with pytest.raises(CommandTimeout):
        node.api(unanswered(0.6))
    with pytest.raises(CommandTimeout):
        node.bgapi("status")  # its +OK waits behind the originate
    # The late replies land in the slots of the commands that gave up on them.
    assert node.api("status", timeout=5).startswith("UP ")
    assert node.up and not rec.downs


# -- defect 5: a drop leaves commands hanging, no DISCONNECT, no reconnect ------------------
def test_api_in_flight_when_the_connection_drops_raises_not_connected(make_node, switch, server):
    bus = Bus(switch)
    node, rec, conn = started(make_node, server, command_timeout=20.0)
    pending = background(node.api, unanswered(10))
    wait_for(lambda: "originate" in bus.api_commands())
    conn.close()
    assert isinstance(pending.get(timeout=5), NotConnected)
    wait_for(lambda: node.up and rec.ups == 2)
    assert node.api("status").startswith("UP ")
    assert len(rec.downs) == 1


def test_pending_bgapi_is_released_when_the_connection_drops(make_node, switch, server):
    bus = Bus(switch)
    node, rec, conn = started(make_node, server)
    job = node.bgapi_async(unanswered(10))
    wait_for(lambda: "originate" in bus.api_commands())
    conn.close()
    with pytest.raises(NotConnected):
        job.get(timeout=5)


def test_reconnects_after_the_switch_restarts(make_node, switch, server):
    node, rec, _ = started(make_node, server)
    port = server.port
    server.stop()
    wait_for(lambda: rec.downs)
    assert "The system is being shut down." in rec.downs[0]
    assert not node.up
    with pytest.raises(NotConnected):
        node.api("status")
    gevent.sleep(0.3)  # a few refused attempts with backoff while the switch is away
    revived = EslServer(switch, host="127.0.0.1", port=port, password="ClueCon")
    revived.start()
    try:
        assert node.wait_up(5)
        assert SUBSCRIBED <= listener(revived).names
        wait_for(lambda: rec.ups == 2)
        assert len(rec.downs) == 1
        channel = parked_call(switch)
        wait_for(lambda: [e.unique_id for e in rec.named("CHANNEL_PARK")] == [channel.uuid])
    finally:
        revived.stop()


def test_killed_listener_notice_is_the_reason_given(make_node, switch, server):
    server.queue_limit, server.max_missed = 3, 2
    bus = Bus(switch)
    node, rec, conn = started(make_node, server, command_timeout=5.0)
    # FreeSWITCH writes no event to a listener while its api runs: the queue fills, events
    # are lost, the listener is killed.
    background(node.api, unanswered(0.5))
    wait_for(lambda: "originate" in bus.api_commands())
    for _ in range(6):
        parked_call(switch)
    assert conn.killed
    wait_for(lambda: rec.downs)
    assert "killed listener because of lost events" in rec.downs[0]
    assert node.wait_up(5)


# -- defect 6: a non-UTF-8 byte kills the reader while `connected` stays true ---------------
def test_non_utf8_bytes_do_not_kill_the_reader(make_node, switch, server):
    bus = Bus(switch)
    node, rec, conn = started(make_node, server)
    latin1 = "caf\udce9\udcff"  # a SIP display name in Latin-1: FreeSWITCH passes its bytes on
    channel = parked_call(switch, latin1)
    wait_for(lambda: rec.events)
    assert rec.events[0]["Caller-Caller-ID-Name"] == "caf\ufffd\ufffd"  # url-encoded in plain events
    getvar = f"uuid_getvar {channel.uuid} sip_from_display"
    assert node.api(getvar) == "caf\ufffd\ufffd"  # raw bytes in an api/response
    assert node.bgapi(getvar) == "caf\ufffd\ufffd"  # raw bytes in a BACKGROUND_JOB body
    [park] = bus.named("CHANNEL_PARK", channel.uuid)
    conn.send_raw(wire.event_frame(park.headers, park.body, "json"))  # raw bytes in json
    wait_for(lambda: len(rec.events) == 2)
    assert rec.events[1]["Caller-Caller-ID-Name"] == "caf\ufffd\ufffd"
    assert node.api("status").startswith("UP ")
    assert node.up and not rec.downs


# -- defect 7: a socket closed mid-body makes the reader spin ------------------------------
def test_socket_closed_mid_body_ends_the_session(make_node, switch, server):
    bus = Bus(switch)
    node, rec, conn = started(make_node, server)
    reader = node._conn._receive_events_greenlet
    channel = parked_call(switch)
    wait_for(lambda: rec.events)
    [park] = bus.named("CHANNEL_PARK", channel.uuid)
    frame = wire.event_frame(park.headers, park.body, "plain")
    conn.send_raw(frame[:len(frame) // 2])
    conn.close()
    wait_for(lambda: rec.downs)
    assert reader.dead
    assert len(rec.events) == 1
    assert node.wait_up(5)


def test_garbage_ends_the_session_and_the_node_reconnects(make_node, switch, server):
    node, rec, conn = started(make_node, server)
    conn.send_raw(b"Content-Length: lots\nContent-Type: text/event-plain\n\n")
    wait_for(lambda: rec.downs)
    assert "protocol error" in rec.downs[0]
    assert conn.closed  # the node hung up on it
    wait_for(lambda: node.up and rec.ups == 2)
    assert node.api("status").startswith("UP ")


# -- defect 8: one slow handler delays every event behind it --------------------------------
def test_a_slow_call_does_not_hold_back_other_calls_or_replies(make_node, switch, server):
    release = gevent.event.Event()
    slow: set[str] = set()
    handled: dict[str, list[str]] = {}
    inboxes: dict[str, gevent.queue.Queue] = {}
    workers = []

    def call_worker(uuid, inbox):  # the engine's per-call greenlet
        for event in inbox:
            if uuid in slow:
                release.wait()  # this call is busy (e.g. a slow database write)
            handled.setdefault(uuid, []).append(event.name)

    def dispatch(event):
        if event.unique_id not in inboxes:
            inboxes[event.unique_id] = gevent.queue.Queue()
            workers.append(gevent.spawn(call_worker, event.unique_id, inboxes[event.unique_id]))
        inboxes[event.unique_id].put(event)

    node, rec, _ = started(make_node, server, on_event=dispatch)
    a = switch.inbound_call(ScriptedEndpoint(), "5551000", "A", "1000")
    slow.add(a.uuid)
    b = parked_call(switch, "B")
    assert node.api(f"uuid_answer {b.uuid}") == "+OK\n"
    wait_for(lambda: handled.get(b.uuid) == ["CHANNEL_PARK", "CHANNEL_ANSWER"])
    assert node.api("status").startswith("UP ")
    assert a.uuid in inboxes and a.uuid not in handled
    release.set()
    wait_for(lambda: handled.get(a.uuid) == ["CHANNEL_PARK"])
    gevent.killall(workers)


def test_a_failing_handler_does_not_kill_the_reader(make_node, switch, server):
    seen = []

    def on_event(event):
        seen.append(event.unique_id)
        raise RuntimeError("bug in the engine")

    node, rec, _ = started(make_node, server, on_event=on_event)
    a = parked_call(switch, "A")
    b = parked_call(switch, "B")
    wait_for(lambda: seen == [a.uuid, b.uuid])
    assert node.api("status").startswith("UP ") and not rec.downs


# -- correlation ---------------------------------------------------------------------------
def test_two_bgapi_answered_out_of_order_get_their_own_results(make_node, switch, server):
    agent = ScriptedEndpoint("agent:1002", ring_seconds=0.3)
    switch.register_user("1002", agent)
    bus = Bus(switch)
    node, rec, _ = started(make_node, server)
    slow = node.bgapi_async("originate user/1002 &park()")
    fast = node.bgapi_async("status")
    assert fast.get(timeout=5).startswith("UP ")
    assert not slow.ready()
    assert slow.get(timeout=5) == f"+OK {agent.legs[0].uuid}\n"
    jobs = bus.named("BACKGROUND_JOB")
    assert [job.get("Job-Command") for job in jobs] == ["status", "originate"]  # answered out of order
    assert len({job.get("Job-UUID") for job in jobs}) == 2
    assert not rec.named("BACKGROUND_JOB")  # ours are consumed by the node


@pytest.mark.parametrize("lock, order", [
    (True, [("CHANNEL_EXECUTE", PLAY), ("CHANNEL_EXECUTE_COMPLETE", PLAY),
            ("CHANNEL_EXECUTE", SET), ("CHANNEL_EXECUTE_COMPLETE", SET)]),
    # unlocked, FreeSWITCH runs it inside the playback
    (False, [("CHANNEL_EXECUTE", PLAY), ("CHANNEL_EXECUTE", SET),
             ("CHANNEL_EXECUTE_COMPLETE", SET), ("CHANNEL_EXECUTE_COMPLETE", PLAY)]),
])
def test_execute_is_tracked_by_event_uuid_and_honours_the_lock(make_node, switch, server, lock, order):
    bus = Bus(switch)
    node, rec, _ = started(make_node, server)
    channel = parked_call(switch)
    node.execute(channel.uuid, "playback", "silence_stream://300", event_uuid=PLAY)
    node.execute(channel.uuid, "set", "greeting=hello world", event_uuid=SET, lock=lock)
    wait_for(lambda: {e.get("Application-UUID") for e in bus.named("CHANNEL_EXECUTE_COMPLETE", channel.uuid)}
             >= {PLAY, SET})
    ours = [(e.name, e.get("Application-UUID")) for e in bus.events
            if e.unique_id == channel.uuid and e.get("Application-UUID") in (PLAY, SET)]
    assert ours == order
    assert channel.variables["greeting"] == "hello world"


def test_hangup_carries_its_cause_and_a_gone_channel_is_reported(make_node, switch, server):
    bus = Bus(switch)
    node, rec, _ = started(make_node, server)
    a, b = parked_call(switch, "A"), parked_call(switch, "B")
    node.hangup(a.uuid)
    node.hangup(b.uuid, "USER_BUSY")
    wait_for(lambda: len(bus.named("CHANNEL_HANGUP_COMPLETE")) == 2)
    assert {e.unique_id: e.get("Hangup-Cause") for e in bus.named("CHANNEL_HANGUP_COMPLETE")} == \
        {a.uuid: "NORMAL_CLEARING", b.uuid: "USER_BUSY"}
    with pytest.raises(CommandFailed, match="invalid session id"):
        node.execute(a.uuid, "playback", "silence_stream://100", event_uuid=PLAY)
    with pytest.raises(CommandFailed, match="invalid session id"):
        node.hangup(b.uuid)


def test_unsafe_command_never_reaches_the_wire(tap, make_node, switch, server):
    node, rec = make_node(port=tap.port)
    assert node.wait_up(5)
    conn = listener(server)
    channel = parked_call(switch)
    node.api("status")
    sent = bytes(tap.written)
    with pytest.raises(UnsafeValue):
        node.api("status\n\nexit")
    with pytest.raises(UnsafeValue):
        node.execute(channel.uuid, "playback", "a\nexecute-app-name: hangup", event_uuid=PLAY)
    assert bytes(tap.written) == sent
    assert node.up and not conn.closed and channel.is_up


# -- watchdog, auth, stop ------------------------------------------------------------------
def test_silent_switch_is_detected_and_the_connection_reset(make_node, switch, server):
    bus = Bus(switch)
    node, rec, _ = started(make_node, server, heartbeat_timeout=0.2, command_timeout=0.2)
    # A blocking api silences the listener: no event, no reply, the TCP session stays open.
    held = background(node.api, unanswered(2), 5.0)
    wait_for(lambda: "originate" in bus.api_commands())
    wait_for(lambda: rec.downs)
    assert "api status" in rec.downs[0]
    assert isinstance(held.get(timeout=5), NotConnected)
    assert node.wait_up(5)


def test_heartbeats_keep_a_quiet_connection_up(make_node, switch, server):
    bus = Bus(switch)
    node, rec, _ = started(make_node, server, heartbeat_timeout=0.3, command_timeout=0.2)
    pulse = EslClient(server.port)  # fires HEARTBEAT through the switch, as its timer does
    try:
        pulse.frame()
        pulse.command("auth ClueCon")
        for _ in range(8):
            assert pulse.command("sendevent HEARTBEAT").get("Reply-Text").startswith("+OK")
            gevent.sleep(0.1)
    finally:
        pulse.close()
    wait_for(lambda: len(rec.named("HEARTBEAT")) == 8)
    assert "status" not in bus.api_commands()  # the watchdog never needed to probe
    assert not rec.downs


def test_wrong_password_keeps_retrying_until_it_is_accepted(make_node, switch, server):
    server.password = "not-this-one"
    node, rec = make_node()
    assert not node.wait_up(0.5)
    assert rec.ups == 0 and rec.downs == []  # a refused login is not a lost connection
    server.password = "ClueCon"
    assert node.wait_up(5)
    wait_for(lambda: rec.ups == 1)


def test_stop_says_exit_and_releases_waiters(tap, make_node, switch, server):
    bus = Bus(switch)
    node, rec = make_node(port=tap.port)
    assert node.wait_up(5)
    job = node.bgapi_async(unanswered(10))
    wait_for(lambda: "originate" in bus.api_commands())
    node.stop()
    with pytest.raises(NotConnected):
        job.get(timeout=1)
    assert tap.written.endswith(b"exit\n\n")
    assert rec.downs == ["stopped"] and not node.up
    with pytest.raises(NotConnected):
        node.api("status")
