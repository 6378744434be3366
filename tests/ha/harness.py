"""What the HA tests run: three simulated FreeSWITCH nodes in this process (over TCP), `callrouter
run` processes sharing one PostgreSQL this test owns, and their admin API over HTTP."""
from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

from engine.simulator.population import INTERNODE_GATEWAY
from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from engine.simulator.truth import CallRecord, TruthRecorder
from tests.daemon import ROOT, DaemonProcess

TOKEN = "ha-test-token"
PASSWORD = "ClueCon"
# Only FreeSWITCH's own park_timeout ends a call with this cause: a call nobody controlled.
STRANDED = "RECOVERY_ON_TIMER_EXPIRE"
NODES = ("sim1", "sim2", "sim3")
MAX_NO_ANSWER = 2
AGENT_NODE = {**{str(a): "sim1" for a in range(1001, 1004)}, **{str(a): "sim2" for a in range(1004, 1007)}}

SCENARIO = """
seed: {seed}
duration: {duration}
nodes: [{{name: sim1, port: 0}}, {{name: sim2, port: 0}}, {{name: sim3, port: 0}}]
park_variables:
  callrouter_entry: "2125550100"
  park_timeout: "40:{stranded}"
  hangup_after_bridge: "false"
  continue_on_fail: "true"
inbound:
  arrivals: {{per_hour: 2400}}
  numbers: ["+1555010XXXX"]
  dnis: "+12125550100"
  kinds:
    presser: {{weight: 1, digits: "1", think: 0.2, patience: {{uniform: {{min: 25, max: 30}}}}, talk: 2}}
agents:
  - {{ids: "1001-1003", node: sim1, ring: 0.3, talk: 1.5, hangup_share: 0.5}}
  - {{ids: "1004-1006", node: sim2, ring: 0.3, talk: 1.5, hangup_share: 0.5}}
"""


def acd_yaml() -> str:
    """Every agent rung on its own node directly, from the others through the inter-node gateway."""
    lines = ["queues:", "  sales: {strategy: longest-idle-agent, max_wait: 120, max_wait_no_agent: 30}",
             "  support: {strategy: longest-idle-agent, max_wait: 120, max_wait_no_agent: 30}",
             "  billing: {max_wait_no_agent: 30}",  # named by the shipped flows; nobody staffs it here
             "agents:"]
    for agent, home in AGENT_NODE.items():
        contacts = ", ".join(f"{node}: user/{agent}" if node == home
                             else f"{node}: sofia/gateway/{INTERNODE_GATEWAY.format(node=home)}/callrouter-agent-{agent}"
                             for node in NODES)
        # Rings that keep failing (an agent whose node died) put the agent On Break after two.
        lines.append(f'  "{agent}": {{status: Available, max_no_answer: {MAX_NO_ANSWER}, no_answer_delay_time: 1, '
                     f'contacts: {{{contacts}}}}}')
    lines.append("tiers:")
    lines += [f'  - {{agent: "{agent}", queue: {queue}}}' for agent in AGENT_NODE for queue in ("sales", "support")]
    return "\n".join(lines) + "\n"


def start_simulation(tmp_path: Path, *, duration: float, seed: int) -> Simulation:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO.format(seed=seed, duration=duration, stranded=STRANDED))
    simulation = Simulation(load_scenario(path), recorder=TruthRecorder(), port=0, password=PASSWORD)
    simulation.start()
    link_nodes(simulation)
    return simulation


def link_nodes(simulation: Simulation) -> None:
    """Each node's inter-node gateway to each other node as a SIP trunk between the two switches:
    the far node has legs of its own (carrying the X- headers) and, once dead, is unreachable."""
    for name, node in simulation.nodes.items():
        for other, far in simulation.nodes.items():
            if other != name:
                node.switch.add_trunk(INTERNODE_GATEWAY.format(node=other), far.switch)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EngineProcess(DaemonProcess):
    """One `callrouter run --config` with ha.enabled, its output kept in a file."""

    def __init__(self, tmp_path: Path, name: str, simulation: Simulation, dsn: str) -> None:
        self.dir = tmp_path / f"engine-{name}"
        self.dir.mkdir(exist_ok=True)
        (tmp_path / "acd.yaml").write_text(acd_yaml())
        self.api_port = free_port()
        nodes = "\n".join(f"  - {{name: {n}, host: 127.0.0.1, port: {node.port}, password: {PASSWORD}}}"
                          for n, node in simulation.nodes.items())
        self.config = self.dir / "config.yaml"
        self.config.write_text(f"""
freeswitch:
{nodes}
data_dir: data
dialplans: {ROOT / "dialplans"}
database: {{dsn: "{dsn}"}}
api: {{listen: "127.0.0.1:{self.api_port}", token: {TOKEN}}}
metrics: {{listen: "127.0.0.1:0"}}
acd: {{file: {tmp_path / "acd.yaml"}, ring_seconds: 5}}
esl: {{node_lost_after: 3, backoff_max: 1}}
cdr: {{flush_interval: 0.1}}
ha: {{enabled: true, poll_interval: 0.5, fence_after: 2}}
shutdown_grace_seconds: 3
""")
        self.token = TOKEN
        self.start()

    def start(self) -> None:
        self.spawn()
        wait_until(lambda: self.status() is not None, 30, f"engine {self.dir.name}'s API")

    def status(self) -> dict | None:
        return self.request("GET", "/status", timeout=2)

    def role(self) -> str | None:
        status = self.status()
        return status["ha"]["role"] if status else None


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"still waiting for {what} after {timeout} s")


