"""One authenticated inbound Event Socket session over TCP: greenswitch's `InboundESL` as the
transport, with the parts that carry its defects replaced.

What changes against greenswitch 0.0.19 (each pinned by a test in tests/esl/):
- the reader receives bytes and frames them with `protocol.FrameParser`: no whole-frame
  url-decoding (header injection through %0A), event bodies kept apart from headers, JSON and
  XML events parsed, no UTF-8 decoding in the reader (a bad byte cannot kill it), EOF in the
  middle of a body ends the session instead of spinning;
- `send()` writes with `sendall` under a lock, every wait bounded by a timeout;
- the end of the session, whatever caused it, runs `close()` exactly once: pending commands
  fail with NotConnected at once and the owner is told why (`on_close`);
- the reader only frames and hands off; nothing runs greenswitch's handler queue, so one slow
  handler cannot hold back the events behind it.
A closed EslConnection is never reused: the Node makes a new one to reconnect.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import gevent
import gevent.lock
import gevent.socket
from gevent.event import AsyncResult
from greenswitch.esl import InboundESL

from engine.errors import CommandTimeout, EslError, NotConnected
from engine.esl import commands
from engine.esl.protocol import EVENT_TYPES, Event, FrameParser, ProtocolError

log = logging.getLogger(__name__)

RECV_BYTES = 256 * 1024  # drain FreeSWITCH's queue in large reads


class AuthenticationFailed(EslError):
    """FreeSWITCH refused the Event Socket password (check NodeConfig.password)."""


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
        self._send_lock = gevent.lock.Semaphore()
        self._notice: str | None = None  # text of a disconnect-notice, the best reason we get
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------
    def connect(self) -> None:
        """TCP connect, wait for the greeting, authenticate; all within the connect timeout."""
        try:
            self.sock = gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise NotConnected(f"{self.node}: cannot connect to {self.host}:{self.port}: {exc}") from exc
        self.sock.settimeout(None)
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
        pending, self._commands_sent = self._commands_sent, []
        for result in pending:
            result.set_exception(NotConnected(f"{self.node}: connection lost: {reason}"))
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
        try:
            while True:
                data = sock.recv(RECV_BYTES)
                if not data:
                    break
                self.last_received = time.monotonic()
                for frame in self._parser.feed(data):
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
            if self._commands_sent:
                self._commands_sent.pop(0).set(frame)
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
    def send(self, data: str, timeout: float) -> Event:
        """Write one command frame and wait for its reply (command/reply or api/response).

        Replies come back in the order the commands were written, so the reply slot is queued
        under the same lock as the write. A timed-out command keeps its slot: its late reply is
        consumed there and cannot be mistaken for the next command's.
        """
        if not self.connected:
            raise NotConnected(f"{self.node}: not connected ({self.closed_reason or 'not started'})")
        what = data.split("\n", 1)[0][:80]
        result = AsyncResult()
        if not self._send_lock.acquire(timeout=timeout):
            raise CommandTimeout(f"{self.node}: could not write {what!r} within {timeout}s")
        try:
            if not self.connected:
                raise NotConnected(f"{self.node}: connection lost: {self.closed_reason}")
            self._commands_sent.append(result)
            try:
                with gevent.Timeout(timeout):
                    self.sock.sendall(data.encode("utf-8"))
            except (OSError, gevent.Timeout) as exc:
                # A partial write leaves the command stream unparseable: this session is over.
                self.close(f"write failed: {exc or 'timeout'}")
                raise NotConnected(f"{self.node}: could not write {what!r}: {exc or 'timeout'}") from None
        finally:
            self._send_lock.release()
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            raise CommandTimeout(f"{self.node}: no reply to {what!r} within {timeout}s") from None
