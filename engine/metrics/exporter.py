"""`EngineMetrics`: the engine's Prometheus registry, its collectors and hooks, and the /metrics server.

Every metric is named `callrouter_*`, in base units, with labels bounded to node, event, command,
stage, queue, campaign, flow, ivr_node, window and outcome: never a caller id or a Unique-ID.
The composition root builds one EngineMetrics, hands its hooks to the parts that count things as
they happen, registers each capability's snapshot source, and serves it on `metrics.listen`.
"""
from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable, Iterable

from gevent.pywsgi import WSGIServer
from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

from engine.cdr.reports import ReportSettings
from engine.config import Config, parse_listen
from engine.metrics.collectors import CampaignCollector, CdrCollector, EngineCollector, QueueCollector
from engine.metrics.hooks import CallStatsFeed, EslMetrics, IvrMetrics, QueueMetrics, ReloadMetrics
from engine.metrics.sources import CampaignSource, QueueSource
from engine.metrics.window import WINDOWS, QueueWindows

DEFAULT_LISTEN = Config.metrics_listen
ESTIMATE_WINDOW = "15m"  # a joining caller's expected wait: the recent average speed of answer


def _version() -> str:
    try:
        return version("callrouter")
    except PackageNotFoundError:
        return "unknown"


class EngineMetrics:
    def __init__(self, nodes: Callable[[], Iterable[Any]], calls: Callable[[], Iterable[Any]], *,
                 node_names: tuple[str, ...] = (), queues: tuple[str, ...] = (),
                 report: ReportSettings = ReportSettings(), clock: Callable[[], float] = time.time) -> None:
        """`nodes`/`calls` return the engine's ESL nodes and calls at scrape time; `node_names` and
        `queues` are declared up front so their counters exist (at 0) before the first event."""
        self.registry = CollectorRegistry()
        self.windows = QueueWindows(report, clock)
        self.esl = EslMetrics(self.registry, node_names)
        self.queues = QueueMetrics(self.registry, self.windows, queues)
        self.calls_feed = CallStatsFeed(self.queues, clock)
        self.ivr = IvrMetrics(self.registry)
        self.reloads = ReloadMetrics(self.registry, clock)
        self._queue_sources: list[QueueSource] = []
        self._campaign_sources: list[CampaignSource] = []
        self._queue_collector = QueueCollector(self._queue_sources, self.windows)
        self._campaign_collector = CampaignCollector(self._campaign_sources)
        for collector in (EngineCollector(nodes, calls, _version()), self._queue_collector, self._campaign_collector):
            self.registry.register(collector)
        ProcessCollector(namespace="callrouter", registry=self.registry)

    # --- extension points: each capability registers what it knows -------------------------------------
    def add_queue_source(self, source: QueueSource) -> None:
        self._queue_sources.append(source)

    def add_campaign_source(self, source: CampaignSource) -> None:
        self._campaign_sources.append(source)

    def watch_cdr_writer(self, stats: Callable[[], Any]) -> None:
        """`stats` is RecordWriter.stats: the CDR backlog is read from it at scrape time."""
        self.registry.register(CdrCollector(stats))

    def estimated_wait(self, queue: str) -> float | None:
        return self.windows.figures(queue, ESTIMATE_WINDOW).average_answer_seconds

    # --- the supervisors' view (admin API, `callrouter top`) ---------------------------------------------
    def wallboard(self) -> dict[str, Any]:
        """Queues and campaigns as plain JSON-able data: the same figures /metrics exposes."""
        queues = []
        for snap in self._queue_collector.snapshots():
            figures = {window: self.windows.figures(snap.queue, window) for window in WINDOWS}
            queues.append({
                "queue": snap.queue,
                "open": snap.open,
                "waiting": snap.waiting,
                "longest_wait_seconds": round(snap.longest_wait_seconds, 1),
                "estimated_wait_seconds": snap.estimated_wait_seconds,
                "agents": [{"status": status, "state": state, "count": count}
                           for (status, state), count in sorted(snap.agents.items())],
                "windows": {window: {"calls": f.calls, "service_level": f.service_level,
                                     "abandon_rate": f.abandon_rate,
                                     "average_answer_seconds": f.average_answer_seconds}
                            for window, f in figures.items()},
            })
        campaigns = [{"campaign": c.campaign, "dialed": c.dialed, "answered": c.answered,
                      "abandoned": c.abandoned, "abandon_ratio": c.abandon_ratio,
                      "abandon_cap_ratio": c.abandon_cap_ratio, "pacing_ratio": c.pacing_ratio,
                      "contacts_remaining": c.contacts_remaining}
                     for source in self._campaign_sources for c in source()]
        return {"service_level_definition": self.windows.settings.describe_service_level(),
                "queues": queues, "campaigns": campaigns}


class MetricsServer:
    """GET /metrics in Prometheus's text format, served from the engine's own gevent loop."""

    def __init__(self, registry: CollectorRegistry, listen: str = DEFAULT_LISTEN) -> None:
        self.host, self._requested_port = parse_listen(listen, "the metrics address")
        self._metrics = make_wsgi_app(registry)
        self._server: WSGIServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_port if self._server is not None else self._requested_port

    def start(self) -> None:
        self._server = WSGIServer((self.host, self._requested_port), self._app, log=None)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=2)

    def _app(self, env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if env.get("PATH_INFO") == "/metrics":
            return self._metrics(env, start_response)
        body = b"callrouter metrics: see /metrics\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
