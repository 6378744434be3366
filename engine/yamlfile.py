"""YAML that means what the operator typed, with file:line:col on every value.

PyYAML follows YAML 1.1: unquoted `on`/`off`/`yes`/`no` become booleans, `9:30` becomes 570
(base 60), `010` becomes 8, and a duplicate key silently replaces the first. For routing files
(times of day, digits, DNIS) each of those is a trap, so this loader builds values from
PyYAML's node tree itself: a plain scalar is `null`, `true`/`false`, a decimal int or float
whose text it gives back exactly (str(value) == what was typed), or else the string as written;
duplicate keys and non-scalar keys are errors. Mappings and
sequences remember where each value stood so validators can point at it.
"""
from __future__ import annotations

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


def loads(text: str, file: str = "<string>") -> Any:
    """Parse one YAML document; raise ConfigError with file:line:col on any mistake."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else Mark(file, 1, 1)
        raise where.error(f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}:1:1: not valid YAML: {exc}") from None
    if node is None:
        return None
    return _build(node, file)


def load(path: str | Path) -> Any:
    """Read and parse a YAML file (see loads)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}:1: not UTF-8 text (byte {raw[exc.start]:#04x}); save the file as UTF-8") from None
    return loads(text, str(path))


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
    import difflib

    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return found[0] if found else None
