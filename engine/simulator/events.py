"""Simulated FreeSWITCH events: the SimEvent record, FreeSWITCH's event names, where in
FreeSWITCH's source each event is fired from (the Event-Calling-* headers), and the common
header block every event starts with.
"""
from __future__ import annotations

import time
from email.utils import formatdate

# switch_event.c EVENT_NAMES (the names `event` accepts).
EVENT_NAMES = frozenset("""
CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE CHANNEL_CALLSTATE CHANNEL_ANSWER
CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD
CHANNEL_UNHOLD CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA
CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID
API LOG INBOUND_CHAN OUTBOUND_CHAN STARTUP SHUTDOWN PUBLISH UNPUBLISH TALK NOTALK SESSION_CRASH
MODULE_LOAD MODULE_UNLOAD DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT PRESENCE_PROBE
MESSAGE_WAITING MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE
PRIVATE_COMMAND HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE RELOADXML NOTIFY
PHONE_FEATURE PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE REQUEST_PARAMS CHANNEL_DATA GENERAL
COMMAND SESSION_HEARTBEAT CLIENT_DISCONNECTED SERVER_DISCONNECTED SEND_INFO RECV_INFO
RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE CALL_SECURE NAT RECORD_START RECORD_STOP PLAYBACK_START
PLAYBACK_STOP CALL_UPDATE FAILURE SOCKET_DATA MEDIA_BUG_START MEDIA_BUG_STOP CONFERENCE_DATA_QUERY
CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT CALL_DETAIL DEVICE_STATE TEXT SHUTDOWN_REQUESTED
ALL
""".split())

# Event-Calling-File / -Function / -Line-Number as FreeSWITCH 1.10.12 reports them.
CALLING_SITES: dict[str, tuple[str, str, int]] = {
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 301),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", 632),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", 768),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3560),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1689),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", 1879),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584),
    "CHANNEL_HOLD": ("switch_channel.c", "switch_channel_perform_mark_hold", 1221),
    "CHANNEL_UNHOLD": ("switch_channel.c", "switch_channel_perform_mark_hold", 1221),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", 677),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020),
    "RECORD_START": ("switch_ivr_async.c", "record_callback", 1481),
    "RECORD_STOP": ("switch_ivr_async.c", "send_record_stop_event", 1240),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
    "API": ("switch_loadable_module.c", "switch_api_execute", 2954),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 95),
    "RE_SCHEDULE": ("switch_scheduler.c", "switch_scheduler_execute", 73),
}

CHANNEL_STATES = ("CS_NEW", "CS_INIT", "CS_ROUTING", "CS_SOFT_EXECUTE", "CS_EXECUTE",
                  "CS_EXCHANGE_MEDIA", "CS_PARK", "CS_CONSUME_MEDIA", "CS_HIBERNATE", "CS_RESET",
                  "CS_HANGUP", "CS_REPORTING", "CS_DESTROY", "CS_NONE")
STATE_NUMBER = {name: number for number, name in enumerate(CHANNEL_STATES)}

# switch_channel_callstate: DOWN, DIALING, RINGING, EARLY, ACTIVE, HELD, RING_WAIT, HANGUP, UNHELD
CALLSTATE_NUMBER = {"DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5,
                    "RING_WAIT": 6, "HANGUP": 7, "UNHELD": 8}

# Q.850 cause codes of the hangup causes the simulator produces.
HANGUP_CAUSES = {
    "NONE": 0, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38, "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42, "SERVICE_UNAVAILABLE": 63, "CHAN_NOT_IMPLEMENTED": 66,
    "INCOMPATIBLE_DESTINATION": 88, "RECOVERY_ON_TIMER_EXPIRE": 102, "ORIGINATOR_CANCEL": 487,
    "ALLOTTED_TIMEOUT": 602, "USER_NOT_REGISTERED": 606, "MANAGER_REQUEST": 503,
    "LOSE_RACE": 502, "PICKED_OFF": 500, "ATTENDED_TRANSFER": 601, "BLIND_TRANSFER": 600,
    "MEDIA_TIMEOUT": 604, "GATEWAY_DOWN": 609, "EXCHANGE_ROUTING_ERROR": 25,
}

# SIP response FreeSWITCH sends/receives for a refusal cause (sip_term_status).
CAUSE_TO_SIP = {"USER_BUSY": 486, "CALL_REJECTED": 603, "NO_ANSWER": 480, "NO_USER_RESPONSE": 408,
                "UNALLOCATED_NUMBER": 404, "NO_ROUTE_DESTINATION": 404, "SUBSCRIBER_ABSENT": 480,
                "NORMAL_TEMPORARY_FAILURE": 503, "DESTINATION_OUT_OF_ORDER": 502,
                "ORIGINATOR_CANCEL": 487, "USER_NOT_REGISTERED": 404}


