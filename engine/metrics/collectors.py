"""Custom collectors: gauges and totals read from the engine's own state at scrape time, so nothing
in call handling has to remember to update them. One collector per capability."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.channelvars import VAR_STAGE
from engine.metrics.sources import STAGES, CampaignSource, QueueSource, QueueSnapshot
from engine.metrics.window import WINDOWS, QueueWindows


class EngineCollector(Collector):
    """Event Socket connection per node, calls under control by stage, build."""

    def __init__(self, nodes: Callable[[], Iterable[Any]], calls: Callable[[], Iterable[Any]], version: str) -> None:
        self.nodes = nodes
        self.calls = calls
        self.version = version

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("callrouter_esl_up", "1 while the Event Socket connection to the node is up "
                               "and subscribed.", labels=["node"])
        for node in self.nodes():
            up.add_metric([node.name], 1.0 if node.up else 0.0)
        yield up
        by_stage = dict.fromkeys(STAGES, 0)
        for call in self.calls():
            stage = call.caller.variables.get(VAR_STAGE, "new")
            by_stage[stage if stage in by_stage else "new"] += 1
        active = GaugeMetricFamily("callrouter_calls_active", "Calls under the engine's control, by stage "
                                   "(callrouter_stage).", labels=["stage"])
        for stage, count in by_stage.items():
            active.add_metric([stage], count)
        yield active
        info = GaugeMetricFamily("callrouter_build_info", "The running engine's version (always 1).",
                                 labels=["version"])
        info.add_metric([self.version], 1.0)
        yield info


class QueueCollector(Collector):
    """Queues now (waiting, longest wait, agents, open) and over rolling windows (service level, ...)."""

    def __init__(self, sources: list[QueueSource], windows: QueueWindows) -> None:
        self.sources = sources
        self.windows = windows

    def snapshots(self) -> list[QueueSnapshot]:
        return [snapshot for source in self.sources for snapshot in source()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshots = self.snapshots()
        waiting = GaugeMetricFamily("callrouter_queue_waiting_calls", "Callers waiting in the queue.",
                                    labels=["queue"])
        longest = GaugeMetricFamily("callrouter_queue_longest_wait_seconds", "Wait so far of the caller "
                                    "waiting longest (0 when none waits).", labels=["queue"])
        estimated = GaugeMetricFamily("callrouter_queue_estimated_wait_seconds", "Expected wait of a caller "
                                      "joining now (absent while unknown).", labels=["queue"])
        is_open = GaugeMetricFamily("callrouter_queue_open", "1 within the queue's opening hours.",
                                    labels=["queue"])
        agents = GaugeMetricFamily("callrouter_agents", "Agents serving the queue, by mod_callcenter status "
                                   "(Available, On Break, Logged Out) and state (Waiting, Receiving, "
                                   "In a queue call, Idle).", labels=["queue", "status", "state"])
        for snap in snapshots:
            waiting.add_metric([snap.queue], snap.waiting)
            longest.add_metric([snap.queue], snap.longest_wait_seconds)
            is_open.add_metric([snap.queue], 1.0 if snap.open else 0.0)
            if snap.estimated_wait_seconds is not None:
                estimated.add_metric([snap.queue], snap.estimated_wait_seconds)
            for (status, state), count in sorted(snap.agents.items()):
                agents.add_metric([snap.queue, status, state], count)
        yield from (waiting, longest, estimated, is_open, agents)
        yield from self._windows(sorted({s.queue for s in snapshots} | set(self.windows.queues)))

    def _windows(self, queues: list[str]) -> Iterator[GaugeMetricFamily]:
        definition = self.windows.settings.describe_service_level()
        level = GaugeMetricFamily("callrouter_queue_service_level_ratio", "Service level over the window, as "
                                  "the reports define it (label definition); absent while no call counts.",
                                  labels=["queue", "window", "definition"])
        counted = GaugeMetricFamily("callrouter_queue_window_calls", "Callers whose wait ended within the "
                                    "window (the volume behind the window's ratios).", labels=["queue", "window"])
        abandon = GaugeMetricFamily("callrouter_queue_abandon_ratio", "Abandoned / (calls - short abandons) "
                                    "over the window; absent while no call counts.", labels=["queue", "window"])
        asa = GaugeMetricFamily("callrouter_queue_average_answer_seconds", "Average speed of answer over the "
                                "window; absent while no call was answered.", labels=["queue", "window"])
        for queue in queues:
            for window in WINDOWS:
                figures = self.windows.figures(queue, window)
                counted.add_metric([queue, window], figures.calls)
                if figures.service_level is not None:
                    level.add_metric([queue, window, definition], figures.service_level)
                if figures.abandon_rate is not None:
                    abandon.add_metric([queue, window], figures.abandon_rate)
                if figures.average_answer_seconds is not None:
                    asa.add_metric([queue, window], figures.average_answer_seconds)
        yield from (level, counted, abandon, asa)


class CampaignCollector(Collector):
    """Outbound campaigns, from the dialer's own figures."""

    def __init__(self, sources: list[CampaignSource]) -> None:
        self.sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        def family(kind: type, name: str, doc: str) -> Any:
            return kind(name, doc, labels=["campaign"])

        dialed = family(CounterMetricFamily, "callrouter_dialer_calls_dialed", "Outbound attempts dialled.")
        answered = family(CounterMetricFamily, "callrouter_dialer_calls_answered", "Attempts answered by a person.")
        dropped = family(CounterMetricFamily, "callrouter_dialer_calls_abandoned",
                         "Answered attempts dropped with no agent free (abandoned / silent calls).")
        abandon = family(GaugeMetricFamily, "callrouter_dialer_abandon_ratio",
                         "Abandon rate as the dialer regulates it over its compliance period.")
        cap = family(GaugeMetricFamily, "callrouter_dialer_abandon_cap_ratio", "The campaign's abandon-rate cap.")
        pacing = family(GaugeMetricFamily, "callrouter_dialer_pacing_ratio", "Lines dialled per available agent.")
        remaining = family(GaugeMetricFamily, "callrouter_dialer_contacts_remaining",
                           "Contacts still to be attempted.")
        for source in self.sources:
            for snap in source():
                labels = [snap.campaign]
                dialed.add_metric(labels, snap.dialed)
                answered.add_metric(labels, snap.answered)
                dropped.add_metric(labels, snap.abandoned)
                abandon.add_metric(labels, snap.abandon_ratio)
                cap.add_metric(labels, snap.abandon_cap_ratio)
                pacing.add_metric(labels, snap.pacing_ratio)
                remaining.add_metric(labels, snap.contacts_remaining)
        yield from (dialed, answered, dropped, abandon, cap, pacing, remaining)


