"""One authenticated inbound Event Socket session over TCP: greenswitch's `InboundESL` as the
transport, with the parts that carry its defects replaced, and the command pipeline.

What changes against greenswitch 0.0.19 (each pinned by a test in tests/esl/):
- the reader receives bytes and frames them with `protocol.FrameParser`: no whole-frame
  url-decoding (header injection through %0A), event bodies kept apart from headers, JSON and
  XML events parsed, no UTF-8 decoding in the reader (a bad byte cannot kill it), EOF in the
  middle of a body ends the session instead of spinning;
- commands are pipelined: FreeSWITCH's listener reads one command, runs it, writes its reply,
  then reads the next (mod_event_socket's read_packet), so replies come back in the order the
  commands were written and a command need not wait for the one before it. Commands queued in
  the same hub turn leave in one send, made from the hub at the end of the turn (a writer
  greenlet only when the socket is full); each waiting command costs a Waiter, and one timer
  per session serves every deadline;
- the end of the session, whatever caused it, runs `close()` exactly once: pending commands
  fail with NotConnected at once and the owner is told why (`on_close`);
- the reader only frames and hands off; nothing runs greenswitch's handler queue, so one slow
  handler cannot hold back the events behind it.
A closed EslConnection is never reused: the Node makes a new one to reconnect.
"""
from __future__ import annotations

import collections
import logging
import socket
import time
from typing import Callable

import gevent
import gevent.socket
from gevent.hub import Waiter, get_hub
from greenswitch.esl import InboundESL

from engine.errors import CommandTimeout, EslError, NotConnected
from engine.esl import commands
from engine.esl.protocol import EVENT_TYPES, Event, FrameParser, ProtocolError

log = logging.getLogger(__name__)

RECV_BYTES = 256 * 1024  # drain FreeSWITCH's queue in large reads

# What a command's reply is handed to: the reply frame, or the EslError that ended the wait.
ReplyCallback = Callable[["Event | EslError"], None]


class AuthenticationFailed(EslError):
    """FreeSWITCH refused the Event Socket password (check NodeConfig.password)."""


def _first_line(frame: str) -> str:
    return frame.split("\n", 1)[0][:80]


class _Pending:
    """A command written or queued, in the order its reply will come back.

    Exactly one of `waiter` (a greenlet blocked in send()) and `callback` (send_nowait()) is set.
    A command that timed out keeps its place (`expired`): its late reply is consumed there and
    cannot be mistaken for the next command's.
    """

    __slots__ = ("frame", "timeout", "deadline", "end", "waiter", "callback", "expired")

    def __init__(self, frame: str, timeout: float, end: int, waiter: Waiter | None,
                 callback: ReplyCallback | None) -> None:
        self.frame = frame
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.end = end  # the session's byte count once this command is written
        self.waiter = waiter
        self.callback = callback
        self.expired = False


