"""How FreeSWITCH 1.10 takes command lines apart, written from reading switch_utils.c
(switch_separate_string, its cleanup pass, unescape rules, switch_find_end_paren), switch_event.c
(switch_event_create_brackets) and mod_commands.c (API argument splitting). The simulated switch
parses API arguments and dial strings with it, so a value arrives on a simulated channel as it
would on a real one; the command property tests check that what engine.esl.commands builds comes
back out of it as the values put in.
"""
from __future__ import annotations

import re

_SPACES = re.compile(" +")

_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def _cleanup(token: str, delim: str | None) -> str:
    """cleanup_separated_string: drop leading spaces, unescape, remove paired quotes, trim."""
    i = 0
    while i < len(token) and token[i] == " ":
        i += 1
    out: list[str] = []
    end = 0
    quoted = False
    while i < len(token):
        ch = token[i]
        nxt = token[i + 1] if i + 1 < len(token) else ""
        if ch == "\\" and nxt and (nxt in "'\"\\" or nxt == delim or nxt in _UNESCAPE):
            out.append(_UNESCAPE.get(nxt, nxt))
            end = len(out)
            i += 2
            continue
        if ch == "'" and (quoted or "'" in token[i + 1:]):
            quoted = not quoted
            if quoted:
                end = len(out)
        else:
            out.append(ch)
            if ch != " " or quoted:
                end = len(out)
        i += 1
    return "".join(out[:end])


def _split_char(buf: str, delim: str, limit: int) -> list[str]:
    """separate_string_char_delim: split on unescaped, unquoted `delim`, at most `limit` parts."""
    parts: list[str] = []
    start = 0
    i = 0
    quoted = False
    while i < len(buf) and len(parts) < limit - 1:
        ch = buf[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'" and (quoted or "'" in buf[i + 1:]):
            quoted = not quoted
        elif ch == delim and not quoted:
            parts.append(buf[start:i])
            start = i + 1
        i += 1
    parts.append(buf[start:])
    return [_cleanup(p, delim) for p in parts]


def _split_blank(buf: str, limit: int) -> list[str]:
    """separate_string_blank_delim: split on unescaped, unquoted runs of spaces."""
    parts: list[str] = []
    i = 0
    while i < len(buf) and len(parts) < limit:
        while i < len(buf) and buf[i] == " ":
            i += 1
        if i >= len(buf):
            break
        start = i
        quoted = False
        if len(parts) == limit - 1:
            i = len(buf)  # the last slot takes the rest of the line
        while i < len(buf):
            ch = buf[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                quoted = not quoted
            elif ch == " " and not quoted:
                break
            i += 1
        parts.append(buf[start:i])
    return [_cleanup(p, None) for p in parts]


def separate_string(buf: str, delim: str, limit: int = 1024) -> list[str]:
    if buf.startswith("^^") and len(buf) > 3:
        delim, buf = buf[2], buf[3:]
    if "\\" in buf or "'" in buf:
        return _split_blank(buf, limit) if delim == " " else _split_char(buf, delim, limit)
    # Nothing escaped or quoted (most lines): the same split without walking every character.
    if delim == " ":
        text = buf.strip(" ")
        if not text:
            return []
        parts = _SPACES.split(text, maxsplit=limit - 1) if limit > 1 else [text]  # maxsplit 0: no limit
        return [part.strip(" ") for part in parts]
    return [part.strip(" ") for part in buf.split(delim, limit - 1)]


def api_args(line: str, limit: int = 1024) -> list[str]:
    """An API command line as `name` + the arguments the command's function sees."""
    name, _, rest = line.partition(" ")
    return [name, *separate_string(rest, " ", limit)]


def find_end_paren(s: str, open_: str, close: str) -> int:
    depth = 0
    for i, ch in enumerate(s):
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i
    return -1


def dial_string(data: str) -> tuple[dict[str, str], str]:
    """switch_event_create_brackets on `{a=b,...}rest`: the variables and the rest."""
    if not data.startswith("{"):
        return {}, data
    end = find_end_paren(data, "{", "}")
    assert end > 0, f"no closing brace in {data!r}"
    inner, rest = data[1:end], data[end + 1:]
    delim = ","
    if inner.startswith("^^") and len(inner) > 2:
        delim, inner = inner[2], inner[3:]
    variables: dict[str, str] = {}
    for item in separate_string(inner, delim):
        pair = separate_string(item, "=", 2)
        if len(pair) == 2:
            variables[pair[0]] = pair[1]
    return variables, rest
