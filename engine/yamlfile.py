"""YAML that means what the operator typed, with file:line:col on every value.

Two ways in, over the same node tree: `load()` gives plain dicts/lists (YamlMap/YamlList that
remember where each value stood) typed by the rules below; `load_node()` gives a `Value` that
the schema types on demand (`.text()`, `.number()`, `.fields(required, optional)`...), so a
scalar is only ever what the schema asks it to be.

PyYAML follows YAML 1.1: unquoted `on`/`off`/`yes`/`no` become booleans, `9:30` becomes 570
(base 60), `010` becomes 8, and a duplicate key silently replaces the first. For routing files
(times of day, digits, DNIS) each of those is a trap, so this loader builds values from
PyYAML's node tree itself: a plain scalar is `null`, `true`/`false`, a decimal int or float
whose text it gives back exactly (str(value) == what was typed), or else the string as written;
duplicate keys and non-scalar keys are errors. Mappings and
sequences remember where each value stood so validators can point at it.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from engine.errors import ConfigError

# Only spellings that turn back into the same text: `+4420...` (E.164), `1_000`, `010`, `1.50`
# and `1e3` stay text, so a phone number, a PIN or a version typed unquoted is never altered.
_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]*[1-9]\Z|-?(0|[1-9][0-9]*)\.0\Z")
_NULL = {"", "~", "null", "Null", "NULL"}
_DECIMAL = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_TIME_OF_DAY = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


@dataclass(frozen=True)
class Mark:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self}: {message}")


class YamlMap(dict):
    """A mapping that knows where its keys and values were written."""

    mark: Mark
    key_marks: dict[str, Mark]
    value_marks: dict[str, Mark]

    def mark_of(self, key: str) -> Mark:
        return self.value_marks.get(key, self.mark)


class YamlList(list):
    """A sequence that knows where each item was written."""

    mark: Mark
    item_marks: list[Mark]

    def mark_of(self, index: int) -> Mark:
        return self.item_marks[index] if index < len(self.item_marks) else self.mark


def _mark(node: yaml.Node, file: str) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if node.style is not None or node.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int",
                                                  "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                                                  "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"):
        return text  # quoted (or explicitly tagged as something exotic): the text itself
    if text in _NULL:
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def _build(node: yaml.Node, file: str) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        items = YamlList(_build(child, file) for child in node.value)
        items.mark = _mark(node, file)
        items.item_marks = [_mark(child, file) for child in node.value]
        return items
    if isinstance(node, yaml.MappingNode):
        mapping = YamlMap()
        mapping.mark = _mark(node, file)
        mapping.key_marks, mapping.value_marks = {}, {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _mark(key_node, file).error("merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise _mark(key_node, file).error("a key must be a plain word, not a list or mapping")
            key = key_node.value  # keys are always text: `on:` stays "on", `1:` stays "1"
            if key in mapping:
                first = mapping.key_marks[key]
                raise _mark(key_node, file).error(
                    f"duplicate key '{key}' (first defined at line {first.line}); remove one of them")
            mapping[key] = _build(value_node, file)
            mapping.key_marks[key] = _mark(key_node, file)
            mapping.value_marks[key] = _mark(value_node, file)
        return mapping
    raise _mark(node, file).error("unsupported YAML construct")  # pragma: no cover - aliases resolve to nodes


def _compose(text: str, source: str) -> yaml.Node | None:
    """PyYAML's node tree, with a syntax error as `file:line:col: not valid YAML: ...`."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = Mark(source, mark.line + 1, mark.column + 1) if mark else Mark(source, 1, 1)
        opened = exc.context_mark if exc.problem and exc.context else None
        hint = (f" ({exc.context} that starts at line {opened.line + 1}, column {opened.column + 1})"
                if opened else "")
        raise place.error(f"not valid YAML: {exc.problem or exc.context}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}:1:1: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}:1:1: the YAML is nested too deeply to read") from None


