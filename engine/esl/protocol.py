"""The Event Socket wire, pure: bytes in, frames out (`FrameParser`), and the `Event` a frame
becomes, whose header values are url-decoded lazily, one value at a time, on access.

No I/O here. Framing works on bytes (`find(b"\\n\\n")`, Content-Length slices); nothing is
decoded until someone reads it, and then only the value read. Layout facts come from
`../shared/reference/behaviour.md` §1: header order varies by frame type, events carry their
own header block (url-encoded values) and optionally an inner body after an inner blank line,
bodies do not end with an extra blank line.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Iterator
from urllib.parse import unquote_to_bytes
from xml.etree import ElementTree

from engine.errors import EslError

log = logging.getLogger(__name__)

# Larger than any header block FreeSWITCH writes (a CHANNEL_DESTROY is ~12 kB of *body*; the
# envelope is two lines). A header block that grows past this means we lost the framing.
MAX_HEADER_BYTES = 64 * 1024
# `show channels as json` on a busy switch is megabytes; past this it is not FreeSWITCH.
MAX_BODY_BYTES = 256 * 1024 * 1024

EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
EVENT_XML = "text/event-xml"
EVENT_TYPES = frozenset((EVENT_PLAIN, EVENT_JSON, EVENT_XML))

# Where an event's header block ends. bytes.find(b"\n\n") crawls over a block of short lines
# (~8 us for a 5 kB CHANNEL_* event: a needle of two equal bytes defeats its skip table); the
# regex engine's literal scan finds it ~5x faster.
_BLANK_LINE = re.compile(b"\n\n")


class ProtocolError(EslError):
    """The byte stream from FreeSWITCH cannot be framed any more; the connection must be reset."""


def _decode(raw: bytes) -> str:
    # Per value, after the lines were split: an encoded %0A stays inside its value (greenswitch
    # decodes the whole frame first, so %0A in a caller id name injects a header). Invalid %
    # sequences are kept literally, as switch_url_decode does; bad UTF-8 becomes U+FFFD.
    if 0x25 in raw:  # b"%" (an int is found with memchr; a bytes needle is ~8x slower here)
        raw = unquote_to_bytes(raw)
    return raw.decode("utf-8", "replace")


def _find_header(block: bytes, name: bytes) -> bytes | None:
    """The raw value of the first `name: value` line of a header block, without splitting it."""
    if block.startswith(name + b": "):
        start = len(name) + 2
    else:
        at = block.find(b"\n" + name + b": ")
        if at < 0:
            return None
        start = at + len(name) + 3
    end = block.find(b"\n", start)
    return block[start:] if end < 0 else block[start:end]


def _split_headers(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    for line in block.split(b"\n"):
        name, sep, value = line.partition(b": ")
        if not sep:  # a bare "Name:" (empty value, e.g. `User-Data: ` stripped by a proxy)
            name, sep, value = line.partition(b":")
        if sep and name:
            yield name, value


class Event:
    """One frame from FreeSWITCH: an event (plain, json or xml) or a reply/notice.

    For events, headers are the event's own (Event-Name, Unique-ID, variable_*); for other
    frames (command/reply, api/response, text/disconnect-notice, log/data) they are the
    envelope's. Values are decoded on access and cached; `body` is the event's own body
    (BACKGROUND_JOB result) or the frame body (api/response), never mixed with headers.
    """

    __slots__ = ("content_type", "node", "_envelope", "_block", "_raw_body", "_cache", "_parsed", "_body")

    def __init__(self, content_type: str, envelope: bytes, payload: bytes | None, node: str = "") -> None:
        self.content_type = content_type
        self.node = node
        self._envelope = envelope
        self._cache: dict[str, str | None] = {}
        self._parsed: dict[str, Any] | None = None  # json/xml events, parsed on first access
        self._body: str | None = None
        if content_type == EVENT_PLAIN and payload is not None:
            blank = _BLANK_LINE.search(payload)
            if blank is None:
                self._block, self._raw_body = payload.rstrip(b"\n"), None
            else:
                end = blank.start()
                self._block, rest = payload[:end], payload[end + 2:]
                self._raw_body = rest if rest else None
        elif content_type in EVENT_TYPES:
            self._block, self._raw_body = b"", payload
        else:
            self._block, self._raw_body = envelope, payload

    # -- header access -------------------------------------------------------------------
    def get(self, name: str, default: str | None = None) -> str | None:
        try:
            value = self._cache[name]
        except KeyError:
            value = self._cache[name] = self._lookup(name)
        return default if value is None else value

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def _lookup(self, name: str) -> str | None:
        if self.content_type in (EVENT_JSON, EVENT_XML):
            value = self._structured().get(name)
            return None if value is None else str(value)
        raw = _find_header(self._block, name.encode("ascii", "replace"))
        if raw is None:
            return None
        # Envelope values (Reply-Text, Job-UUID, Content-Disposition) are not url-encoded.
        if self.content_type == EVENT_PLAIN:
            return _decode(raw)
        return raw.decode("utf-8", "replace")

    def matching(self, prefix: str) -> dict[str, str]:
        """Every header whose name starts with `prefix`, decoded (the first of a repeated name),
        in one pass: asking for a family of names one by one scans the block once per absent name."""
        if self.content_type in (EVENT_JSON, EVENT_XML):
            return {k: str(v) for k, v in self._structured().items() if k.startswith(prefix)}
        decode = _decode if self.content_type == EVENT_PLAIN else (lambda raw: raw.decode("utf-8", "replace"))
        block, needle, out = self._block, b"\n" + prefix.encode("ascii", "replace"), {}
        at = 0 if block.startswith(needle[1:]) else block.find(needle)
        while at >= 0:
            start = at + (block[at] == 0x0A)
            end = block.find(b"\n", start)
            name, sep, raw = block[start:end if end >= 0 else len(block)].partition(b":")
            if sep:
                out.setdefault(name.decode("utf-8", "replace"), decode(raw[1:] if raw[:1] == b" " else raw))
            at = -1 if end < 0 else block.find(needle, end)
        return out

    def headers(self) -> dict[str, str]:
        """Every header, decoded (for logging and CDRs; the hot path uses `get`)."""
        if self.content_type in (EVENT_JSON, EVENT_XML):
            return {k: str(v) for k, v in self._structured().items()}
        decode = _decode if self.content_type == EVENT_PLAIN else (lambda raw: raw.decode("utf-8", "replace"))
        out: dict[str, str] = {}
        for name, raw in _split_headers(self._block):
            out.setdefault(name.decode("utf-8", "replace"), decode(raw))
        return out

    def _structured(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed, self._body = _parse_structured(self.content_type, self._raw_body or b"")
        return self._parsed

    # -- conveniences --------------------------------------------------------------------
    @property
    def is_event(self) -> bool:
        return self.content_type in EVENT_TYPES

    @property
    def name(self) -> str | None:
        return self.get("Event-Name")

    @property
    def subclass(self) -> str | None:
        return self.get("Event-Subclass")

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    def variable(self, name: str) -> str | None:
        return self.get("variable_" + name)

    @property
    def body(self) -> str | None:
        if self.content_type in (EVENT_JSON, EVENT_XML):
            self._structured()
            return self._body
        if self._body is None and self._raw_body is not None:
            self._body = self._raw_body.decode("utf-8", "replace")
        return self._body

    def __repr__(self) -> str:
        what = self.name if self.is_event else self.get("Reply-Text")
        return f"<Event {self.content_type} {what or ''} node={self.node!r}>"


def _parse_structured(content_type: str, raw: bytes) -> tuple[dict[str, Any], str | None]:
    """Headers and body of a json or xml event; an unparsable one logs and yields nothing."""
    try:
        if content_type == EVENT_JSON:
            data = json.loads(raw.decode("utf-8", "replace"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            body = data.pop("_body", None)
            # Array headers (variable_DP_MATCH) in the form the plain format gives them.
            return {k: "ARRAY::" + "|:".join(map(str, v)) if isinstance(v, list) else v for k, v in data.items()}, body
        root = ElementTree.fromstring(raw)
        headers = root.find("headers")
        values = {} if headers is None else {h.tag: _decode((h.text or "").encode()) for h in headers}
        body_el = root.find("body")
        return values, None if body_el is None else body_el.text
    except (ValueError, ElementTree.ParseError) as exc:
        log.error("unparsable %s event (%s), ignoring its headers: %r", content_type, exc, raw[:200])
        return {}, None


class FrameParser:
    """Incremental framer: `feed()` bytes as they arrive, in any cut, and get whole frames.

    Raises ProtocolError only when the stream cannot be framed any more (a header block that
    never ends, a Content-Length that is not a number or is absurd): then the bytes that follow
    cannot be trusted and the connection must be reset. A frame without a Content-Type is
    yielded with content_type "" so the reader can log and skip it without losing sync.
    """

    def __init__(self, node: str = "") -> None:
        self.node = node
        self._buf = bytearray()
        self._envelope: bytes | None = None  # header block of a frame whose body is pending
        self._content_type = ""
        self._length = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        buf = self._buf
        buf += data
        frames: list[Event] = []
        pos, size = 0, len(buf)
        with memoryview(buf) as view:  # slices of the view are copied once, not twice
            while True:
                if self._envelope is None:
                    while pos < size and buf[pos] == 0x0A:  # tolerate stray blank lines between frames
                        pos += 1
                    end = buf.find(b"\n\n", pos)
                    if end < 0:
                        if size - pos > MAX_HEADER_BYTES:
                            raise ProtocolError(f"no end of frame headers within {MAX_HEADER_BYTES} bytes")
                        break
                    envelope = bytes(view[pos:end])
                    pos = end + 2
                    self._content_type, self._length = self._read_envelope(envelope)
                    self._envelope = envelope
                length = self._length
                if size - pos < length:
                    break
                payload = bytes(view[pos:pos + length]) if length else None
                pos += length
                frames.append(Event(self._content_type, self._envelope, payload, self.node))
                self._envelope = None
        del buf[:pos]
        return frames

    @staticmethod
    def _read_envelope(envelope: bytes) -> tuple[str, int]:
        if envelope.startswith(b"Content-Length: ") and envelope.endswith(_EVENT_PLAIN_TAIL):
            raw_length = envelope[16:-len(_EVENT_PLAIN_TAIL)]
            if raw_length.isdigit():  # how FreeSWITCH frames every plain event: no search needed
                return EVENT_PLAIN, _content_length(raw_length)
        raw_type = _find_header(envelope, b"Content-Type")
        raw_length = _find_header(envelope, b"Content-Length")
        length = 0 if raw_length is None else _content_length(raw_length)
        content_type = "" if raw_type is None else raw_type.decode("ascii", "replace").strip()
        return content_type, length


_EVENT_PLAIN_TAIL = b"\nContent-Type: " + EVENT_PLAIN.encode()


def _content_length(raw: bytes) -> int:
    try:
        length = int(raw)
    except ValueError:
        raise ProtocolError(f"Content-Length is not a number: {raw[:40]!r}") from None
    if not 0 <= length <= MAX_BODY_BYTES:
        raise ProtocolError(f"Content-Length out of range: {length}")
    return length
