"""/metrics over HTTP from an engine under simulated traffic: Prometheus naming, bounded labels, and
figures that agree with the engine's own totals and the simulator's ground truth."""
from __future__ import annotations

import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.config import parse_listen
from engine.metrics import MetricsServer
from engine.errors import ConfigError
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)
ALLOWED_LABELS = {"node", "event", "command", "stage", "queue", "outcome", "window", "definition", "status",
                  "state", "campaign", "flow", "ivr_node", "version"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families, name: str, **labels: str) -> float:
    """The sum of the samples named `name` (or `name`_total) with these labels."""
    samples = [s for family in families.values() for s in family.samples if s.name in (name, name + "_total")
               and all(s.labels.get(k) == v for k, v in labels.items())]
    assert samples, f"no sample {name} {labels}"
    return sum(s.value for s in samples)


def test_names_units_and_labels_follow_prometheus_conventions(instrumented_engine):
    engine = instrumented_engine.engine
    wait_until(lambda: engine.stats.answered >= 2, timeout=40, what="answered calls")
    families = scrape(instrumented_engine.url)
    for name, family in families.items():
        assert name.startswith("callrouter_"), name
        if family.type == "counter" and family.samples:  # a labelled counter has none until its first event
            assert any(s.name == name + "_total" for s in family.samples), f"{name}: a counter ends in _total"
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: histograms here measure time in seconds"
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= ALLOWED_LABELS, f"{sample.name}: unbounded label {sample.labels}"
            for label_value in sample.labels.values():
                assert not UUID.search(label_value) and "+1555" not in label_value, sample
    assert {"callrouter_esl_up", "callrouter_esl_reconnects", "callrouter_esl_events_received",
            "callrouter_esl_command_duration_seconds", "callrouter_calls_active", "callrouter_queue_wait_seconds",
            "callrouter_queue_service_level_ratio", "callrouter_agents", "callrouter_dialer_pacing_ratio",
            "callrouter_cdr_spool_bytes", "callrouter_process_cpu_seconds"} <= families.keys()


def test_figures_agree_with_the_engine_and_the_simulator(instrumented_engine):
    engine, centre = instrumented_engine.engine, instrumented_engine.centre
    wait_until(lambda: engine.stats.answered >= 3 and engine.stats.abandoned >= 1, timeout=40,
               what="answered and abandoned calls")
    engine.registry.accepting = False  # no new calls: let the ones in progress finish, then compare
    wait_until(lambda: not engine.registry.calls, timeout=30, what="calls in progress to end")
    families = scrape(instrumented_engine.url)

    assert value(families, "callrouter_esl_up", node="sim1") == 1
    for queue, offered in engine.stats.by_queue.items():
        assert value(families, "callrouter_queue_calls_offered", queue=queue) == offered, queue
    assert value(families, "callrouter_queue_calls_answered") == engine.stats.answered
    assert value(families, "callrouter_queue_calls_abandoned") == engine.stats.outcomes["abandoned"]
    assert value(families, "callrouter_queue_calls_timed_out") == engine.stats.outcomes["timeout"]
    assert value(families, "callrouter_calls_active") == 0
    # Each wait ended once: in the histogram's count and in the 1 h window alike.
    ended = value(families, "callrouter_queue_wait_seconds_count")
    assert ended == value(families, "callrouter_queue_window_calls", window="1h") > 0
    bridged = sum(1 for record in centre.truth.finished if record.bridged_at is not None)
    assert value(families, "callrouter_queue_calls_answered") == bridged
    parked = value(families, "callrouter_esl_events_received", node="sim1", event="CHANNEL_PARK")
    assert parked >= engine.stats.offered  # the caller's park, plus re-parks while waiting
    assert value(families, "callrouter_esl_command_duration_seconds_count", command="api") > 0


def test_metrics_server_answers_only_on_metrics_and_refuses_bad_addresses(instrumented_engine):
    base = instrumented_engine.url.removesuffix("/metrics")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(base + "/", timeout=5)
    assert missing.value.code == 404
    assert parse_listen("[::1]:9180") == ("::1", 9180)
    for bad in ("9180", "localhost:", "host:70000", ":9180"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            MetricsServer(instrumented_engine.metrics.registry, bad)
