"""An engine under simulated traffic with its metrics wired as the composition root will wire them,
served on a free loopback port; and a real Prometheus (Debian's package) to scrape it.

The engine wires its own EngineMetrics (Node reports to `metrics.esl`, CallStats feeds
`metrics.calls_feed`); the fixture only adds what is not built yet (a dialer stand-in).
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.cdr.writer import RecordWriter
from engine.metrics import CampaignSnapshot, EngineMetrics, MetricsServer
from tests.engine.conftest import centre_factory, engine_factory  # noqa: F401  (fixtures)
from tests.waiting import wait_until

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
SERVICES_HINT = "run .ci/services.sh (as root) to install Debian's prometheus package; `make test` does"

# Callers pick sales (1) or support (2) or say nothing (general); two agents; some callers give up.
SCENARIO = """
seed: 11
nodes: [{name: sim1, port: 0}]
park_variables: {callrouter_entry: hotline, park_timeout: "30"}
inbound:
  arrivals:
    per_hour: 2400
  numbers: ["+1555010XXXX"]
  dnis: "+18005550100"
  kinds:
    sales: {weight: 3, digits: "1", think: 0.2, patience: 8, talk: 2}
    support: {weight: 2, digits: "2", think: 0.2, patience: 1.5, talk: 2}
    silent: {weight: 1, digits: none, patience: 6, talk: 2}
agents:
  - ids: "1001-1002"
    ring: 0.2
    talk: 1.5
    hangup_share: 1.0
"""


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: {SERVICES_HINT}", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DialerDouble:
    """Stands in for the dialer (not built yet): one campaign whose attempts advance at each scrape."""

    def __init__(self) -> None:
        self.dialed = 0

    def __call__(self) -> list[CampaignSnapshot]:
        self.dialed += 3
        return [CampaignSnapshot(campaign="renewals", dialed=self.dialed, answered=self.dialed // 3 * 2,
                                 abandoned=self.dialed // 60, abandon_ratio=0.012, abandon_cap_ratio=0.03,
                                 pacing_ratio=1.6, contacts_remaining=5000 - self.dialed)]


@dataclass
class Instrumented:
    engine: Any
    centre: Any
    metrics: EngineMetrics
    server: MetricsServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/metrics"


@pytest.fixture
def instrumented_engine(centre_factory, engine_factory, tmp_path):  # noqa: F811
    """The engine with its metrics wired by the composition root, served on a free port."""
    centre = centre_factory(SCENARIO)
    eng = engine_factory(centre.config(tmp_path, max_wait=6))
    metrics = eng.metrics
    metrics.add_campaign_source(DialerDouble())
    # A real CDR writer, not started: its backlog figures are what the CDR panels and alerts read.
    writer = RecordWriter("postgresql://127.0.0.1:1/none", tmp_path / "spool")
    metrics.watch_cdr_writer(writer.stats)
    server = MetricsServer(metrics.registry, "127.0.0.1:0")
    server.start()
    yield Instrumented(eng, centre, metrics, server)
    server.stop()


class Prometheus:
    """A real Prometheus server on a free loopback port, with its own storage, scraping every second."""

    def __init__(self, tmp_path: Path, target: str, rule_files: list[Path]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.directory = tmp_path / "prometheus"
        self.directory.mkdir()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "callrouter", "static_configs": [{"targets": [target]}]}],
        }
        self.config_file = self.directory / "prometheus.yml"
        self.config_file.write_text(json.dumps(config))  # JSON is YAML
        self.log = self.directory / "prometheus.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [tool("prometheus"), f"--config.file={self.config_file}",
                 f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=30, what=f"Prometheus to be ready (log: {self.log})")

    def _ready(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, or raises with Prometheus's own error text."""
        url = f"{self.base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]


@pytest.fixture
def prometheus_factory(tmp_path):
    started: list[Prometheus] = []

    def make(target: str, rule_files: list[Path] = ()) -> Prometheus:
        server = Prometheus(tmp_path, target, list(rule_files))
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.stop()
