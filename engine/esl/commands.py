"""Pure builders for everything the engine puts on an Event Socket command line, with the
quoting FreeSWITCH's own parsers undo, and validation of what cannot be quoted.

FreeSWITCH parses in layers, and each layer needs its own escaping (read in the 1.10 source):
- API arguments are split on spaces by `switch_separate_string(' ')`, then each argument is
  "cleaned up": `'...'` quotes are removed, `\\\\` `\\'` `\\"` `\\n` `\\r` `\\t` `\\s` are unescaped
  (so a literal `C:\\new` would become a newline) and unquoted edge spaces are trimmed.
  `api_arg()` escapes for that layer.
- A dial string's `{name=value,...}` block is cut at the matching `}` by raw brace counting
  (`switch_find_end_paren`: no escape is honoured), split on unescaped, unquoted commas, each
  item cleaned up, split at the first `=` and both halves cleaned up again. `dial_string()`
  escapes a value for both cleanups; braces inside a value must be balanced.
- `${...}` in a value is expanded by FreeSWITCH wherever the variable is used, including
  `${api(args)}` calls, and originate refuses such values: data may not contain it.
CR, LF and NUL are never let through: on this wire they end a command or inject headers.
"""
from __future__ import annotations

import re
import uuid as _uuid
from typing import Iterable, Mapping

from engine.errors import UnsafeValue

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_APP = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")  # sip_h_X-Caller-Type, cc_export_vars, ...
_CAUSE = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_EVENT = re.compile(r"[A-Z][A-Z0-9_]*\Z")
_SUBCLASS = re.compile(r"[A-Za-z0-9_]+(::[A-Za-z0-9_\-]+)+\Z")
_LINE_BREAKERS = ("\r", "\n", "\0")


def new_uuid() -> str:
    """A fresh uuid in FreeSWITCH's form (for origination_uuid, Job-UUID, Event-UUID)."""
    return str(_uuid.uuid4())


def check_line(value: str, what: str = "value") -> str:
    """`value` unchanged if it cannot break the command framing (no CR, LF or NUL)."""
    if not isinstance(value, str):
        raise UnsafeValue(f"{what} must be a string, not {type(value).__name__}")
    for bad in _LINE_BREAKERS:
        if bad in value:
            raise UnsafeValue(f"{what} contains {bad!r}, which would end the ESL command: {value[:60]!r}")
    return value


# What switch_string_var_check_const calls a variable reference: `$`, any backslashes, `{`. A value
# holding one is expanded (`${`) or, on originate and uuid_setvar_multi, silently not set at all.
_VAR_REFERENCE = re.compile(r"\$\\*\{")


def check_data(value: str, what: str = "value") -> str:
    """`value` unchanged if it is safe as channel data: check_line() and no variable reference."""
    check_line(value, what)
    if _VAR_REFERENCE.search(value):
        raise UnsafeValue(f"{what} contains '${{', which FreeSWITCH would expand or refuse: {value[:60]!r}")
    return value


def display_text(value: str, limit: int = 80) -> str:
    """A caller-supplied display string (a caller id name, a contact's name) made safe as channel
    data, for showing it on an agent's phone: control characters become spaces and a variable
    reference (`${`, `$\\{`) loses its meaning, the rest is kept (quotes, braces, commas are
    escaped later by dial_string)."""
    text = "".join(" " if ord(ch) < 0x20 or ch == "\x7f" else ch for ch in value)
    return _VAR_REFERENCE.sub(lambda ref: "$ " + ref.group()[1:], text)[:limit].strip()


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise UnsafeValue(f"not a valid {what}: {value!r}")
    return value


def check_uuid(value: str) -> str:
    return _check(_UUID, value, "channel uuid")


def check_app(value: str) -> str:
    return _check(_APP, value, "application name")


def check_var_name(value: str) -> str:
    return _check(_VAR, value, "channel variable name")


def check_cause(value: str) -> str:
    return _check(_CAUSE, value, "hangup cause")


def _escape_table(delim: str) -> dict[int, str]:
    # A space is a delimiter or trimmed at an edge; \s survives both.
    return str.maketrans({delim: "\\" + delim, "\\": "\\\\", "'": "\\'", " ": "\\s"})


_ESCAPE_TABLES = {delim: _escape_table(delim) for delim in " =,;"}


