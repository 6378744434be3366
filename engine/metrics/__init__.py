"""Prometheus metrics for the engine: what is counted as it happens (hooks), what is read at scrape
time (collectors over each capability's snapshots), service level over rolling windows, and the
/metrics HTTP server. `monitoring/` holds the dashboard and alert rules built on these names."""
from engine.metrics.exporter import DEFAULT_LISTEN, EngineMetrics, MetricsServer
from engine.metrics.sources import AcdQueues, CampaignSnapshot, QueueSnapshot

__all__ = ["DEFAULT_LISTEN", "AcdQueues", "CampaignSnapshot", "EngineMetrics", "MetricsServer", "QueueSnapshot"]