class CdrCollector(Collector):
    """The CDR writer's backlog: memory queue, disk spool, database reachability, totals."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self.stats = stats  # RecordWriter.stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.stats()
        yield GaugeMetricFamily("callrouter_cdr_queue_depth", "Records waiting in memory for the next batch.",
                                value=s.queue_depth)
        yield GaugeMetricFamily("callrouter_cdr_spool_bytes", "Bytes of records spooled to disk while "
                                "PostgreSQL was away, not replayed yet.", value=s.spool_bytes)
        yield GaugeMetricFamily("callrouter_cdr_spool_segments", "Spool files not replayed yet.",
                                value=s.spool_segments)
        yield GaugeMetricFamily("callrouter_cdr_database_up", "1 while the last write to PostgreSQL succeeded.",
                                value=1.0 if s.database_up else 0.0)
        for name, value, doc in (
            ("written", s.rows_written, "New records committed to PostgreSQL."),
            ("duplicate", s.rows_duplicate, "Records already in PostgreSQL (replays), skipped on their key."),
            ("spooled", s.records_spooled, "Records written to the disk spool."),
            ("replayed", s.records_replayed, "Records replayed from the spool."),
            ("rejected", s.records_rejected, "Records PostgreSQL refused as data, set aside in rejected.jsonl."),
        ):
            yield CounterMetricFamily(f"callrouter_cdr_records_{name}", doc, value=value)
        yield CounterMetricFamily("callrouter_cdr_write_errors", "Batches that failed to reach PostgreSQL "
                                  "(spooled and retried).", value=s.write_errors)
        yield CounterMetricFamily("callrouter_cdr_spool_errors", "Spool appends the disk refused while PostgreSQL "
                                  "was away too: those records wait in memory only.", value=s.spool_errors)