def _escape(value: str, delim: str) -> str:
    """Escape for one switch_separate_string cleanup pass splitting on `delim`."""
    return value.translate(_ESCAPE_TABLES.get(delim) or _escape_table(delim))


def api_arg(value: str) -> str:
    """One argument of an API command (uuid_setvar value, uuid_broadcast path, ...)."""
    check_line(value, "API argument")
    if not value:
        raise UnsafeValue("an API argument cannot be empty (it would shift the arguments)")
    return _escape(value, " ")


def _check_balanced(value: str, what: str) -> None:
    depth = 0
    for ch in value:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            break
    if depth:
        raise UnsafeValue(f"{what} has unbalanced braces, which would cut the {{...}} block: {value[:60]!r}")


def channel_vars(vars: Mapping[str, str]) -> str:
    """The `{name=value,...}` block of a dial string ("" when there are no variables)."""
    items = []
    for name, value in vars.items():
        check_var_name(name)
        value = check_data(str(value), f"channel variable {name}")
        _check_balanced(value, f"channel variable {name}")
        if ":_:" in value:  # enterprise-originate separator, matched raw before any parsing
            raise UnsafeValue(f"channel variable {name} contains ':_:': {value[:60]!r}")
        items.append(f"{name}={_escape(_escape(value, '='), ',')}")
    return "{" + ",".join(items) + "}" if items else ""


def dial_string(endpoint: str, vars: Mapping[str, str] | None = None) -> str:
    """`{vars}endpoint` as the originate/bridge parser sees it.

    `endpoint` is engine-built syntax (`sofia/gateway/gw1/+4420...`, `user/1001`, several legs
    joined by `,` or `|`); it is not escaped, only refused if it contains whitespace or breaks
    the line. For the `bridge` application prefer originate + uuid_bridge when values contain
    backslashes or quotes: the application's variable expansion pass reinterprets them.
    """
    check_line(endpoint, "endpoint")
    if not endpoint or any(ch.isspace() for ch in endpoint) or endpoint.startswith(("{", "<", "[")):
        raise UnsafeValue(f"not a valid endpoint (empty, whitespace or a leading bracket): {endpoint!r}")
    return channel_vars(vars or {}) + endpoint


def originate(endpoint: str, vars: Mapping[str, str] | None = None, app: str = "park", app_arg: str = "") -> str:
    """`originate {vars}endpoint &app(arg)` (an api/bgapi command). Set `origination_uuid` in
    vars so the channel's uuid is known before any event."""
    check_app(app)
    check_data(app_arg, "application argument")
    if ")" in app_arg:  # originate cuts the argument at the first ')'
        raise UnsafeValue(f"an originate application argument cannot contain ')': {app_arg!r}")
    return f"originate {api_arg(dial_string(endpoint, vars))} {api_arg(f'&{app}({app_arg})')}"


def setvar(uuid: str, name: str, value: str) -> str:
    """`uuid_setvar`; an empty value unsets the variable (as FreeSWITCH does)."""
    check_uuid(uuid)
    check_var_name(name)
    check_data(value, f"channel variable {name}")
    return f"uuid_setvar {uuid} {name} {api_arg(value)}" if value else f"uuid_setvar {uuid} {name}"


# uuid_setvar_multi splits into at most this many `name=value` items (mod_commands' argv[64]).
SETVAR_MULTI_MAX = 64


def setvar_multi(uuid: str, values: Mapping[str, str]) -> str:
    """`uuid_setvar_multi <uuid> a=1;b=2`: several variables in one round trip. FreeSWITCH cuts
    the uuid at the first space, splits the rest on `;` (one cleanup pass) and each item at its
    first `=`; an empty value unsets the variable, as with uuid_setvar."""
    check_uuid(uuid)
    if not values or len(values) > SETVAR_MULTI_MAX:
        raise UnsafeValue(f"uuid_setvar_multi takes 1 to {SETVAR_MULTI_MAX} variables, not {len(values)}")
    items = []
    for name, value in values.items():
        check_var_name(name)
        items.append(f"{name}={_escape(check_data(value, f'channel variable {name}'), ';')}")
    return f"uuid_setvar_multi {uuid} {';'.join(items)}"


