"""The on-disk spool: records the database could not take yet, one JSON line each, appended to
numbered segment files (`0000000000000042.spool`) that are replayed oldest first and deleted only
once their rows are committed.

Plain blocking file I/O on purpose: an append is one unbuffered write of a whole batch (so a
failed one can be cut back whole), and the fsync is called by the writer's greenlet at its own
pace (`sync`), never by the code that submits records. A
segment is never appended to after a restart (its last line may be torn by the crash); a torn
last line is skipped on replay, any other unreadable line is logged and counted.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

from engine.cdr import records

log = logging.getLogger(__name__)

_SEGMENT = re.compile(r"^(\d{16})\.spool$")


class Spool:
    def __init__(self, directory: Path, segment_bytes: int = 4 * 1024 * 1024) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[Path, int] = {}  # every segment on disk, oldest first
        for path in sorted(directory.iterdir()):
            if _SEGMENT.match(path.name):
                self._sizes[path] = path.stat().st_size
        last = max((int(_SEGMENT.match(p.name)[1]) for p in self._sizes), default=0)
        self._next = last + 1
        self._open: BinaryIO | None = None
        self._open_path: Path | None = None
        self._dirty = False
        self.unreadable_lines = 0

    # --- state -------------------------------------------------------------------------------
    @property
    def segments(self) -> int:
        return len(self._sizes)

    @property
    def bytes(self) -> int:
        return sum(self._sizes.values())

    def __bool__(self) -> bool:
        return bool(self._sizes)

    # --- writing ------------------------------------------------------------------------------
    def append(self, batch: list[Any]) -> None:
        """Append records to the open segment, all or none (durable after the next `sync`).

        On a write error (a full disk) the segment is cut back to where it was, so no torn line is
        left between records, and the error raised: the caller still holds the batch.
        """
        if not batch:
            return
        data = memoryview("".join(records.to_json(r) + "\n" for r in batch).encode("utf-8"))
        if self._open is None:
            self._start_segment()
        assert self._open is not None and self._open_path is not None
        size = self._sizes[self._open_path]
        try:
            written = 0
            while written < len(data):  # one write per batch; a short one when the disk fills up
                written += self._open.write(data[written:])
        except OSError:
            self._cut_back(size)
            raise
        self._sizes[self._open_path] += len(data)
        self._dirty = True
        if self._sizes[self._open_path] >= self.segment_bytes:
            self.roll()

    def _cut_back(self, size: int) -> None:
        assert self._open is not None
        try:
            self._open.truncate(size)  # gives space back, so it works on a full disk
        except OSError:
            # Left with a torn tail, the segment is closed: replay skips a torn last line, and
            # the records go on in a new segment.
            self._open.close()
            self._open = self._open_path = None

    def sync(self) -> None:
        """Make what was appended durable (fsync of the open segment)."""
        if self._open is not None and self._dirty:
            os.fsync(self._open.fileno())
            self._dirty = False

    def roll(self) -> None:
        """Close the open segment (durably); the next append starts a new one."""
        if self._open is not None:
            self.sync()
            self._open.close()
            self._open = self._open_path = None

    def close(self) -> None:
        self.roll()

    def _start_segment(self) -> None:
        path = self.directory / f"{self._next:016d}.spool"
        self._next += 1
        self._open = open(path, "ab", buffering=0)
        self._open_path = path
        self._sizes[path] = 0
        self._sync_directory()  # the new file's name must survive a crash as well as its bytes

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # --- replay -------------------------------------------------------------------------------
    def oldest(self) -> Path | None:
        """The oldest segment, closed first if it is the one being appended to."""
        if not self._sizes:
            return None
        path = next(iter(self._sizes))
        if path == self._open_path:
            self.roll()
        return path

    def read(self, path: Path) -> list[Any]:
        lines = path.read_bytes().split(b"\n")
        last = lines.pop()  # b"" after the final newline; otherwise a write cut short by a crash
        out = []
        for number, line in enumerate(lines, 1):
            try:
                out.append(records.from_json(line))
            except ValueError as exc:
                self.unreadable_lines += 1
                log.error("spool %s line %d unreadable, skipped: %s", path.name, number, exc)
        if last:
            try:  # only the newline may be missing
                out.append(records.from_json(last))
            except ValueError:
                log.warning("spool %s: skipping a torn last line (%d bytes) left by a crash", path.name, len(last))
        return out

    def remove(self, path: Path) -> None:
        """Delete a replayed segment (its rows are committed)."""
        path.unlink(missing_ok=True)
        self._sizes.pop(path, None)
        self._sync_directory()
