"""What a record is to the writer: a frozen dataclass naming its table and natural key, whose
fields are the table's columns in order. The same fields serialise to one JSON line for the spool.

Kept apart from the record kinds so the writer and the spool never need to know which kinds exist
beyond the `RECORD_KINDS` registry.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Protocol


class Record(Protocol):
    TABLE: ClassVar[str]  # the table it lands in; also its tag in the spool
    KEY: ClassVar[tuple[str, ...]]  # natural key: a replayed record with the same key is skipped


@cache
def columns(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


@cache
def _stamp_fields(kind: type) -> frozenset[str]:
    hints = typing.get_type_hints(kind)
    return frozenset(name for name in columns(kind) if datetime in typing.get_args(hints[name]) or hints[name] is datetime)


def row(record: Any) -> tuple[Any, ...]:
    """The record's values in column order (what COPY writes)."""
    return tuple(getattr(record, name) for name in columns(type(record)))


def to_json(record: Any) -> str:
    """One spool line: {"t": table, "r": {column: value}} with stamps as ISO 8601 (offset kept)."""
    stamps = _stamp_fields(type(record))
    values = {name: (value.isoformat() if name in stamps and value is not None else value)
              for name, value in zip(columns(type(record)), row(record))}
    return json.dumps({"t": record.TABLE, "r": values}, separators=(",", ":"), ensure_ascii=False)


def from_json(line: str | bytes) -> Any:
    """The record a spool line holds; ValueError when the line is not one (a torn last write)."""
    try:
        doc = json.loads(line)
        kind = RECORD_KINDS[doc["t"]]
        values = doc["r"]
        for name in _stamp_fields(kind):
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        return kind(**values)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a spooled record: {exc}") from None


RECORD_KINDS: dict[str, type] = {}


def register(kind: type) -> type:
    """Class decorator: make a record kind known to the spool by its table name."""
    RECORD_KINDS[kind.TABLE] = kind
    return kind
