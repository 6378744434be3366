"""One FreeSWITCH node: a long-lived inbound Event Socket connection that (re)connects forever
with backoff and jitter, subscribes by name, watches the switch's heartbeat, and correlates
replies: api/sendmsg by order, bgapi by our own Job-UUID.

Greenlets: a supervisor (connect, wait for the drop, back off, reconnect), the connection's
reader (and a writer while the socket is full), a heartbeat watchdog per connection, and one
greenlet per `on_up` call; a bgapi needs none of its own (its +OK is handled by a callback in
the reader). `on_event` runs
in the reader: it must hand the event off (e.g. put it in the call's inbox) and return; if it
blocks, every event and reply behind it waits, and FreeSWITCH kills a listener that lags.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import gevent
import gevent.event
from gevent.event import AsyncResult

from engine.errors import CommandFailed, CommandTimeout, EslError, NotConnected
from engine.esl import commands
from engine.esl.connection import EslConnection
from engine.esl.protocol import Event

log = logging.getLogger(__name__)

# Always subscribed: our bgapi results and the switch's 20-second pulse for the watchdog.
_REQUIRED_EVENTS = ("BACKGROUND_JOB", "HEARTBEAT")


class Observer(Protocol):
    """Who counts what the node sees (engine.metrics): called inline, so it must not block."""

    def connected(self, node: str) -> None: ...
    def event(self, node: str, name: str) -> None: ...
    def command(self, node: str, command: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class NodeConfig:
    name: str
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    events: tuple[str, ...] = ()
    custom: tuple[str, ...] = ()  # CUSTOM subclasses, e.g. "callcenter::info"
    command_timeout: float = 5.0
    connect_timeout: float = 3.0
    heartbeat_timeout: float = 60.0  # silence after which the watchdog probes with `api status`
    backoff_initial: float = 0.2
    backoff_max: float = 10.0


class Node:
    def __init__(self, config: NodeConfig, on_event: Callable[[Event], None],
                 on_up: Callable[["Node"], None] | None = None,
                 on_down: Callable[["Node", str], None] | None = None,
                 observer: Observer | None = None) -> None:
        self.config = config
        self._observer = observer
        self.name = config.name
        self._on_event = on_event
        self._on_up = on_up
        self._on_down = on_down
        self._subscription = commands.subscribe((*config.events, *_REQUIRED_EVENTS), config.custom)
        self._conn: EslConnection | None = None
        self._up = gevent.event.Event()
        self._wake = gevent.event.Event()  # interrupts backoff sleeps on stop()
        self._stopping = False
        self._supervisor: gevent.Greenlet | None = None
        self._jobs: dict[str, AsyncResult] = {}

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.config.host}:{self.config.port} {'up' if self.up else 'down'}>"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; reconnect forever until stop()."""
        if self._supervisor is None:
            self._stopping = False
            self._supervisor = gevent.spawn(self._supervise)

    def stop(self) -> None:
        """Leave cleanly: say exit, fail every waiter with NotConnected, stop reconnecting."""
        self._stopping = True
        self._wake.set()
        conn = self._conn
        if conn is not None:
            conn.stop(timeout=min(1.0, self.config.command_timeout))
        if self._supervisor is not None:
            self._supervisor.join(timeout=self.config.command_timeout)
            self._supervisor.kill()
            self._supervisor = None
        self._fail_jobs("node stopped")

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def wait_up(self, timeout: float | None = None) -> bool:
        return self._up.wait(timeout)

    def _supervise(self) -> None:
        delay = self.config.backoff_initial
        while not self._stopping:
            closed = gevent.event.Event()
            conn = EslConnection(
                self.config.host, self.config.port, self.config.password, node=self.name,
                on_event=self._dispatch, on_close=lambda reason: closed.set(),
                connect_timeout=self.config.connect_timeout)
            watchdog = None
            try:
                try:
                    conn.connect()
                    self._check_ok(conn.send(self._subscription, self.config.command_timeout), "event subscription")
                except EslError as exc:
                    conn.close(f"setup failed: {exc}")
                    log.warning("%s: %s; retrying in about %.1fs", self.name, exc, delay)
                    self._backoff(delay)
                    delay = min(delay * 2, self.config.backoff_max)
                    continue
                delay = self.config.backoff_initial
                self._conn = conn
                self._up.set()
                if self._observer is not None:
                    self._observer.connected(self.name)
                log.info("%s: connected to %s:%s", self.name, self.config.host, self.config.port)
                watchdog = gevent.spawn(self._watchdog, conn)
                if self._on_up is not None:
                    gevent.spawn(self._call, self._on_up, self)
                closed.wait()
            finally:  # also when stop() kills us mid-connect: never leak a socket
                if watchdog is not None:
                    watchdog.kill(block=False)
                conn.close("node stopped")
            self._up.clear()
            self._conn = None
            reason = conn.closed_reason or "closed"
            self._fail_jobs(f"connection lost: {reason}")
            log.warning("%s: connection down: %s", self.name, reason)
            if self._on_down is not None:
                self._call(self._on_down, self, reason)
            if not self._stopping:
                self._backoff(delay)

    def _backoff(self, delay: float) -> None:
        # Jitter spreads the reconnects of many engines after a switch restart.
        self._wake.wait(delay * random.uniform(0.5, 1.0))

    def _watchdog(self, conn: EslConnection) -> None:
        """Probe a switch that has been silent for heartbeat_timeout; reset it if it stays silent."""
        limit = self.config.heartbeat_timeout
        while conn.connected:
            idle = time.monotonic() - conn.last_received
            if idle < limit:
                gevent.sleep(limit - idle)
                continue
            try:
                conn.send(commands.api("status"), self.config.command_timeout)
            except CommandTimeout:
                conn.close(f"no data for {idle:.0f}s and no answer to `api status`")
            except NotConnected:
                return

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: %s failed", self.name, getattr(fn, "__name__", fn))

    # -- events --------------------------------------------------------------------------
    def _dispatch(self, event: Event) -> None:
        if self._observer is not None:
            self._observer.event(self.name, event.name)
        if event.name == "BACKGROUND_JOB":
            result = self._jobs.pop(event.job_uuid or "", None)
            if result is not None:
                result.set(event.body or "")
                return
        self._on_event(event)

    def _fail_jobs(self, reason: str) -> None:
        jobs, self._jobs = self._jobs, {}
        for result in jobs.values():
            result.set_exception(NotConnected(f"{self.name}: {reason}; the job's result is lost"))

    # -- commands ------------------------------------------------------------------------
    def _send(self, frame: str, timeout: float | None) -> Event:
        conn = self._conn
        if conn is None:
            raise NotConnected(f"{self.name}: not connected to FreeSWITCH")
        if self._observer is None:
            return conn.send(frame, self.config.command_timeout if timeout is None else timeout)
        started = time.monotonic()
        try:
            return conn.send(frame, self.config.command_timeout if timeout is None else timeout)
        finally:
            self._observer.command(self.name, frame.split(" ", 1)[0].strip(), time.monotonic() - started)

    @staticmethod
    def _refusal(reply: Event, what: str) -> CommandFailed | None:
        text = reply.get("Reply-Text") or ""
        if text.startswith("+OK"):
            return None
        return CommandFailed(f"{what} refused by FreeSWITCH: {text or reply.body!r}")

    @classmethod
    def _check_ok(cls, reply: Event, what: str) -> None:
        error = cls._refusal(reply, what)
        if error is not None:
            raise error

    def api(self, cmd: str, timeout: float | None = None) -> str:
        """Run an API command and return its output (which may itself say -ERR ...).

        Blocks this connection's events until FreeSWITCH answers (behaviour.md §4): use bgapi
        for anything slow, e.g. originate."""
        reply = self._send(commands.api(cmd), timeout)
        if reply.content_type != "api/response":  # e.g. "-ERR command not found"
            raise CommandFailed(f"{self.name}: api {cmd!r}: {reply.get('Reply-Text')}")
        return reply.body or ""

    def bgapi_async(self, cmd: str) -> AsyncResult:
        """Start a background job; the result is resolved with its output, or an exception."""
        job_uuid = commands.new_uuid()
        frame = commands.bgapi(cmd, job_uuid)
        result = AsyncResult()
        conn = self._conn
        if conn is None:
            result.set_exception(NotConnected(f"{self.name}: not connected to FreeSWITCH"))
            return result
        started = time.monotonic()

        def accepted(reply: Event | EslError) -> None:  # in the reader: must not block
            if self._observer is not None:
                self._observer.command(self.name, "bgapi", time.monotonic() - started)
            error = self._refusal(reply, "bgapi") if isinstance(reply, Event) else reply
            if error is not None and self._jobs.pop(job_uuid, None) is not None:
                result.set_exception(error)

        self._jobs[job_uuid] = result  # before sending: the event may beat the reply
        try:
            conn.send_nowait(frame, self.config.command_timeout, accepted)
        except NotConnected as exc:
            del self._jobs[job_uuid]
            result.set_exception(exc)
        return result

    def bgapi(self, cmd: str, timeout: float | None = None) -> str:
        """Run an API command in the background and wait for its BACKGROUND_JOB output."""
        result = self.bgapi_async(cmd)
        wait = self.config.command_timeout if timeout is None else timeout
        try:
            return result.get(timeout=wait)
        except gevent.Timeout:
            for job_uuid, pending in list(self._jobs.items()):
                if pending is result:
                    del self._jobs[job_uuid]
            raise CommandTimeout(f"{self.name}: bgapi {cmd!r}: no result within {wait}s") from None

    def execute(self, uuid: str, app: str, arg: str = "", *, event_uuid: str, lock: bool = True) -> None:
        """Queue an application on a channel (sendmsg execute). Returns on FreeSWITCH's +OK,
        which only means queued: CHANNEL_EXECUTE_COMPLETE with Application-UUID == event_uuid
        tells when it finished. Raises CommandFailed for a channel that is gone."""
        reply = self._send(commands.sendmsg_execute(uuid, app, arg, event_uuid=event_uuid, lock=lock), None)
        self._check_ok(reply, f"execute {app} on {uuid}")

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> None:
        reply = self._send(commands.sendmsg_hangup(uuid, cause), None)
        self._check_ok(reply, f"hangup of {uuid}")
