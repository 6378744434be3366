"""Agent feature codes from the agent's own phone, end to end: the FreeSWITCH dialplan parks *52
with callrouter_entry=agent_feature (see freeswitch/dialplan/default/00_callrouter.xml); the
engine puts that agent On Break, the phone hears the confirmation, and an unknown agent is refused."""
from __future__ import annotations

import pytest

from engine.acd.features import CONFIRMED, REFUSED
from engine.acd.model import AgentStatus
from tests.engine.conftest import centre_factory, engine_factory  # noqa: F401 - fixtures
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

SCENARIO = """
seed: 4
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: agent_feature, callrouter_feature: "{feature}",
                 callrouter_agent_id: "{agent}", park_timeout: "20"}}
inbound:
  arrivals: {{calls: [{{at: 0.2}}]}}
  numbers: ["1001"]
  dnis: "*52"
  kinds: {{phone: {{digits: none, patience: 30}}}}
agents:
  - ids: ["1001", "1002"]
"""


@pytest.mark.parametrize("feature, agent, status, reason, heard", [
    ("break", "1001", AgentStatus.ON_BREAK, "feature-code", CONFIRMED),
    ("logout", "1001", AgentStatus.LOGGED_OUT, "", CONFIRMED),
    ("break", "9999", AgentStatus.AVAILABLE, "", REFUSED),
    ("dance", "1001", AgentStatus.AVAILABLE, "", REFUSED),
])
def test_feature_code_changes_the_agents_own_status(centre_factory, engine_factory, tmp_path,  # noqa: F811
                                                    feature, agent, status, reason, heard):
    centre = centre_factory(SCENARIO.format(feature=feature, agent=agent))
    engine = engine_factory(centre.config(tmp_path))
    wait_until(lambda: centre.truth.count == 1, what="the feature call to end")
    record = centre.truth.finished[0]
    assert [h.detail for h in record.heard] == [heard]
    assert record.hung_up_by == "switch"
    assert engine.acd.router.agents["1001"].status is status
    assert engine.acd.router.agents["1001"].break_reason == reason
