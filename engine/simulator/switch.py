"""The simulated FreeSWITCH core: directory users and gateways (the inter-node trunk among
them), channel creation for inbound SIP calls and for originate/bridge, the bridge itself,
transfers, recordings, the event bus (`subscribe`/`fire`) and the api entry point (`api`,
implemented in commands.py).

Everything is timed on the injected clock, so a VirtualClock run works in-process.
"""
from __future__ import annotations

import functools
import itertools
import logging
import random
import time
import uuid as uuidlib
from typing import Callable, Iterable

import gevent
from gevent.event import Event

from engine.simulator.apps import APPLICATIONS, park_loop
from engine.simulator.channel import CallerProfile, Channel, Message, wait_for
from engine.simulator.endpoint import Endpoint
from engine.simulator.events import CALLING_SITES, HANGUP_CAUSES, CommonHeaders, SimEvent, format_stamp, micros
from engine.simulator.fsparse import DialStringError, Peer, has_variable, originate_peers, switch_true

log = logging.getLogger(__name__)

SIP_PROFILE = "internal"
SIP_HOST = "127.0.0.1"
CALLER_HOST = "127.0.0.1:5080"
DEFAULT_ORIGINATE_TIMEOUT = 60.0
SIP_HEADER_PREFIX = "sip_h_"  # sofia's variables for custom SIP headers, sent and received
INTERNODE_AGENT_PREFIX = "callrouter-agent-"  # freeswitch/'s inter-node extension: callrouter-agent-<user>
LOG_LEVELS = {"CONSOLE": 0, "ALERT": 1, "CRIT": 2, "ERR": 3, "WARNING": 4, "NOTICE": 5, "INFO": 6, "DEBUG": 7}


class OriginateFailed(Exception):
    """An originate/bridge leg did not come up; args[0] is the hangup cause."""

    @property
    def cause(self) -> str:
        return self.args[0]


class _Loopback:
    """loopback/<ext>: the far end is our own dialplan, which answers at once."""

    name = "loopback"

    def on_offer(self, leg) -> None:
        leg.answer()

    def on_media(self, leg, kind, detail) -> None:
        pass

    def on_bridge(self, leg, other) -> None:
        pass

    def on_unbridge(self, leg) -> None:
        pass

    def on_hangup(self, leg, cause, by_far_end) -> None:
        pass