def getvar(uuid: str, name: str) -> str:
    return f"uuid_getvar {check_uuid(uuid)} {check_var_name(name)}"


def broadcast(uuid: str, path: str, leg: str = "aleg") -> str:
    """`uuid_broadcast` of a file/stream path (or `app::arg`) to aleg, bleg or both."""
    if leg not in ("aleg", "bleg", "both"):
        raise UnsafeValue(f"uuid_broadcast leg must be aleg, bleg or both, not {leg!r}")
    check_data(path, "broadcast path")
    return f"uuid_broadcast {check_uuid(uuid)} {api_arg(path)} {leg}"


def kill(uuid: str, cause: str = "NORMAL_CLEARING") -> str:
    return f"uuid_kill {check_uuid(uuid)} {check_cause(cause)}"


def uuid_bridge(uuid: str, other: str) -> str:
    return f"uuid_bridge {check_uuid(uuid)} {check_uuid(other)}"


# -- whole frames, as written to the socket (a frame ends with a blank line or its body) ----

def api(cmd: str) -> str:
    return f"api {check_line(cmd, 'api command')}\n\n"


def bgapi(cmd: str, job_uuid: str) -> str:
    """bgapi with our own Job-UUID header, so the BACKGROUND_JOB is correlated without a race."""
    return f"bgapi {check_line(cmd, 'bgapi command')}\nJob-UUID: {check_uuid(job_uuid)}\n\n"


def auth(password: str) -> str:
    return f"auth {check_line(password, 'password')}\n\n"


def subscribe(events: Iterable[str], custom: Iterable[str] = ()) -> str:
    """`event plain NAME ... [CUSTOM sub::class ...]`, by name (never ALL)."""
    names = [_check(_EVENT, e, "event name") for e in events if e != "CUSTOM"]
    subclasses = [_check(_SUBCLASS, s, "event subclass") for s in custom]
    if "ALL" in names:
        raise UnsafeValue("subscribe to the events you use by name, not ALL")
    if subclasses:
        names += ["CUSTOM", *subclasses]
    if not names:
        raise UnsafeValue("no events to subscribe to")
    return "event plain " + " ".join(dict.fromkeys(names)) + "\n\n"


def sendmsg_execute(uuid: str, app: str, arg: str, *, event_uuid: str, lock: bool = True) -> str:
    """sendmsg execute with the argument as a text/plain body: no header can be injected
    through it, and Event-UUID comes back as Application-UUID on CHANNEL_EXECUTE(_COMPLETE)."""
    lines = [
        f"sendmsg {check_uuid(uuid)}",
        "call-command: execute",
        f"execute-app-name: {check_app(app)}",
        f"Event-UUID: {check_uuid(event_uuid)}",
    ]
    if lock:
        lines.append("event-lock: true")
    if not arg:
        return "\n".join(lines) + "\n\n"
    body = check_line(arg, f"{app} argument")
    lines += ["content-type: text/plain", f"content-length: {len(body.encode('utf-8'))}"]
    return "\n".join(lines) + "\n\n" + body


def sendmsg_hangup(uuid: str, cause: str = "NORMAL_CLEARING") -> str:
    return f"sendmsg {check_uuid(uuid)}\ncall-command: hangup\nhangup-cause: {check_cause(cause)}\n\n"


# -- what the call model sends (engine/calls) ---------------------------------------------------

def park(uuid: str) -> str:
    """`uuid_park`: end the channel's current park and start a new one (which reads park_timeout)."""
    return f"uuid_park {check_uuid(uuid)}"


def break_media(uuid: str) -> str:
    """`uuid_break <uuid> all`: stop what is playing and everything queued behind it."""
    return f"uuid_break {check_uuid(uuid)} all"