class DeferredHeaders:
    """A block of an event's headers kept as the snapshot taken when the event fired and built
    on first use: most events of an in-process run are read by nobody, or only by name and
    Unique-ID, and building every header of every event was most of the simulator's time."""

    __slots__ = ("_built",)

    def __init__(self) -> None:
        self._built: list[tuple[str, str]] | None = None

    def build(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def pairs(self) -> list[tuple[str, str]]:
        if self._built is None:
            self._built = self.build()
        return self._built

    def get(self, name: str) -> str | None:
        for key, value in self.pairs():
            if key == name:
                return value
        return None


class CommonHeaders(DeferredHeaders):
    """The block every event starts with (switch_event_prep_for_delivery_detailed)."""

    __slots__ = ("name", "subclass", "switch", "now", "site", "sequence")
    NAMES = frozenset(("Event-Subclass", "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname",
                       "FreeSWITCH-IPv4", "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT",
                       "Event-Date-Timestamp", "Event-Calling-File", "Event-Calling-Function",
                       "Event-Calling-Line-Number", "Event-Sequence"))

    def __init__(self, name: str, subclass: str | None, switch, now: float, site: tuple[str, str, int],
                 sequence: int) -> None:
        super().__init__()
        self.name, self.subclass, self.switch = name, subclass, switch
        self.now, self.site, self.sequence = now, site, sequence

    def get(self, name: str) -> str | None:
        if name == "Event-Name":
            return self.name
        if name == "Event-Subclass":
            return self.subclass
        return super().get(name) if name in self.NAMES else None

    def build(self) -> list[tuple[str, str]]:
        switch = self.switch   # its identity never changes while it runs
        out = [("Event-Subclass", self.subclass)] if self.subclass is not None else []
        out += [("Event-Name", self.name), ("Core-UUID", switch.core_uuid),
                ("FreeSWITCH-Hostname", switch.hostname), ("FreeSWITCH-Switchname", switch.switchname),
                ("FreeSWITCH-IPv4", switch.ipv4), ("FreeSWITCH-IPv6", switch.ipv6)]
        out += stamp_headers(self.now)
        file, func, line = self.site
        out += [("Event-Calling-File", file), ("Event-Calling-Function", func),
                ("Event-Calling-Line-Number", str(line)), ("Event-Sequence", str(self.sequence))]
        return out


class SimEvent:
    """One event as FreeSWITCH would serialize it: ordered (name, raw value) headers and a body.

    The headers are kept as blocks, each a list or DeferredHeaders, and joined into one list
    when `headers` is first read (as the ESL server does to serialize the event)."""

    __slots__ = ("name", "body", "_blocks")

    def __init__(self, name: str, headers: list[tuple[str, str]] | None = None, body: str | None = None) -> None:
        self.name = name
        self.body = body
        self._blocks: list[list[tuple[str, str]] | DeferredHeaders] = [headers if headers is not None else []]

    @property
    def headers(self) -> list[tuple[str, str]]:
        blocks = self._blocks
        if len(blocks) > 1 or not isinstance(blocks[0], list):
            joined: list[tuple[str, str]] = []
            for block in blocks:
                joined += block if isinstance(block, list) else block.pairs()
            self._blocks = [joined]
        return self._blocks[0]

    def get(self, name: str, default: str | None = None) -> str | None:
        for block in self._blocks:
            if isinstance(block, list):
                for key, value in block:
                    if key == name:
                        return value
            else:
                value = block.get(name)
                if value is not None:
                    return value
        return default

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")

    def add(self, name: str, value: object) -> None:
        self.extend([(name, str(value))])

    def extend(self, headers: list[tuple[str, str]] | DeferredHeaders) -> None:
        """Append headers: pairs, or a block to build when they are read."""
        last = self._blocks[-1]
        if isinstance(headers, list) and isinstance(last, list):
            last += headers
        else:
            self._blocks.append(list(headers) if isinstance(headers, list) else headers)


def stamp_headers(now: float) -> list[tuple[str, str]]:
    """Event-Date-Local, Event-Date-GMT, Event-Date-Timestamp for a clock reading."""
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
    return [("Event-Date-Local", local),
            ("Event-Date-GMT", formatdate(now, usegmt=True)),
            ("Event-Date-Timestamp", str(int(now * 1_000_000)))]


def format_stamp(epoch: float) -> str:
    """The *_stamp channel variables (local time, seconds)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def micros(epoch: float) -> int:
    return int(epoch * 1_000_000)
