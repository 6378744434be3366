"""One CDR per leg: FreeSWITCH's CHANNEL_HANGUP_COMPLETE plus the engine's own facts about the
call, mapped by a pure function into a `CdrRecord` (table `cdr`, one row per Unique-ID).

Every leg's row names its call: `call_uuid` is the Unique-ID of the call's first leg (the caller's),
on whichever node the leg ran. A leg the engine originated carries it as callrouter_parent; a leg
on another node, reached through the inter-node gateway, as the SIP header X-Callrouter-Parent
(sofia makes it `sip_h_X-Callrouter-Parent` on that node's legs).

Columns follow mod_cdr_pg_csv's; FreeSWITCH's *_uepoch variables are the truth for the stamps
(the *_stamp strings are local time without a zone). The engine's columns come from `CallFacts`,
falling back to the callrouter_* channel variables the engine keeps on the channel, so a call
adopted after an engine restart still gets its flow, queue and agent.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Protocol

from engine.channelvars import (
    VAR_AGENT, VAR_ENTRY, VAR_FLOW, VAR_LEG, VAR_NODE, VAR_PARENT, VAR_PARENT_HEADER, VAR_QUEUE,
)
from engine.cdr.records import register



class Headers(Protocol):
    def get(self, name: str, default: str | None = None) -> str | None: ...


@dataclass(frozen=True)
class CallFacts:
    """What the engine knows about a leg that FreeSWITCH does not; None = not known / not applicable."""

    node: str | None = None  # the engine's name for the FreeSWITCH node (config freeswitch[].name)
    role: str | None = None  # caller | agent | outbound | relay (a far node's leg of the inter-node gateway)
    call_uuid: str | None = None  # the Unique-ID of the call's first leg, when the channel does not say
    bleg_uuid: str | None = None  # the leg it was bridged to, when FreeSWITCH's variables do not say
    flow: str | None = None
    ivr_node: str | None = None  # the last IVR node the caller reached
    queue: str | None = None
    agent: str | None = None
    wait_seconds: float | None = None  # in queue, from entering it to an agent answering (or leaving)
    ring_seconds: float | None = None  # ringing agents before one answered
    talk_seconds: float | None = None
    wrap_up_seconds: float | None = None
    transfer_target: str | None = None
    campaign: str | None = None
    contact: str | None = None
    disposition: str | None = None
    recording_path: str | None = None


@register
@dataclass(frozen=True)
class CdrRecord:
    TABLE: ClassVar[str] = "cdr"
    KEY: ClassVar[tuple[str, ...]] = ("uuid",)

    uuid: str
    bleg_uuid: str | None
    direction: str | None
    caller_id_name: str | None
    caller_id_number: str | None
    destination_number: str | None
    start_stamp: datetime | None
    answer_stamp: datetime | None
    end_stamp: datetime | None
    duration: int | None
    billsec: int | None
    hangup_cause: str | None
    sip_hangup_disposition: str | None
    node: str | None
    role: str | None
    flow: str | None
    ivr_node: str | None
    queue: str | None
    agent: str | None
    wait_seconds: float | None
    ring_seconds: float | None
    talk_seconds: float | None
    hold_seconds: float | None
    wrap_up_seconds: float | None
    transfer_target: str | None
    campaign: str | None
    contact: str | None
    disposition: str | None
    recording_path: str | None
    rtp_audio_in_mos: float | None
    rtp_audio_in_quality_percentage: float | None
    rtp_audio_in_packet_count: int | None
    rtp_audio_in_skip_packet_count: int | None
    rtp_audio_in_flaw_total: int | None
    packet_loss_percent: float | None
    rtp_audio_in_jitter_min_variance: float | None
    rtp_audio_in_jitter_max_variance: float | None
    # Last, with a default: a spool line written before the column existed still loads.
    call_uuid: str | None = None


def _var(event: Headers, name: str) -> str | None:
    value = event.get("variable_" + name)
    return value if value not in (None, "") else None


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _stamp(event: Headers, name: str) -> datetime | None:
    """variable_<name>_uepoch (µs), else _epoch (s); FreeSWITCH writes 0 for 'never'."""
    micros = _int(_var(event, f"{name}_uepoch"))
    if micros:
        return datetime.fromtimestamp(micros / 1_000_000, timezone.utc)
    seconds = _int(_var(event, f"{name}_epoch"))
    return datetime.fromtimestamp(seconds, timezone.utc) if seconds else None


def _talk_seconds(event: Headers) -> float | None:
    """From FreeSWITCH's bridge to the hangup, when the engine did not measure it itself."""
    bridged = _int(_var(event, "bridge_uepoch"))
    ended = _int(_var(event, "end_uepoch"))
    if not bridged or not ended or ended < bridged:
        return None
    return round((ended - bridged) / 1_000_000, 3)


