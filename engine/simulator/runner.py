"""One running simulation: a Switch (and its Event Socket server) per node of a scenario, with the
scenario's population on them and the ground truth recorded.

Real clock and TCP for the demo, the CLI and end-to-end tests; a VirtualClock and `serve=False`
for in-process what-if runs, driven by `VirtualClock.run_until`.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from engine.simulator.clock import Clock, RealClock
from engine.simulator.population import Population
from engine.simulator.scenario import NodeSpec, Scenario
from engine.simulator.server import EslServer
from engine.simulator.switch import Switch
from engine.simulator.truth import TruthRecorder


@dataclass
class SimNode:
    spec: NodeSpec
    switch: Switch
    password: str
    server: EslServer | None = None  # None when nothing listens (in-process runs)

    @property
    def port(self) -> int | None:
        return self.server.port if self.server is not None else None


class Simulation:
    """Builds the nodes and the population of `scenario`; `start()` and `stop()` them.

    Overrides: `port` moves the nodes to port, port+1, ... (0: each a free port); `password`
    replaces every node's; `seed` and `duration` replace the scenario's.
    """

    def __init__(self, scenario: Scenario, *, clock: Clock | None = None, recorder: TruthRecorder | None = None,
                 serve: bool = True, host: str = "127.0.0.1", port: int | None = None,
                 password: str | None = None, seed: int | None = None, duration: float | None = None) -> None:
        self.scenario = scenario
        self.clock = clock or RealClock()
        self.recorder = recorder or TruthRecorder()
        # Without a seed the run is still reproducible: the one drawn here is reported.
        self.seed = next(s for s in (seed, scenario.seed, random.SystemRandom().randrange(2**32)) if s is not None)
        self._serve = serve
        self._host = host
        self._port = port
        self.nodes: dict[str, SimNode] = {}
        switch_seeds = random.Random(self.seed)
        for spec in scenario.nodes:
            switch = Switch(clock=self.clock, hostname=spec.name, switchname=spec.name,
                            seed=switch_seeds.getrandbits(64))
            switch.park_variables.update(scenario.park_variables)
            self.nodes[spec.name] = SimNode(spec, switch, password or spec.password)
        self.population = Population(scenario, {n: node.switch for n, node in self.nodes.items()}, self.clock,
                                     recorder=self.recorder, seed=self.seed, duration=duration)

    def start(self) -> None:
        if self._serve:
            for index, node in enumerate(self.nodes.values()):
                port = node.spec.port if self._port is None else (self._port + index if self._port else 0)
                node.server = EslServer(node.switch, host=self._host, port=port, password=node.password)
                node.server.start()
        self.population.start()

    def stop(self) -> None:
        """Stop the traffic, hang up every call (FreeSWITCH shutting down) and close the sockets."""
        self.population.stop()
        for node in self.nodes.values():
            if node.server is not None:
                node.server.stop()
            node.switch.shutdown()
