"""Events per second framed, parsed and dispatched by engine/esl's reader, beside the same
recorded stream through greenswitch 0.0.19's stock reader, in one run, on one core.

The stream is the event frames of a real FreeSWITCH 1.10.12 call lifecycle
(bench/data/call-lifecycle.esl, extracted byte-exact from
../shared/reference/call-lifecycle-raw.txt with `--extract`), repeated. Both readers get it
through their real read paths (a socket-like object over memory, so no kernel noise) and both
dispatch every event to a handler that routes it the way the engine does, by Event-Name and
Unique-ID. Prints one JSON line per figure.

    .venv/bin/python bench/esl_events.py [--smoke] [--events N]
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from pathlib import Path

import gevent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from greenswitch.esl import ESLProtocol  # noqa: E402

from engine.esl.connection import EslConnection  # noqa: E402
from tests.esl.reference import is_event, transcript_frames  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "call-lifecycle.esl"


class MemorySocket:
    """recv_into() over bytes, as the kernel would hand them out."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run for CI")
    parser.add_argument("--events", type=int, default=20_000, help="events per measured run")
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
    }))


if __name__ == "__main__":
    main()
