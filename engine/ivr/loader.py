"""Flow files (YAML) -> the model, or every mistake in them as `file:line:col: message`.

One file holds one flow. The loader reads through engine.yamlfile (so `on`, `9:30`, `010` and
duplicate keys mean what the operator typed or fail), then checks what a YAML schema cannot:
transitions to missing nodes, unreachable nodes, loops that never wait for the caller, unknown
variables in conditions and templates, time zones, holiday sets, queues and prompt files.
Every error of a file is reported, not just the first.
"""
from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ConfigError
from engine.ivr import expr
from engine.ivr.model import (
    INPUT_NODES, Branch, Callback, Collect, Flow, FlowSet, Hangup, Lookup, Menu, Node, Play, Prompt, Query,
    Question, Queue, Record, Say, ScheduleCheck, SetVars, Survey, Transfer,
)
from engine.ivr.schedule import WEEKDAYS, Hours, Schedule, parse_range, supported_countries
from engine.yamlfile import Mark, YamlList, YamlMap, load

DTMF = "0123456789*#"
BUILTIN_VARS = frozenset({"caller_id", "caller_name", "dnis", "entry", "uuid", "flow", "digits",
                          "queue_position", "queue_wait_minutes"})
SAY_KINDS = ("number", "digits", "currency", "time", "date")
STREAM_PREFIXES = ("tone_stream://", "silence_stream://")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_VAR = re.compile(r"[a-z][a-z0-9_]*\Z")
_TEMPLATE_VAR = re.compile(r"\$\{([^}]*)\}")
_EXTENSION = re.compile(r"[0-9A-Za-z*#+_.-]{1,32}\Z")
_NUMBER = re.compile(r"\+?[0-9]{3,20}\Z")
_GATEWAY = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_SQL_PARAM = re.compile(r"%\((\w+)\)s")
_COUNTRIES: dict[str, list[str]] | None = None
# Causes an operator may end a call with (the Q.850 names FreeSWITCH accepts for a hangup).
HANGUP_CAUSES = frozenset({
    "NORMAL_CLEARING", "USER_BUSY", "NO_USER_RESPONSE", "NO_ANSWER", "CALL_REJECTED", "UNALLOCATED_NUMBER",
    "NO_ROUTE_DESTINATION", "NORMAL_TEMPORARY_FAILURE", "SERVICE_UNAVAILABLE", "NORMAL_UNSPECIFIED",
    "DESTINATION_OUT_OF_ORDER", "FACILITY_REJECTED", "NORMAL_CIRCUIT_CONGESTION", "SWITCH_CONGESTION",
    "OUTGOING_CALL_BARRED", "INCOMING_CALL_BARRED", "BEARERCAPABILITY_NOTAUTH",
})

NODE_KEYS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    # type: (allowed keys besides type/note, required keys)
    "play": (frozenset({"prompt", "next"}), ("prompt", "next")),
    "menu": (frozenset({"prompt", "options", "invalid_prompt", "timeout_prompt", "tries", "timeout", "on_failure"}),
             ("prompt", "options", "on_failure")),
    "collect": (frozenset({"prompt", "invalid_prompt", "into", "min_digits", "max_digits", "terminators", "pattern",
                           "tries", "timeout", "digit_timeout", "next", "on_failure"}),
                ("prompt", "into", "max_digits", "next", "on_failure")),
    "set": (frozenset({"values", "next"}), ("values", "next")),
    "branch": (frozenset({"cases", "else"}), ("cases", "else")),
    "schedule": (frozenset({"schedule", "open", "closed", "holiday"}), ("schedule", "open", "closed")),
    "queue": (frozenset({"queue", "skills", "priority", "max_wait", "announce", "announce_every", "exit_keys",
                         "on_answered", "on_timeout", "on_no_agents"}), ("queue", "on_timeout", "on_no_agents")),
    "transfer": (frozenset({"extension", "context", "number", "gateway", "ring_seconds", "flow", "on_failure"}), ()),
    "record": (frozenset({"prompt", "beep", "mailbox", "max_seconds", "next"}), ("prompt", "mailbox", "next")),
    "survey": (frozenset({"survey", "questions", "invalid_prompt", "tries", "timeout", "next"}),
               ("survey", "questions", "next")),
    "callback": (frozenset({"prompt", "confirm", "accept", "queue", "timeout", "on_accepted", "on_declined"}),
                 ("prompt", "queue", "on_accepted", "on_declined")),
    "lookup": (frozenset({"query", "url", "into", "timeout", "on_found", "on_not_found", "on_failure"}),
               ("into", "on_found", "on_not_found", "on_failure")),
    "hangup": (frozenset({"prompt", "cause"}), ()),
}
# Which keys of a node name the next node, and the outcome each stands for.
EDGE_KEYS = {"next": "next", "on_failure": "failure", "else": "else", "open": "open", "closed": "closed",
             "holiday": "holiday", "on_answered": "answered", "on_timeout": "timeout",
             "on_no_agents": "no_agents", "on_accepted": "accepted", "on_declined": "declined",
             "on_found": "found", "on_not_found": "not_found"}
TOP_KEYS = frozenset({"flow", "description", "entries", "default", "start", "language", "timezone", "variables",
                      "schedules", "queries", "on_error", "nodes"})