def _packet_loss_percent(received: int | None, flaws: int | None) -> float | None:
    # FreeSWITCH counts lost (sequence gaps) and late packets as flaws; its skip_packet_count is
    # comfort noise it generated while nothing arrived (silence suppression too), so it is not loss.
    if received is None or flaws is None or received + flaws == 0:
        return None
    return round(100.0 * flaws / (received + flaws), 3)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _call_uuid(event: Headers, uuid: str, facts: CallFacts) -> str | None:
    """The caller's Unique-ID. The engine's own marks win over the SIP header, which anyone
    calling in from outside could send. None for a leg that carries no mark at all."""
    marked = _first(facts.call_uuid, _var(event, VAR_PARENT))
    if marked is not None:
        return marked
    if facts.role == "caller" or _var(event, VAR_ENTRY) or _var(event, VAR_LEG) == "caller":
        return uuid
    return _var(event, VAR_PARENT_HEADER)


def cdr_from_event(event: Headers, facts: CallFacts = CallFacts()) -> CdrRecord:
    """The CDR of the leg whose CHANNEL_HANGUP_COMPLETE `event` is (anything with .get(header))."""
    uuid = event.get("Unique-ID") or _var(event, "uuid")
    if not uuid:
        raise ValueError("a CDR needs the leg's Unique-ID")
    received = _int(_var(event, "rtp_audio_in_packet_count"))
    flaws = _int(_var(event, "rtp_audio_in_flaw_total"))
    return CdrRecord(
        uuid=uuid,
        bleg_uuid=_first(_var(event, "bleg_uuid"), _var(event, "last_bridge_to"), _var(event, "bridge_uuid"),
                         facts.bleg_uuid, event.get("Other-Leg-Unique-ID") or None),
        direction=_first(event.get("Call-Direction") or None, _var(event, "direction")),
        caller_id_name=event.get("Caller-Caller-ID-Name"),
        caller_id_number=event.get("Caller-Caller-ID-Number"),
        destination_number=event.get("Caller-Destination-Number"),
        start_stamp=_stamp(event, "start"),
        answer_stamp=_stamp(event, "answer"),
        end_stamp=_stamp(event, "end"),
        duration=_int(_var(event, "duration")),
        billsec=_int(_var(event, "billsec")),
        hangup_cause=_first(_var(event, "hangup_cause"), event.get("Hangup-Cause") or None),
        sip_hangup_disposition=_var(event, "sip_hangup_disposition"),
        node=_first(facts.node, event.get("FreeSWITCH-Switchname") or None),
        role=_first(facts.role, _var(event, VAR_LEG)),
        flow=_first(facts.flow, _var(event, VAR_FLOW)),
        ivr_node=_first(facts.ivr_node, _var(event, VAR_NODE)),
        queue=_first(facts.queue, _var(event, VAR_QUEUE)),
        agent=_first(facts.agent, _var(event, VAR_AGENT)),
        wait_seconds=facts.wait_seconds,
        ring_seconds=facts.ring_seconds,
        talk_seconds=_first(facts.talk_seconds, _talk_seconds(event)),
        hold_seconds=_float(_var(event, "hold_accum_seconds")),
        wrap_up_seconds=facts.wrap_up_seconds,
        transfer_target=facts.transfer_target,
        campaign=facts.campaign,
        contact=facts.contact,
        disposition=facts.disposition,
        recording_path=facts.recording_path,
        rtp_audio_in_mos=_float(_var(event, "rtp_audio_in_mos")),
        rtp_audio_in_quality_percentage=_float(_var(event, "rtp_audio_in_quality_percentage")),
        rtp_audio_in_packet_count=received,
        rtp_audio_in_skip_packet_count=_int(_var(event, "rtp_audio_in_skip_packet_count")),
        rtp_audio_in_flaw_total=flaws,
        packet_loss_percent=_packet_loss_percent(received, flaws),
        rtp_audio_in_jitter_min_variance=_float(_var(event, "rtp_audio_in_jitter_min_variance")),
        rtp_audio_in_jitter_max_variance=_float(_var(event, "rtp_audio_in_jitter_max_variance")),
        call_uuid=_call_uuid(event, uuid, facts),
    )