def _read(path: str | Path) -> str:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}:1: not UTF-8 text (byte {raw[exc.start]:#04x}); save the file as UTF-8") from None


def loads(text: str, file: str = "<string>") -> Any:
    """Parse one YAML document; raise ConfigError with file:line:col on any mistake."""
    node = _compose(text, file)
    try:
        return None if node is None else _build(node, file)
    except RecursionError:
        raise ConfigError(f"{file}:1:1: the YAML is nested too deeply to read") from None


def load(path: str | Path) -> Any:
    """Read and parse a YAML file (see loads)."""
    return loads(_read(path), str(path))


def check_keys(mapping: YamlMap, allowed: set[str] | frozenset[str], what: str,
               required: tuple[str, ...] = ()) -> None:
    """Reject unknown keys (with a did-you-mean) and missing required ones."""
    for key in mapping:
        if key not in allowed:
            close = _closest(key, allowed)
            hint = f"; did you mean '{close}'?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise mapping.key_marks[key].error(f"unknown key '{key}' in {what}{hint}")
    for key in required:
        if key not in mapping:
            raise mapping.mark.error(f"{what} needs '{key}'")


def expect_map(value: Any, mark: Mark, what: str) -> YamlMap:
    if not isinstance(value, YamlMap):
        raise mark.error(f"{what} must be a mapping of keys to values")
    return value


def expect_list(value: Any, mark: Mark, what: str) -> YamlList:
    if not isinstance(value, YamlList):
        raise mark.error(f"{what} must be a list")
    return value


def _closest(word: str, choices: set[str] | frozenset[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return found[0] if found else None


# --------------------------------------------------------------------------- typed by the schema
class Value:
    """One YAML node with its place in the file; converts itself on demand to what the schema wants."""

    def __init__(self, node: yaml.Node, path: str, source: str) -> None:
        self.node = node
        self.path = path  # the dotted place in the scenario, for messages: agents[0].ring
        self._source = source

    @property
    def where(self) -> str:
        mark = self.node.start_mark
        return f"{self._source}:{mark.line + 1}:{mark.column + 1}"

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}")

    @property
    def label(self) -> str:
        return self.path or "the scenario"

    def _child(self, node: yaml.Node, path: str) -> "Value":
        return Value(node, path, self._source)

    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    def is_sequence(self) -> bool:
        return isinstance(self.node, yaml.SequenceNode)

    def mapping(self) -> dict[str, "Value"]:
        """The keys and values of a mapping, refusing duplicate and non-text keys."""
        if not self.is_mapping():
            raise self.error(f"{self.label} must be a mapping of `key: value` lines")
        items: dict[str, Value] = {}
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise Value(key_node, self.path, self._source).error(f"a key in {self.path} must be plain text")
            key = key_node.value
            if key in items:
                first = items[key].node.start_mark.line + 1
                raise Value(key_node, self.path, self._source).error(
                    f"duplicate key '{key}' in {self.label} (first given on line {first}); remove one of them")
            items[key] = self._child(value_node, f"{self.path}.{key}" if self.path else key)
        return items

    def fields(self, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> dict[str, "Value"]:
        """A mapping with exactly these keys allowed; unknown keys are errors (typos must not pass)."""
        items = self.mapping()
        allowed = required + optional
        for key in items:
            if key not in allowed:
                key_mark = Value(self._key_node(key), self.path, self._source)
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
                hint = f"did you mean '{close[0]}'?" if close else f"expected one of: {', '.join(allowed)}"
                raise key_mark.error(f"unknown key '{key}' in {self.label}; {hint}")
        for key in required:
            if key not in items:
                raise self.error(f"{self.label} is missing '{key}'")
        return items

    def _key_node(self, key: str) -> yaml.Node:
        return next(k for k, _ in self.node.value if isinstance(k, yaml.ScalarNode) and k.value == key)

    def sequence(self) -> list["Value"]:
        if not self.is_sequence():
            raise self.error(f"{self.path} must be a list (lines starting with '- ')")
        return [self._child(node, f"{self.path}[{i}]") for i, node in enumerate(self.node.value)]

    def text(self) -> str:
        """The scalar exactly as written (a string, whatever YAML 1.1 would have made of it)."""
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error(f"{self.path} must be a single value, not a list or mapping")
        if self.node.value == "" and self.node.style is None:
            raise self.error(f"{self.path} has no value")
        return self.node.value

    def number(self, *, minimum: float | None = None, maximum: float | None = None,
               above: float | None = None) -> float:
        raw = self.text()
        if not _DECIMAL.fullmatch(raw):
            raise self.error(f"{self.path} must be a number, not '{raw}'")
        value = float(raw)
        if minimum is not None and value < minimum:
            raise self.error(f"{self.path} must be at least {minimum:g}, not {raw}")
        if maximum is not None and value > maximum:
            raise self.error(f"{self.path} must be at most {maximum:g}, not {raw}")
        if above is not None and value <= above:
            raise self.error(f"{self.path} must be more than {above:g}, not {raw}")
        return value

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self.text()
        if not _INTEGER.fullmatch(raw):
            raise self.error(f"{self.path} must be a whole number, not '{raw}'")
        value = int(raw)
        if minimum is not None and value < minimum:
            raise self.error(f"{self.path} must be at least {minimum}, not {raw}")
        if maximum is not None and value > maximum:
            raise self.error(f"{self.path} must be at most {maximum}, not {raw}")
        return value

    def probability(self) -> float:
        raw = self.text()
        if not _DECIMAL.fullmatch(raw) or not 0.0 <= float(raw) <= 1.0:
            raise self.error(f"{self.path} must be a probability between 0 and 1, not '{raw}'")
        return float(raw)

    def time_of_day(self) -> int:
        """HH:MM as seconds after midnight."""
        raw = self.text()
        match = _TIME_OF_DAY.fullmatch(raw)
        if not match:
            raise self.error(f"{self.path} must be a time of day as HH:MM (24 h), not '{raw}'")
        return int(match[1]) * 3600 + int(match[2]) * 60


def load_node(path: str | Path) -> Value:
    """The root node of a YAML file as a Value, with syntax errors as file:line:col messages."""
    source = str(path)
    root = _compose(_read(path), source)
    if root is None:
        raise ConfigError(f"{source}:1:1: the file is empty")
    return Value(root, "", source)
