"""A scripted stand-in for FreeSWITCH's inbound Event Socket, on a real TCP port, for the
engine/esl tests: auth, `event`, `api`, `bgapi` (+ BACKGROUND_JOB), `sendmsg`, `exit`, with the
frame layouts of ../shared/reference/, plus fault injection (`send_raw`, `close`, `stop`,
`start`, `mute`). Test support only; the project's full simulator is engine.simulator.
"""
from __future__ import annotations

import time
from typing import Callable
from urllib.parse import quote

import gevent
import gevent.event
import gevent.server

GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SAFE = "/,()-._!*'~"  # left unencoded by switch_url_encode


def plain_event(headers: dict[str, str], body: str | None = None) -> bytes:
    """A text/event-plain frame laid out as FreeSWITCH writes it."""
    lines = "".join(f"{k}: {quote(v, safe=SAFE)}\n" for k, v in headers.items())
    if body:
        inner = f"{lines}Content-Length: {len(body.encode())}\n\n{body}".encode()
    else:
        inner = f"{lines}\n".encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner


def reply(text: str, extra: str = "") -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n{extra}\n".encode()


def api_response(body: str) -> bytes:
    raw = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(raw) + raw


class Connection:
    def __init__(self, server: "FakeSwitch", sock) -> None:
        self.server = server
        self.sock = sock
        self.authed = False
        self.subscribed: set[str] = set()
        self.commands: list[tuple[str, dict[str, str], bytes]] = []  # (first line, headers, body)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def wants(self, name: str) -> bool:
        return name in self.subscribed


class FakeSwitch:
    def __init__(self, password: str = "ClueCon") -> None:
        self.password = password
        self.port = 0
        self.connections: list[Connection] = []
        self.api_handlers: dict[str, Callable[[str], str]] = {"status": lambda arg: "UP 0 years\n"}
        self.job_delays: dict[str, float] = {}  # bgapi command -> seconds before its BACKGROUND_JOB
        self.channels: set[str] = set()
        self.muted = False  # stop answering anything (a hung switch)
        self.api_block = 0.0  # seconds a blocking api takes
        self._server: gevent.server.StreamServer | None = None
        self.connected = gevent.event.Event()

    # -- control -------------------------------------------------------------------------
    def start(self) -> "FakeSwitch":
        self._server = gevent.server.StreamServer(("127.0.0.1", self.port), self._handle)
        self._server.init_socket()
        self._server.socket.setsockopt(1, 2, 1)  # SO_REUSEADDR: restart on the same port
        self._server.start()
        self.port = self._server.server_port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=0.1)
            self._server = None
        for conn in self.connections:
            conn.close()

    def emit(self, headers: dict[str, str], body: str | None = None) -> None:
        frame = plain_event(headers, body)
        for conn in self.live():
            if conn.wants(headers["Event-Name"]):
                conn.send_raw(frame)

    def live(self) -> list[Connection]:
        return [c for c in self.connections if not c.sock.closed]

    def wait_connections(self, n: int, timeout: float = 5.0) -> Connection:
        deadline = time.monotonic() + timeout
        while len([c for c in self.connections if c.subscribed]) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} subscribed connections, have {len(self.connections)}")
            gevent.sleep(0.01)
        return self.connections[n - 1]

    # -- protocol ------------------------------------------------------------------------
    def _handle(self, sock, address) -> None:
        conn = Connection(self, sock)
        self.connections.append(conn)
        buf = b""
        try:
            sock.sendall(b"Content-Type: auth/request\n\n")
            while True:
                while b"\n\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\n\n", 1)
                lines = head.decode().split("\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                length = int(headers.get("content-length", headers.get("Content-Length", 0)))
                while len(buf) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                conn.commands.append((lines[0], headers, body))
                if not self.muted:
                    self._command(conn, lines[0], headers, body)
        except OSError:
            pass
        finally:
            sock.close()

    def _command(self, conn: Connection, line: str, headers: dict[str, str], body: bytes) -> None:
        verb, _, rest = line.partition(" ")
        if verb == "auth":
            if rest == self.password:
                conn.authed = True
                conn.send_raw(reply("+OK accepted"))
            else:
                conn.send_raw(reply("-ERR invalid"))
                conn.send_raw(b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n" + GOODBYE.encode())
                conn.close()
        elif not conn.authed:
            conn.send_raw(reply("-ERR command not found"))
        elif verb == "event":
            conn.subscribed.update(rest.split()[1:])
            conn.send_raw(reply("+OK event listener enabled plain"))
            self.connected.set()
        elif verb == "api":
            if self.api_block:
                gevent.sleep(self.api_block)
            conn.send_raw(api_response(self._api(rest)))
        elif verb == "bgapi":
            job = headers["Job-UUID"]
            conn.send_raw(reply(f"+OK Job-UUID: {job}", f"Job-UUID: {job}\n"))
            gevent.spawn_later(self.job_delays.get(rest, 0.0), self._job_done, conn, job, rest)
        elif verb == "sendmsg":
            if rest in self.channels:
                conn.send_raw(reply("+OK"))
            else:
                conn.send_raw(reply(f"-ERR invalid session id [{rest}]"))
        elif verb == "exit":
            conn.send_raw(reply("+OK bye"))
            conn.send_raw(b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n" + GOODBYE.encode())
            conn.close()
        else:
            conn.send_raw(reply("-ERR command not found"))

    def _api(self, cmdline: str) -> str:
        name, _, arg = cmdline.partition(" ")
        handler = self.api_handlers.get(name)
        return handler(arg) if handler else f"-ERR {name} Command not found!\n"

    def _job_done(self, conn: Connection, job: str, cmdline: str) -> None:
        if conn.sock.closed or not conn.wants("BACKGROUND_JOB"):
            return
        name, _, arg = cmdline.partition(" ")
        headers = {"Event-Name": "BACKGROUND_JOB", "Job-UUID": job, "Job-Command": name}
        if arg:
            headers["Job-Command-Arg"] = arg
        conn.send_raw(plain_event(headers, self._api(cmdline)))
