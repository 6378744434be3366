"""The simulated switch's inbound Event Socket server (mod_event_socket as FreeSWITCH 1.10.12
behaves, reference/behaviour.md): auth, event subscriptions and filters, api/bgapi, sendmsg,
myevents, log, sendevent, the per-listener event queue with its slow-consumer kill, and the
disconnect notices.

One reader greenlet per connection runs its commands in order (a blocking `api` holds the
connection's events back until its reply is written, like FreeSWITCH's listener thread); one
writer greenlet drains the event queue.
"""
from __future__ import annotations

import collections
import logging
import socket

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.server import StreamServer

from engine.simulator import wire
from engine.simulator.channel import Message
from engine.simulator.events import EVENT_NAMES, SimEvent
from engine.simulator.switch import LOG_LEVELS, Switch

log = logging.getLogger(__name__)

MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_PARK", "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK",
    "DETECTED_SPEECH", "DTMF", "TALK", "NOTALK"})
FORMATS = ("plain", "json", "xml")


class EslConnection:
    """One inbound Event Socket client."""

    WRITE_BATCH = 512   # events written at most in one send

    def __init__(self, server: "EslServer", sock: socket.socket) -> None:
        self.server = server
        self.switch = server.switch
        self.sock = sock
        self.authed = False
        self.closed = False
        self.listening = False
        self.format = "plain"
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        self.all_events = False
        self.filters: list[tuple[str, str]] = []
        self.session_uuid: str | None = None
        self.log_level: int | None = None
        self.queue: collections.deque[SimEvent] = collections.deque()
        self.lost = 0
        self.killed = False
        self._has_events = Event()
        self._api_idle = Event()
        self._api_idle.set()
        self._write_lock = Semaphore()
        self._token = self.switch.subscribe(self._on_event)
        self._log_token: int | None = None
        self._writer = gevent.spawn(self._write_events)

    # ------------------------------------------------------------------ output
    def _send(self, data: bytes) -> bool:
        with self._write_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(data)
                return True
            except OSError:
                self._drop()
                return False

    def send_raw(self, data: bytes) -> None:
        """Fault injection for client tests: bytes as they are, between whole frames."""
        self._send(data)

    def _write_events(self) -> None:
        while not self.closed:
            self._has_events.wait()
            gevent.sleep(0)   # the greenlets running now fire more: they go out in the same write
            self._api_idle.wait()
            if self.killed:
                self._send(wire.disconnect_notice(wire.KILLED_LOST_EVENTS))
                self._drop()
                return
            if not self.queue:
                self._has_events.clear()
                continue
            # Everything queued goes out in one write: a send per event was a third of the
            # simulator's CPU, and the bytes on the stream are the same.
            frames = []
            ending = False
            while self.queue and len(frames) < self.WRITE_BATCH and not ending:
                event = self.queue.popleft()
                frames.append(wire.event_frame(event.headers, event.body, self.format))
                ending = bool(self.session_uuid) and event.name == "CHANNEL_HANGUP_COMPLETE" \
                    and event.unique_id == self.session_uuid
            if not self._send(b"".join(frames)):
                return
            if ending:
                self._send(wire.disconnect_notice(wire.GOODBYE, self.session_uuid, "disconnect"))
                self._drop()
                return

    # ------------------------------------------------------------------ events in
    def _wants(self, event: SimEvent) -> bool:
        if self.session_uuid is not None:
            return event.name in MYEVENTS and event.unique_id == self.session_uuid
        if not self.listening:
            return False
        if not self.all_events:
            if event.name not in self.names:
                return False
            if event.name == "CUSTOM" and event.subclass not in self.subclasses:
                return False
        if self.filters:
            return any(event.get(name) == value for name, value in self.filters)
        return True

    def _on_event(self, event: SimEvent) -> None:
        """Called from switch.fire: must never block (mod_event_socket's event_handler)."""
        if self.closed or self.killed or not self._wants(event):
            return
        if len(self.queue) >= self.server.queue_limit:
            self.lost += 1
            if self.lost > self.server.max_missed:
                log.warning("Killing listener because of too many lost events. Lost [%d] Queue size[%d/%d]",
                            self.lost, len(self.queue), self.server.queue_limit)
                self.killed = True
                self.queue.clear()
                self.switch.unsubscribe(self._token)
                self._has_events.set()
            return
        self.lost = 0
        self.queue.append(event)
        self._has_events.set()

    def _on_log(self, level: int, line: str) -> None:
        if self.log_level is not None and level <= self.log_level and not self.closed:
            gevent.spawn(self._send, wire.log_data(line, level, 3, "mod_commands.c", "log_function", 7200))

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> None:
        parser = wire.RequestParser()
        if not self._send(wire.auth_request()):
            return
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                try:
                    requests = parser.feed(data)
                except ValueError:
                    break
                for request in requests:
                    if self.closed:
                        break
                    if self.server.received is not None:
                        self.server.received.append(request)
                    self._handle(request)
        finally:
            self._drop()

    def close(self) -> None:
        """Drop the connection abruptly, as a network cut would."""
        self._drop()

    def goodbye(self, body: str = wire.GOODBYE) -> None:
        self._send(wire.disconnect_notice(body))
        self._drop()

    def _drop(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.switch.unsubscribe(self._token)
        if self._log_token is not None:
            self.switch.unsubscribe_log(self._log_token)
        self._has_events.set()
        self._api_idle.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.server.connections.discard(self)

    # ------------------------------------------------------------------ commands
    def _reply(self, text: str, *extra: tuple[str, str]) -> None:
        self._send(wire.command_reply(text, *extra))

    def _handle(self, request: wire.Request) -> None:
        command, _, args = request.line.partition(" ")
        command, args = command.strip(), args.strip()
        if not self.authed:
            if command == "auth":
                if args == self.server.password:
                    self.authed = True
                    self._reply("+OK accepted")
                else:
                    self._reply("-ERR invalid")
                    self.goodbye()
            else:
                self._reply("-ERR command not found")
            return
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None or (not args and command in ("api", "bgapi", "filter")):
            self._reply("-ERR command not found")
            return
        handler(args, request)

    def _cmd_exit(self, args: str, request: wire.Request) -> None:
        self._reply("+OK bye")
        self.goodbye()

    def _cmd_api(self, args: str, request: wire.Request) -> None:
        self._api_idle.clear()
        try:
            body = self.switch.api(args)
            self._send(wire.api_response(body))
        finally:
            self._api_idle.set()

    def _cmd_bgapi(self, args: str, request: wire.Request) -> None:
        job_uuid = request.header("Job-UUID") or self.switch.new_uuid()
        self._reply(f"+OK Job-UUID: {job_uuid}", ("Job-UUID", job_uuid))
        gevent.spawn(self.server.background_job, job_uuid, args)

    def _cmd_event(self, args: str, request: wire.Request) -> None:
        words = args.split()
        fmt = words[0].lower() if words else "plain"
        self.format = fmt if fmt in FORMATS else "plain"
        names, subclasses, all_events, custom = set(), set(), False, False
        for word in words[1:]:
            if custom:
                subclasses.add(word)
            elif word.upper() in EVENT_NAMES:
                word = word.upper()
                names.add(word)
                all_events |= word == "ALL"
                custom |= word == "CUSTOM"
        if not names:
            self._reply("-ERR no keywords supplied")
            return
        self.names |= names
        self.subclasses |= subclasses
        self.all_events |= all_events
        self.listening = True
        self._reply(f"+OK event listener enabled {self.format}")

    def _cmd_nixevent(self, args: str, request: wire.Request) -> None:
        custom = False
        for word in args.split():
            if custom:
                self.subclasses.discard(word)
            elif word.upper() in EVENT_NAMES:
                word = word.upper()
                if word == "ALL":
                    self.all_events = False
                    self.names.clear()
                self.names.discard(word)
                custom |= word == "CUSTOM"
        self._reply("+OK events nixed")

    def _cmd_noevents(self, args: str, request: wire.Request) -> None:
        if not self.listening:
            self._reply("-ERR not listening for events")
            return
        self.listening = False
        self.names.clear()
        self.subclasses.clear()
        self.all_events = False
        self._reply("+OK no longer listening for events")

    def _cmd_filter(self, args: str, request: wire.Request) -> None:
        words = args.split(None, 1)
        if words[0] == "delete":
            rest = words[1] if len(words) > 1 else ""
            name, _, value = rest.partition(" ")
            if name == "all":
                self.filters.clear()
            else:
                self.filters = [f for f in self.filters if f != (name, value)]
            self._reply(f"+OK filter deleted. [{name}][{value}]")
            return
        name, _, value = args.partition(" ")
        self.filters.append((name, value.strip()))
        self._reply(f"+OK filter added. [{name}]=[{value.strip()}]")

    def _cmd_myevents(self, args: str, request: wire.Request) -> None:
        words = args.split()
        if self.session_uuid is not None:
            self._reply("-ERR aready enabled.")
            return
        uuid = words[0] if words else ""
        if len(words) > 1:
            if uuid not in self.switch.channels:
                self._reply("-ERR invalid uuid")
                return
            self.format = words[1] if words[1] in FORMATS else "plain"
        self.session_uuid = uuid
        self._reply("+OK Events Enabled")

    def _cmd_linger(self, args: str, request: wire.Request) -> None:
        self._reply("-ERR not controlling a session")

    _cmd_nolinger = _cmd_linger

    def _cmd_log(self, args: str, request: wire.Request) -> None:
        level = args.strip() or "7"
        number = int(level) if level.isdigit() else LOG_LEVELS.get(level.upper())
        if number is None or number > 7:
            self._reply("-ERR invalid log level")
            return
        self.log_level = number
        if self._log_token is None:
            self._log_token = self.switch.subscribe_log(self._on_log)
        self._reply(f"+OK log level {level} [{number}]")

    def _cmd_nolog(self, args: str, request: wire.Request) -> None:
        if self._log_token is None:
            self._reply("-ERR not loging")
            return
        self.switch.unsubscribe_log(self._log_token)
        self._log_token = None
        self.log_level = None
        self._reply("+OK no longer logging")

    def _cmd_sendevent(self, args: str, request: wire.Request) -> None:
        words = args.split()
        name = words[0].upper() if words else "CUSTOM"
        if name not in EVENT_NAMES or name == "ALL":
            self._reply("-ERR invalid event name")
            return
        subclass = request.header("Event-Subclass")
        event = self.switch.new_event(name, subclass if name == "CUSTOM" else None)
        event.add("Command", f"sendevent {args}")
        for key, value in request.headers.items():
            if key.lower() not in ("event-subclass", "content-length", "content-type"):
                event.add(key, value)
        event.body = request.body or None
        self.switch.fire(event)
        self._reply(f"+OK {event.get('Event-UUID') or self.switch.new_uuid()}")

    def _cmd_sendmsg(self, args: str, request: wire.Request) -> None:
        uuid = args.split()[0] if args.split() else (self.session_uuid or "")
        channel = self.switch.channels.get(uuid)
        if channel is None or not channel.is_up:
            self._reply(f"-ERR invalid session id [{uuid}]")
            return
        call_command = (request.header("call-command") or "").lower()
        if call_command == "execute":
            app = request.header("execute-app-name") or ""
            arg = request.header("execute-app-arg")
            if arg is None:
                arg = request.body
            locked = (request.header("event-lock") or "").lower() == "true"
            loops = request.header("loops") or "1"
            channel.enqueue(Message(app, arg or "", request.header("Event-UUID") or self.switch.new_uuid(),
                                    locked, int(loops) if loops.lstrip("-").isdigit() else 1))
        elif call_command == "hangup":
            channel.perform_hangup(request.header("hangup-cause") or "NORMAL_CLEARING")
        elif call_command == "unicast":
            pass   # media forking is not simulated; FreeSWITCH acknowledges it the same way
        elif call_command == "nomedia":
            channel.set_var("bypass_media", "true")
        self._reply("+OK")


class EslServer:
    """Inbound Event Socket on host:port for one Switch."""

    def __init__(self, switch: Switch, host: str = "127.0.0.1", port: int = 0,
                 password: str = "ClueCon") -> None:
        self.switch = switch
        self.host = host
        self.password = password
        self.queue_limit = 100000
        self.max_missed = 500
        self.connections: set[EslConnection] = set()
        self.received: list[wire.Request] | None = None  # a list: every client command is kept there (tests)
        self._requested_port = port
        self._server: StreamServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return self._server.server_port

    def start(self) -> None:
        self._server = StreamServer((self.host, self._requested_port), self._serve)
        self._server.start()

    def _serve(self, sock: socket.socket, address) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = EslConnection(self, sock)
        self.connections.add(connection)
        connection.run()

    def background_job(self, job_uuid: str, command_line: str) -> None:
        """bgapi: run the command, then BACKGROUND_JOB with its output as the body."""
        body = self.switch.api(command_line)
        command, _, args = command_line.strip().partition(" ")
        event = self.switch.new_event("BACKGROUND_JOB")
        event.add("Job-UUID", job_uuid)
        event.add("Job-Command", command)
        if args.strip():
            event.add("Job-Command-Arg", args.strip())
        event.body = body
        self.switch.fire(event)

    def stop(self) -> None:
        """FreeSWITCH going away: close the listener and every connection."""
        for connection in list(self.connections):
            connection.goodbye(wire.SHUTTING_DOWN)
        if self._server is not None:
            self._server.stop(timeout=1)
