"""What the process-level reliability tests run: a simulated FreeSWITCH node in this process (over
TCP) whose callers are placed on demand, `callrouter run` as a separate process with its own config
(the shipped flow shape: greeting, menu, queue), a PostgreSQL this test owns, and the admin API
over HTTP; and the run every database-fault test shares (`carry_calls_through`)."""
from __future__ import annotations

import os
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Protocol

import gevent
import psycopg
import yaml

from engine.acd.config import staff_every_queue
from engine.simulator.population import PlannedCall
from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from tests.daemon import DaemonProcess
from tests.ha.harness import free_port, wait_until

TOKEN = "reliability-test-token"
PASSWORD = "ClueCon"
STRANDED = "RECOVERY_ON_TIMER_EXPIRE"  # only FreeSWITCH's park_timeout ends a call with this cause

# Callers placed by the test (`Centre.place`), none by the clock: each test decides who is where.
SCENARIO = """
seed: {seed}
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: hotline, park_timeout: "90:{stranded}"}}
inbound:
  arrivals: {{per_hour: 0}}
  numbers: ["+1555010XXXX"]
  dnis: "+18005550100"
  kinds:
    sales: {{digits: "1", think: 0.1, patience: 120, talk: 120}}
agents:
  - ids: "{agents}"
    ring: 0.2
    answer_probability: 1.0
    talk: {talk}
    hangup_share: 1.0
"""

FLOW = """
flow: reliability
entries: ["hotline"]
default: true
start: greeting
nodes:
  greeting: {{type: play, prompt: "silence_stream://{greeting_ms}", next: menu}}
  menu:
    type: menu
    prompt: silence_stream://200
    options: {{"1": sales}}
    tries: 1
    timeout: 2
    on_failure: sales
  sales: {{type: queue, queue: sales, max_wait: 120, on_answered: done, on_timeout: done, on_no_agents: done}}
  done: {{type: hangup}}
"""


class Centre(Simulation):
    """One simulated node (sim1) serving its Event Socket on a free port, callers placed on demand."""

    def __init__(self, tmp_path: Path, *, agents: str, talk: float, seed: int = 7) -> None:
        path = tmp_path / "scenario.yaml"
        path.write_text(SCENARIO.format(seed=seed, stranded=STRANDED, agents=agents, talk=talk))
        super().__init__(load_scenario(path), port=0, password=PASSWORD)
        self.node = self.nodes["sim1"]
        self._kind = self.scenario.inbound.kinds[0]
        self._placed = 0

    def place(self) -> str:
        """A caller rings the hotline now: the Unique-ID of its channel."""
        self._placed += 1
        caller = self.population.place(PlannedCall(at=0, node="sim1", number=f"+1555010{self._placed:04d}",
                                                   name=f"caller {self._placed}", dnis="+18005550100",
                                                   kind=self._kind, seed=self._placed))
        return caller.leg.uuid

    def inbound(self) -> list:
        return [r for r in self.recorder.finished if r.direction == "inbound"]


class EngineProcess(DaemonProcess):
    """`callrouter run --config` on the centre, its output kept in a file."""

    def __init__(self, tmp_path: Path, centre: Centre, dsn: str, *, greeting_ms: int = 1500,
                 agents: list[str], extra: dict | None = None) -> None:
        self.dir = tmp_path / "engine"
        (self.dir / "dialplans").mkdir(parents=True)
        (self.dir / "dialplans" / "flow.yaml").write_text(FLOW.format(greeting_ms=greeting_ms))
        (self.dir / "acd.yaml").write_text(yaml.safe_dump(staff_every_queue(agents, ["sales"])))
        self.api_port = free_port()
        self.metrics_port = free_port()
        config = {
            "freeswitch": [{"name": "sim1", "host": "127.0.0.1", "port": centre.node.port, "password": PASSWORD}],
            "data_dir": str(self.dir / "data"),
            "dialplans": str(self.dir / "dialplans"),
            "database": {"dsn": dsn},
            "api": {"listen": f"127.0.0.1:{self.api_port}", "token": TOKEN},
            "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"},
            "acd": {"file": str(self.dir / "acd.yaml"), "ring_seconds": 5},
            "esl": {"backoff_initial": 0.05, "backoff_max": 0.5},
            "cdr": {"flush_interval": 0.1},
            "shutdown_grace_seconds": 3,
            **(extra or {}),
        }
        self.config = self.dir / "config.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.token = TOKEN

    def start(self) -> None:
        self.spawn()
        wait_until(lambda: self.nodes_up() or self.process.poll() is not None, 30, "the engine's API and node")
        assert self.process.poll() is None, self.output()[-3000:]

    def status(self) -> dict | None:
        return self.request("GET", "/status")

    def nodes_up(self) -> bool:
        status = self.status()
        return bool(status) and all(node["up"] for node in status["nodes"])

    def stages(self) -> dict[str, int]:
        return (self.status() or {}).get("calls_by_stage", {})

    def agents(self) -> dict[str, dict]:
        return {a["agent"]: a for a in self.request("GET", "/agents") or []}

    def set_status(self, agent: str, status: str, reason: str = "") -> dict | None:
        return self.request("POST", "/agents/status", {"agent": agent, "status": status, "reason": reason})

    def metric(self, name: str) -> float | None:
        """The sum of a metric's samples (over every label set) from /metrics; None if absent."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        samples = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith((name + " ", name + "{"))]
        return sum(samples) if samples else None

    def rss(self) -> int:
        """Resident set size of the engine process, in bytes."""
        with open(f"/proc/{self.process.pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class DatabaseFault(Protocol):
    """Something done to the engine's PostgreSQL for a while: `begin()` it, `end()` it."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


