"""An event burst ten times the engine's normal rate, over the simulated switch's Event Socket
connection to a `callrouter run` process, while calls flow: FreeSWITCH never has a reason to drop
the engine's listener (the engine keeps draining its socket, so the events waiting for it never
pile up towards mod_event_socket's 100,000-event queue), every event of the burst reaches the
engine, callers keep reaching agents, and the engine's memory stays bounded.

The normal rate: the events per call measured here, times the calls per second the engine
carries in bench/e2e.py (about 30, bench/README.md). The burst is real frames captured from
FreeSWITCH 1.10.12 (../shared/reference/events/plain): DTMF on the engine's own callers (keys
mashed while they wait or talk), and execute-complete and hangup-complete events of channels
that are not the engine's (the rest of a busy switch's traffic, which a by-name subscription
receives too). The frames are written by the switch's own connection (between whole frames of
its events); what has been produced but not yet taken by the engine's socket is the backlog that
mod_event_socket would hold in the listener's queue.
"""
from __future__ import annotations

import time
import uuid as uuidlib
from collections import deque
from pathlib import Path

import gevent
import pytest

from tests.ha.harness import wait_until
from tests.postgres import OwnServer
from tests.reliability.harness import Centre, EngineProcess

pytestmark = pytest.mark.timeout(150)

REFERENCE = Path("/work/shared/reference/events/plain")
FOREIGN = ("CHANNEL_EXECUTE_COMPLETE-playback.txt", "CHANNEL_HANGUP_COMPLETE.txt")
NORMAL_CALLS_PER_SECOND = 30  # what the engine carries in bench/e2e.py
BURST_SECONDS = 4.0
CALL_EVERY = 0.4
FREESWITCH_QUEUE = 100_000  # mod_event_socket's MAX_QUEUE_LEN: past it, events are lost and the listener killed
BACKLOG_BOUND = FREESWITCH_QUEUE // 10
MEMORY_BOUND = 64 * 1024 * 1024  # bytes of RSS growth over the burst; the burst itself is several times that


def template(name: str) -> tuple[bytes, bytes]:
    """A captured frame and the Unique-ID it carries (every copy of which a burst frame replaces)."""
    frame = (REFERENCE / name).read_bytes()
    block = frame.split(b"\n\n", 1)[1]
    unique_id = next(line.split(b": ", 1)[1] for line in block.split(b"\n") if line.startswith(b"Unique-ID: "))
    return frame, unique_id


class Burst:
    """Produces frames at `rate` per second for `seconds` and writes them to the engine's connection."""

    def __init__(self, connection, rate: float, seconds: float, live_callers: list[str]) -> None:
        self.connection = connection
        self.rate = rate
        self.seconds = seconds
        self.dtmf = template("DTMF.txt")
        self.foreign = [template(name) for name in FOREIGN]
        self.live = [uuid.encode() for uuid in live_callers]
        self.backlog: deque[bytes] = deque()
        self.produced = 0
        self.bytes = 0
        self.max_backlog = 0
        self.done = False

    def _frame(self, n: int) -> bytes:
        if n % 3 == 0 and self.live:
            frame, old = self.dtmf
            return frame.replace(old, self.live[n % len(self.live)])
        frame, old = self.foreign[n % 2]
        return frame.replace(old, str(uuidlib.uuid4()).encode())

    def produce(self) -> None:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < self.seconds:
            while self.produced < int(self.rate * elapsed):
                frame = self._frame(self.produced)
                self.backlog.append(frame)
                self.produced += 1
                self.bytes += len(frame)
            self.max_backlog = max(self.max_backlog, len(self.backlog))
            gevent.sleep(0.01)
        self.done = True

    def send(self) -> None:
        while not (self.done and not self.backlog):
            if not self.backlog:
                gevent.sleep(0.005)
                continue
            chunk = [self.backlog.popleft() for _ in range(min(64, len(self.backlog)))]
            self.connection.send_raw(b"".join(chunk))  # blocks while the engine's socket is full


@pytest.fixture
def pg(tmp_path):
    server = OwnServer(tmp_path / "pg")
    yield server
    server.server.cleanup()


def test_a_burst_of_ten_times_the_normal_rate_keeps_the_listener_and_bounded_memory(tmp_path, pg):
    centre = Centre(tmp_path, agents="1001-1004", talk=1.0)
    centre.start()
    engine = EngineProcess(tmp_path, centre, pg.dsn, greeting_ms=300, agents=["1001", "1002", "1003", "1004"])
    try:
        engine.start()
        [connection] = centre.node.server.connections
        for _ in range(6):
            centre.place()
            time.sleep(CALL_EVERY)
        wait_until(lambda: len(centre.inbound()) == 6, 30, "the warm-up calls to end")
        per_call = engine.metric("callrouter_esl_events_received_total") / 6
        rate = 10 * NORMAL_CALLS_PER_SECOND * per_call

        placed = [centre.place() for _ in range(3)]
        wait_until(lambda: all(centre.node.switch.channels[u].variables.get("callrouter_stage") in ("queue", "talking")
                               for u in placed if u in centre.node.switch.channels), 10, "callers queued or talking")
        received_before = engine.metric("callrouter_esl_events_received_total")
        rss_before = engine.rss()
        burst = Burst(connection, rate, BURST_SECONDS, [u for u in placed if u in centre.node.switch.channels])
        rss_peak = rss_before
        began = time.time()
        workers = [gevent.spawn(burst.produce), gevent.spawn(burst.send)]
        while not all(w.dead for w in workers):
            rss_peak = max(rss_peak, engine.rss())
            if time.time() - began < BURST_SECONDS:
                centre.place()  # calls keep arriving during the burst
            gevent.sleep(CALL_EVERY)
        gevent.joinall(workers, raise_error=True)

        wait_until(lambda: not centre.node.switch.channels, 60, "every call to end")
        wait_until(lambda: engine.metric("callrouter_esl_events_received_total") - received_before >= burst.produced,
                   20, "the engine to count every event of the burst")
        output = engine.output()
        assert engine.terminate() == 0, engine.output()[-3000:]
    finally:
        centre.stop()
        engine.ensure_dead()

    assert burst.produced >= rate * BURST_SECONDS * 0.99, "the burst ran at ten times the normal rate"
    assert not connection.killed and connection.lost == 0
    assert "connection down" not in output, "the engine's listener stayed up through the burst"
    assert burst.max_backlog < BACKLOG_BOUND, \
        f"{burst.max_backlog} events waited for the engine: it fell behind towards FreeSWITCH's kill"
    assert rss_peak - rss_before < MEMORY_BOUND < burst.bytes, \
        f"the engine grew {(rss_peak - rss_before) >> 20} MiB over a {burst.bytes >> 20} MiB burst"
    during = [r for r in centre.inbound() if began < r.arrived_at < began + BURST_SECONDS]
    assert during and all(r.agent for r in centre.inbound()), "callers kept reaching agents through the burst"
