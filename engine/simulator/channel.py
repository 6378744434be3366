"""A simulated FreeSWITCH channel: its state machines (channel state, call state, answer
state), caller profile, variables, the headers every channel event carries, the application
executor (queued sendmsg executes, event-lock, nesting, hangup unwinding) and the far end's
view of it (the endpoint.Leg contract).

Each channel runs one session greenlet, like FreeSWITCH's session thread; the far end and API
commands act on it from other greenlets and wake it through `poke()`.
"""
from __future__ import annotations

import collections
import dataclasses
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import gevent
from gevent.event import Event

from engine.simulator.events import (
    CALLSTATE_NUMBER, CAUSE_TO_SIP, HANGUP_CAUSES, STATE_NUMBER, DeferredHeaders, micros,
)

if TYPE_CHECKING:
    from engine.simulator.endpoint import Endpoint
    from engine.simulator.switch import Switch

@dataclass
class CallerProfile:
    """switch_caller_profile_t: the Caller-* (and, seen from the other leg, Other-Leg-*) block."""

    direction: str
    caller_id_name: str
    caller_id_number: str
    destination_number: str
    source: str
    context: str = "default"
    dialplan: str = "XML"
    username: str = ""
    network_addr: str = ""
    callee_id_name: str = ""
    callee_id_number: str = ""
    rdnis: str = ""
    transfer_source: str = ""
    logical_direction: str = ""
    profile_index: int = 1
    created: float = 0.0

    def copy(self) -> "CallerProfile":
        """A shallow copy, cheaper than dataclasses.replace (one per channel event)."""
        twin = object.__new__(CallerProfile)
        twin.__dict__.update(self.__dict__)
        return twin

    def headers(self, prefix: str, uuid: str, name: str, times: dict[str, float],
                with_index: bool) -> list[tuple[str, str]]:
        """The block for the channel (uuid, name, times) this profile belongs to."""
        out = [(f"{prefix}-Direction", self.direction),
               (f"{prefix}-Logical-Direction", self.logical_direction or self.direction)]
        if self.username:
            out.append((f"{prefix}-Username", self.username))
        out.append((f"{prefix}-Dialplan", self.dialplan))
        if self.caller_id_name:
            out.append((f"{prefix}-Caller-ID-Name", self.caller_id_name))
        out.append((f"{prefix}-Caller-ID-Number", self.caller_id_number))
        if self.caller_id_name:
            out.append((f"{prefix}-Orig-Caller-ID-Name", self.caller_id_name))
        out.append((f"{prefix}-Orig-Caller-ID-Number", self.caller_id_number))
        if self.callee_id_name:
            out.append((f"{prefix}-Callee-ID-Name", self.callee_id_name))
        if self.callee_id_number:
            out.append((f"{prefix}-Callee-ID-Number", self.callee_id_number))
        if self.network_addr:
            out.append((f"{prefix}-Network-Addr", self.network_addr))
        out += [(f"{prefix}-ANI", self.caller_id_number),
                (f"{prefix}-Destination-Number", self.destination_number),
                (f"{prefix}-Unique-ID", uuid),
                (f"{prefix}-Source", self.source)]
        if self.transfer_source:
            out.append((f"{prefix}-Transfer-Source", self.transfer_source))
        out.append((f"{prefix}-Context", self.context))
        if self.rdnis:
            out.append((f"{prefix}-RDNIS", self.rdnis))
        out.append((f"{prefix}-Channel-Name", name))
        if with_index:
            out.append((f"{prefix}-Profile-Index", str(self.profile_index)))
        t = times
        out += [(f"{prefix}-Profile-Created-Time", str(micros(self.created or t["created"]))),
                (f"{prefix}-Channel-Created-Time", str(micros(t["created"]))),
                (f"{prefix}-Channel-Answered-Time", str(micros(t["answered"]))),
                (f"{prefix}-Channel-Progress-Time", str(micros(t["progress"]))),
                (f"{prefix}-Channel-Progress-Media-Time", str(micros(t["progress_media"]))),
                (f"{prefix}-Channel-Hangup-Time", str(micros(t["hangup"]))),
                (f"{prefix}-Channel-Transfer-Time", str(micros(t["transfer"]))),
                (f"{prefix}-Channel-Resurrect-Time", "0"),
                (f"{prefix}-Channel-Bridged-Time", str(micros(t["bridged"]))),
                (f"{prefix}-Channel-Last-Hold", "0"),
                (f"{prefix}-Channel-Hold-Accum", "0"),
                (f"{prefix}-Screen-Bit", "true"),
                (f"{prefix}-Privacy-Hide-Name", "false"),
                (f"{prefix}-Privacy-Hide-Number", "false")]
        return out