class EslConnection(InboundESL):
    """A single session; `on_event` gets every event frame from the reader greenlet and must
    not block, `on_close(reason)` is called once when the session ends."""

    def __init__(self, host: str, port: int, password: str, *, node: str,
                 on_event: Callable[[Event], None], on_close: Callable[[str], None],
                 connect_timeout: float) -> None:
        super().__init__(host, port, password, timeout=connect_timeout)
        self.node = node
        self.sock: gevent.socket.socket | None = None
        self.closed_reason: str | None = None
        self.last_received = time.monotonic()
        self._parser = FrameParser(node)
        self._on_event = on_event
        self._on_close = on_close
        self._notice: str | None = None  # text of a disconnect-notice, the best reason we get
        self._stopping = False
        self._hub = get_hub()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._outbox: list[bytes] = []  # frames queued for the writer
        self._queued_bytes = 0  # every byte ever queued / written: how far the writer got
        self._written_bytes = 0
        self._flush_due = False  # a flush is scheduled at the end of this hub turn
        self._writer: gevent.Greenlet | None = None  # only while a write waits for the socket
        self._timer = None  # one libev timer, at the earliest deadline of a pending command
        self._timer_at = 0.0

    # -- lifecycle -----------------------------------------------------------------------
    def connect(self) -> None:
        """TCP connect, wait for the greeting, authenticate; all within the connect timeout."""
        try:
            self.sock = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise NotConnected(f"{self.node}: cannot connect to {self.host}:{self.port}: {exc}") from exc
        self.sock.settimeout(None)
        # Our own writer coalesces the commands of a hub turn; Nagle would only hold the next
        # write back until the previous one is acknowledged.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected = True
        self._receive_events_greenlet = gevent.spawn(self.receive_events)
        if not self._auth_request_event.wait(self.timeout) or not self.connected:
            self.close("no auth/request greeting")
            raise NotConnected(f"{self.node}: {self.closed_reason}")
        reply = self.send(commands.auth(self.password), self.timeout)
        if reply.get("Reply-Text") != "+OK accepted":
            self.close("authentication failed")
            raise AuthenticationFailed(f"{self.node}: FreeSWITCH refused the password ({reply.get('Reply-Text')})")

    def close(self, reason: str) -> None:
        """End the session (idempotent): fail pending commands, close the socket, tell the owner."""
        if self.closed_reason is not None:
            return
        if self._stopping:  # our own exit: FreeSWITCH's goodbye is not news
            reason = "stopped"
        elif self._notice:
            reason = f"{reason} ({self._notice})"
        self.closed_reason = reason
        self.connected = False
        self._auth_request_event.set()  # release a connect() waiting for the greeting
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        pending, self._pending = self._pending, collections.deque()
        self._outbox.clear()
        for command in pending:
            if not command.expired:
                self._resolve(command, NotConnected(f"{self.node}: connection lost: {reason}"))
        if self._writer is not None and self._writer is not gevent.getcurrent():
            self._writer.kill(block=False)
        if self.sock is not None:
            self.sock.close()
        try:
            self._on_close(reason)
        except Exception:
            log.exception("%s: on_close handler failed", self.node)

    def stop(self, timeout: float = 1.0) -> None:
        """Say goodbye (`exit`) if we can, then close."""
        self._stopping = True
        if self.connected:
            try:
                self.send("exit\n\n", timeout)
            except EslError:
                pass
        self.close("stopped")

    def start_event_handlers(self) -> None:  # greenswitch's reader + handler queue: not used
        raise NotImplementedError("EslConnection.connect() starts its own reader")

    # -- reading -------------------------------------------------------------------------
    def receive_events(self) -> None:
        """The reader: receive, frame, hand off, repeat; it never waits on anything else."""
        reason = "connection closed by FreeSWITCH"
        sock = self.sock
        # One buffer for the session: recv() would allocate (and, at this size, mmap) per read.
        buffer = bytearray(RECV_BYTES)
        view = memoryview(buffer)
        try:
            while True:
                received = sock.recv_into(buffer)
                if not received:
                    break
                self.last_received = time.monotonic()
                for frame in self._parser.feed(view[:received]):
                    self.handle_event(frame)
        except ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.error("%s: %s", self.node, reason)
        except OSError as exc:
            reason = f"socket error: {exc}"
        finally:
            self.close(reason)

    def handle_event(self, frame: Event) -> None:
        content_type = frame.content_type
        if content_type in EVENT_TYPES:
            try:
                self._on_event(frame)
            except Exception:
                log.exception("%s: event handler failed on %r", self.node, frame)
        elif content_type in ("command/reply", "api/response"):
            if self._pending:
                command = self._pending.popleft()
                if not command.expired:
                    self._resolve(command, frame)
            else:
                log.warning("%s: reply with no command waiting for it: %r", self.node, frame)
        elif content_type == "auth/request":
            self._auth_request_event.set()
        elif content_type == "text/disconnect-notice":
            # Inbound: FreeSWITCH closes right after (exit, shutdown, "killed listener because
            # of lost events"); a linger notice only concerns outbound sessions.
            if frame.get("Content-Disposition") != "linger":
                self._notice = (frame.body or "disconnect notice").strip().replace("\n", " ")
                log.warning("%s: FreeSWITCH says: %s", self.node, self._notice)
        elif content_type == "text/rude-rejection":
            self._notice = f"rejected by FreeSWITCH's ACL: {(frame.body or '').strip()}"
            log.error("%s: %s", self.node, self._notice)
        elif content_type == "log/data":
            log.debug("%s: FreeSWITCH log: %s", self.node, (frame.body or "").rstrip())
        else:
            log.warning("%s: ignoring a frame with Content-Type %r: %r", self.node, content_type, frame.headers())

    # -- writing -------------------------------------------------------------------------
    def send(self, frame: str, timeout: float) -> Event:
        """Write one command frame and wait for its reply (command/reply or api/response).

        Raises CommandTimeout when no reply came within `timeout`, NotConnected when the session
        is or goes down first."""
        waiter = Waiter(self._hub)
        self._queue(frame, timeout, waiter, None)
        return waiter.get()

    def send_nowait(self, frame: str, timeout: float, on_reply: ReplyCallback) -> None:
        """Write one command frame; `on_reply` gets its reply, or the CommandTimeout or
        NotConnected that ended the wait, exactly once. It runs in the reader or the hub, so it
        must not block. Raises NotConnected at once if the session is down."""
        self._queue(frame, timeout, None, on_reply)

    def _queue(self, frame: str, timeout: float, waiter: Waiter | None, callback: ReplyCallback | None) -> None:
        if not self.connected:
            raise NotConnected(f"{self.node}: not connected ({self.closed_reason or 'not started'})")
        data = frame.encode("utf-8")
        self._outbox.append(data)
        self._queued_bytes += len(data)
        # No lock: greenlets only switch at a wait, so this deque is in the order of the outbox.
        command = _Pending(frame, timeout, self._queued_bytes, waiter, callback)
        self._pending.append(command)
        if not self._flush_due and self._writer is None:
            self._flush_due = True
            self._hub.loop.run_callback(self._flush)  # after the greenlets of this hub turn queued theirs
        self._watch(command.deadline)

    def _flush(self) -> None:
        """In the hub: everything queued in this turn goes out in one send, which must not
        block here; what the socket does not take at once is left to a writer greenlet."""
        self._flush_due = False
        if self._writer is not None or not self._outbox or not self.connected:
            return
        data = self._take_outbox()
        try:
            sent = self.sock.send(data, 0, 0.0)  # gevent: timeout 0 raises rather than waits
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.close(f"write failed: {exc}")
            return
        self._written_bytes += sent
        if sent < len(data):
            self._writer = gevent.spawn(self._write_rest, memoryview(data)[sent:])

    def _write_rest(self, data: memoryview) -> None:
        """The socket was full: wait until it takes the rest, and what was queued meanwhile."""
        try:
            while data:
                self.sock.sendall(data)
                self._written_bytes += len(data)
                data = memoryview(self._take_outbox()) if self._outbox else None
        except OSError as exc:
            # A partial write leaves the command stream unparseable: this session is over.
            self.close(f"write failed: {exc}")
        finally:
            self._writer = None

    def _take_outbox(self) -> bytes:
        batch, self._outbox = self._outbox, []
        return batch[0] if len(batch) == 1 else b"".join(batch)

    def _resolve(self, command: _Pending, outcome: Event | EslError) -> None:
        """Hand a command its reply or error: to its blocked greenlet (through the hub, the
        only place a Waiter may be switched from), or to its callback."""
        if command.waiter is not None:
            deliver = command.waiter.switch if isinstance(outcome, Event) else command.waiter.throw
            self._hub.loop.run_callback(deliver, outcome)
            return
        try:
            command.callback(outcome)
        except Exception:
            log.exception("%s: reply callback failed for %r", self.node, _first_line(command.frame))

    # -- deadlines -----------------------------------------------------------------------
    def _watch(self, deadline: float) -> None:
        """Have the session's timer fire by `deadline` (re-armed only for an earlier one)."""
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.close()
        self._timer = self._hub.loop.timer(max(0.0, deadline - time.monotonic()))
        self._timer_at = deadline
        self._timer.start(self._expire)

    def _expire(self) -> None:
        """The timer (in the hub): time out every command past its deadline, watch the next."""
        self._timer.close()
        self._timer = None
        now = time.monotonic()
        for command in list(self._pending):
            if self.closed_reason is not None:  # closed by a callback, or below
                return
            if command.expired:
                continue
            if command.deadline > now:
                self._watch(command.deadline)
                continue
            what = _first_line(command.frame)
            if command.end > self._written_bytes:
                # FreeSWITCH has stopped reading our commands: nothing behind it can get through.
                self.close(f"write stalled: {what!r} not written in time")
                return
            command.expired = True
            self._resolve(command, CommandTimeout(f"{self.node}: no reply to {what!r} within {command.timeout}s"))
