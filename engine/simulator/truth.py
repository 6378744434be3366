"""Ground truth: what really happened to each simulated call, as its far ends lived it.

The simulated callers and destinations fill a CallRecord as things happen to them (prompts heard,
digits pressed, bridged to which agent, who hung up); the TruthRecorder writes each finished call
as one JSON line, flushed at once, so a test can compare the engine's CDRs and queue statistics
with reality while the simulation is still running.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Callable, TextIO


@dataclass
class Heard:
    at: float
    kind: str    # "playback", "prompt", "record", "say" (Endpoint.on_media)
    detail: str


@dataclass
class CallRecord:
    uuid: str
    node: str
    direction: str          # "inbound" (a caller rang the hotline) or "outbound" (the switch dialled out)
    caller: str             # inbound: the caller's number; outbound: the number dialled
    destination: str        # inbound: the DNIS; outbound: the number dialled
    kind: str               # inbound: the caller kind; outbound: the outcome (answer, busy, machine, ...)
    arrived_at: float       # inbound: the INVITE; outbound: the switch's offer
    heard: list[Heard] = field(default_factory=list)
    pressed: list[str] = field(default_factory=list)
    answered_at: float | None = None   # inbound: the switch answered the caller; outbound: the destination answered
    agent: str | None = None           # the first simulated agent it was bridged to
    bridged_at: float | None = None
    hangup_at: float | None = None
    hung_up_by: str | None = None      # "caller", "agent", "destination" or "switch"
    hangup_cause: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class TruthRecorder:
    """Collects CallRecords; writes each one when its call ends.

    `keep=False` for long runs that only write the file (a live demo runs for hours).
    """

    def __init__(self, sink: TextIO | None = None, *, keep: bool = True) -> None:
        self._sink = sink
        self._keep = keep
        self.finished: list[CallRecord] = []
        self.count = 0
        self.listeners: list[Callable[[CallRecord], None]] = []  # e.g. a what-if runner's statistics

    def finish(self, record: CallRecord) -> None:
        self.count += 1
        if self._keep:
            self.finished.append(record)
        if self._sink is not None:
            self._sink.write(record.to_json() + "\n")
            self._sink.flush()
        for listener in self.listeners:
            listener(record)