@dataclass
class Message:
    """A queued sendmsg execute."""

    app: str
    arg: str
    app_uuid: str
    event_lock: bool = False
    loops: int = 1


@dataclass
class _Timer:
    handle: Any = None   # what Clock.call_later returned: kill() cancels it
    fired: bool = False


def wait_for(clock, wake: Event, done: Callable[[], bool], seconds: float | None,
             between: Callable[[], None] | None = None) -> bool:
    """Block until done() (True) or `seconds` of clock time pass (False); others wake us
    by setting `wake`. `between` runs before each check (nested message processing)."""
    timer = _Timer()
    if seconds is not None:
        def fire() -> None:
            timer.fired = True
            wake.set()
        timer.handle = clock.call_later(seconds, fire)
    try:
        while True:
            wake.clear()
            if between is not None:
                between()
            if done():
                return True
            if timer.fired:
                return False
            wake.wait()
    finally:
        if timer.handle is not None:
            timer.handle.kill(block=False)


class ChannelData(DeferredHeaders):
    """switch_channel_event_set_data (basic data, caller profile, other leg, variables) as the
    channel was when the event fired; the mutable parts are copied, the strings built later."""

    __slots__ = ("uuid", "name", "direction", "running_state", "callstate", "state", "hit_dialplan",
                 "answer_state", "hangup_cause", "codec", "profile", "times", "variables",
                 "other_type", "other_profile", "other_uuid", "other_name", "other_times")

    def __init__(self, channel: "Channel") -> None:
        super().__init__()
        self.uuid, self.name, self.direction = channel.uuid, channel.name, channel.direction
        self.running_state, self.callstate, self.state = channel.running_state, channel.callstate, channel.state
        self.hit_dialplan, self.answer_state = channel.hit_dialplan, channel.answer_state
        self.hangup_cause = channel.hangup_cause
        self.codec = channel.codec if channel.media_up else None
        self.profile = channel.profile.copy()   # a transfer or a bridge changes it in place
        self.times = channel.times.copy()
        self.variables = channel.variables_snapshot()
        other = channel.other
        self.other_profile = channel.other_profile if other is not None else None
        if self.other_profile is not None:
            self.other_type, self.other_uuid, self.other_name = channel.other_type, other.uuid, other.name
            self.other_times = other.times.copy()

    def get(self, name: str) -> str | None:
        return self.uuid if name == "Unique-ID" else super().get(name)

    def build(self) -> list[tuple[str, str]]:
        variables = self.variables
        out = [("Channel-State", self.running_state),
               ("Channel-Call-State", self.callstate),
               ("Channel-State-Number", str(STATE_NUMBER[self.state])),
               ("Channel-Name", self.name),
               ("Unique-ID", self.uuid),
               ("Call-Direction", self.direction),
               ("Presence-Call-Direction", self.direction),
               ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false")]
        if "presence_id" in variables:
            out.append(("Channel-Presence-ID", variables["presence_id"]))
        out.append(("Channel-Call-UUID", variables.get("call_uuid", self.uuid)))
        out.append(("Answer-State", self.answer_state))
        if self.hangup_cause is not None:
            out.append(("Hangup-Cause", self.hangup_cause))
        if self.codec is not None:
            codec, rate = self.codec
            bits = str(rate * 16 if codec == "L16" else 64000)
            out += [("Channel-Read-Codec-Name", codec), ("Channel-Read-Codec-Rate", str(rate)),
                    ("Channel-Read-Codec-Bit-Rate", bits), ("Channel-Write-Codec-Name", codec),
                    ("Channel-Write-Codec-Rate", str(rate)), ("Channel-Write-Codec-Bit-Rate", bits)]
        out += self.profile.headers("Caller", self.uuid, self.name, self.times, with_index=True)
        if self.other_profile is not None:
            out.append(("Other-Type", self.other_type))
            out += self.other_profile.headers("Other-Leg", self.other_uuid, self.other_name, self.other_times,
                                              with_index=False)
        out += [(f"variable_{name}", value) for name, value in variables.items()]
        return out


class Channel:
    """One FreeSWITCH channel (session). See the module docstring for the threading model."""

    def __init__(self, switch: "Switch", *, uuid: str, name: str, direction: str,
                 endpoint: "Endpoint | None", profile: CallerProfile, codec: tuple[str, int],
                 hit_dialplan: bool) -> None:
        self.switch = switch
        self.clock = switch.clock
        self.uuid = uuid
        self.name = name
        self.direction = direction
        self.endpoint = endpoint
        self.profile = profile
        self.codec = codec
        self.hit_dialplan = hit_dialplan
        now = self.clock.now()
        self.times = {"created": now, "answered": 0.0, "progress": 0.0, "progress_media": 0.0,
                      "hangup": 0.0, "transfer": 0.0, "bridged": 0.0}
        profile.created = now
        self.variables: dict[str, str] = {}
        self._snapshot: dict[str, str] | None = None   # a copy of variables shared by events
        self.running_state = "CS_NEW"
        self.state = "CS_NEW"
        self.callstate = "DOWN"
        self.answer_state = "ringing"
        self.media_up = False
        self.hangup_cause: str | None = None
        self.hangup_by_far_end = False
        self.other: Channel | None = None          # the leg named in Other-Leg-* headers
        self.other_profile: CallerProfile | None = None   # its profile as it was when linked
        self.other_type = ""                       # "originator" | "originatee"
        self.bridged_to: Channel | None = None
        self.app_stack: list[str] = []             # running applications, outermost first
        self.app_response = "_none_"
        self.parked = False
        self.exports: dict[str, str] = {}          # export app: variables for bridged legs
        self.recordings: dict[str, float] = {}     # path -> start time (record_session/uuid_record)
        self.messages: collections.deque[Message] = collections.deque()
        self.dtmf: collections.deque[str] = collections.deque()
        self.next_work: Callable[[], None] | None = None
        self.break_requested = False
        self.leave_park = False
        self.watchers: set[Event] = set()
        self.wake = Event()
        self.reported = Event()                    # set after CHANNEL_HANGUP_COMPLETE
        self.destroyed = Event()
        self.session: gevent.Greenlet | None = None

    # ---------------------------------------------------------------- Leg (the far end)
    def ring(self) -> None:
        """180 Ringing from the far end."""
        if not self.is_up or self.answer_state != "ringing":
            return
        self.mark_ring_ready()

    def pre_answer(self) -> None:
        """183 with SDP from the far end."""
        if self.is_up:
            self.mark_pre_answered()

    def answer(self) -> None:
        """200 OK from the far end."""
        if self.is_up:
            self.mark_answered()

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """BYE / CANCEL / a refusal from the far end."""
        if not self.is_up:
            return
        answered = self.answer_state == "answered"
        if answered:
            disposition = "recv_bye"
        elif self.direction == "inbound":
            cause, disposition = "ORIGINATOR_CANCEL", "recv_cancel"
        else:
            disposition = "recv_refuse"
        self.perform_hangup(cause, disposition=disposition, by_far_end=True)

    def send_dtmf(self, digits: str, *, duration_ms: int = 2240) -> None:
        """RFC 2833 digits from the far end: one DTMF event each, queued for the apps."""
        for digit in digits:
            if not self.is_up:
                return
            self.receive_dtmf(digit, duration_ms, "RTP")

    def variable(self, name: str) -> str | None:
        return self.variables.get(name)

    # ---------------------------------------------------------------- state
    @property
    def is_up(self) -> bool:
        return self.hangup_cause is None

    @property
    def answered(self) -> bool:
        return self.times["answered"] > 0

    def set_var(self, name: str, value: str | None) -> None:
        """Like switch_channel_set_variable: a re-set variable moves to the end; None unsets."""
        self._snapshot = None
        self.variables.pop(name, None)
        if value is not None:
            self.variables[name] = value

    def variables_snapshot(self) -> dict[str, str]:
        """The variables as they are now, for an event to keep: one copy shared by the events
        fired until a variable changes (a state change fires several in a row)."""
        if self._snapshot is None:
            self._snapshot = self.variables.copy()
        return self._snapshot

    def detect(self, name: str, value: str) -> None:
        """What media analysis on the channel concludes (AMD's amd_result): the variable is set
        and whoever waits on the channel (`watchers`) wakes, as an ESL client would on the
        application's EXECUTE_COMPLETE instead of polling uuid_getvar."""
        self.set_var(name, value)
        self.poke()

    def poke(self) -> None:
        self.wake.set()
        for watcher in list(self.watchers):
            watcher.set()

    def set_running_state(self, state: str, number: str | None = None) -> None:
        self.state = number or state
        self.running_state = state
        self.fire("CHANNEL_STATE")

    def set_callstate(self, callstate: str) -> None:
        if callstate == self.callstate:
            return
        original = self.callstate
        self.callstate = callstate
        self.fire("CHANNEL_CALLSTATE", pre=[("Original-Channel-Call-State", original),
                                            ("Channel-Call-State-Number", str(CALLSTATE_NUMBER[callstate]))])
        self.poke()

    def mark_ring_ready(self) -> None:
        if self.times["progress"]:
            return
        self.times["progress"] = self.clock.now()
        self.fire("CHANNEL_PROGRESS")
        if self.callstate == "DOWN":
            self.set_callstate("RINGING")
        self.poke()

    def _media(self) -> None:
        if not self.media_up:
            self.media_up = True
            self.switch.media_variables(self)

    def mark_pre_answered(self) -> None:
        if self.answer_state != "ringing" or not self.is_up:
            return
        self.times["progress_media"] = self.clock.now()
        self.answer_state = "early"
        self._media()
        self.set_var("endpoint_disposition", "EARLY MEDIA")
        self.fire("CHANNEL_PROGRESS_MEDIA")
        self.set_callstate("EARLY")

    def mark_answered(self) -> None:
        if self.answered or not self.is_up:
            return
        if self.direction == "inbound" and self.answer_state == "ringing":
            self.mark_pre_answered()   # sofia answers an inbound call through early media
        self.times["answered"] = self.clock.now()
        self.answer_state = "answered"
        self._media()
        if "endpoint_disposition" not in self.variables:
            self.set_var("endpoint_disposition", "ANSWER")
        self.fire("CHANNEL_ANSWER")
        self.set_callstate("ACTIVE")
        self.set_var("endpoint_disposition", "ANSWER")

    def receive_dtmf(self, digit: str, duration_ms: int, source: str) -> None:
        self.fire("CHANNEL_DTMF_EVENT", post=[("DTMF-Digit", digit), ("DTMF-Duration", str(duration_ms)),
                                               ("DTMF-Source", source)])
        self.dtmf.append(digit)
        self.poke()

    def perform_hangup(self, cause: str = "NORMAL_CLEARING", *, disposition: str | None = None,
                       by_far_end: bool = False) -> None:
        """switch_channel_hangup: fire CHANNEL_HANGUP now; the session thread unwinds the apps
        and reports (HANGUP_COMPLETE, DESTROY)."""
        if not self.is_up:
            return
        if cause not in HANGUP_CAUSES:
            cause = "NORMAL_CLEARING"
        self.hangup_cause = cause
        self.hangup_by_far_end = by_far_end
        self.times["hangup"] = self.clock.now()
        self.state = "CS_HANGUP"
        self.answer_state = "hangup"
        if self.name.startswith("sofia/"):
            if disposition is None:
                disposition = "send_bye" if self.answered else (
                    "send_cancel" if self.direction == "outbound" else "send_refuse")
            self.set_var("sip_hangup_disposition", disposition)
            if disposition in ("recv_refuse", "send_refuse"):
                self.set_var("sip_term_status", str(CAUSE_TO_SIP.get(cause, 480)))
        self.fire("CHANNEL_HANGUP")
        self.messages.clear()
        self.poke()
        if self.endpoint is not None:
            gevent.spawn(self.endpoint.on_hangup, self, cause, by_far_end)
        if self.session is None:     # never started (failed before its session ran)
            self.session = gevent.spawn(self._report)

    # ---------------------------------------------------------------- events
    def fire(self, name: str, pre: list[tuple[str, str]] | None = None,
             post: list[tuple[str, str]] | None = None, site: tuple[str, str, int] | None = None) -> None:
        event_name = "DTMF" if name == "CHANNEL_DTMF_EVENT" else name
        switch = self.switch
        if not switch.wants(event_name):
            switch.skip_event()
            return
        event = switch.new_event(event_name, site=site)
        if pre:
            event.extend(pre)
        event.extend(ChannelData(self))
        if post:
            event.extend(post)
        switch.fire(event)

    def headers(self) -> list[tuple[str, str]]:
        """switch_channel_event_set_data as the channel is now."""
        return ChannelData(self).build()

    # ---------------------------------------------------------------- session thread
    def start(self, startup: Callable[[], None]) -> None:
        self.session = gevent.spawn(self._main, startup)

    def _main(self, startup: Callable[[], None]) -> None:
        try:
            startup()
            while self.is_up:
                work, self.next_work = self.next_work, None
                if work is None:
                    self.wait(None, lambda: self.next_work is not None, nested=False)
                    continue
                work()
                if self.is_up and self.next_work is None:
                    # Nothing left to run: FreeSWITCH hangs up when the dialplan ends.
                    self.perform_hangup("NORMAL_CLEARING")
        finally:
            self._report()

    def _report(self) -> None:
        if self.reported.is_set():
            return
        # Each step yields, as FreeSWITCH's session threads interleave (call-lifecycle.txt).
        self.set_running_state("CS_HANGUP", "CS_HANGUP")
        self.set_callstate("HANGUP")
        self.switch.stop_recordings(self)
        self.switch.cdr_variables(self)
        gevent.sleep(0)
        self.set_running_state("CS_REPORTING", "CS_REPORTING")
        gevent.sleep(0)
        self.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", self.hangup_cause or "NORMAL_CLEARING")])
        self.reported.set()
        self.poke()
        gevent.sleep(0)
        self.state = "CS_DESTROY"
        self.fire("CHANNEL_DESTROY")
        self.switch.forget(self)
        gevent.sleep(0)
        self.set_running_state("CS_DESTROY", "CS_DESTROY")
        self.destroyed.set()
        self.poke()

    # ---------------------------------------------------------------- applications
    def enqueue(self, message: Message) -> None:
        self.messages.append(message)
        self.poke()

    def wait(self, seconds: float | None, done: Callable[[], bool] = lambda: False, *,
             nested: bool = True, interruptible: bool = False) -> str:
        """Wait inside an application: 'done', 'timeout', 'hangup' or 'break' (uuid_break).
        Non-locked executes queued meanwhile run nested, as FreeSWITCH runs them."""
        reason = ["timeout"]

        def check() -> bool:
            if not self.is_up:
                reason[0] = "hangup"
                return True
            if interruptible and self.break_requested:
                self.break_requested = False
                reason[0] = "break"
                return True
            if done():
                reason[0] = "done"
                return True
            return False

        between = self._run_nested if nested else None
        wait_for(self.clock, self.wake, check, seconds, between)
        return reason[0]

    def _run_nested(self) -> None:
        if self.messages and not self.messages[0].event_lock and self.app_stack:
            self.execute_message(self.messages.popleft())

    def run_messages(self) -> None:
        """The park loop's message pump: run queued executes one after the other."""
        while self.messages and self.is_up:
            self.execute_message(self.messages.popleft())

    def execute_message(self, message: Message) -> None:
        self.execute(message.app, message.arg, message.app_uuid)

    def execute(self, app: str, arg: str = "", app_uuid: str | None = None) -> None:
        """switch_core_session_exec: CHANNEL_EXECUTE, run, CHANNEL_EXECUTE_COMPLETE."""
        if not self.is_up:
            return
        handler = self.switch.applications.get(app)
        if handler is None:
            self.perform_hangup("DESTINATION_OUT_OF_ORDER")
            return
        app_uuid = app_uuid or str(uuidlib.uuid4())
        self.set_var("current_application_data", arg or None)
        self.set_var("current_application", app)
        app_headers = [("Application", app)]
        if arg:
            app_headers.append(("Application-Data", arg))
        self.fire("CHANNEL_EXECUTE", post=app_headers + [("Application-UUID", app_uuid)])
        self.app_stack.append(app)
        try:
            response = handler(self, arg)
        finally:
            self.app_stack.pop()
        if response is not None:
            self.app_response = response
        self.set_var("last_app", app)
        if arg:
            self.set_var("last_arg", arg)
        self.fire("CHANNEL_EXECUTE_COMPLETE",
                  post=app_headers + [("Application-Response", self.app_response),
                                      ("Application-UUID", app_uuid)])

    def link(self, other: "Channel", other_type: str) -> None:
        """Name `other` in this channel's Other-Leg-* headers, as its profile is now."""
        self.other, self.other_type = other, other_type
        self.other_profile = dataclasses.replace(other.profile)

    def interrupt(self) -> None:
        """Leave the running application and park (uuid_transfer, uuid_bridge, uuid_park)."""
        self.leave_park = True
        self.break_requested = True
        self.poke()
