"""The command pipeline of engine.esl over real TCP, against a scripted FreeSWITCH that answers
only when the test says so: replies that come back together (in one TCP segment, events between
them) reach their own callers, every pending command fails when the session drops, deadlines of
different lengths share one timer, a switch that stops reading commands ends the session."""
from __future__ import annotations

import gevent
import gevent.queue
import pytest
from gevent.server import StreamServer

from engine.errors import CommandTimeout, NotConnected
from engine.esl import Node, NodeConfig
from engine.simulator import wire
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(30)

UUID = "6f1c8a56-2c3a-4d36-9a55-3b1f7c2e9d10"


class ScriptedSwitch:
    """FreeSWITCH's side of inbound sessions: greets, accepts any password and subscription by
    itself, and hands every other command to the test, which answers with `send`."""

    def __init__(self) -> None:
        self.commands: gevent.queue.Queue = gevent.queue.Queue()  # wire.Request, in arrival order
        self.sessions = 0
        self.reading = True
        self._sock = None
        self._server = StreamServer(("127.0.0.1", 0), self._session)
        self._server.start()
        self.port = self._server.server_port

    def _session(self, sock, address) -> None:
        self.sessions += 1
        self._sock = sock
        parser = wire.RequestParser()
        sock.sendall(wire.auth_request())
        try:
            while self.reading and (data := sock.recv(65536)):
                for request in parser.feed(data):
                    if request.line.startswith("auth "):
                        sock.sendall(wire.command_reply("+OK accepted"))
                    elif request.line.startswith("event "):
                        sock.sendall(wire.command_reply("+OK event listener enabled plain"))
                    else:
                        self.commands.put(request)
            gevent.sleep(60)  # stopped reading: hold the session open, as a wedged switch would
        except OSError:
            pass

    def received(self, n: int) -> list[wire.Request]:
        return [self.commands.get(timeout=5) for _ in range(n)]

    def send(self, *frames: bytes) -> None:
        """All the frames in one write: the client reads them from one TCP segment."""
        self._sock.sendall(b"".join(frames))

    def drop(self) -> None:
        self._sock.close()

    def stop(self) -> None:
        self._server.stop(timeout=1)


@pytest.fixture
def switch():
    fake = ScriptedSwitch()
    yield fake
    fake.stop()


@pytest.fixture
def make_node(switch):
    nodes = []

    def make(**overrides):
        downs: list[str] = []
        settings = dict(name="fs1", port=switch.port, command_timeout=5.0, connect_timeout=2.0,
                        backoff_initial=0.05, backoff_max=0.2, heartbeat_timeout=600.0)
        settings.update(overrides)
        node = Node(NodeConfig(**settings), on_event=events.append,
                    on_down=lambda node, reason: downs.append(reason))
        node.start()
        assert node.wait_up(5)
        nodes.append(node)
        return node, downs

    events: list = []
    make.events = events
    yield make
    for node in nodes:
        node.stop()


def background(fn, *args, **kwargs):
    """fn(*args) in a greenlet whose value is fn's result or the exception it raised."""
    def run():
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            return exc

    return gevent.spawn(run)


def test_pipelined_commands_whose_replies_come_in_one_segment_each_get_their_own(switch, make_node):
    node, downs = make_node()
    callers = [background(node.api, f"echo {i}") for i in range(5)]
    job = node.bgapi_async("status")
    requests = switch.received(6)
    assert sorted(r.line for r in requests) == ["api echo 0", "api echo 1", "api echo 2", "api echo 3",
                                                "api echo 4", "bgapi status"]
    replies = []
    for request in requests:  # in the order they came, as FreeSWITCH answers
        if request.line == "bgapi status":
            job_uuid = request.header("Job-UUID")
            replies.append(wire.command_reply(f"+OK Job-UUID: {job_uuid}", ("Job-UUID", job_uuid)))
        else:
            replies.append(wire.api_response(request.line.split()[-1] + "\n"))
    park = wire.event_frame([("Event-Name", "CHANNEL_PARK"), ("Unique-ID", UUID)], None, "plain")
    done = wire.event_frame([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job_uuid)], "UP 0 years\n", "plain")
    switch.send(*replies[:3], park, *replies[3:], done)
    assert [c.get(timeout=5) for c in callers] == ["0\n", "1\n", "2\n", "3\n", "4\n"]
    assert job.get(timeout=5) == "UP 0 years\n"
    assert [e.unique_id for e in make_node.events] == [UUID]  # the event between the replies, and only it
    assert not downs


def test_a_drop_fails_every_pending_command_and_the_node_reconnects(switch, make_node):
    node, downs = make_node()
    job = node.bgapi_async("status")  # written first
    callers = [background(node.api, f"echo {i}") for i in range(4)]
    accept, *_ = switch.received(5)
    job_uuid = accept.header("Job-UUID")
    switch.send(wire.command_reply(f"+OK Job-UUID: {job_uuid}", ("Job-UUID", job_uuid)))  # the job runs
    switch.drop()
    for caller in callers:
        assert isinstance(caller.get(timeout=5), NotConnected)
    with pytest.raises(NotConnected, match="the job's result is lost"):
        job.get(timeout=5)
    assert node.wait_up(5) and switch.sessions == 2
    again = background(node.api, "echo again")
    switch.received(1)
    switch.send(wire.api_response("again\n"))
    assert again.get(timeout=5) == "again\n"
    assert len(downs) == 1


def test_a_short_deadline_behind_a_long_one_expires_first_and_keeps_its_reply_slot(switch, make_node):
    node, downs = make_node()
    slow = background(node.api, "slow", timeout=10)
    switch.received(1)
    with pytest.raises(CommandTimeout):
        node.api("quick", timeout=0.2)
    assert not slow.ready()
    switch.received(1)
    after = background(node.api, "after")
    switch.received(1)
    switch.send(wire.api_response("slow\n"), wire.api_response("quick\n"), wire.api_response("after\n"))
    assert slow.get(timeout=5) == "slow\n"
    assert after.get(timeout=5) == "after\n"  # the late reply to "quick" was not taken for it
    assert node.up and not downs


def test_a_bgapi_whose_acceptance_never_comes_fails_with_command_timeout(switch, make_node):
    node, downs = make_node(command_timeout=0.2)
    job = node.bgapi_async("status")
    switch.received(1)
    with pytest.raises(CommandTimeout):
        job.get(timeout=5)
    assert node.up and not downs


def test_a_switch_that_stops_reading_commands_ends_the_session(switch, make_node):
    node, downs = make_node(command_timeout=0.3)
    switch.reading = False
    big = "x" * (16 * 1024 * 1024)  # more than the socket buffers of both sides hold
    with pytest.raises(NotConnected, match="write stalled"):
        node.api(f"echo {big}")
    wait_until(lambda: downs, what="the node to see the session end")
    assert "write stalled" in downs[0]
