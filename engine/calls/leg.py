"""One FreeSWITCH channel as the engine sees it: a plain record updated from its events.

`Leg.apply(event)` is the only writer and is pure (no I/O), so the call model can be driven in
tests from recorded events without a switch.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from engine.channelvars import ENGINE_VARS

_DTMF_KEEP = 64  # digits typed ahead are kept for the next prompt, within reason


@dataclass
class Leg:
    uuid: str
    node: str
    role: str = "caller"
    caller_id_number: str = ""
    caller_id_name: str = ""
    destination_number: str = ""
    answered: bool = False
    hungup: bool = False
    complete: bool = False  # CHANNEL_HANGUP_COMPLETE seen: the CDR variables are final
    hangup_cause: str = ""
    bridged_to: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    dtmf: deque[str] = field(default_factory=lambda: deque(maxlen=_DTMF_KEEP))
    final_event: Any = None  # the CHANNEL_HANGUP_COMPLETE event, for the CDR

    def apply(self, event: Any) -> None:
        """Update from one event of this channel."""
        name = event.name
        if name == "CHANNEL_ANSWER":
            self.answered = True
        elif name == "DTMF":
            digit = event.get("DTMF-Digit")
            if digit:
                self.dtmf.append(digit)
        elif name == "CHANNEL_BRIDGE":
            self.bridged_to = event.get("Other-Leg-Unique-ID")
        elif name == "CHANNEL_UNBRIDGE":
            self.bridged_to = None
        elif name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            self.hungup = True
            self.hangup_cause = event.get("Hangup-Cause") or self.hangup_cause
            self.bridged_to = None
            if name == "CHANNEL_HANGUP_COMPLETE":
                self.complete = True
                self.final_event = event
        if name in ("CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_CREATE") or not self.caller_id_number:
            self._read_identity(event)

    def _read_identity(self, event: Any) -> None:
        self.caller_id_number = event.get("Caller-Caller-ID-Number") or self.caller_id_number
        self.caller_id_name = event.get("Caller-Caller-ID-Name") or self.caller_id_name
        self.destination_number = event.get("Caller-Destination-Number") or self.destination_number
        for var in ENGINE_VARS:
            value = event.get("variable_" + var)
            if value is not None:
                self.variables[var] = value

    def take_digits(self) -> str:
        digits = "".join(self.dtmf)
        self.dtmf.clear()
        return digits