class Switch:
    """One simulated FreeSWITCH node. See the module docstring."""

    def __init__(self, clock, hostname: str = "sim1", switchname: str | None = None,
                 seed: int | None = None, heartbeat_interval: float = 20.0) -> None:
        self.clock = clock
        self.hostname = hostname
        self.switchname = switchname or hostname
        self._rng = random.Random(seed)
        self.core_uuid = self.new_uuid()
        self.started = clock.now()
        self.running = True  # False once shut down: other nodes' trunks to it fail (GATEWAY_DOWN)
        self.ipv4 = "127.0.0.1"
        self.ipv6 = "::1"
        self.park_variables: dict[str, str] = {}
        self.default_file_seconds = 3.0
        self.heartbeat_interval = heartbeat_interval  # FreeSWITCH's event-heartbeat-interval
        self.applications = dict(APPLICATIONS)
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, Endpoint] = {}
        self._known_users: set[str] = set()
        self.gateways: dict[str, Callable[[str], Endpoint | None]] = {}
        # loopback/<ext>: the far end for an extension; None = no route; absent = answers at once.
        self.loopback_extensions: dict[str, Endpoint | None] = {}
        # token -> (callback, the event names it wants or None for all)
        self._subscribers: dict[int, tuple[Callable[[SimEvent], None], frozenset[str] | None]] = {}
        self._wanted: frozenset[str] | None = frozenset()   # the union of those; None: every event
        self._log_subscribers: dict[int, Callable[[int, str], None]] = {}
        self._tokens = itertools.count(1)
        self._sequence = itertools.count(1)
        self._session_ids = itertools.count(1)
        self.sessions_since_startup = 0
        self.peak_sessions = 0
        self._heartbeat = clock.call_later(self.heartbeat_interval, self._beat)

    # ------------------------------------------------------------------ identity & events
    def new_uuid(self) -> str:
        return str(uuidlib.UUID(int=self._rng.getrandbits(128), version=4))

    def new_event(self, name: str, subclass: str | None = None,
                  site: tuple[str, str, int] | None = None) -> SimEvent:
        site = site or CALLING_SITES.get(name, ("switch_event.c", "switch_event_fire_detailed", 0))
        event = SimEvent(name)
        event.extend(CommonHeaders(name, subclass, self, self.clock.now(), site, next(self._sequence)))
        return event

    def subscribe(self, callback: Callable[[SimEvent], None], events: Iterable[str] | None = None) -> int:
        """callback(event) for every event fired, or only for those named in `events`."""
        token = next(self._tokens)
        self._subscribers[token] = (callback, frozenset(events) if events is not None else None)
        self._update_wanted()
        return token

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)
        self._update_wanted()

    def _update_wanted(self) -> None:
        names: set[str] = set()
        for _, events in self._subscribers.values():
            if events is None:
                self._wanted = None
                return
            names |= events
        self._wanted = frozenset(names)

    def wants(self, name: str) -> bool:
        """Does any subscriber take `name`? An event nobody takes is not built: an in-process
        what-if subscribes to the few it reads, and building the rest was most of its time."""
        return self._wanted is None or name in self._wanted

    def skip_event(self) -> None:
        """An event nobody takes still uses its Event-Sequence number, so what a subscriber
        sees does not depend on who else is subscribed."""
        next(self._sequence)

    def fire(self, event: SimEvent) -> None:
        name = event.name
        for callback, events in list(self._subscribers.values()):
            if events is not None and name not in events:
                continue
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop event delivery
                log.exception("event subscriber failed on %s", name)

    def subscribe_log(self, callback: Callable[[int, str], None]) -> int:
        """callback(level, formatted line) for every log line (the `log` command's feed)."""
        token = next(self._tokens)
        self._log_subscribers[token] = callback
        return token

    def unsubscribe_log(self, token: int) -> None:
        self._log_subscribers.pop(token, None)

    def log(self, level_name: str, text: str) -> None:
        level = LOG_LEVELS.get(level_name, 7)
        now = self.clock.now()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now * 1e6) % 1_000_000:06d}"
        line = f"{stamp} 99.00% [{level_name}] mod_commands.c:7200 {text}\n"
        for callback in list(self._log_subscribers.values()):
            callback(level, line)

    def _beat(self) -> None:
        if self.wants("HEARTBEAT"):
            self.fire(self._heartbeat_event())
        else:
            self.skip_event()
        self._heartbeat = self.clock.call_later(self.heartbeat_interval, self._beat)

    def _heartbeat_event(self) -> SimEvent:
        event = self.new_event("HEARTBEAT")
        event.add("Event-Info", "System Ready")
        event.add("Up-Time", self.uptime_text())
        event.add("Uptime-msec", int((self.clock.now() - self.started) * 1000))
        event.add("Session-Count", len(self.channels))
        event.add("Max-Sessions", 1000)
        event.add("Session-Per-Sec", 30)
        event.add("Session-Per-Sec-Last", 0)
        event.add("Session-Per-Sec-Max", 0)
        event.add("Session-Per-Sec-FiveMin", 0)
        event.add("Session-Since-Startup", self.sessions_since_startup)
        event.add("Session-Peak-Max", self.peak_sessions)
        event.add("Session-Peak-FiveMin", self.peak_sessions)
        event.add("Idle-CPU", "99.000000")
        return event

    def uptime_text(self) -> str:
        us = int((self.clock.now() - self.started) * 1_000_000)
        seconds, micro = divmod(us, 1_000_000)
        minutes, sec = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        days, hour = divmod(hours, 24)
        years, day = divmod(days, 365)
        return (f"{years} years, {day} days, {hour} hours, {minute} minutes, {sec} seconds, "
                f"{micro // 1000} milliseconds, {micro % 1000} microseconds")

    # ------------------------------------------------------------------ directory & gateways
    def register_user(self, user_id: str, endpoint: Endpoint) -> None:
        self.users[user_id] = endpoint
        self._known_users.add(user_id)

    def unregister_user(self, user_id: str) -> None:
        self.users.pop(user_id, None)

    def add_gateway(self, name: str, resolve: Callable[[str], Endpoint | None]) -> None:
        self.gateways[name] = resolve

    def add_trunk(self, name: str, far: "Switch") -> None:
        """The inter-node gateway `name` to the node `far` (see TrunkCall): what
        freeswitch/sip_profiles/external/callrouter_internode.xml sets up between real nodes."""
        def resolve(number: str) -> Endpoint:
            if not far.running:
                # What sofia answers once the gateway's OPTIONS ping has found the node gone.
                raise OriginateFailed("GATEWAY_DOWN")
            return TrunkCall(far, number).near

        self.gateways[name] = resolve

    # ------------------------------------------------------------------ channels
    def _add(self, channel: Channel) -> None:
        self.channels[channel.uuid] = channel
        self.sessions_since_startup += 1
        self.peak_sessions = max(self.peak_sessions, len(self.channels))

    def forget(self, channel: Channel) -> None:
        self.channels.pop(channel.uuid, None)

    def _base_variables(self, channel: Channel) -> None:
        channel.set_var("direction", channel.direction)
        if channel.direction == "outbound":
            channel.set_var("is_outbound", "true")
        channel.set_var("uuid", channel.uuid)
        channel.set_var("session_id", str(next(self._session_ids)))

    def inbound_call(self, endpoint: Endpoint, caller_id_number: str, caller_id_name: str,
                     destination_number: str, variables: dict[str, str] | None = None) -> Channel:
        """A SIP INVITE arriving on the internal profile; the dialplan sets
        park_variables + variables and parks the call."""
        uuid = self.new_uuid()
        name = f"sofia/{SIP_PROFILE}/{caller_id_number}@{CALLER_HOST}"
        profile = CallerProfile(direction="inbound", caller_id_name=caller_id_name,
                                caller_id_number=caller_id_number, destination_number=destination_number,
                                source="mod_sofia", context="public", username=caller_id_number,
                                network_addr=SIP_HOST)
        channel = Channel(self, uuid=uuid, name=name, direction="inbound", endpoint=endpoint,
                          profile=profile, codec=("PCMU", 8000), hit_dialplan=True)
        self._base_variables(channel)
        channel.set_var("call_uuid", uuid)
        host, port = CALLER_HOST.split(":")
        now_us = str(micros(self.clock.now()))
        for key, value in (
                ("sip_from_user", caller_id_number), ("sip_from_port", port),
                ("sip_from_uri", f"{caller_id_number}@{CALLER_HOST}"), ("sip_from_host", host),
                ("video_media_flow", "disabled"), ("audio_media_flow", "disabled"),
                ("text_media_flow", "disabled"), ("channel_name", name),
                ("sip_call_id", f"{uuid[:8]}@{host}"), ("sip_local_network_addr", SIP_HOST),
                ("sip_network_ip", host), ("sip_network_port", port), ("sip_invite_stamp", now_us),
                ("sip_received_ip", host), ("sip_received_port", port), ("sip_via_protocol", "udp"),
                ("sip_from_user_stripped", caller_id_number), ("sip_from_tag", uuid[-12:]),
                ("sofia_profile_name", SIP_PROFILE),
                ("sofia_profile_url", f"sip:mod_sofia@{SIP_HOST}:5060"),
                ("recovery_profile_name", SIP_PROFILE),
                ("sip_full_via", f"SIP/2.0/UDP {CALLER_HOST};branch=z9hG4bK-{uuid[:8]}"),
                ("sip_from_display", caller_id_name),
                ("sip_full_from", f'"{caller_id_name}" <sip:{caller_id_number}@{CALLER_HOST}>;tag={uuid[-12:]}'),
                ("sip_full_to", f"<sip:{destination_number}@{SIP_HOST}:5060>"),
                ("sip_req_user", destination_number), ("sip_req_port", "5060"),
                ("sip_req_uri", f"{destination_number}@{SIP_HOST}:5060"), ("sip_req_host", SIP_HOST),
                ("sip_to_user", destination_number), ("sip_to_port", "5060"),
                ("sip_to_uri", f"{destination_number}@{SIP_HOST}:5060"), ("sip_to_host", SIP_HOST),
                ("sip_contact_user", caller_id_number), ("sip_contact_port", port),
                ("sip_contact_uri", f"{caller_id_number}@{CALLER_HOST}"), ("sip_contact_host", host),
                ("rtp_use_codec_string", "OPUS,G722,PCMU,PCMA"), ("sip_via_host", host),
                ("sip_via_port", port), ("max_forwards", "70"),
                ("presence_id", f"{caller_id_number}@{host}"),
                ("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b"),
                ("endpoint_disposition", "DELAYED NEGOTIATION")):
            if value:
                channel.set_var(key, value)
        dialplan = [("set", f"{k}={v}") for k, v in {**self.park_variables, **(variables or {})}.items()]
        dialplan.append(("park", ""))
        self._start_inbound(channel, dialplan)
        return channel

    def trunk_call(self, endpoint: Endpoint, near: Channel, number: str) -> Channel:
        """A call from another node's inter-node gateway, arriving on the external profile: the
        public dialplan's callrouter_internode_agent extension bridges it to the local user
        (`callrouter-agent-<user>` as in freeswitch/, or the bare user). Sofia keeps the INVITE's
        X- headers as sip_h_* variables, so the near leg's sip_h_* variables arrive here."""
        uuid = self.new_uuid()
        near_host = f"{near.switch.ipv4}:5080"
        near_profile = near.profile
        name = f"sofia/external/{near_profile.caller_id_number}@{near_host}"
        profile = CallerProfile(direction="inbound", caller_id_name=near_profile.caller_id_name,
                                caller_id_number=near_profile.caller_id_number, destination_number=number,
                                source="mod_sofia", context="public", username=near_profile.caller_id_number,
                                network_addr=near.switch.ipv4)
        channel = Channel(self, uuid=uuid, name=name, direction="inbound", endpoint=endpoint,
                          profile=profile, codec=near.codec, hit_dialplan=True)
        self._base_variables(channel)
        channel.set_var("call_uuid", uuid)
        for key, value in (("channel_name", name), ("sofia_profile_name", "external"),
                           ("sip_network_ip", near.switch.ipv4), ("sip_req_user", number),
                           ("sip_to_user", number), ("sip_from_user", near_profile.caller_id_number)):
            channel.set_var(key, value)
        for key, value in near.variables.items():
            if key.startswith(SIP_HEADER_PREFIX):
                channel.set_var(key, value)
        user = number.removeprefix(INTERNODE_AGENT_PREFIX)
        self._start_inbound(channel, [("set", "hangup_after_bridge=true"), ("bridge", f"user/{user}")])
        return channel

    def _start_inbound(self, channel: Channel, dialplan: list[tuple[str, str]]) -> None:
        self._add(channel)

        def startup() -> None:
            channel.set_running_state("CS_NEW", "CS_NEW")
            channel.set_running_state("CS_INIT", "CS_INIT")
            channel.state = "CS_ROUTING"
            channel.fire("CHANNEL_CREATE")
            channel.next_work = lambda: self._run_dialplan(channel, dialplan, first=True)

        channel.start(startup)

    def _run_dialplan(self, channel: Channel, apps: list[tuple[str, str]], first: bool = False) -> None:
        if first:
            channel.running_state = "CS_ROUTING"
            channel.set_callstate("RINGING")
        channel.set_running_state("CS_ROUTING", "CS_ROUTING")
        channel.set_running_state("CS_EXECUTE", "CS_EXECUTE")
        for app, arg in apps:
            if not channel.is_up or channel.next_work is not None:
                return
            channel.execute(app, arg)

    def dialplan_for(self, destination: str) -> list[tuple[str, str]]:
        """The simulated XML dialplan: every extension tags the call and parks it."""
        apps = [("set", f"{k}={v}") for k, v in self.park_variables.items()]
        apps.append(("park", ""))
        return apps

    # ------------------------------------------------------------------ outbound legs
    def _resolve(self, target: str) -> tuple[Endpoint, str, str, tuple[str, int], str]:
        """endpoint part of a dial string -> (endpoint, channel name, number, codec, source)."""
        kind, _, rest = target.partition("/")
        if kind == "user":
            user = rest.split("@", 1)[0]
            endpoint = self.users.get(user)
            if endpoint is None:
                raise OriginateFailed("USER_NOT_REGISTERED" if user in self._known_users else "SUBSCRIBER_ABSENT")
            return endpoint, f"sofia/{SIP_PROFILE}/{user}@{SIP_HOST}", user, ("PCMU", 8000), "mod_sofia"
        if kind == "sofia":
            profile, _, uri = rest.partition("/")
            if profile == "gateway":
                gateway, _, number = uri.partition("/")
                resolve = self.gateways.get(gateway)
                if resolve is None:
                    raise OriginateFailed("INVALID_GATEWAY")
                endpoint = resolve(number)
                if endpoint is None:
                    raise OriginateFailed("NO_ROUTE_DESTINATION")
                return endpoint, f"sofia/gateway/{gateway}/{number}", number, ("PCMU", 8000), "mod_sofia"
            user = uri.removeprefix("sip:").split("@", 1)[0]
            endpoint = self.users.get(user)
            if endpoint is None:
                raise OriginateFailed("NORMAL_TEMPORARY_FAILURE")
            return endpoint, f"sofia/{profile}/{uri}", user, ("PCMU", 8000), "mod_sofia"
        if kind == "loopback":
            ext = rest.split("/", 1)[0]
            endpoint = self.loopback_extensions.get(ext, _Loopback())
            if endpoint is None:
                raise OriginateFailed("NO_ROUTE_DESTINATION")
            return endpoint, f"loopback/{ext}-a", ext, ("L16", 8000), "mod_loopback"
        if kind == "error":
            cause = rest.upper()
            raise OriginateFailed(cause if cause in HANGUP_CAUSES else "NORMAL_CLEARING")
        raise OriginateFailed("CHAN_NOT_IMPLEMENTED")

    def create_leg(self, peer: Peer, originator: Channel | None, *, check_vars: bool = True) -> Channel:
        """switch_core_session_outgoing_channel + its session thread up to CS_CONSUME_MEDIA,
        then the far end is offered the call."""
        endpoint, name, number, codec, source = self._resolve(peer.endpoint)
        variables = peer.originate_vars
        uuid = variables.get("origination_uuid") or self.new_uuid()
        if uuid in self.channels:
            raise OriginateFailed("NORMAL_TEMPORARY_FAILURE")
        if originator is not None:
            cid_name = originator.profile.caller_id_name
            cid_number = originator.profile.caller_id_number
        else:
            cid_name, cid_number = "", "0000000000"
        cid_name = variables.get("origination_caller_id_name", cid_name)
        cid_number = variables.get("origination_caller_id_number", cid_number)
        profile = CallerProfile(direction="outbound", caller_id_name=cid_name, caller_id_number=cid_number,
                                destination_number=number, source=source,
                                callee_id_name="Outbound Call", callee_id_number=number,
                                dialplan="XML" if originator is not None else "xml",
                                username=originator.profile.username if originator is not None else "",
                                network_addr=SIP_HOST if source == "mod_sofia" else "")
        channel = Channel(self, uuid=uuid, name=name, direction="outbound", endpoint=endpoint,
                          profile=profile, codec=codec, hit_dialplan=False)
        self._base_variables(channel)
        channel.set_var("channel_name", name)
        if originator is not None:
            channel.link(originator, "originator")
            channel.set_var("originator", originator.uuid)
            channel.set_var("originating_leg_uuid", originator.uuid)
            for key, value in originator.exports.items():
                channel.set_var(key, value)
            if name.startswith("sofia/") and originator.variables.get("sip_copy_custom_headers", "true") != "false":
                # sofia_outgoing_channel: the originator's custom headers go on with the call.
                for key, value in originator.variables.items():
                    if key.startswith(SIP_HEADER_PREFIX):
                        channel.set_var(key, value)
        channel.set_var("originate_endpoint", peer.endpoint.split("/", 1)[0])
        if name.startswith("sofia/"):
            channel.set_var("sofia_profile_name", SIP_PROFILE)
            channel.set_var("sip_destination_url", f"sip:{number}@{SIP_HOST}")
        if peer.endpoint.startswith("user/"):
            channel.set_var("dialed_user", number)
            channel.set_var("dialed_domain", SIP_HOST)
        for key, value in peer.channel_vars.items():
            if check_vars and has_variable(value):
                self.log("CRIT", f"Invalid data (${{{key}}} contains a variable)")
            else:
                channel.set_var(key, value or None)
        channel.set_var("call_uuid", originator.uuid if originator is not None else uuid)
        self._add(channel)
        channel.state = "CS_INIT"
        channel.running_state = "CS_NONE"
        channel.fire("CHANNEL_OUTGOING")
        started = Event()

        def startup() -> None:
            channel.set_running_state("CS_INIT", "CS_INIT")
            channel.state = "CS_ROUTING"
            channel.fire("CHANNEL_CREATE")
            channel.fire("CHANNEL_ORIGINATE")
            channel.set_running_state("CS_ROUTING", "CS_ROUTING")
            channel.set_running_state("CS_CONSUME_MEDIA", "CS_CONSUME_MEDIA")
            started.set()
            gevent.spawn(endpoint.on_offer, channel)

        channel.start(startup)
        started.wait()
        return channel

    def _await_leg(self, leg: Channel, timeout: float, wake: Event, *, early_ok: bool,
                   originator: Channel | None = None) -> None:
        """Block until `leg` answers (or shows early media when early_ok); else hang it up
        and raise OriginateFailed with the cause the originator sees."""
        leg.watchers.add(wake)
        try:
            def settled() -> bool:
                if not leg.is_up or leg.answered:
                    return True
                if early_ok and leg.answer_state == "early":
                    return True
                return originator is not None and not originator.is_up

            ok = wait_for(self.clock, wake, settled, timeout)
        finally:
            leg.watchers.discard(wake)
        if not ok:
            leg.perform_hangup("NO_ANSWER", disposition="send_cancel")
            raise OriginateFailed("NO_ANSWER")
        if originator is not None and not originator.is_up and leg.is_up:
            leg.perform_hangup("ORIGINATOR_CANCEL", disposition="send_cancel")
            raise OriginateFailed("ORIGINATOR_CANCEL")
        if not leg.is_up:
            raise OriginateFailed(leg.hangup_cause or "NORMAL_CLEARING")

    @staticmethod
    def _first_peer(dial: str, originator: Channel | None) -> tuple[Peer, bool]:
        """The endpoint dialled (the first of the first group: failover and ringing several at
        once are not simulated) and whether its variables are checked for `${`."""
        try:
            groups = originate_peers(dial)
        except DialStringError:
            groups = []
        if not groups:
            raise OriginateFailed("DESTINATION_OUT_OF_ORDER")
        nested = "origination_nested_vars=true" in dial.lower() or (
            originator is not None and switch_true(originator.variables.get("origination_nested_vars")))
        return groups[0][0], not nested

    def originate(self, dial: str, app: str, app_arg: str, extension: str | None) -> Channel:
        """api originate: bring the leg up (+OK at early media unless ignore_early_media),
        then run `&app(arg)` or the dialplan for `extension` on it."""
        target, check_vars = self._first_peer(dial, None)
        variables = target.originate_vars
        timeout = float(variables.get("originate_timeout", DEFAULT_ORIGINATE_TIMEOUT))
        early_ok = not switch_true(variables.get("ignore_early_media"))
        leg = self.create_leg(target, None, check_vars=check_vars)
        leg.set_var("originate_early_media", "true" if early_ok else "false")
        self._await_leg(leg, timeout, Event(), early_ok=early_ok)

        def run() -> None:
            leg.set_running_state("CS_EXECUTE", "CS_EXECUTE")
            if extension is not None:
                self._run_dialplan(leg, self.dialplan_for(extension))
            else:
                leg.execute(app, app_arg)

        leg.next_work = run
        leg.poke()
        return leg

    # ------------------------------------------------------------------ bridge
    def bridge_app(self, a: Channel, dial: str) -> None:
        """The bridge application: originate B from A, then bridge until one side leaves."""
        timeout = float(a.variables.get("call_timeout") or a.variables.get("originate_timeout")
                        or DEFAULT_ORIGINATE_TIMEOUT)
        previous = a.callstate
        a.set_callstate("RING_WAIT")
        try:
            target, check_vars = self._first_peer(dial, a)
            leg_timeout = float(target.originate_vars.get("leg_timeout", timeout))
            b = self.create_leg(target, a, check_vars=check_vars)
            self._await_leg(b, leg_timeout, a.wake, early_ok=False, originator=a)
        except OriginateFailed as failure:
            if a.is_up:
                a.set_callstate(previous)
            a.set_var("originate_disposition", failure.cause)
            a.set_var("DIALSTATUS", _dialstatus(failure.cause))
            a.set_var("originate_failed_cause", failure.cause)
            a.set_var("last_bridge_hangup_cause", failure.cause)
            if not _continues_on(a, failure.cause):
                a.perform_hangup(failure.cause)
            return
        if not a.answered:
            a.mark_answered()   # the bridge answers the caller once the callee has answered
        a.set_var("originate_disposition", "SUCCESS")
        a.set_var("DIALSTATUS", "SUCCESS")
        a.set_var("originate_causes", f"{b.uuid};NONE")
        a.set_var("originated_legs", f"{b.uuid};Outbound Call;{b.profile.destination_number}")
        self.run_bridge(a, b)
        if a.is_up and a.variables.get("hangup_after_bridge") == "true":
            a.perform_hangup("NORMAL_CLEARING")

    def run_bridge(self, a: Channel, b: Channel) -> None:
        """switch_ivr_multi_threaded_bridge, from A's session: CHANNEL_BRIDGE, wait until a
        side hangs up or leaves, CHANNEL_UNBRIDGE once the other side has reported."""
        a.link(b, "originatee")
        if b.other is not a:
            b.link(a, "originator")
        a.profile.callee_id_name = b.profile.callee_id_name
        a.profile.callee_id_number = b.profile.callee_id_number
        a.set_callstate("ACTIVE")
        now = self.clock.now()
        for me, peer in ((a, b), (b, a)):
            me.bridged_to = peer
            me.times["bridged"] = now
            me.set_var("last_bridge_to", peer.uuid)
            me.set_var("bridge_channel", peer.name)
            me.set_var("bridge_uuid", peer.uuid)
            me.set_var("signal_bond", peer.uuid)
        bridge_ids = [("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)]
        a.fire("CHANNEL_BRIDGE", pre=bridge_ids)

        def exchange_media() -> None:
            b.set_running_state("CS_EXCHANGE_MEDIA", "CS_EXCHANGE_MEDIA")
            # The interrupt that brought B here is spent, also when B had not started its park yet
            # (uuid_bridge straight after originate &park() answered): only a new one ends the bridge.
            b.leave_park = False
            b.wait(None, lambda: b.bridged_to is not a or b.leave_park, nested=False)
            if b.leave_park:
                b.leave_park = False

        b.next_work = exchange_media
        b.poke()
        for me, peer in ((a, b), (b, a)):
            if isinstance(me.endpoint, _TrunkSide):
                me.endpoint.bridged(peer)
            elif me.endpoint is not None and not isinstance(peer.endpoint, _TrunkSide):
                gevent.spawn(me.endpoint.on_bridge, me, peer.endpoint)
        b.watchers.add(a.wake)
        try:
            wait_for(self.clock, a.wake,
                     lambda: not a.is_up or not b.is_up or a.leave_park or b.bridged_to is not a, None)
        finally:
            b.watchers.discard(a.wake)
        if not a.is_up and b.is_up:
            b.perform_hangup("NORMAL_CLEARING")
        a.bridged_to = None
        if b.bridged_to is a:
            b.bridged_to = None
        b.poke()
        if not b.is_up:
            b.reported.wait()
            a.set_var("bridge_hangup_cause", b.hangup_cause)
            a.set_var("last_bridge_hangup_cause", b.hangup_cause)
        a.fire("CHANNEL_UNBRIDGE", pre=bridge_ids)
        for me in (a, b):
            if me.is_up and me.endpoint is not None:
                gevent.spawn(me.endpoint.on_unbridge, me)

    def uuid_bridge(self, a: Channel, b: Channel) -> None:
        """Both legs leave what they run; A bridges from CS_SOFT_EXECUTE, B exchanges media.
        When the bridge ends the survivor is hung up unless park_after_bridge=true."""
        def soft_execute() -> None:
            a.set_running_state("CS_SOFT_EXECUTE", "CS_SOFT_EXECUTE")
            a.link(b, "originator")
            a.fire("CHANNEL_EXECUTE", post=[("Application", "uuid_bridge"), ("Application-Data", b.uuid)],
                   site=("switch_ivr_bridge.c", "uuid_bridge_on_soft_execute", 1243))
            self.run_bridge(a, b)
            if a.is_up and a.variables.get("park_after_bridge") == "true":
                a.next_work = lambda: self.park_state(a)

        def hold() -> None:
            # B waits out of its application until A's bridge hands it the media loop.
            b.wait(None, lambda: b.next_work is not None or not a.is_up, nested=False)

        for channel in (a, b):
            channel.interrupt()
        b.next_work = hold
        a.next_work = soft_execute

    def park_state(self, channel: Channel) -> None:
        """uuid_park: CS_PARK running the park loop without an application."""
        channel.set_running_state("CS_PARK", "CS_PARK")
        park_loop(channel)

    def transfer(self, channel: Channel, destination: str, dialplan: str = "XML",
                 context: str = "default") -> None:
        """switch_ivr_session_transfer: a new caller profile, then the dialplan runs again."""
        profile = channel.profile
        profile.rdnis = profile.destination_number
        profile.destination_number = destination
        profile.context = context
        profile.profile_index += 1
        now = self.clock.now()
        channel.times["transfer"] = now
        source = f"{int(now)}:{channel.uuid}:bl_xfer:{destination}/{context}/{dialplan}"
        profile.transfer_source = source
        channel.set_var("transfer_history", source)
        channel.set_var("transfer_source", source)
        channel.interrupt()
        channel.next_work = lambda: self._run_dialplan(channel, self.dialplan_for(destination))

    # ------------------------------------------------------------------ media & recording
    def media_variables(self, channel: Channel) -> None:
        codec, rate = channel.codec
        channel.set_var("read_codec", codec)
        channel.set_var("read_rate", str(rate))
        channel.set_var("write_codec", codec)
        channel.set_var("write_rate", str(rate))
        if channel.name.startswith("sofia/"):
            for key, value in (("rtp_use_codec_name", codec), ("rtp_use_codec_rate", str(rate)),
                               ("rtp_use_codec_ptime", "20"), ("rtp_use_codec_channels", "1"),
                               ("original_read_codec", codec), ("original_read_rate", str(rate)),
                               ("dtmf_type", "rfc2833"), ("local_media_ip", SIP_HOST),
                               ("local_media_port", str(16384 + self._rng.randrange(0, 16384, 2))),
                               ("remote_media_ip", SIP_HOST),
                               ("remote_media_port", str(6000 + self._rng.randrange(0, 4000, 2))),
                               ("rtp_2833_send_payload", "101"), ("rtp_2833_recv_payload", "101"),
                               ("audio_media_flow", "sendrecv")):
                channel.set_var(key, value)

    def start_recording(self, channel: Channel, path: str) -> None:
        channel.recordings[path] = self.clock.now()
        channel.fire("RECORD_START", post=[("Record-File-Path", path)])
        if channel.endpoint is not None:
            gevent.spawn(channel.endpoint.on_media, channel, "record", path)

    def stop_recording(self, channel: Channel, path: str) -> bool:
        paths = list(channel.recordings) if path == "all" else [path]
        stopped = False
        for p in paths:
            if channel.recordings.pop(p, None) is not None:
                channel.fire("RECORD_STOP", post=[("Record-File-Path", p),
                                                  ("Record-Completion-Cause", "success-maxtime")])
                stopped = True
        return stopped

    def stop_recordings(self, channel: Channel) -> None:
        self.stop_recording(channel, "all")

    def cdr_variables(self, channel: Channel) -> None:
        """What FreeSWITCH adds at CS_REPORTING: the cause, stamps, durations, RTP stats."""
        t = channel.times
        end = t["hangup"] or self.clock.now()
        cause = channel.hangup_cause or "NORMAL_CLEARING"
        created, profile_created = t["created"], channel.profile.created
        cdr = [("hangup_cause", cause), ("hangup_cause_q850", str(HANGUP_CAUSES.get(cause, 16))),
               ("digits_dialed", "none"), ("start_stamp", _stamp(created)),
               ("profile_start_stamp", _stamp(profile_created))]
        cdr += [(name, _stamp(t[key])) for key, name in _STAMPED if t[key]]
        cdr.append(("end_stamp", _stamp(end)))
        for name, value in (("start", created), ("profile_start", profile_created),
                            ("answer", t["answered"]), ("bridge", t["bridged"])):
            cdr += _epochs(name, value)
        cdr += _ZERO_EPOCHS
        for name, value in (("progress", t["progress"]), ("progress_media", t["progress_media"]), ("end", end)):
            cdr += _epochs(name, value)
        variables = channel.variables
        for name in ("last_app", "last_arg"):
            if name in variables:
                cdr.append((name, variables[name]))
        profile = channel.profile
        cdr.append(("caller_id", f'"{profile.caller_id_name}" <{profile.caller_id_number}>'))

        def since(value: float, base: float = created) -> float:
            return max(0.0, value - base) if value else 0.0

        billed = since(end, t["answered"]) if t["answered"] else 0.0
        spans = (end - created, billed, since(t["progress"]), since(t["answered"]), since(t["bridged"]),
                 since(t["progress_media"]), billed)
        for names, scale in _DURATIONS:
            cdr += zip(names, [str(int(value * scale)) for value in spans])
        if "sip_hangup_disposition" in variables:
            cdr.append(("sip_hangup_disposition", variables["sip_hangup_disposition"]))
        if channel.name.startswith("sofia/") and channel.media_up:
            packets = int(since(end, t["progress_media"] or t["answered"]) * 50)
            cdr += [(name, str(packets * per_packet) if per_packet is not None else value)
                    for name, per_packet, value in _RTP_STATS]
        for name, value in cdr:
            channel.set_var(name, value)

    # ------------------------------------------------------------------ api & lifecycle
    def api(self, line: str) -> str:
        """Run one api command and return its exact output (may block, e.g. originate)."""
        from engine.simulator.commands import execute_api   # commands.py imports this module

        return execute_api(self, line)

    def execute(self, uuid: str, app: str, arg: str = "", *, app_uuid: str | None = None,
                event_lock: bool = False) -> bool:
        """Queue an application on a channel like sendmsg execute; False if no such channel."""
        channel = self.channels.get(uuid)
        if channel is None or not channel.is_up:
            return False
        channel.enqueue(Message(app, arg, app_uuid or self.new_uuid(), event_lock))
        return True

    def hupall(self, cause: str = "MANAGER_REQUEST") -> None:
        for channel in list(self.channels.values()):
            channel.perform_hangup(cause)

    def shutdown(self) -> None:
        """Hang up everything and stop the heartbeat."""
        if self._heartbeat is not None:
            self._heartbeat.kill(block=False)
            self._heartbeat = None
        self.running = False
        self.hupall("MANAGER_REQUEST")
        for channel in list(self.channels.values()):
            channel.destroyed.wait(timeout=5)


# The CDR variables' tables (Switch.cdr_variables), in FreeSWITCH's order.
_STAMPED = (("answered", "answer_stamp"), ("bridged", "bridge_stamp"), ("progress", "progress_stamp"),
            ("progress_media", "progress_media_stamp"))
_ZERO_EPOCHS = [("last_hold_epoch", "0"), ("last_hold_uepoch", "0"), ("hold_accum_seconds", "0"),
                ("hold_accum_usec", "0"), ("hold_accum_ms", "0"), ("resurrect_epoch", "0"), ("resurrect_uepoch", "0")]
# Every *sec, then every *msec, then every *usec; duration leads each (the spans of cdr_variables).
_DURATIONS = tuple((tuple(unit_name if not key else f"{key}{unit}" for key in
                          ("", "bill", "progress", "answer", "wait", "progress_media", "flow_bill")), scale)
                   for unit, unit_name, scale in (("sec", "duration", 1), ("msec", "mduration", 1000),
                                                  ("usec", "uduration", 1_000_000)))
# rtp_audio_* as (name, bytes per packet, or None for a fixed value); 50 packets a second.
_RTP_STATS = tuple((f"rtp_audio_{key}", per_packet, value) for key, per_packet, value in (
    ("in_raw_bytes", 172, ""), ("in_media_bytes", 160, ""), ("in_packet_count", 1, ""),
    ("in_media_packet_count", 1, ""), ("in_skip_packet_count", None, "0"), ("in_jitter_packet_count", None, "0"),
    ("in_dtmf_packet_count", None, "0"), ("in_cng_packet_count", None, "0"), ("in_flush_packet_count", None, "0"),
    ("in_largest_jb_size", None, "0"), ("in_jitter_min_variance", None, "0.00"),
    ("in_jitter_max_variance", None, "0.00"), ("in_jitter_loss_rate", None, "0.00"),
    ("in_jitter_burst_rate", None, "0.00"), ("in_mean_interval", None, "20.00"), ("in_flaw_total", None, "0"),
    ("in_quality_percentage", None, "100.00"), ("in_mos", None, "4.50"), ("out_raw_bytes", 172, ""),
    ("out_media_bytes", 160, ""), ("out_packet_count", 1, ""), ("out_media_packet_count", 1, ""),
    ("out_skip_packet_count", None, "0"), ("out_dtmf_packet_count", None, "0"), ("out_cng_packet_count", None, "0"),
    ("rtcp_packet_count", None, "0"), ("rtcp_octet_count", None, "0")))


@functools.lru_cache(maxsize=1024)
def _stamp_second(second: int) -> str:
    return format_stamp(second)


def _stamp(epoch: float) -> str:
    """format_stamp, once per second of the clock: a channel's stamps mostly share their seconds."""
    return _stamp_second(int(epoch))


def _epochs(name: str, value: float) -> tuple[tuple[str, str], tuple[str, str]]:
    return (f"{name}_epoch", str(int(value))), (f"{name}_uepoch", str(micros(value)))


def _continues_on(channel: Channel, cause: str) -> bool:
    """switch_channel_handle_cause: does a failed bridge leave the channel up (continue_on_fail
    true or naming the cause; unset, only for the no-answer causes) rather than hang it up with
    the bridge's cause?"""
    setting = channel.variables.get("continue_on_fail")
    if setting is None:
        return cause in ("NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL")
    if setting.lower() == "true":
        return True
    named = {item.strip().upper() for item in setting.split(",") if item.strip()}
    return cause in named or str(HANGUP_CAUSES.get(cause)) in named


class TrunkCall:
    """One call over an inter-node trunk: the near node's outbound leg `sofia/gateway/<gw>/<number>`
    and the far node's inbound leg are each other's far end, as the SIP dialog between the two
    switches makes them. The far leg gets the near leg's sip_h_* variables (the X- headers the
    INVITE carried); the far leg's answer and hangup (with its cause) reach the near leg, and the
    near leg's hangup (BYE or CANCEL) reaches the far leg.

    The people on both ends meet once both legs are bridged: the agent the far node bridged its
    leg to, and the caller the near node bridged its leg to, each learn of the other then
    (Endpoint.on_bridge), as if the trunk were not there.
    """

    def __init__(self, far: Switch, number: str) -> None:
        self.far_switch = far
        self.number = number
        self.near = _TrunkSide(self)  # the near leg's far end
        self.far = _TrunkSide(self)   # the far leg's far end

    def offered(self, near: Channel) -> None:
        """The near leg's INVITE: the far node's leg, whose 200 OK answers the near leg."""
        self.near.leg = near
        if not near.is_up:  # cancelled before the INVITE went out
            return
        far = self.far.leg = self.far_switch.trunk_call(self.far, near, self.number)
        wake = Event()
        far.watchers.add(wake)
        try:
            wait_for(near.clock, wake, lambda: far.answered or not far.is_up, None)
        finally:
            far.watchers.discard(wake)
        if far.is_up:
            near.answer()

    def joined(self) -> None:
        near, far = self.near.party, self.far.party
        if near is not None and far is not None and near.endpoint is not None and far.endpoint is not None:
            gevent.spawn(near.endpoint.on_bridge, near, far.endpoint)
            gevent.spawn(far.endpoint.on_bridge, far, near.endpoint)


class _TrunkSide:
    """The far end of one of a TrunkCall's legs: the other switch."""

    name = "trunk"

    def __init__(self, call: TrunkCall) -> None:
        self.call = call
        self.leg: Channel | None = None
        self.party: Channel | None = None  # the channel this side's leg is bridged to on its own node

    def bridged(self, party: Channel) -> None:
        self.party = party
        self.call.joined()

    def on_offer(self, leg: Channel) -> None:
        self.call.offered(leg)

    def on_media(self, leg: Channel, kind: str, detail: str) -> None:
        pass

    def on_bridge(self, leg: Channel, other: Endpoint | None) -> None:
        pass  # run_bridge tells this side its party through bridged()

    def on_unbridge(self, leg: Channel) -> None:
        self.party = None

    def on_hangup(self, leg: Channel, cause: str, by_far_end: bool) -> None:
        """Its switch hung the leg up: BYE, CANCEL or a refusal with the cause to the other switch."""
        other = self.call.far if self is self.call.near else self.call.near
        if not by_far_end and other.leg is not None:
            other.leg.hangup(cause)


def _dialstatus(cause: str) -> str:
    return {"USER_BUSY": "BUSY", "NO_ANSWER": "NOANSWER", "NO_USER_RESPONSE": "NOANSWER",
            "ORIGINATOR_CANCEL": "CANCEL", "CALL_REJECTED": "BUSY"}.get(cause, "CHANUNAVAIL")
