"""Fixtures for the simulated switch: a Switch on the real clock, its Event Socket server on a
free port, a plain-socket ESL client that reads frames byte-exactly, and scripted endpoints.
"""
from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from urllib.parse import unquote

import gevent
import pytest

from engine.simulator.clock import RealClock
from engine.simulator.server import EslServer
from engine.simulator.switch import Switch


@dataclass
class Frame:
    """One frame as received: header lines in wire order, the body, the exact bytes."""

    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def content_type(self) -> str | None:
        return self.get("Content-Type")

    def event_headers(self) -> list[tuple[str, str]]:
        """The (still url-encoded) header lines of a text/event-plain body."""
        text = self.body.decode()
        head = text.split("\n\n", 1)[0]
        return [tuple(line.split(": ", 1)) for line in head.split("\n") if line]  # type: ignore[misc]

    def event(self, name: str) -> str | None:
        """A decoded event header, from a plain or json event body."""
        if self.body.startswith(b"{"):
            return json.loads(self.body).get(name)
        value = next((v for k, v in self.event_headers() if k == name), None)
        return None if value is None else unquote(value)


class EslClient:
    """A minimal ESL client over a plain socket; frames are split on the wire's own rules."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""
        self.backlog: list[Frame] = []   # events that arrived while waiting for a reply

    def send(self, line: str, headers: dict[str, str] | None = None, body: str | None = None) -> None:
        text = line + "\n" + "".join(f"{k}: {v}\n" for k, v in (headers or {}).items())
        data = text.encode()
        if body is not None:
            data = (text + f"content-length: {len(body.encode())}\n\n").encode() + body.encode()
        else:
            data += b"\n"
        self.sock.sendall(data)

    def _fill(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            raise ConnectionError("closed by server")
        self.buffer += chunk
        return True

    def frame(self, timeout: float = 3.0) -> Frame:
        while b"\n\n" not in self.buffer:
            if not self._fill(timeout):
                raise TimeoutError("no frame")
        head, rest = self.buffer.split(b"\n\n", 1)
        headers = [tuple(line.split(": ", 1)) for line in head.decode(errors="replace").split("\n")]
        length = int(dict(headers).get("Content-Length", 0))
        while len(rest) < length:
            self.buffer = head + b"\n\n" + rest
            if not self._fill(timeout):
                raise TimeoutError("truncated frame")
            head, rest = self.buffer.split(b"\n\n", 1)
        body, self.buffer = rest[:length], rest[length:]
        return Frame(headers, body, head + b"\n\n" + body)  # type: ignore[arg-type]

    def command(self, line: str, headers: dict[str, str] | None = None, body: str | None = None) -> Frame:
        """Send and return the reply; events that arrive first are kept for events()."""
        self.send(line, headers, body)
        while True:
            frame = self.frame()
            if frame.content_type in ("command/reply", "api/response"):
                return frame
            self.backlog.append(frame)

    def events(self, until: str, timeout: float = 5.0, uuid: str | None = None) -> list[Frame]:
        """Event frames up to and including the first named `until` (for `uuid`, if given)."""
        out = []
        while True:
            frame = self.backlog.pop(0) if self.backlog else self.frame(timeout)
            if frame.content_type and frame.content_type.startswith("text/event"):
                out.append(frame)
                if frame.event("Event-Name") == until and (uuid is None or frame.event("Unique-ID") == uuid):
                    return out

    def closed(self, timeout: float = 3.0) -> bool:
        """True when the server has closed the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


class ScriptedEndpoint:
    """An Endpoint driven by a script: what to do when offered a call, digits for prompts.
    Records every callback so tests can assert what the far end noticed."""

    def __init__(self, name: str = "test", *, on_offer: str = "answer", ring_seconds: float = 0.0,
                 digits: str = "", refuse_cause: str = "USER_BUSY") -> None:
        self.name = name
        self.offer_action = on_offer
        self.ring_seconds = ring_seconds
        self.digits = digits
        self.refuse_cause = refuse_cause
        self.calls: list[tuple] = []
        self.legs: list = []

    def on_offer(self, leg) -> None:
        self.calls.append(("offer", leg.uuid))
        self.legs.append(leg)
        if self.offer_action == "ignore":
            leg.ring()
            return
        if self.offer_action == "refuse":
            leg.hangup(self.refuse_cause)
            return
        if self.offer_action == "early":
            leg.pre_answer()
            return
        leg.ring()
        if self.ring_seconds:
            gevent.sleep(self.ring_seconds)
        leg.answer()

    def on_media(self, leg, kind, detail) -> None:
        self.calls.append(("media", kind, detail))
        if kind == "prompt" and self.digits:
            leg.send_dtmf(self.digits)

    def on_bridge(self, leg, other) -> None:
        self.calls.append(("bridge", leg.uuid, getattr(other, "name", None)))

    def on_unbridge(self, leg) -> None:
        self.calls.append(("unbridge", leg.uuid))

    def on_hangup(self, leg, cause, by_far_end) -> None:
        self.calls.append(("hangup", leg.uuid, cause, by_far_end))

    def seen(self, kind: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture
def switch():
    sw = Switch(clock=RealClock(), hostname="sim1", switchname="sim1", seed=7)
    yield sw
    sw.shutdown()


@pytest.fixture
def esl_server(switch):
    server = EslServer(switch, host="127.0.0.1", port=0, password="ClueCon")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(esl_server):
    """An authenticated plain-socket client."""
    c = EslClient(esl_server.port)
    assert c.frame().raw == b"Content-Type: auth/request\n\n"
    assert c.command("auth ClueCon").get("Reply-Text") == "+OK accepted"
    yield c
    c.close()


def wait_until(predicate, timeout: float = 3.0) -> None:
    deadline = gevent.get_hub().loop.now() + timeout
    while not predicate():
        if gevent.get_hub().loop.now() > deadline:
            raise AssertionError("condition not reached")
        gevent.sleep(0.01)
