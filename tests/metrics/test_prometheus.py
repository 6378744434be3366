"""The dashboard and the alert rules against a real Prometheus scraping an engine under simulated
traffic: every expression parses, returns data, and every rule evaluates without error."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.waiting import wait_until
from tests.metrics.conftest import MONITORING

pytestmark = pytest.mark.timeout(90)

DASHBOARD = MONITORING / "grafana" / "callrouter.json"
ALERTS = MONITORING / "alerts.yml"
# What Grafana puts in place of the dashboard's variables with "All" selected.
GRAFANA_VALUES = {"$instance": ".*", "$queue": ".*", "$campaign": ".*", "$node": ".*", "$__rate_interval": "10s"}
SELECTOR = re.compile(r"\bcallrouter_[a-z_]+(?:\{[^}]*\})?")


def grafana_expr(expr: str) -> str:
    for variable, value in GRAFANA_VALUES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def dashboard_targets() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])]


def template_queries() -> list[tuple[str, str]]:
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    return [(v["name"], v["query"]["query"]) for v in variables if v["type"] == "query"]


def variable_values(prometheus, query: str) -> set[str]:
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", query)
    assert match, f"not a label_values() query: {query}"
    selector, label = match.groups()
    series = prometheus.api("series", **{"match[]": grafana_expr(selector)})
    return {s[label] for s in series if label in s}


def alert_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def test_dashboard_and_alerts_return_data_from_an_engine_under_traffic(instrumented_engine, prometheus_factory):
    engine = instrumented_engine.engine
    prometheus = prometheus_factory(instrumented_engine.url.removeprefix("http://").removesuffix("/metrics"),
                                    [ALERTS])
    # Traffic until every queue outcome the panels show has happened: answers, abandons, waits.
    wait_until(lambda: engine.stats.answered >= 3 and engine.stats.abandoned >= 1, timeout=40,
               what="answered and abandoned calls")
    wait_until(lambda: prometheus.query('count_over_time(callrouter_build_info{job="callrouter"}[1m]) >= 12'),
               timeout=30, what="a dozen scrapes of the engine")
    assert prometheus.query('up{job="callrouter"}')[0]["value"][1] == "1"

    empty = [f"{title}: {expr}" for title, expr in dashboard_targets() if not prometheus.query(grafana_expr(expr))]
    assert not empty, "dashboard queries that return nothing:\n" + "\n".join(empty)

    # Each template variable lists what its label_values() query finds, as Grafana asks for it.
    found = {name: variable_values(prometheus, query) for name, query in template_queries()}
    assert {"sales", "support", "general"} <= found["queue"]
    assert found["campaign"] == {"renewals"} and found["node"] == {"sim1"} and len(found["instance"]) == 1

    # An alert expression is a condition and is empty while all is well: it must parse, and each
    # series it selects must exist, or the alert can never fire.
    missing = []
    for alert, expr in alert_exprs():
        prometheus.query(expr)  # raises with Prometheus's parse error
        missing += [f"{alert}: {selector}" for selector in SELECTOR.findall(expr)
                    if not prometheus.query(selector)]
    assert not missing, "alert rules selecting series the engine does not expose:\n" + "\n".join(missing)

    def rules_evaluated() -> list[dict]:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return rules if all(rule.get("lastEvaluation", "").startswith("2") for rule in rules) else []

    wait_until(rules_evaluated, timeout=10, what="Prometheus to evaluate every rule")
    rules = rules_evaluated()
    assert {rule["name"] for rule in rules} == {alert for alert, _ in alert_exprs()}
    broken = [f"{rule['name']}: {rule.get('lastError')}" for rule in rules if rule["health"] != "ok"]
    assert not broken, broken
    firing = [alert["labels"]["alertname"] for alert in prometheus.api("alerts")["alerts"]]
    assert "CallrouterEslNodeDown" not in firing and "CallrouterEngineDown" not in firing
