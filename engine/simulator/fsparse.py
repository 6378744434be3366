"""How FreeSWITCH 1.10 takes command lines apart, written from reading switch_utils.c
(switch_separate_string, its cleanup pass, unescape rules, switch_find_end_paren), switch_event.c
(switch_event_create_brackets), switch_ivr_originate.c (dial strings: `<>`/`{}` global and `[]`
per-endpoint variables, `|` failover, `,` simultaneous endpoints) and mod_commands.c (API
argument splitting). The simulated switch parses API arguments and dial strings with it, so a
value arrives on a simulated channel as it would on a real one; the command property tests check
that what engine.esl.commands builds comes back out of it as the values put in.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

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
    """separate_string_char_delim: split on unescaped, unquoted `delim`, at most `limit` parts.
    Unlike FreeSWITCH, which starts a part only on a character, a trailing `delim` leaves an
    empty last part ("a=" -> "a", ""): the same on a channel, where an empty value sets nothing."""
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
    """switch_find_end_paren: where the block opened by `open_` at the start of `s` (after any
    spaces) closes, by raw counting (no escape or quote is honoured); -1 if it does not."""
    start = len(s) - len(s.lstrip(" "))
    if not s.startswith(open_, start):
        return -1
    depth = 1
    for i in range(start + 1, len(s)):
        ch = s[i]
        if ch == close:
            depth -= 1
            if depth == 0:
                return i
        elif ch == open_:
            depth += 1
    return -1


def has_variable(value: str) -> bool:
    """switch_string_var_check_const: `$`, then any backslashes, then `{`. Originate refuses to
    set such a value on the new channel (unless origination_nested_vars), as uuid_setvar_multi does."""
    at = value.find("$")
    while at >= 0:
        rest = value[at + 1:].lstrip("\\")
        if rest.startswith("{"):
            return True
        at = value.find("$", at + 1)
    return False


class DialStringError(ValueError):
    """A variable block that does not close: FreeSWITCH logs "Parse Error!" and dials nothing."""


def brackets(data: str, open_: str, close: str, delim: str = ",") -> tuple[dict[str, str], str]:
    """switch_event_create_brackets on the block at the start of `data`: its variables and the
    text after it. The block's text is split on `delim` (or the `^^X` one it starts with), each
    item at its first `=`; an item without a value sets nothing."""
    end = find_end_paren(data, open_, close)
    if end < 0:
        raise DialStringError(f"no closing {close!r} in {data[:60]!r}")
    inner = data[data.index(open_) + 1:end]
    if inner.startswith("^^") and len(inner) > 2:
        delim, inner = inner[2], inner[3:]
    variables: dict[str, str] = {}
    for item in separate_string(inner, delim):
        pair = separate_string(item, "=", 2)
        if len(pair) == 2:
            variables[pair[0]] = pair[1]
    return variables, data[end + 1:]


def dial_string(data: str) -> tuple[dict[str, str], str]:
    """switch_ivr_originate's global variables: the `<...>` blocks, then the `{...}` blocks, at
    the start of a dial string (later blocks override earlier ones); returns them and the rest."""
    variables: dict[str, str] = {}
    data = data.lstrip(" ")
    for open_, close in (("<", ">"), ("{", "}")):
        while data.startswith(open_):
            block, data = brackets(data, open_, close)
            variables.update(block)
    return variables, data.lstrip(" ")


# switch_ivr_originate marks the commas inside a [...] block before splitting endpoints on `,`:
# a comma that separates the block's variables becomes _LEG_DELIM (the block's delimiter), a quoted
# one (or any in a `[^^X...]` block) _QUOTED_COMMA, turned back into a comma before the block is
# parsed; an escaped one stays a comma, unescaped by the `,` split.
_LEG_DELIM = "\x02"
_QUOTED_COMMA = "\x01"
_TRUE = frozenset({"yes", "on", "true", "t", "enabled", "active", "allow"})


def switch_true(value: str | None) -> bool:
    """switch_true: yes/on/true/t/enabled/active/allow in any case, or a non-zero number."""
    if not value:
        return False
    text = value.strip().lower()
    return text in _TRUE or (text.lstrip("-").isdigit() and int(text) != 0)


@dataclass
class Peer:
    """One endpoint of an originate: its `[...]` variables and the dial string's global ones."""

    endpoint: str
    local_vars: dict[str, str]
    global_vars: dict[str, str]

    @property
    def originate_vars(self) -> dict[str, str]:
        """What the new channel is created from (origination_uuid, origination_caller_id_*):
        the local variables take precedence."""
        return {**self.global_vars, **self.local_vars}

    @property
    def channel_vars(self) -> dict[str, str]:
        """What the channel reads once up: the local variables are set first and the global ones
        over them, unless the globals set local_var_clobber."""
        if switch_true(self.global_vars.get("local_var_clobber")):
            return {**self.global_vars, **self.local_vars}
        return {**self.local_vars, **self.global_vars}


def _mark_leg_commas(group: str) -> str:
    out = list(group)
    end = -1
    quoted = alt = False
    for i, ch in enumerate(group):
        if end < 0 and ch == "[":
            found = find_end_paren(group[i:], "[", "]")
            end = i + found if found >= 0 else -1
            alt = group.startswith("[^^", i)
            quoted = False
        if ch == "'":
            quoted = not quoted
        if i < end and ch == "," and group[i - 1] != "\\":
            out[i] = _QUOTED_COMMA if quoted or alt else _LEG_DELIM
        if i == end:
            end = -1
    return "".join(out)


def _peer(text: str, global_vars: dict[str, str]) -> Peer:
    text = text.lstrip(" ")
    local_vars: dict[str, str] = {}
    while text.startswith("["):
        end = find_end_paren(text, "[", "]")
        if end > 0:
            text = text[:end].replace(_QUOTED_COMMA, ",") + text[end:]
        block, text = brackets(text, "[", "]", _LEG_DELIM)
        local_vars.update(block)
    return Peer(text.lstrip(" "), local_vars, global_vars)


def originate_peers(dial: str) -> list[list[Peer]]:
    """A dial string as switch_ivr_originate reads it: the global `<>`/`{}` variables, then
    failover groups split on `|`, each a list of endpoints rung at once split on `,`, each with
    its own `[...]` variables. Of an enterprise originate (`:_:`, every part dialled at once) the
    first part is taken, with the `<...>` variables before it as globals of every part."""
    dial = dial.lstrip(" ")
    if ":_:" in dial:
        ultra: dict[str, str] = {}
        while dial.startswith("<"):
            block, dial = brackets(dial, "<", ">")
            ultra.update(block)
            dial = dial.lstrip(" ")
        global_vars, rest = dial_string(dial.split(":_:", 1)[0])
        global_vars = {**ultra, **global_vars}
    else:
        global_vars, rest = dial_string(dial)
    groups = []
    for group in separate_string(rest, "|"):
        peers = [_peer(text, global_vars) for text in separate_string(_mark_leg_commas(group), ",")]
        groups.append([peer for peer in peers if peer.endpoint])
    return [group for group in groups if group]