class FlowErrors(ConfigError):
    """Every mistake found in a set of flow files, one `file:line:col: message` per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class Checks:
    """What the files are checked against beyond themselves."""

    queues: frozenset[str] | None = None  # None: queue names are not checked
    sounds_dir: Path | None = None  # None: prompt files are not checked


def _closest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.7)
    return found[0] if found else None


def _hint(word: str, choices: Iterable[str]) -> str:
    close = _closest(word, choices)
    return f"; did you mean '{close}'?" if close else ""


@dataclass
class _FileReader:
    """Reads one flow file, collecting errors instead of stopping at the first."""

    file: str
    checks: Checks
    errors: list[ConfigError] = field(default_factory=list)
    variables: set[str] = field(default_factory=lambda: set(BUILTIN_VARS))
    schedules: dict[str, Schedule] = field(default_factory=dict)
    queries: dict[str, Query] = field(default_factory=dict)
    language: str = "en"
    # (mark, name, kind): references resolved once every node is known
    node_refs: list[tuple[Mark, str, str]] = field(default_factory=list)
    var_refs: list[tuple[Mark, str]] = field(default_factory=list)
    flow_refs: list[tuple[Mark, str]] = field(default_factory=list)

    def error(self, mark: Mark, message: str) -> None:
        self.errors.append(mark.error(message))

    # ---- generic fields --------------------------------------------------------------------
    def keys(self, m: YamlMap, allowed: frozenset[str], what: str, required: tuple[str, ...] = ()) -> bool:
        ok = True
        for key in m:
            if key not in allowed:
                ok = False
                hint = _hint(key, allowed) or f"; allowed: {', '.join(sorted(allowed))}"
                self.error(m.key_marks[key], f"unknown key '{key}' in {what}{hint}")
        for key in required:
            if key not in m:
                ok = False
                self.error(m.mark, f"{what} needs '{key}'")
        return ok

    def mapping(self, value: Any, mark: Mark, what: str) -> YamlMap | None:
        if not isinstance(value, YamlMap):
            self.error(mark, f"{what} must be a mapping of `key: value` lines")
            return None
        return value

    def listing(self, value: Any, mark: Mark, what: str) -> YamlList | None:
        if not isinstance(value, YamlList):
            self.error(mark, f"{what} must be a list (lines starting with '- ')")
            return None
        return value

    def text(self, m: YamlMap, key: str, what: str, default: str = "") -> str:
        if key not in m or m[key] is None:
            return default
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            self.error(m.mark_of(key), f"{what}.{key} must be text, not {_kind(value)}")
            return default
        return str(value)

    def number(self, m: YamlMap, key: str, what: str, default: float, *, low: float = 0, high: float = 86400,
               whole: bool = False) -> float:
        if key not in m or m[key] is None:
            return default
        value = m[key]
        unit = "whole number" if whole else "number"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and isinstance(value, float)):
            self.error(m.mark_of(key), f"{what}.{key} must be a {unit}, not {_kind(value)}"
                       + (" (write seconds as a plain number)" if isinstance(value, str) else ""))
            return default
        if not low <= value <= high:
            self.error(m.mark_of(key), f"{what}.{key} must be between {low:g} and {high:g}, not {value:g}")
            return default
        return value

    def boolean(self, m: YamlMap, key: str, what: str) -> bool:
        value = m.get(key, False)
        if not isinstance(value, bool):
            self.error(m.mark_of(key), f"{what}.{key} must be true or false, not '{value}'"
                       + (" (YAML 1.1 words like yes/no/on/off are not accepted)" if isinstance(value, str) else ""))
            return False
        return value

    def digits(self, m: YamlMap, key: str, what: str, default: str = "", *, allowed: str = DTMF) -> str:
        value = self.text(m, key, what, default)
        bad = [ch for ch in value if ch not in allowed]
        if bad:
            self.error(m.mark_of(key), f"{what}.{key} must be keys of the phone ({allowed}), not '{value}'")
            return default
        return value

    def key_edges(self, m: YamlMap, key: str, what: str, called: str, edges: dict[str, str]) -> YamlMap:
        """A mapping of one phone key -> node (menu options, queue exit keys): each valid key
        becomes the outcome naming its node in `edges`."""
        keys = self.mapping(m[key], m.mark_of(key), f"{what}.{key}") or YamlMap()
        for digit in keys:
            if len(digit) != 1 or digit not in DTMF:
                self.error(keys.key_marks[digit], f"{what}: {called} '{digit}' must be one key "
                                                  f"of the phone (0-9, * or #); quote it like \"1\"")
                continue
            edges[digit] = self.node_ref(keys, digit, f"{what}.{key}")
        return keys

    def node_ref(self, m: YamlMap, key: str, what: str) -> str:
        value = m.get(key)
        if not isinstance(value, str) or not value:
            self.error(m.mark_of(key), f"{what}.{key} must name a node, not {_kind(value)}")
            return ""
        self.node_refs.append((m.mark_of(key), value, f"{what}.{key}"))
        return value

    def template(self, value: str, mark: Mark) -> str:
        names = _TEMPLATE_VAR.findall(value)
        if value.count("${") != len(names):
            self.error(mark, f"'{value}': a '${{' is never closed with '}}'")
        for name in names:
            self.var_refs.append((mark, name))
        return value

    # ---- prompts ---------------------------------------------------------------------------
    def prompt(self, value: Any, mark: Mark, what: str) -> Prompt:
        if value is None:
            return ()
        items = value if isinstance(value, YamlList) else [value]
        marks = value.item_marks if isinstance(value, YamlList) else [mark]
        if isinstance(value, YamlList) and not value:
            self.error(mark, f"{what} is an empty list; give at least one sound")
        out: list[Any] = []
        for item, item_mark in zip(items, marks):
            if isinstance(item, YamlMap):
                say = self.say(item, item_mark, what)
                if say is not None:
                    out.append(say)
            elif isinstance(item, str) and item:
                out.append(self.sound(item, item_mark, what))
            else:
                self.error(item_mark, f"{what} must be a sound file, a tone_stream:// or silence_stream:// "
                                      f"or a `say:` item, not {_kind(item)}")
        return tuple(out)

    def file_prompt(self, value: Any, mark: Mark, what: str) -> Prompt:
        """A prompt played while digits are collected: sounds only (FreeSWITCH plays it as one file)."""
        prompt = self.prompt(value, mark, what)
        if any(isinstance(item, Say) for item in prompt):
            self.error(mark, f"{what} is played while collecting digits and cannot hold `say:` items; "
                             f"put them in a play node before it")
            return tuple(item for item in prompt if not isinstance(item, Say))
        return prompt

    def sound(self, path: str, mark: Mark, what: str) -> str:
        if any(ch.isspace() for ch in path) or "${" in path:
            self.error(mark, f"{what}: '{path}' may not contain spaces or ${{variables}}")
        elif path.startswith(STREAM_PREFIXES):
            pass
        elif "://" in path:
            self.error(mark, f"{what}: '{path}' is neither a file nor tone_stream:// or silence_stream://")
        elif self.checks.sounds_dir is not None and not (self.checks.sounds_dir / path).is_file():
            self.error(mark, f"{what}: the sound file '{path}' does not exist under {self.checks.sounds_dir}")
        return path

    def say(self, m: YamlMap, mark: Mark, what: str) -> Say | None:
        if not self.keys(m, frozenset({"say", "as", "language"}), f"a say item of {what}", ("say", "as")):
            return None
        kind = self.text(m, "as", what)
        if kind not in SAY_KINDS:
            self.error(m.mark_of("as"), f"say as '{kind}' is not known; use one of {', '.join(SAY_KINDS)}")
            return None
        text = self.template(self.text(m, "say", what), m.mark_of("say"))
        language = self.text(m, "language", what, self.language)
        if not re.fullmatch(r"[a-z]{2}(-[A-Za-z]{2})?", language):
            self.error(m.mark_of("language"), f"'{language}' is not a language code like en or de")
        return Say(text, kind, language)

    # ---- schedules, queries ----------------------------------------------------------------
    def schedule(self, name: str, m: YamlMap) -> Schedule | None:
        what = f"schedule '{name}'"
        self.keys(m, frozenset({"timezone", "hours", "holidays", "closed_dates", "special"}), what,
                  ("timezone", "hours"))
        zone = self.text(m, "timezone", what, "UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(m.mark_of("timezone"), f"'{zone}' is not a time zone; use an IANA name like Europe/London")
            zone = "UTC"
        weekly: list[tuple[Hours, ...]] = [() for _ in WEEKDAYS]
        hours = self.mapping(m.get("hours"), m.mark_of("hours"), f"{what}.hours") if "hours" in m else None
        seen: dict[int, str] = {}
        for key, value in (hours or {}).items():
            days = self.days(key, hours.key_marks[key])
            ranges = self.ranges(value, hours.mark_of(key), f"{what}.hours.{key}")
            for day in days:
                if day in seen:
                    self.error(hours.key_marks[key], f"{WEEKDAYS[day]} is given twice ('{seen[day]}' and '{key}')")
                seen[day] = key
                weekly[day] = ranges
        country, subdivision = None, None
        if "holidays" in m:
            country, subdivision = self.holiday_set(m.get("holidays"), m.mark_of("holidays"), what)
        closed = set()
        if "closed_dates" in m:
            dates = self.listing(m["closed_dates"], m.mark_of("closed_dates"), f"{what}.closed_dates")
            for i, value in enumerate(dates or ()):
                day = self.date(value, dates.mark_of(i))
                if day is not None:
                    closed.add(day)
        special = []
        if "special" in m:
            sm = self.mapping(m["special"], m.mark_of("special"), f"{what}.special")
            for key, value in (sm or {}).items():
                day = self.date(key, sm.key_marks[key])
                ranges = self.ranges(value, sm.mark_of(key), f"{what}.special.{key}")
                if day is not None:
                    special.append((day, ranges))
        return Schedule(name, zone, tuple(weekly), country, subdivision, frozenset(closed), tuple(special))

    def days(self, key: str, mark: Mark) -> list[int]:
        first, sep, last = key.partition("-")
        if first not in WEEKDAYS or (sep and last not in WEEKDAYS):
            self.error(mark, f"'{key}' is not a weekday or a range like mon-fri (days: {', '.join(WEEKDAYS)})")
            return []
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last) if sep else WEEKDAYS.index(first)
        if b < a:
            self.error(mark, f"'{key}' runs backwards; write it as {last}-{first} or list the days")
            return []
        return list(range(a, b + 1))

    def ranges(self, value: Any, mark: Mark, what: str) -> tuple[Hours, ...]:
        if value == "closed":
            return ()
        if isinstance(value, int) and not isinstance(value, bool):
            self.error(mark, f"{what}: {value} is not a range of hours; write it like \"09:00-17:30\"")
            return ()
        items = value if isinstance(value, YamlList) else [value]
        out = []
        for i, item in enumerate(items):
            where = value.mark_of(i) if isinstance(value, YamlList) else mark
            try:
                out.append(parse_range(str(item)) if isinstance(item, str) else parse_range(""))
            except ValueError as exc:
                self.error(where, f"{what}: {exc}" if isinstance(item, str) else
                           f"{what} must be ranges like \"09:00-17:30\" or closed, not {_kind(item)}")
        out.sort(key=lambda h: h.start)
        for a, b in zip(out, out[1:]):
            if b.start < a.end:
                self.error(mark, f"{what}: opening ranges overlap")
        return tuple(out)

    def date(self, value: Any, mark: Mark):
        import datetime as dt

        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.error(mark, f"'{value}' is not a date as YYYY-MM-DD")
            return None

    def holiday_set(self, value: Any, mark: Mark, what: str) -> tuple[str | None, str | None]:
        global _COUNTRIES
        if isinstance(value, str):
            country, subdivision, where = value, None, mark
        else:
            hm = self.mapping(value, mark, f"{what}.holidays")
            if hm is None or not self.keys(hm, frozenset({"country", "subdivision"}), f"{what}.holidays",
                                           ("country",)):
                return None, None
            country, subdivision = self.text(hm, "country", what), self.text(hm, "subdivision", what) or None
            where = hm.mark_of("country")
        if _COUNTRIES is None:
            _COUNTRIES = supported_countries()
        if country not in _COUNTRIES:
            self.error(where, f"no holiday calendar for country '{country}'{_hint(country, _COUNTRIES)} "
                              f"(use an ISO 3166 code like GB, US, DE)")
            return None, None
        if subdivision is not None and subdivision not in _COUNTRIES[country]:
            known = ", ".join(_COUNTRIES[country][:12]) or "none"
            self.error(hm.mark_of("subdivision"), f"'{subdivision}' is not a subdivision of {country} "
                                                  f"(known: {known}{', ...' if len(_COUNTRIES[country]) > 12 else ''})")
            return country, None
        return country, subdivision

    def query(self, name: str, m: YamlMap) -> Query | None:
        what = f"query '{name}'"
        if not self.keys(m, frozenset({"sql"}), what, ("sql",)):
            return None
        sql = self.text(m, "sql", what).strip()
        mark = m.mark_of("sql")
        if not re.match(r"(?is)\s*(select|with)\b", sql):
            self.error(mark, f"{what} must be a SELECT: lookups only read")
            return None
        if ";" in sql.rstrip(";") or "%s" in sql or re.search(r"%[^(%]", sql):
            self.error(mark, f"{what} must be one statement with %(variable)s parameters only")
            return None
        params = tuple(dict.fromkeys(_SQL_PARAM.findall(sql)))
        for param in params:
            self.var_refs.append((mark, param))
        return Query(name, sql.rstrip(";"), params)

    # ---- nodes ---------------------------------------------------------------------------
    def node(self, name: str, m: YamlMap, mark: Mark) -> Node | None:
        what = f"node '{name}'"
        kind = m.get("type")
        if not isinstance(kind, str) or kind not in NODE_KEYS:
            where = m.mark_of("type") if "type" in m else mark
            said = f"'{kind}'" if "type" in m else "nothing"
            self.error(where, f"{what}: type is {said}; use one of {', '.join(NODE_KEYS)}"
                       + (_hint(kind, NODE_KEYS) if isinstance(kind, str) else ""))
            return None
        allowed, required = NODE_KEYS[kind]
        if not self.keys(m, allowed | {"type", "note"}, f"{what} ({kind})", required):
            return None
        edges = {outcome: self.node_ref(m, key, what) for key, outcome in EDGE_KEYS.items() if key in m}
        base = dict(name=name, where=str(mark), edges=edges)
        p = lambda key: self.prompt(m.get(key), m.mark_of(key), f"{what}.{key}")  # noqa: E731
        fp = lambda key: self.file_prompt(m.get(key), m.mark_of(key), f"{what}.{key}")  # noqa: E731
        ms = lambda key, default: int(self.number(m, key, what, default, low=0.5, high=600) * 1000)  # noqa: E731
        if kind == "play":
            return Play(**base, prompt=p("prompt"))
        if kind == "menu":
            options = self.key_edges(m, "options", what, "menu option", edges)
            if isinstance(m.get("options"), YamlMap) and not options:
                self.error(m.mark_of("options"), f"{what}.options is empty; a menu needs at least one option")
            return Menu(**base, prompt=fp("prompt"), invalid_prompt=p("invalid_prompt"),
                        timeout_prompt=p("timeout_prompt"),
                        tries=int(self.number(m, "tries", what, 3, low=1, high=10, whole=True)),
                        timeout_ms=ms("timeout", 5))
        if kind == "collect":
            into = self.variable(m, "into", what)
            low = int(self.number(m, "min_digits", what, 1, low=1, high=64, whole=True))
            high = int(self.number(m, "max_digits", what, low, low=1, high=64, whole=True))
            if high < low:
                self.error(m.mark_of("max_digits"), f"{what}: max_digits ({high}) is below min_digits ({low})")
            terminators = self.digits(m, "terminators", what, "#", allowed="*#")
            pattern = self.text(m, "pattern", what, r"\d+")
            try:
                re.compile(pattern)
                if any(ch.isspace() for ch in pattern) or "${" in pattern:
                    raise re.error("it may not contain spaces or ${")
            except re.error as exc:
                self.error(m.mark_of("pattern"), f"{what}.pattern is not a valid pattern: {exc}")
            return Collect(**base, prompt=fp("prompt"), invalid_prompt=fp("invalid_prompt"), into=into,
                           min_digits=low, max_digits=high, terminators=terminators or "none", pattern=pattern,
                           tries=int(self.number(m, "tries", what, 3, low=1, high=10, whole=True)),
                           timeout_ms=ms("timeout", 5), digit_timeout_ms=ms("digit_timeout", 3))
        if kind == "set":
            values = self.mapping(m["values"], m.mark_of("values"), f"{what}.values") or YamlMap()
            pairs = []
            for var, value in values.items():
                if not _VAR.match(var):
                    self.error(values.key_marks[var], f"'{var}' is not a variable name (lowercase letters, "
                                                      f"digits and _)")
                if value is None or isinstance(value, (YamlMap, YamlList)):
                    self.error(values.mark_of(var), f"{what}: the value of {var} must be text")
                    continue
                text = str(value).lower() if isinstance(value, bool) else str(value)
                pairs.append((var, self.template(text, values.mark_of(var))))
            return SetVars(**base, values=tuple(pairs))
        if kind == "branch":
            cases = self.listing(m["cases"], m.mark_of("cases"), f"{what}.cases") or YamlList()
            parsed = []
            for i, case in enumerate(cases):
                cm = self.mapping(case, cases.mark_of(i), f"{what}.cases[{i}]")
                if cm is None or not self.keys(cm, frozenset({"if", "goto"}), f"{what}.cases[{i}]", ("if", "goto")):
                    continue
                condition = self.condition(cm, "if")
                edges[f"case{i}"] = self.node_ref(cm, "goto", f"{what}.cases[{i}]")
                if condition is not None:
                    parsed.append((str(cm["if"]), condition))
            return Branch(**base, cases=tuple(parsed))
        if kind == "schedule":
            sched = self.text(m, "schedule", what)
            if sched not in self.schedules:
                self.error(m.mark_of("schedule"), f"{what}: no schedule named '{sched}' in this file"
                           + _hint(sched, self.schedules))
            edges.setdefault("holiday", edges.get("closed", ""))
            return ScheduleCheck(**base, schedule=sched)
        if kind == "queue":
            skills = m.get("skills") or YamlList()
            if not isinstance(skills, YamlList) or not all(isinstance(s, str) and s for s in skills):
                self.error(m.mark_of("skills"), f"{what}.skills must be a list of skill names")
                skills = ()
            exit_keys = self.key_edges(m, "exit_keys", what, "exit key", edges) if "exit_keys" in m else YamlMap()
            return Queue(**base, queue=self.queue(m, "queue", what), skills=tuple(skills),
                         priority=int(self.number(m, "priority", what, 0, low=0, high=10, whole=True)),
                         max_wait=self.number(m, "max_wait", what, 300, low=1, high=86400),
                         announce=p("announce"),
                         announce_every=self.number(m, "announce_every", what, 30, low=5, high=3600),
                         exit_keys="".join(key for key in exit_keys if key in edges))
        if kind == "transfer":
            return self.transfer(m, base, what)
        if kind == "record":
            mailbox = self.text(m, "mailbox", what)
            if not _NAME.match(mailbox):
                self.error(m.mark_of("mailbox"), f"{what}.mailbox must be a name (lowercase letters, digits, _)")
            beep = self.text(m, "beep", what, "tone_stream://%(500,0,800)")
            return Record(**base, prompt=p("prompt"), beep=self.sound(beep, m.mark_of("beep"), what), mailbox=mailbox,
                          max_seconds=int(self.number(m, "max_seconds", what, 120, low=1, high=3600, whole=True)))
        if kind == "survey":
            return self.survey(m, base, what, fp, ms)
        if kind == "callback":
            accept = self.digits(m, "accept", what, "1")
            if len(accept) != 1:
                self.error(m.mark_of("accept"), f"{what}.accept must be one key of the phone")
            return Callback(**base, prompt=fp("prompt"), confirm=p("confirm"), accept=accept or "1",
                            queue=self.queue(m, "queue", what), timeout_ms=ms("timeout", 5))
        if kind == "lookup":
            return self.lookup(m, base, what)
        cause = self.text(m, "cause", what, "NORMAL_CLEARING")
        if cause not in HANGUP_CAUSES:
            self.error(m.mark_of("cause"), f"{what}: '{cause}' is not a hangup cause{_hint(cause, HANGUP_CAUSES)}")
        return Hangup(**base, prompt=p("prompt"), cause=cause)

    def variable(self, m: YamlMap, key: str, what: str) -> str:
        name = self.text(m, key, what)
        if not _VAR.match(name):
            self.error(m.mark_of(key), f"{what}.{key}: '{name}' is not a variable name (lowercase letters, digits, _)")
        return name

    def queue(self, m: YamlMap, key: str, what: str) -> str:
        name = self.text(m, key, what)
        known = self.checks.queues
        if known is not None and name not in known:
            self.error(m.mark_of(key), f"{what}: there is no queue '{name}'{_hint(name, known)}")
        elif not _NAME.match(name):
            self.error(m.mark_of(key), f"{what}: '{name}' is not a queue name (lowercase letters, digits, _)")
        return name

    def condition(self, m: YamlMap, key: str) -> expr.Node | None:
        text, mark = m.get(key), m.mark_of(key)
        if isinstance(text, bool):
            text = "true" if text else "false"
        if not isinstance(text, str):
            self.error(mark, f"a condition must be text, not {_kind(text)}")
            return None
        try:
            tree = expr.parse(text)
        except expr.ExprError as exc:
            self.error(_shift(mark, text, exc.offset), f'in condition "{text}": {exc.message}')
            return None
        for item in expr.walk(tree):
            if isinstance(item, expr.Var):
                self.var_refs.append((_shift(mark, text, item.offset), item.name))
            elif isinstance(item, expr.Call) and expr.SIGNATURES[item.name].names and item.args:
                arg, names = item.args[0], expr.SIGNATURES[item.name].names
                if not isinstance(arg, expr.Literal) or not isinstance(arg.value, str):
                    self.error(_shift(mark, text, item.offset), f"{item.name}() needs a {names} name in quotes")
                elif names == "queue" and self.checks.queues is not None and arg.value not in self.checks.queues:
                    self.error(_shift(mark, text, item.offset),
                               f"there is no queue '{arg.value}'{_hint(arg.value, self.checks.queues)}")
                elif names == "schedule" and arg.value not in self.schedules:
                    self.error(_shift(mark, text, item.offset), f"no schedule named '{arg.value}' in this file")
            if isinstance(item, expr.Call) and item.name == "time_between":
                for arg in item.args:
                    if isinstance(arg, expr.Literal) and not re.fullmatch(r"([01]?\d|2[0-4]):[0-5]\d", str(arg.value)):
                        self.error(_shift(mark, text, item.offset), f"time_between() needs times as 'HH:MM', "
                                                                    f"not '{arg.value}'")
        return tree

    def transfer(self, m: YamlMap, base: dict, what: str) -> Transfer | None:
        given = [k for k in ("extension", "number", "flow") if k in m]
        if len(given) != 1:
            self.error(m.mark, f"{what}: a transfer goes to exactly one of extension, number or flow"
                       + (f" (found {', '.join(given)})" if given else ""))
            return None
        if given[0] != "flow" and "on_failure" not in m:
            self.error(m.mark, f"{what} needs 'on_failure': where the caller goes if the transfer fails")
        if given[0] == "extension":
            ext = self.text(m, "extension", what)
            context = self.text(m, "context", what, "default")
            for key, value in (("extension", ext), ("context", context)):
                if not _EXTENSION.match(value):
                    self.error(m.mark_of(key), f"{what}.{key}: '{value}' is not a dialplan {key}")
            return Transfer(**base, extension=ext, context=context)
        if given[0] == "number":
            number, gateway = self.text(m, "number", what), self.text(m, "gateway", what)
            if not _NUMBER.match(number):
                self.error(m.mark_of("number"), f"{what}.number: '{number}' is not a phone number "
                                                f"(digits with an optional leading +; quote it)")
            if not _GATEWAY.match(gateway):
                self.error(m.mark_of("gateway") if "gateway" in m else m.mark,
                           f"{what}: an external number needs 'gateway' (the SIP gateway's name)")
            return Transfer(**base, number=number, gateway=gateway,
                            ring_seconds=int(self.number(m, "ring_seconds", what, 30, low=5, high=120, whole=True)))
        self.flow_refs.append((m.mark_of("flow"), self.text(m, "flow", what)))
        return Transfer(**base, flow=self.text(m, "flow", what))

    def survey(self, m: YamlMap, base: dict, what: str, p, ms) -> Survey:
        name = self.text(m, "survey", what)
        if not _NAME.match(name):
            self.error(m.mark_of("survey"), f"{what}.survey must be a name (lowercase letters, digits, _)")
        questions = self.listing(m["questions"], m.mark_of("questions"), f"{what}.questions") or YamlList()
        parsed, ids = [], set()
        for i, item in enumerate(questions):
            where = f"{what}.questions[{i}]"
            qm = self.mapping(item, questions.mark_of(i), where)
            if qm is None or not self.keys(qm, frozenset({"id", "prompt", "answers"}), where,
                                           ("id", "prompt", "answers")):
                continue
            qid = self.text(qm, "id", where)
            if qid in ids:
                self.error(qm.mark_of("id"), f"{where}: question id '{qid}' is used twice")
            ids.add(qid)
            answers = self.digits(qm, "answers", where)
            if not answers:
                self.error(qm.mark_of("answers"), f"{where}.answers must list the keys allowed, like \"12345\"")
            parsed.append(Question(qid, self.file_prompt(qm["prompt"], qm.mark_of("prompt"), f"{where}.prompt"),
                                   answers))
        if isinstance(m.get("questions"), YamlList) and not questions:
            self.error(m.mark_of("questions"), f"{what}.questions is empty")
        return Survey(**base, survey=name, questions=tuple(parsed), invalid_prompt=p("invalid_prompt"),
                      tries=int(self.number(m, "tries", what, 2, low=1, high=5, whole=True)),
                      timeout_ms=ms("timeout", 5))

    def lookup(self, m: YamlMap, base: dict, what: str) -> Lookup | None:
        if ("query" in m) == ("url" in m):
            self.error(m.mark, f"{what}: a lookup takes exactly one of query (a named SQL query) or url")
            return None
        query = self.text(m, "query", what)
        if query and query not in self.queries:
            self.error(m.mark_of("query"), f"{what}: no query named '{query}' under queries{_hint(query, self.queries)}")
        url = self.text(m, "url", what)
        if url and not re.match(r"https?://[^\s]+\Z", url):
            self.error(m.mark_of("url"), f"{what}.url must be an http:// or https:// address without spaces")
        elif url:
            self.template(url, m.mark_of("url"))
        into = self.mapping(m["into"], m.mark_of("into"), f"{what}.into") or YamlMap()
        pairs = []
        for var, source in into.items():
            if not _VAR.match(var):
                self.error(into.key_marks[var], f"'{var}' is not a variable name (lowercase letters, digits, _)")
            if not isinstance(source, str) or not source:
                self.error(into.mark_of(var), f"{what}.into.{var} must name a result column or field")
                continue
            pairs.append((var, source))
        return Lookup(**base, query=query, url=url, into=tuple(pairs),
                      timeout=self.number(m, "timeout", what, 2, low=0.1, high=30))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, YamlMap):
        return "a mapping"
    if isinstance(value, YamlList):
        return "a list"
    return f"'{value}'"


def _shift(mark: Mark, text: str, offset: int) -> Mark:
    """The mark of a character inside a one-line plain or quoted scalar (best effort)."""
    return Mark(mark.file, mark.line, mark.col + offset) if "\n" not in text[:offset] else mark


def _declared_vars(doc: YamlMap) -> set[str]:
    """Variables the flow defines: its `variables`, and what set/collect/lookup nodes write."""
    found: set[str] = set()
    if isinstance(doc.get("variables"), YamlMap):
        found.update(doc["variables"])
    for node in (doc.get("nodes") or {}).values() if isinstance(doc.get("nodes"), YamlMap) else ():
        if not isinstance(node, YamlMap):
            continue
        if isinstance(node.get("values"), YamlMap):
            found.update(node["values"])
        if isinstance(node.get("into"), str):
            found.add(node["into"])
        if isinstance(node.get("into"), YamlMap):
            found.update(node["into"])
    return found


@dataclass
class FileResult:
    name: str  # the flow's name as written, even when the file has errors
    flow: Flow | None
    errors: list[ConfigError]
    flow_refs: list[tuple[Mark, str]] = field(default_factory=list)  # transfers to other flows


def read_flow(path: str | Path, checks: Checks | None = None) -> FileResult:
    """One file -> its flow, or every error in it."""
    checks = checks or Checks()
    try:
        doc = load(path)
    except ConfigError as exc:
        return FileResult("", None, [exc])
    r = _FileReader(str(path), checks)
    if doc is None:
        return FileResult("", None, [ConfigError(f"{path}:1:1: the file is empty; a flow needs flow, start and nodes")])
    if not isinstance(doc, YamlMap):
        where = getattr(doc, "mark", None) or Mark(str(path), 1, 1)  # a bare scalar keeps no mark
        return FileResult("", None, [where.error("a flow file must be a mapping with flow, start and nodes")])
    r.keys(doc, TOP_KEYS, "the flow", ("flow", "start", "nodes"))
    name = r.text(doc, "flow", "flow")
    if name and not _NAME.match(name):
        r.error(doc.mark_of("flow"), f"flow name '{name}' must be lowercase letters, digits and _")
    r.language = r.text(doc, "language", "flow", "en")
    timezone = r.text(doc, "timezone", "flow", "UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        r.error(doc.mark_of("timezone"), f"'{timezone}' is not a time zone; use an IANA name like Europe/London")
        timezone = "UTC"
    entries: list[str] = []
    if "entries" in doc:
        listed = r.listing(doc["entries"], doc.mark_of("entries"), "entries")
        for i, entry in enumerate(listed or ()):
            if isinstance(entry, bool) or not isinstance(entry, (str, int)) or not str(entry):
                r.error(listed.mark_of(i), f"an entry must be the text of a callrouter_entry value, not {_kind(entry)}")
            else:
                entries.append(str(entry))
    default = r.boolean(doc, "default", "flow") if "default" in doc else False
    r.variables |= _declared_vars(doc)
    variables = {}
    if "variables" in doc:
        vm = r.mapping(doc["variables"], doc.mark_of("variables"), "variables") or {}
        for var, value in vm.items():
            if not _VAR.match(var):
                r.error(vm.key_marks[var], f"'{var}' is not a variable name (lowercase letters, digits, _)")
            if isinstance(value, (YamlMap, YamlList)):
                r.error(vm.mark_of(var), f"the default of {var} must be text")
            variables[var] = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    if "schedules" in doc:
        sm = r.mapping(doc["schedules"], doc.mark_of("schedules"), "schedules") or {}
        for sname, sdef in sm.items():
            smap = r.mapping(sdef, sm.mark_of(sname), f"schedule '{sname}'")
            if smap is not None:
                sched = r.schedule(sname, smap)
                if sched is not None:
                    r.schedules[sname] = sched
    if "queries" in doc:
        qm = r.mapping(doc["queries"], doc.mark_of("queries"), "queries") or {}
        for qname, qdef in qm.items():
            qmap = r.mapping(qdef, qm.mark_of(qname), f"query '{qname}'")
            if qmap is not None and (query := r.query(qname, qmap)) is not None:
                r.queries[qname] = query
    nodes: dict[str, Node] = {}
    node_marks: dict[str, Mark] = {}
    raw_nodes = r.mapping(doc.get("nodes"), doc.mark_of("nodes"), "nodes") if "nodes" in doc else None
    if raw_nodes is not None and not raw_nodes:
        r.error(doc.mark_of("nodes"), "nodes is empty; a flow needs at least one node")
    for node_name, node_def in (raw_nodes or {}).items():
        node_marks[node_name] = raw_nodes.key_marks[node_name]
        if not _NAME.match(node_name):
            r.error(raw_nodes.key_marks[node_name], f"node name '{node_name}' must be lowercase letters, digits and _")
        nm = r.mapping(node_def, raw_nodes.mark_of(node_name), f"node '{node_name}'")
        if nm is not None and (node := r.node(node_name, nm, raw_nodes.key_marks[node_name])) is not None:
            nodes[node_name] = node
    start = ""
    if "start" in doc:
        start = r.text(doc, "start", "flow")
        if raw_nodes is not None and start not in raw_nodes:
            r.error(doc.mark_of("start"), f"start: there is no node '{start}'{_hint(start, raw_nodes)}")
    on_error = ""
    if "on_error" in doc:
        on_error = r.node_ref(doc, "on_error", "flow")
    for mark, target, what in r.node_refs:
        if raw_nodes is not None and target and target not in raw_nodes:
            r.error(mark, f"{what} goes to '{target}', but there is no such node{_hint(target, raw_nodes)}")
    for mark, var in r.var_refs:
        if var not in r.variables:
            r.error(mark, f"unknown variable '{var}'{_hint(var, r.variables)}; set it in a set, collect or lookup "
                          f"node or declare it under variables")
    if raw_nodes is not None and not r.errors:
        _check_graph(r, nodes, node_marks, start, on_error)
    if r.errors:
        return FileResult(name, None, sorted(r.errors, key=_error_order), r.flow_refs)
    flow = Flow(name=name, file=str(path), start=start, nodes=nodes, entries=tuple(entries), default=default,
                language=r.language, timezone=timezone, variables=variables, schedules=dict(r.schedules),
                queries=dict(r.queries), on_error=on_error)
    return FileResult(name, flow, [], r.flow_refs)


def _check_graph(r: _FileReader, nodes: dict[str, Node], marks: dict[str, Mark], start: str, on_error: str) -> None:
    """Unreachable nodes, and loops that never wait for the caller (they would spin forever)."""
    reachable: set[str] = set()
    todo = [n for n in (start, on_error) if n]
    while todo:
        name = todo.pop()
        if name in reachable or name not in nodes:
            continue
        reachable.add(name)
        todo.extend(nodes[name].edges.values())
    for name in nodes:
        if name not in reachable:
            r.error(marks[name], f"node '{name}' can never be reached from start '{start}'")
    # A cycle among nodes that never wait for input: depth-first search over those nodes only.
    passive = {n for n, node in nodes.items() if not isinstance(node, INPUT_NODES)}
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        path.append(name)
        for target in nodes[name].edges.values():
            if target not in passive:
                continue
            if state.get(target) == 1:
                loop = path[path.index(target):]
                if frozenset(loop) not in reported:
                    reported.add(frozenset(loop))
                    r.error(marks[target], "these nodes loop without ever waiting for the caller: "
                                           + " -> ".join(loop + [target]) + "; put a menu or collect in the loop")
            elif target not in state:
                visit(target, path)
        path.pop()
        state[name] = 2

    for name in sorted(passive):
        if name not in state:
            visit(name, [])


def _error_order(error: ConfigError) -> tuple:
    match = re.match(r".*?:(\d+):(\d+): ", str(error))
    return (int(match[1]), int(match[2])) if match else (0, 0)


def flow_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_flows(directory: str | Path, checks: Checks | None = None) -> FlowSet:
    """Every flow file under `directory` as one FlowSet; FlowErrors listing every mistake otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FlowErrors([ConfigError(f"{directory}: not a directory of flow files")])
    return build_flowset(flow_files(directory), checks)