def play_and_get_digits(min_digits: int, max_digits: int, tries: int, timeout_ms: int, terminators: str,
                        prompt: str, invalid_prompt: str, var: str, regex: str, digit_timeout_ms: int) -> str:
    """The argument of the play_and_get_digits application (split on spaces by mod_dptools).

    Prompts and the regex are operator-written paths/patterns: a space in them would shift every
    argument after it, so it is refused rather than guessed at.
    """
    if not 0 < min_digits <= max_digits or tries < 1 or timeout_ms < 1 or digit_timeout_ms < 1:
        raise UnsafeValue("play_and_get_digits needs 0 < min_digits <= max_digits, tries >= 1, timeouts >= 1 ms")
    if terminators != "none" and (not terminators or any(ch not in "0123456789*#ABCD" for ch in terminators)):
        raise UnsafeValue(f"terminators must be DTMF keys or 'none', not {terminators!r}")
    for what, value in (("prompt", prompt), ("invalid prompt", invalid_prompt), ("digits regex", regex)):
        check_data(value, what)
        if not value or any(ch.isspace() for ch in value):
            raise UnsafeValue(f"the {what} cannot be empty or contain spaces: {value!r}")
    check_var_name(var)
    return (f"{min_digits} {max_digits} {tries} {timeout_ms} {terminators} {prompt} {invalid_prompt} {var} "
            f"{regex} {digit_timeout_ms}")


# -- what the IVR sends (engine/ivr) -------------------------------------------------------------

SAY_TYPES = frozenset({"NUMBER", "ITEMS", "PERSONS", "MESSAGES", "CURRENCY", "TIME_MEASUREMENT", "CURRENT_DATE",
                       "CURRENT_TIME", "CURRENT_DATE_TIME", "TELEPHONE_NUMBER", "TELEPHONE_EXTENSION",
                       "SHORT_DATE_TIME"})
SAY_METHODS = frozenset({"N/A", "PRONOUNCED", "ITERATED", "COUNTED"})
_SAY_MODULE = re.compile(r"[a-z]{2}\Z")
_SAY_TEXT = re.compile(r"[0-9A-Za-z.+\-*#:]{1,64}\Z")
_DIALPLAN_WORD = re.compile(r"[0-9A-Za-z*#+_.\-]{1,64}\Z")


def say(module: str, say_type: str, method: str, text: str) -> str:
    """The argument of the `say` application: `<module> <type> <method> <text>`.

    The text is what is read out (a number, digits, an amount): refused unless it is a short
    run of digits, letters and number punctuation, since it usually comes from a variable.
    """
    if not _SAY_MODULE.match(module or ""):
        raise UnsafeValue(f"not a say module (two-letter language): {module!r}")
    if say_type not in SAY_TYPES or method not in SAY_METHODS:
        raise UnsafeValue(f"not a say type/method: {say_type!r} {method!r}")
    if not isinstance(text, str) or not _SAY_TEXT.match(text):
        raise UnsafeValue(f"cannot be read out safely: {str(text)[:60]!r}")
    return f"{module} {say_type} {method} {text}"


def record(path: str, time_limit_seconds: int, silence_threshold: int = 200, silence_hits: int = 5) -> str:
    """The argument of the `record` application: `<path> <time_limit> <silence_thresh> <silence_hits>`."""
    check_data(path, "recording path")
    if not path or any(ch.isspace() for ch in path) or "://" in path:
        raise UnsafeValue(f"a recording path must be a file path without spaces: {path!r}")
    if time_limit_seconds < 1 or silence_threshold < 0 or silence_hits < 0:
        raise UnsafeValue("record needs a time limit >= 1 s and non-negative silence settings")
    return f"{path} {int(time_limit_seconds)} {int(silence_threshold)} {int(silence_hits)}"


def uuid_transfer(uuid: str, destination: str, dialplan: str = "XML", context: str = "default") -> str:
    """`uuid_transfer <uuid> <dest> <dialplan> <context>`: the channel leaves the engine's park
    and runs the dialplan again at that extension."""
    for what, value in (("destination", destination), ("dialplan", dialplan), ("context", context)):
        if not isinstance(value, str) or not _DIALPLAN_WORD.match(value):
            raise UnsafeValue(f"not a valid transfer {what}: {value!r}")
    return f"uuid_transfer {check_uuid(uuid)} {destination} {dialplan} {context}"


def file_string(paths: Iterable[str]) -> str:
    """Several sound paths as one playable `file_string://a!b` (one path stays as it is)."""
    items = list(paths)
    for path in items:
        check_data(path, "sound path")
        if not path or "!" in path or any(ch.isspace() for ch in path):
            raise UnsafeValue(f"a sound path in a file_string cannot be empty or hold '!' or spaces: {path!r}")
    if not items:
        raise UnsafeValue("no sound to play")
    return items[0] if len(items) == 1 else "file_string://" + "!".join(items)
