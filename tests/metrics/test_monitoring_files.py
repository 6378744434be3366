"""monitoring/ as Prometheus and Grafana will load it: promtool checks and unit-tests the alert rules
and the example config; the dashboard JSON is valid for Grafana's file provisioning."""
from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest
import yaml

from tests.metrics.conftest import MONITORING, tool

pytestmark = pytest.mark.timeout(60)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, cwd=MONITORING, timeout=30)


def test_promtool_accepts_the_rules_and_the_example_config():
    for args in (("check", "rules", "alerts.yml"), ("check", "config", "prometheus.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_of_the_alerts_pass():
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_resolving_and_has_a_runbook():
    rules = [rule for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]
             for rule in group["rules"]]
    checks: dict[str, list[tuple[str, bool]]] = {}
    for case in yaml.safe_load((MONITORING / "alerts.test.yml").read_text())["tests"]:
        for check in case["alert_rule_test"]:
            checks.setdefault(check["alertname"], []).append((check["eval_time"], bool(check["exp_alerts"])))

    def minutes(duration: str) -> int:
        assert duration.endswith("m"), duration
        return int(duration[:-1])

    for rule in rules:
        name = rule["alert"]
        assert {"summary", "runbook"} <= rule["annotations"].keys(), name
        assert len(rule["annotations"]["runbook"].splitlines()) >= 3, f"{name}: a runbook says what to do"
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        timeline = sorted((minutes(t), firing) for t, firing in checks.get(name, []))
        fired = [t for t, firing in timeline if firing]
        assert fired, f"{name}: no test sees it fire"
        assert any(t > fired[0] and not firing for t, firing in timeline), f"{name}: no test sees it resolve"


@pytest.fixture(scope="module")
def dashboard():
    return json.loads((MONITORING / "grafana" / "callrouter.json").read_text())


def test_dashboard_is_ready_for_file_provisioning(dashboard):
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40 and dashboard["title"]
    assert dashboard.get("id") is None, "a provisioned dashboard gets its id from Grafana"
    assert "__inputs" not in dashboard, "import-style inputs do not resolve under provisioning"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert len(variables) == len(dashboard["templating"]["list"]), "variable names are unique"
    source = variables["datasource"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    for name in ("queue", "campaign"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] and variables[name]["multi"]


def test_every_panel_has_a_unique_id_and_queries_through_the_datasource_variable(dashboard):
    panels = dashboard["panels"]
    ids = Counter(panel["id"] for panel in panels)
    assert all(isinstance(i, int) for i in ids) and max(ids.values()) == 1, f"duplicate panel ids: {ids}"
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refIds"
    assert all(panel.get("targets") for panel in panels if panel["type"] != "row")


def test_panels_fit_the_grid_without_overlapping(dashboard):
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_has_the_views_operations_asked_for(dashboard):
    text = json.dumps([p.get("targets") for p in dashboard["panels"]])
    for metric in ("callrouter_queue_service_level_ratio", "callrouter_queue_waiting_calls", "callrouter_agents",
                   "callrouter_dialer_abandon_ratio", "callrouter_dialer_abandon_cap_ratio", "callrouter_esl_up",
                   "callrouter_cdr_spool_bytes", "callrouter_cdr_queue_depth"):
        assert metric in text, f"no panel shows {metric}"


def test_provisioning_examples_point_grafana_at_the_dashboard():
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/callrouter.yml").read_text())
    assert provider["apiVersion"] == 1 and provider["providers"][0]["type"] == "file"
    source = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
