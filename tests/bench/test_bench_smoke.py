"""Every benchmark script still runs (briefly) and prints figures in the agreed shape.

No figure is judged here: speed goals live in bench/ and its README, never in assertions.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.name != "run_all.py")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_runs_and_prints_json_figures(script):
    result = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True,
                            cwd=BENCH.parent, timeout=280)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert figures, "a benchmark prints at least one figure"
    for figure in figures:
        assert {"name", "value", "unit", "baseline"} <= figure.keys(), figure
        assert {"name", "value"} <= figure["baseline"].keys(), figure


# The soak with a defect planted in the engine: every finished call leaves a greenlet waiting for
# ever, an open socket, 64 KiB of Python heap and 1 MiB of memory outside the Python heap (an
# anonymous mapping, touched) behind. Each must fail the soak by itself.
LEAKY_SOAK = """
import sys
sys.path.insert(0, "bench")
sys.argv = ["soak.py", "--smoke"]
import soak  # gevent's patching first, as in the script itself

import mmap
import socket

import gevent
import gevent.event

from engine.calls.registry import CallRegistry

kept = []
finished = CallRegistry.finished


def leaky_finished(self, call):
    finished(self, call)
    native = mmap.mmap(-1, 1 << 20)
    native.write(bytes(1) * (1 << 20))
    kept.append((gevent.spawn(gevent.event.Event().wait), socket.socket(), bytearray(64 << 10), native))


CallRegistry.finished = leaky_finished
soak.main()
"""


@pytest.mark.timeout(120)
def test_soak_fails_when_calls_leave_greenlets_sockets_or_memory_behind():
    result = subprocess.run([sys.executable, "-c", LEAKY_SOAK], capture_output=True, text=True,
                            cwd=BENCH.parent, timeout=110, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    for broken in ("greenlets left", "file descriptors (sockets) left", "heap grew", "RSS grew"):
        assert broken in result.stderr, result.stderr[-2000:]
