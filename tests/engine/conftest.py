"""A simulated contact centre (switch + Event Socket server + callers and agents) on a free
port, and an engine connected to it over TCP, both on this process's gevent loop."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

import pytest

from engine.acd.config import staff_every_queue
from engine.app import Engine
from engine.config import AcdSettings, Config, EslSettings, FreeswitchNode, Secret
from engine.simulator.runner import Simulation
from engine.simulator.scenario import load_scenario
from engine.simulator.server import EslServer


SPINE_QUEUES = ("sales", "support", "general")  # the queues SPINE_FLOW sends callers to


class Centre(Simulation):
    """One simulated node from a scenario text, on a free port, with the ground truth kept."""

    def __init__(self, scenario_text: str, tmp_path: Path) -> None:
        path = tmp_path / "scenario.yaml"
        path.write_text(scenario_text)
        super().__init__(load_scenario(path), port=0, password="ClueCon")
        self.truth = self.recorder
        self.switch = self.nodes["sim1"].switch

    @property
    def server(self) -> EslServer:
        return self.nodes["sim1"].server

    def config(self, tmp_path: Path, *, greeting: str = "tone_stream://%(300,0,440)", max_wait: float = 20,
               acd: dict | None = None, **settings: object) -> Config:
        """An engine config for this centre: the spine flow in a dialplans dir, and an ACD file
        (`acd`, else every agent of the scenario Available in every queue of the flow)."""
        dialplans = tmp_path / "spine-dialplans"
        dialplans.mkdir(exist_ok=True)
        (dialplans / "spine.yaml").write_text(SPINE_FLOW.format(greeting=greeting, max_wait=max_wait))
        acd_doc = acd or self.acd()
        for queue in SPINE_QUEUES:  # the flow's queues must exist (an engine refuses flows naming others)
            acd_doc["queues"].setdefault(queue, {})
        acd_file = tmp_path / "acd.yaml"
        acd_file.write_text(yaml.safe_dump(acd_doc))
        return Config(
            freeswitch=(FreeswitchNode("sim1", "127.0.0.1", self.server.port, Secret("ClueCon")),),
            data_dir=tmp_path / "data",
            dialplans=dialplans,
            esl=EslSettings(command_timeout=5.0, connect_timeout=2.0, heartbeat_timeout=30.0,
                            backoff_initial=0.05, backoff_max=0.5),
            metrics_listen="127.0.0.1:0",
            acd=replace(AcdSettings(file=acd_file, ring_seconds=3), **settings),
        )

    def acd(self, queues: tuple[str, ...] = SPINE_QUEUES, skills: dict | None = None,
            **queue: object) -> dict:
        """Every agent of the scenario Available in each queue, with these skills (settings in
        `queue` for each queue)."""
        return staff_every_queue((a for spec in self.scenario.agents for a in spec.ids), queues, skills=skills,
                                 **{"moh": HOLD_MUSIC, **queue})


HOLD_MUSIC = "tone_stream://%(2000,4000,440,480);loops=-1"


# A greeting, a one-digit menu (1 sales, 2 support, nothing: general), the queue, then the end.
SPINE_FLOW = """
flow: spine
entries: ["hotline"]
default: true
start: greeting
nodes:
  greeting:
    type: play
    prompt: "{greeting}"
    next: menu
  menu:
    type: menu
    prompt: silence_stream://200
    options: {{"1": sales, "2": support}}
    tries: 1
    timeout: 1.5
    on_failure: general
  sales: {{type: queue, queue: sales, max_wait: {max_wait}, on_answered: done, on_timeout: done, on_no_agents: done}}
  support: {{type: queue, queue: support, max_wait: {max_wait}, on_answered: done, on_timeout: done,
            on_no_agents: done}}
  general: {{type: queue, queue: general, max_wait: {max_wait}, on_answered: done, on_timeout: done,
            on_no_agents: done}}
  done:
    type: hangup
"""


@pytest.fixture
def centre_factory(tmp_path):
    made: list[Centre] = []

    def make(scenario_text: str) -> Centre:
        centre = Centre(scenario_text, tmp_path)
        made.append(centre)
        centre.start()
        return centre

    yield make
    for centre in made:
        centre.stop()


@pytest.fixture
def engine_factory(tmp_path):
    made: list[Engine] = []

    def make(config: Config) -> Engine:
        engine = Engine(config, with_database=False, with_api=False, with_metrics=False)
        made.append(engine)
        engine.start()
        assert all(node.wait_up(10) for node in engine.nodes), "engine did not connect to the simulator"
        return engine

    yield make
    for engine in made:
        engine.stop(grace=0)
