"""Simulated FreeSWITCH events: the SimEvent record, FreeSWITCH's event names, where in
FreeSWITCH's source each event is fired from (the Event-Calling-* headers), and the common
header block every event starts with.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
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


@dataclass
class SimEvent:
    """One event as FreeSWITCH would serialize it: ordered (name, raw value) headers and a body."""

    name: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return default

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")

    def add(self, name: str, value: object) -> None:
        self.headers.append((name, str(value)))


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
