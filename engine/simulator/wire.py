"""Event Socket framing as FreeSWITCH 1.10 writes it: frame builders, event serializers
(plain/json/xml), switch_url_encode's rules, and the parser for what a client sends.

Pure functions over bytes and strings; the server (server.py) does the I/O.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
KILLED_LOST_EVENTS = "killed listener because of lost events\n"
SHUTTING_DOWN = "The system is being shut down.\n"

# switch_url_encode's reserved set (besides bytes < 0x20 and > 0x7E).
_URL_RESERVED = frozenset(b" \r\n#%&+:;<=>?@[\\]^`{|}\"")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_URL_KEPT = "".join(chr(b) for b in range(0x21, 0x7F) if b not in _URL_RESERVED)
_URL_PLAIN = re.compile("[" + re.escape(_URL_KEPT) + "]*")  # nothing to encode: most values
_URL_TABLE = [chr(b) if chr(b) in _URL_KEPT else f"%{b:02X}" for b in range(0x80)]  # ASCII, by code


def url_encode(value: str) -> str:
    """Encode like switch_url_encode: a '%' already followed by two hex digits is kept as is."""
    if _URL_PLAIN.fullmatch(value):
        return value
    if value.isascii() and "%" not in value:
        return value.translate(_URL_TABLE)
    raw = value.encode("utf-8", "surrogateescape")
    out = []
    n = len(raw)
    for i, b in enumerate(raw):
        if b == 0x25 and i + 2 < n and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append("%")
        elif b < 0x20 or b > 0x7E or b in _URL_RESERVED:
            out.append("%%%02X" % b)
        else:
            out.append(chr(b))
    return "".join(out)


# Events repeat most of their values (host, states, the call's uuid and caller, variables set
# once): encoding each distinct value once halves what serialising an event costs.
_encoded = functools.lru_cache(maxsize=1 << 16)(url_encode)


def _head(lines: list[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\n" for name, value in lines)


def auth_request() -> bytes:
    return b"Content-Type: auth/request\n\n"


def command_reply(text: str, *extra: tuple[str, str]) -> bytes:
    """command/reply: Content-Type, Reply-Text, then extra headers (Job-UUID for bgapi)."""
    return (_head([("Content-Type", "command/reply"), ("Reply-Text", text), *extra]) + "\n").encode()


def api_response(body: str) -> bytes:
    data = body.encode("utf-8", "surrogateescape")
    return f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode() + data


def disconnect_notice(body: str = GOODBYE, session_uuid: str | None = None,
                      disposition: str | None = None, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """text/disconnect-notice; a session-bound one names the session and its disposition."""
    data = body.encode()
    lines = [("Content-Type", "text/disconnect-notice")]
    if session_uuid is not None:
        lines.append(("Controlled-Session-UUID", session_uuid))
    if disposition is not None:
        lines.append(("Content-Disposition", disposition))
    lines.extend(extra)
    lines.append(("Content-Length", str(len(data))))
    return (_head(lines) + "\n").encode() + data


def log_data(text: str, level: int, channel: int, file: str, func: str, line: int) -> bytes:
    data = text.encode()
    lines = [("Content-Type", "log/data"), ("Content-Length", str(len(data))),
             ("Log-Level", str(level)), ("Text-Channel", str(channel)), ("Log-File", file),
             ("Log-Func", func), ("Log-Line", str(line)), ("User-Data", "")]
    return (_head(lines) + "\n").encode() + data


def event_plain(headers: list[tuple[str, str]], body: str | None) -> bytes:
    """The text/event-plain body: url-encoded values, an inner Content-Length when there is a body."""
    text = "".join([f"{name}: {_encoded(value)}\n" for name, value in headers])
    if body:
        data = body.encode("utf-8", "surrogateescape")
        return (text + f"Content-Length: {len(data)}\n\n").encode() + data
    return (text + "\n").encode("utf-8", "surrogateescape")


def event_json(headers: list[tuple[str, str]], body: str | None) -> bytes:
    obj: dict[str, object] = {}
    for name, value in headers:
        previous = obj.get(name)
        if previous is None:
            obj[name] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            obj[name] = [previous, value]
    if body:
        obj["Content-Length"] = str(len(body.encode("utf-8", "surrogateescape")))
        obj["_body"] = body
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogateescape")


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def event_xml(headers: list[tuple[str, str]], body: str | None) -> bytes:
    parts = ["<event>\n  <headers>\n"]
    for name, value in headers:
        parts.append(f"    <{name}>{_encoded(value)}</{name}>\n")
    parts.append("  </headers>\n")
    if body:
        parts.append(f"  <Content-Length>{len(body.encode('utf-8', 'surrogateescape'))}</Content-Length>\n")
        parts.append(f"  <body>{_xml_escape(body)}  </body>\n")
    parts.append("</event>\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


_SERIALIZERS = {"plain": (event_plain, "text/event-plain"),
                "json": (event_json, "text/event-json"),
                "xml": (event_xml, "text/event-xml")}


def event_frame(headers: list[tuple[str, str]], body: str | None, fmt: str) -> bytes:
    """A whole event frame: Content-Length first, then Content-Type, then the serialized event."""
    serialize, content_type = _SERIALIZERS[fmt]
    data = serialize(headers, body)
    return f"Content-Length: {len(data)}\nContent-Type: {content_type}\n\n".encode() + data


@dataclass
class Request:
    """One command from a client: its first line, its headers (names as sent), its body."""

    line: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return default


class RequestParser:
    """Incremental parser for client commands: a header block ended by an empty line, then
    content-length bytes of body. Tolerates CRLF like FreeSWITCH does."""

    MAX_HEADER_BYTES = 1 << 20

    def __init__(self) -> None:
        self._buffer = b""
        self._pending: Request | None = None
        self._need = 0

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        requests = []
        while True:
            if self._pending is not None:
                if len(self._buffer) < self._need:
                    break
                body, self._buffer = self._buffer[:self._need], self._buffer[self._need:]
                self._pending.body = body.decode("utf-8", "replace")
                requests.append(self._pending)
                self._pending = None
                continue
            end = self._block_end()
            if end is None:
                if len(self._buffer) > self.MAX_HEADER_BYTES:
                    raise ValueError("command header block too large")
                break
            block, self._buffer = self._buffer[:end[0]], self._buffer[end[1]:]
            lines = [ln.rstrip("\r") for ln in block.decode("utf-8", "replace").split("\n")]
            lines = [ln for ln in lines if ln.strip()]
            if not lines:
                continue
            request = Request(lines[0].strip())
            for ln in lines[1:]:
                name, sep, value = ln.partition(":")
                if sep:
                    request.headers[name.strip()] = value.strip()
            length = request.header("content-length")
            if length and length.isdigit() and int(length) > 0:
                self._pending, self._need = request, int(length)
                continue
            requests.append(request)
        return requests

    def _block_end(self) -> tuple[int, int] | None:
        best = None
        for sep in (b"\n\n", b"\r\n\r\n"):
            idx = self._buffer.find(sep)
            if idx >= 0 and (best is None or idx < best[0]):
                best = (idx, idx + len(sep))
        return best
