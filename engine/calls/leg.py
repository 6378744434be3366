"""One FreeSWITCH channel as the engine sees it: a plain record updated from its events.

`Leg.apply(event)` is the only writer and is pure (no I/O), so the call model can be driven in
tests from recorded events without a switch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from os.path import commonprefix
from typing import Any, Iterable, Iterator

from engine.channelvars import DATA_PREFIX, ENGINE_VARS

_DTMF_KEEP = 64  # digits typed ahead are kept for the next prompt, within reason
# The engine's variables share a prefix: one pass over an event finds them all, where a look-up
# per name would scan the whole header block for each one the event does not carry.
# name -> the same name: a leg keeps the module's string, not a fresh copy per call.
_ENGINE_VARS = {name: name for name in ENGINE_VARS}
_ENGINE_PREFIX = "variable_" + commonprefix([*ENGINE_VARS, DATA_PREFIX])


def kept_variables(headers: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """(name, value) of the engine's variables and the call data among a channel's
    (`variable_<name>`, value) headers: what a Leg keeps of its channel."""
    for header, value in headers:
        var = header.removeprefix("variable_")
        if var == header:
            continue
        name = _ENGINE_VARS.get(var)
        if name is not None:
            yield name, value
        elif var.startswith(DATA_PREFIX):
            yield var, value


@dataclass(slots=True)  # a few of these per call up: no per-instance __dict__
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
    dtmf: str = ""  # typed ahead, the latest _DTMF_KEEP digits
    final_event: Any = None  # the CHANNEL_HANGUP_COMPLETE event, for the CDR

    def apply(self, event: Any) -> None:
        """Update from one event of this channel."""
        name = event.name
        if name == "CHANNEL_ANSWER":
            self.answered = True
        elif name == "DTMF":
            digit = event.get("DTMF-Digit")
            if digit:
                self.dtmf = (self.dtmf + digit)[-_DTMF_KEEP:]
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
        self.variables.update(kept_variables(event.matching(_ENGINE_PREFIX).items()))

    def take_digits(self) -> str:
        digits, self.dtmf = self.dtmf, ""
        return digits