def build_flowset(files: list[Path], checks: Checks | None = None) -> FlowSet:
    errors: list[ConfigError] = []
    flows: dict[str, Flow] = {}
    entries: dict[str, str] = {}
    refs: list[tuple[Mark, str]] = []
    names: set[str] = set()  # flows named in any file, valid or not
    defaults: list[Flow] = []
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes() if path.is_file() else b"")
        result = read_flow(path, checks)
        errors.extend(result.errors)
        refs.extend(result.flow_refs)
        names.add(result.name)
        flow = result.flow
        if flow is None:
            continue
        if flow.name in flows:
            errors.append(ConfigError(f"{path}:1:1: flow '{flow.name}' is also defined in {flows[flow.name].file}"))
            continue
        flows[flow.name] = flow
        for entry in flow.entries:
            if entry in entries:
                errors.append(ConfigError(f"{path}:1:1: entry '{entry}' is already taken by flow '{entries[entry]}'"))
            entries[entry] = flow.name
        if flow.default:
            defaults.append(flow)
    if len(defaults) > 1:
        errors.append(ConfigError(f"{defaults[1].file}:1:1: flows '{defaults[0].name}' and '{defaults[1].name}' "
                                  f"are both marked default; keep one"))
    for mark, target in refs:
        if target not in names:
            errors.append(mark.error(f"transfer to flow '{target}', but no flow has that name{_hint(target, names)}"))
    if errors:
        raise FlowErrors(errors)
    return FlowSet(flows=flows, entries=entries, default=defaults[0].name if defaults else "",
                   version=digest.hexdigest()[:12])
