"""`make bench`: run every benchmark script in bench/ and pass their JSON lines through.

Each script prints one JSON object per figure, with the baseline it was measured beside in the
same run. `--smoke` runs each briefly (CI uses it to check the scripts still run).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    return sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)


def main(argv: list[str]) -> int:
    failed = []
    for script in scripts():
        result = subprocess.run([sys.executable, str(script), *argv], cwd=HERE.parent)
        if result.returncode != 0:
            failed.append(script.name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