class Legs:
    """Every channel the switch carried: the CDRs must name exactly these."""

    def __init__(self, centre: Centre) -> None:
        self.uuids: set[str] = set()
        centre.node.switch.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        if event.name == "CHANNEL_CREATE":
            self.uuids.add(event.unique_id)


def rows(dsn: str, sql: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql).fetchall()


OUTAGE_AGENTS = ["1001", "1002", "1003"]
CALL_EVERY = 0.3  # seconds between callers: three agents talking 0.5 s keep up with it
OUTAGE = 4.0  # seconds of traffic while the fault lasts


def carry_calls_through(tmp_path: Path, dsn: str, fault: DatabaseFault, *,
                        data_dir: Path | None = None) -> EngineProcess:
    """`callrouter run` carries calls before, during and after `fault` to the PostgreSQL at `dsn`,
    and the promise holds: callers keep reaching agents during the fault, the records are kept
    (spooled; in memory when `data_dir`, the engine's data directory with its spool, is on the
    disk the fault fills) and written once it ends, and the CDRs name exactly the legs the switch
    carried, each once. Returns the engine, stopped, for what a test checks of its fault in
    particular."""
    centre = Centre(tmp_path, agents="1001-1003", talk=0.5)
    centre.start()
    legs = Legs(centre)
    extra: dict = {"cdr": {"flush_interval": 0.1, "connect_timeout": 1, "write_timeout": 1, "retry_initial": 0.2,
                           "retry_max": 1}}
    if data_dir is not None:
        extra["data_dir"] = str(data_dir)
    engine = EngineProcess(tmp_path, centre, dsn, greeting_ms=300, agents=OUTAGE_AGENTS, extra=extra)
    callers: list[tuple[float, str]] = []

    def traffic(seconds: float) -> None:
        until = time.time() + seconds
        while time.time() < until:
            callers.append((time.time(), centre.place()))
            gevent.sleep(CALL_EVERY)

    try:
        engine.start()
        traffic(2.0)
        wait_until(lambda: rows(dsn, "SELECT count(*) FROM cdr")[0][0] > 0, 20, "CDRs written before the fault")
        fault.begin()
        began = time.time()
        try:
            traffic(OUTAGE)
            wait_until(lambda: (engine.metric("callrouter_cdr_write_errors_total") or 0) > 0, 20,
                       "the writer to meet the fault")
            if data_dir is None:
                wait_until(lambda: (engine.metric("callrouter_cdr_spool_segments") or 0) > 0, 20, "records spooled")
            else:
                wait_until(lambda: (engine.metric("callrouter_cdr_queue_depth") or 0) > 0, 20,
                           "records waiting in memory, the spool's disk being full too")
            wait_until(lambda: any(r.agent and r.arrived_at > began for r in centre.inbound()), 20,
                       "a caller who rang during the fault to reach an agent")
            ended = time.time()
        finally:
            fault.end()
        traffic(1.0)
        wait_until(lambda: len(centre.inbound()) == len(callers) and not centre.node.switch.channels, 30,
                   "every call to end")
        wait_until(lambda: engine.metric("callrouter_cdr_spool_segments") == 0
                   and engine.metric("callrouter_cdr_queue_depth") == 0, 60, "the spool replayed")
        wait_until(lambda: rows(dsn, "SELECT count(*) FROM cdr")[0][0] >= len(legs.uuids), 20, "every CDR")
        assert engine.metric("callrouter_cdr_records_rejected_total") == 0, \
            "no record was set aside as refused: the fault is not the records' fault"
        assert engine.terminate() == 0, engine.output()[-3000:]
    finally:
        centre.stop()
        engine.ensure_dead()

    during = [r for r in centre.inbound() if began < r.arrived_at < ended]
    assert during and all(r.agent and r.hung_up_by == "agent" for r in during), \
        "every caller who rang during the fault talked to an agent"
    assert all(r.agent for r in centre.inbound())
    cdrs = rows(dsn, "SELECT uuid FROM cdr")
    assert len(cdrs) == len(legs.uuids) and {u for (u,) in cdrs} == legs.uuids, \
        "one CDR for every leg the switch carried: nothing lost, nothing twice, nothing invented"
    entered = dict(rows(dsn, "SELECT call_uuid, count(*) FROM queue_log WHERE event = 'ENTER' GROUP BY call_uuid"))
    assert entered == {uuid: 1 for _, uuid in callers}, "each caller entered the queue log once"
    return engine
