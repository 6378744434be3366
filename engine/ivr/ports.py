"""What the IVR needs from the rest of the engine, as narrow interfaces: the queue (the ACD), the
outcome vocabulary of a queue wait, and the call data the IVR collects and the ACD shows agents."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from engine.channelvars import DATA_PREFIX
from engine.esl import commands

if TYPE_CHECKING:
    from engine.calls.call import Call

# QueueOutcome.result values
ANSWERED = "answered"  # talked to an agent, who hung up first: the caller is still on the line
TIMEOUT = "timeout"  # max_wait passed without an agent
NO_AGENTS = "no_agents"  # nobody is logged in to serve the queue: waiting is pointless
EXIT_KEY = "exit_key"  # the caller pressed one of the queue's exit keys (QueueOutcome.digit says which)

_DATA_LIMIT = 200  # characters of a value shown to an agent
# Braces and the enterprise separator cannot ride in an originate's {vars} block: shown as look-alikes.
_DIAL_SAFE = str.maketrans({"{": "(", "}": ")"})


@dataclass(frozen=True)
class QueueOutcome:
    result: str
    agent: str = ""
    waited: float = 0.0  # seconds in the queue
    digit: str = ""  # with EXIT_KEY: the key pressed
    joined: float = 0.0  # epoch seconds the caller joined (its place in line, kept for a callback)


@dataclass(frozen=True)
class QueueStatus:
    agents_available: int
    calls_waiting: int
    estimated_wait: float  # seconds a caller joining now would wait


@dataclass(frozen=True)
class Position:
    """Where a waiting caller stands, for the periodic announcement."""

    position: int  # 1 = next
    estimated_wait: float  # seconds


Announce = Callable[[Position], None]


class QueuePort(Protocol):
    def enqueue(self, call: "Call", queue: str, *, skills: tuple[str, ...], priority: int, max_wait: float,
                announce: Announce | None = None, announce_every: float = 30.0, exit_keys: str = "") -> QueueOutcome:
        """Wait in `queue` (hold music is the port's) until an agent has talked to the caller, the
        wait runs out, nobody can serve the queue, or the caller presses one of `exit_keys` (keys
        pressed before joining do not count). Runs in the call's greenlet; every
        `announce_every` seconds of waiting it calls `announce` there (the IVR stops the music,
        plays the announcement and returns; the port resumes the music). The caller hanging up
        raises CallGone, as every wait on a call does. While the caller talks to an agent it
        raises Suspend (engine.calls.call): a caller with work left after the wait puts it
        around the continuation (Suspend.wrap, and_then), which returns the outcome once woken."""
        ...

    def status(self, queue: str) -> QueueStatus:
        """The queue now, for conditions (agents_available, estimated_wait): no I/O, no waiting."""
        ...


class ToFlow(Exception):
    """Raised out of a queue wait by the ACD: an agent sent the caller to this flow, whose start
    node runs next with the variables collected so far."""

    def __init__(self, flow: str) -> None:
        super().__init__(flow)
        self.flow = flow


def data_text(value: Any) -> str:
    """A data value made safe to put on a channel and in a dial string (whoever typed or
    returned it): no control characters, no `${`, no braces, bounded."""
    return commands.display_text(str(value), _DATA_LIMIT).translate(_DIAL_SAFE).replace(":_:", ": :")


def call_data(variables: Mapping[str, str]) -> dict[str, str]:
    """The call data among a channel's variables: name -> value."""
    return {name[len(DATA_PREFIX):]: value for name, value in variables.items()
            if name.startswith(DATA_PREFIX) and value}
