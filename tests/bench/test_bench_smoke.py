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