def wait_for_traffic_to_end(simulation: Simulation, placing_ends: float, timeout: float,
                            nodes: tuple[str, ...] = NODES) -> None:
    """Past the scenario's duration (time.time() `placing_ends`) and every channel on `nodes` gone."""
    wait_until(lambda: time.time() > placing_ends and not any(simulation.nodes[n].switch.channels for n in nodes),
               timeout, "the simulated calls to end")


def inbound(simulation: Simulation) -> list[CallRecord]:
    return [r for r in simulation.recorder.finished if r.direction == "inbound"]


class AgentPhones:
    """The switches' own view of the agents' phones: every call offered to an agent who had one
    up already. The simulated phone refuses it (USER_BUSY), so a second call offered is the
    engine's mistake. The phone's own leg, sofia/internal/<agent>@host, is on the agent's node
    whether the engine rang it there or through the inter-node gateway from another node."""

    def __init__(self, simulation: Simulation) -> None:
        self._up: dict[str, set[str]] = {}  # agent -> Unique-IDs of the legs ringing or talking to it
        self.second_calls: list[tuple[str, str]] = []  # (agent, Unique-ID of the call offered)
        self.offered: dict[str, int] = {}  # agent -> calls its phone was offered
        self.answered_through_gateway = 0  # agents' legs from another node (the inter-node gateway)
        for node in simulation.nodes.values():
            node.switch.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        name = event.get("Channel-Name") or ""
        if event.name == "CHANNEL_ANSWER" and "/gateway/callrouter-" in name:
            self.answered_through_gateway += 1
        if not name.startswith("sofia/internal/"):
            return
        agent = name.removeprefix("sofia/internal/").split("@", 1)[0]
        if agent not in AGENT_NODE:
            return
        uuid = event.get("Unique-ID") or ""
        legs = self._up.setdefault(agent, set())
        if event.name == "CHANNEL_CREATE":
            self.offered[agent] = self.offered.get(agent, 0) + 1
            if legs:
                self.second_calls.append((agent, uuid))
            legs.add(uuid)
        elif event.name == "CHANNEL_DESTROY":
            legs.discard(uuid)


class EngineLegs:
    """Every leg an engine controlled, as the switches saw it end (CHANNEL_HANGUP_COMPLETE): the
    callers parked for it (callrouter_entry) and the legs it originated (callrouter_parent), each
    with its node, when it ended, and the call it belongs to (the caller's Unique-ID)."""

    def __init__(self, simulation: Simulation) -> None:
        self.ended: dict[str, tuple[str, float, str]] = {}  # Unique-ID -> (node, time.time(), call)
        for name, node in simulation.nodes.items():
            node.switch.subscribe(lambda event, name=name: self._on_event(name, event))

    def _on_event(self, node: str, event) -> None:
        if event.name != "CHANNEL_HANGUP_COMPLETE":
            return
        uuid = event.get("Unique-ID") or ""
        call = event.get("variable_callrouter_parent") or (uuid if event.get("variable_callrouter_entry") else "")
        if call:
            self.ended[uuid] = (node, time.time(), call)

    def without_their_cdr(self, cdrs: dict[str, tuple[str, str | None]], *, nodes: tuple[str, ...],
                          unheard: tuple[float, float] = (0.0, 0.0)) -> list[tuple[str, str]]:
        """(leg, node) of the legs on `nodes` with no CDR naming their call, but for those that ended
        in `unheard` (an interval with no engine connected to hear their end)."""
        return [(uuid, node) for uuid, (node, ended, call) in self.ended.items()
                if node in nodes and not unheard[0] < ended <= unheard[1]
                and (uuid not in cdrs or cdrs[uuid][1] != call)]
