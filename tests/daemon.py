"""`callrouter run --config F` as a separate process, as an operator runs it: its output kept in a
file, its admin API asked over HTTP, and the signals a supervisor (or a crash) sends it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class DaemonProcess:
    """The process side of an engine under test; subclasses write `config` and know `api_port`."""

    dir: Path
    config: Path
    api_port: int
    token: str
    process: subprocess.Popen | None = None

    def spawn(self) -> None:
        """Start the daemon, appending its output to output.log (without waiting for it)."""
        with open(self.dir / "output.log", "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "engine", "run", "--config", str(self.config)],
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})

    def request(self, method: str, path: str, query: dict | None = None, timeout: float = 5) -> object | None:
        """The admin API's JSON answer, or None while it does not answer."""
        url = f"http://127.0.0.1:{self.api_port}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)
        except OSError:
            return None

    def output(self) -> str:
        return (self.dir / "output.log").read_text(errors="replace")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def ensure_dead(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
