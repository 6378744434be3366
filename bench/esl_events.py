"""The two halves of engine/esl's Event Socket session, each beside greenswitch 0.0.19's stock
code doing the same work in the same run:

- esl_events_per_second: events framed, parsed and dispatched by the reader, on one core. The
  stream is the event frames of a real FreeSWITCH 1.10.12 call lifecycle
  (bench/data/call-lifecycle.esl, extracted byte-exact from
  ../shared/reference/call-lifecycle-raw.txt with `--extract`), repeated. Both readers get it
  through their real read paths (a socket-like object over memory, so no kernel noise) and both
  dispatch every event to a handler that routes it the way the engine does, by Event-Name and
  Unique-ID.
- esl_command_cpu_us (serial, and with 50 greenlets at once, as calls issue them): this
  process's CPU per api round trip (`uuid_exists`) over TCP to the simulated switch running in
  another process, so its side is not counted; kernel time for the socket calls is.

Prints one JSON line per figure.

    .venv/bin/python bench/esl_events.py [--smoke] [--events N] [--commands N]
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # as the engine runs (greenswitch's own socket must cooperate)

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from greenswitch.esl import ESLProtocol, InboundESL  # noqa: E402

from engine.esl import Node, NodeConfig  # noqa: E402
from engine.esl.connection import EslConnection  # noqa: E402
from tests.esl.reference import is_event, transcript_frames  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "call-lifecycle.esl"
COMMAND = "uuid_exists 6f1c8a56-2c3a-4d36-9a55-3b1f7c2e9d10"
# The simulated switch alone, in its own process: prints its port, serves until killed.
SWITCH = """
import gevent
from engine.simulator.clock import RealClock
from engine.simulator.server import EslServer
from engine.simulator.switch import Switch
server = EslServer(Switch(clock=RealClock(), hostname="sim1", switchname="sim1", seed=1), host="127.0.0.1", port=0,
                   password="ClueCon")
server.start()
print(server.port, flush=True)
gevent.wait()
"""


class MemorySocket:
    """recv() and recv_into() over bytes, as the kernel would hand them out."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def recv(self, n: int) -> bytes:
        return self._buf.read(n)

    def recv_into(self, buffer: bytearray) -> int:
        return self._buf.readinto(buffer)

    def close(self) -> None:
        pass


def run_engine(stream: bytes, expected: int) -> float:
    routed: dict[str, int] = {}

    def on_event(event) -> None:  # what the engine's router reads of every event
        key = event.unique_id or event.name
        routed[key] = routed.get(key, 0) + 1

    conn = EslConnection("memory", 0, "", node="bench", on_event=on_event, on_close=lambda r: None,
                         connect_timeout=1.0)
    conn.sock = MemorySocket(stream)
    started = time.perf_counter()
    conn.receive_events()
    elapsed = time.perf_counter() - started
    assert sum(routed.values()) == expected, (sum(routed.values()), expected)
    return expected / elapsed


def run_greenswitch(stream: bytes, expected: int) -> float:
    routed: dict[str, int] = {}
    done = gevent.event.Event()

    def on_event(event) -> None:
        key = event.headers.get("Unique-ID") or event.headers.get("Event-Name")
        routed[key] = routed.get(key, 0) + 1
        if sum(routed.values()) == expected:
            done.set()

    class StreamFile(io.BufferedReader):
        """greenswitch stops its handler greenlet at EOF: hold EOF back until all were handled."""

        def readline(self, *args):
            return super().readline(*args) or (done.wait() and b"")

    proto = ESLProtocol()
    proto.register_handle("*", on_event)
    proto.sock_file = StreamFile(io.BytesIO(stream))
    proto.connected = True
    processor = gevent.spawn(proto.process_events)
    started = time.perf_counter()
    proto.receive_events()
    elapsed = time.perf_counter() - started
    processor.kill()
    return expected / elapsed


def cpu_per_command(send, greenlets: int, commands: int) -> float:
    """This process's CPU seconds per command, `greenlets` at once sending `commands` in all."""
    each = commands // greenlets

    def worker() -> None:
        for _ in range(each):
            send()

    started = time.process_time()
    gevent.joinall([gevent.spawn(worker) for _ in range(greenlets)], raise_error=True)
    return (time.process_time() - started) / (each * greenlets)


def run_engine_commands(port: int, greenlets: int, commands: int) -> float:
    node = Node(NodeConfig(name="bench", port=port, heartbeat_timeout=3600), on_event=lambda event: None)
    node.start()
    try:
        assert node.wait_up(10), "the simulated switch did not accept the node"
        return cpu_per_command(lambda: node.api(COMMAND), greenlets, commands)
    finally:
        node.stop()


def run_greenswitch_commands(port: int, greenlets: int, commands: int) -> float:
    esl = InboundESL("127.0.0.1", port, "ClueCon")
    esl.connect()
    try:
        return cpu_per_command(lambda: esl.send(f"api {COMMAND}"), greenlets, commands)
    finally:
        esl.stop()


def command_figures(commands: int, rounds: int) -> None:
    switch = subprocess.Popen([sys.executable, "-c", SWITCH], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        port = int(switch.stdout.readline())
        for greenlets in (1, 50):
            engine = min(run_engine_commands(port, greenlets, commands) for _ in range(rounds))
            baseline = min(run_greenswitch_commands(port, greenlets, commands) for _ in range(rounds))
            print(json.dumps({
                "name": "esl_command_cpu_us", "value": round(engine * 1e6, 1), "unit": "us",
                "baseline": {"name": "greenswitch", "value": round(baseline * 1e6, 1)},
                "params": {"greenlets": greenlets, "commands": commands, "rounds": rounds, "command": f"api {COMMAND}",
                           "ratio": round(baseline / engine, 2)},
            }), flush=True)
    finally:
        switch.kill()
        switch.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run for CI")
    parser.add_argument("--events", type=int, default=20_000, help="events per measured run")
    parser.add_argument("--commands", type=int, default=5_000, help="api round trips per measured run")
    parser.add_argument("--extract", action="store_true", help=f"(re)write {DATA.name} from the reference transcript")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # greenswitch warns on every short read of a body
    if args.extract:
        DATA.parent.mkdir(exist_ok=True)
        DATA.write_bytes(b"".join(f for f in transcript_frames("call-lifecycle-raw.txt") if is_event(f)))
    one = DATA.read_bytes()
    per_copy = one.count(b"Content-Type: text/event-")
    target = 2_000 if args.smoke else args.events
    copies = max(1, target // per_copy)
    stream, expected = one * copies, per_copy * copies
    rounds = 1 if args.smoke else 3
    engine = max(run_engine(stream, expected) for _ in range(rounds))
    baseline = max(run_greenswitch(stream, expected) for _ in range(rounds))
    print(json.dumps({
        "name": "esl_events_per_second", "value": round(engine), "unit": "events/s",
        "baseline": {"name": "greenswitch", "value": round(baseline)},
        "params": {"events": expected, "bytes": len(stream), "rounds": rounds, "speedup": round(engine / baseline, 2),
                   "stream": f"{DATA.name} x{copies}"},
    }), flush=True)
    command_figures(200 if args.smoke else args.commands, rounds)


if __name__ == "__main__":
    main()
