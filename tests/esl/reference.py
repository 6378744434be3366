"""Frames from the byte-exact FreeSWITCH 1.10.12 captures in ../shared/reference/ (test and
bench support): a transcript's `S:` lines joined back into the frames the client received."""
from __future__ import annotations

import os
from pathlib import Path

# The captures are the steering repo's shared/reference, beside this checkout (CI clones it there too).
REFERENCE = Path(os.environ.get("CALLROUTER_REFERENCE", Path(__file__).resolve().parents[3] / "shared" / "reference"))
if not REFERENCE.is_dir():
    raise RuntimeError(f"the FreeSWITCH reference captures are missing: expected them in {REFERENCE} "
                       "(or set CALLROUTER_REFERENCE)")


def received_frames(transcript: str) -> list[bytes]:
    """Every frame the client received, byte-exact, in order (`# ... recv` lines start one)."""
    frames: list[bytes] = []
    current: list[str] = []
    for line in transcript.split("\n"):
        if line.startswith("S: ") or line == "S:":
            current.append(line[3:] + "\n")
        elif line == "S\\ (no newline at end of frame)":
            current[-1] = current[-1][:-1]
        elif line.startswith("#") and " recv " in line:
            if current:
                frames.append("".join(current).encode())
            current = []
    if current:
        frames.append("".join(current).encode())
    return frames


def is_event(frame: bytes) -> bool:
    return b"Content-Type: text/event-" in frame.split(b"\n\n", 1)[0]


def transcript_frames(name: str) -> list[bytes]:
    return received_frames((REFERENCE / name).read_text())


def event_file(kind: str, name: str) -> bytes:
    """One exact frame from events/plain or events/json."""
    return (REFERENCE / "events" / kind / f"{name}.txt").read_bytes()
