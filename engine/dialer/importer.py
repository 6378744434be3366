"""Contacts from CSV: one row at a time, each either a Contact or an error naming its line, so a
bad row never stops the rest. The `phone` column is required; `timezone` and `priority` are
optional; every other column is a custom field (data for flows and agents, never a command)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from typing import IO, Iterator

from engine.dialer.compliance import InvalidNumber, check_zone, normalise, zones_for
from engine.dialer.model import Contact


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class BadHeader(InvalidNumber):
    """The CSV's first line does not name the columns (or none of them is `phone`)."""


def _undecoded(value: str) -> str | None:
    """The first byte the CLI could not decode as UTF-8 (read with errors="surrogateescape", it
    arrives as a lone surrogate), as 0xNN, or None."""
    bad = next((ch for ch in value if "\udc80" <= ch <= "\udcff"), None)
    return None if bad is None else f"0x{ord(bad) - 0xdc00:02x}"


def read_contacts(stream: IO[str], region: str) -> Iterator[tuple[int, Contact | RowError]]:
    """(line, Contact or RowError) per data row, line numbers as an editor shows them."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is not None and any(_undecoded(h) for h in header):
        raise BadHeader("the CSV's first line is not UTF-8; save the file as UTF-8")
    if header is None or "phone" not in (h.strip().lower() for h in header):
        raise BadHeader("the CSV's first line must name the columns, one of them `phone`")
    names = [h.strip().lower() for h in header]
    line = reader.line_num
    for row in reader:
        first_line, line = line + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        yield first_line, _contact(names, row, first_line, region)


def _contact(names: list[str], row: list[str], line: int, region: str) -> Contact | RowError:
    if len(row) != len(names):
        return RowError(line, f"{len(row)} values for {len(names)} columns")
    values = dict(zip(names, (cell.strip() for cell in row)))
    if any("\x00" in v for v in values.values()):
        return RowError(line, "a value contains a NUL byte")
    for name, value in values.items():
        if byte := _undecoded(value):
            return RowError(line, f"column '{name}' is not UTF-8 (byte {byte}); save the file as UTF-8")
    try:
        phone = normalise(values.pop("phone"), region)
        zone = values.pop("timezone", "")
        zones = (check_zone(zone),) if zone else zones_for(phone)
    except InvalidNumber as exc:
        return RowError(line, str(exc))
    raw_priority = values.pop("priority", "") or "0"
    try:
        priority = int(raw_priority)
    except ValueError:
        return RowError(line, f"priority must be a whole number, not '{raw_priority}'")
    return Contact(id=0, phone=phone, timezones=zones, fields=values, priority=priority)
