"""The contract between the simulated switch and the simulated far ends of its channels.

The switch (channels, applications, API commands) calls an Endpoint when something happens
that a real phone, agent softphone or PSTN destination would notice; the Endpoint answers by
acting on its Leg, exactly as a SIP peer acts on a FreeSWITCH channel. Callers, agents and
outbound destinations (engine.simulator.population) implement Endpoint; the switch's Channel
implements Leg.

Every Endpoint method is called in its own greenlet, so an endpoint may sleep on the clock.
"""
from __future__ import annotations

from typing import Protocol


class Leg(Protocol):
    """What the far end can do to its channel."""

    uuid: str
    direction: str  # "inbound" (the far end called in) or "outbound" (the switch called it)

    def ring(self) -> None:
        """180 Ringing (CHANNEL_PROGRESS)."""

    def pre_answer(self) -> None:
        """183 with early media (CHANNEL_PROGRESS_MEDIA)."""

    def answer(self) -> None:
        """200 OK (CHANNEL_ANSWER)."""

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """The far end hangs up (BYE, CANCEL before answer, or a 4xx/5xx/6xx refusal).

        Before answer an inbound caller's hangup is ORIGINATOR_CANCEL whatever cause is given;
        an outbound leg refused before answer uses the cause (USER_BUSY, CALL_REJECTED, ...).
        """

    def send_dtmf(self, digits: str, *, duration_ms: int = 2240) -> None:
        """RFC 2833 digits from the far end, one DTMF event each, in order."""

    def variable(self, name: str) -> str | None:
        """A channel variable, as the far end could learn it from SIP headers."""


class Endpoint(Protocol):
    """A simulated phone, softphone or PSTN destination."""

    name: str  # who this is in the ground truth: "caller:5551234", "agent:1001", "dest:+4420..."

    def on_offer(self, leg: Leg) -> None:
        """The switch is calling this endpoint (originate or bridge): ring, answer, refuse,
        or do nothing (the originator gives up after its timeout with NO_ANSWER)."""

    def on_media(self, leg: Leg, kind: str, detail: str) -> None:
        """Something starts playing to this endpoint: kind is "playback" (detail = the file
        or stream), "prompt" (play_and_get_digits/read waiting for digits, detail = the prompt),
        "record" (detail = the path being recorded), "say" (detail = the text)."""

    def on_bridge(self, leg: Leg, other: "Endpoint | None") -> None:
        """The channel is bridged to another whose far end is `other` (None if unknown)."""

    def on_unbridge(self, leg: Leg) -> None:
        """The bridge ended but this channel is still up."""

    def on_hangup(self, leg: Leg, cause: str, by_far_end: bool) -> None:
        """The channel is gone; by_far_end is True when this endpoint hung up itself."""
