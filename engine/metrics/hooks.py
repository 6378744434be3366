"""What must be counted as it happens (the rest is read at scrape time by the collectors).

Each capability gets one small object to call; none of them blocks or does I/O, so the ESL reader
may call `EslMetrics.event` for every frame. Label values are bounded by construction: node names
from the config, event names from the subscription, queue/flow names from the config and flows.
"""
from __future__ import annotations

from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.metrics.window import ABANDONED, ANSWERED, TIMEOUT, QueueWindows

# Seconds: an api reply is milliseconds, a slow originate or a stuck switch is seconds.
COMMAND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds: dense around the usual service-level thresholds (10, 15, 20, 30 s), then minutes.
WAIT_BUCKETS = (5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0)


class EslMetrics:
    """Per FreeSWITCH node: connections, frames received by event name, command round trips."""

    def __init__(self, registry: CollectorRegistry, nodes: tuple[str, ...] = ()) -> None:
        self.reconnects = Counter("callrouter_esl_reconnects", "Event Socket connections re-established "
                                  "after the first one, per node.", ["node"], registry=registry)
        self.events = Counter("callrouter_esl_events_received", "Events received from FreeSWITCH, by "
                              "Event-Name.", ["node", "event"], registry=registry)
        self.commands = Histogram("callrouter_esl_command_duration_seconds", "Time from sending a command "
                                  "to FreeSWITCH's reply (api, bgapi, sendmsg).", ["node", "command"],
                                  buckets=COMMAND_BUCKETS, registry=registry)
        self._connected_before: set[str] = set()
        # labels() hashes and locks on every call: the children of the per-frame and per-command
        # series are kept (their label values are bounded: nodes, subscribed events, commands).
        self._event_counters: dict[tuple[str, str], Any] = {}
        self._command_histograms: dict[tuple[str, str], Any] = {}
        for node in nodes:  # a series at 0 from the start, so rate() and alerts see the node at once
            self.reconnects.labels(node)

    def connected(self, node: str) -> None:
        if node in self._connected_before:
            self.reconnects.labels(node).inc()
        self._connected_before.add(node)

    def event(self, node: str, name: str) -> None:
        child = self._event_counters.get((node, name))
        if child is None:
            child = self._event_counters[(node, name)] = self.events.labels(node, name)
        child.inc()

    def command(self, node: str, command: str, seconds: float) -> None:
        child = self._command_histograms.get((node, command))
        if child is None:
            child = self._command_histograms[(node, command)] = self.commands.labels(node, command)
        child.observe(seconds)


class QueueMetrics:
    """Callers entering queues and how their wait ended; feeds the rolling service-level windows."""

    def __init__(self, registry: CollectorRegistry, windows: QueueWindows, queues: tuple[str, ...] = ()) -> None:
        self.windows = windows
        self.offered = Counter("callrouter_queue_calls_offered", "Callers who entered the queue.", ["queue"],
                               registry=registry)
        self.answered = Counter("callrouter_queue_calls_answered", "Callers connected to an agent.", ["queue"],
                                registry=registry)
        self.abandoned = Counter("callrouter_queue_calls_abandoned", "Callers who hung up while waiting "
                                 "(short abandons included; see the service-level windows).", ["queue"],
                                 registry=registry)
        self.timed_out = Counter("callrouter_queue_calls_timed_out", "Callers the queue let go after its "
                                 "longest wait.", ["queue"], registry=registry)
        self.wait = Histogram("callrouter_queue_wait_seconds", "How long callers waited in the queue, by "
                              "how the wait ended.", ["queue", "outcome"], buckets=WAIT_BUCKETS, registry=registry)
        self._by_outcome = {ANSWERED: self.answered, ABANDONED: self.abandoned, TIMEOUT: self.timed_out}
        for queue in queues:
            self._declare(queue)

    def _declare(self, queue: str) -> None:
        self.offered.labels(queue)
        for outcome, counter in self._by_outcome.items():
            counter.labels(queue)
            self.wait.labels(queue, outcome)

    def entered(self, queue: str) -> None:
        self._declare(queue)
        self.offered.labels(queue).inc()

    def wait_ended(self, queue: str, outcome: str, wait_seconds: float) -> None:
        self.windows.wait_ended(queue, outcome, wait_seconds)  # first: it refuses an unknown outcome
        self._by_outcome[outcome].labels(queue).inc()
        self.wait.labels(queue, outcome).observe(max(0.0, wait_seconds))


class IvrMetrics:
    """IVR flows: a step that failed (the flow took its on_error path)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.node_errors = Counter("callrouter_ivr_node_errors", "IVR flow nodes that failed and sent the "
                                   "caller down the flow's on_error path.", ["flow", "ivr_node"], registry=registry)

    def node_error(self, flow: str, ivr_node: str) -> None:
        self.node_errors.labels(flow, ivr_node).inc()


class ReloadMetrics:
    """SIGHUP / admin reloads of flows, queues and campaigns."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.reloads = Counter("callrouter_config_reloads", "Reloads of flows, queues and campaigns, by outcome "
                               "(a failed reload keeps the previous configuration).", ["outcome"], registry=registry)
        self.last_success = Gauge("callrouter_config_last_reload_success_timestamp_seconds",
                                  "When the running configuration was last loaded successfully.", registry=registry)
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome)
        self.last_success.set(clock())  # the configuration loaded at start

    def reloaded(self, ok: bool) -> None:
        self.reloads.labels("success" if ok else "failure").inc()
        if ok:
            self.last_success.set(self.clock())


class CallStatsFeed:
    """Turns the spine's CallStats notifications (queued, connected, finished) into queue metrics.

    Keeps the time each call entered its queue, keyed by the call object only while it waits.
    A call adopted after a restart has no entry time here and is left out of the wait figures, as
    is a call whose wait ended some other way than answer, abandon or timeout (its node was lost).
    """

    _ENDED_AS = {"abandoned": ABANDONED, "timeout": TIMEOUT}

    def __init__(self, queues: QueueMetrics, clock: Callable[[], float]) -> None:
        self.queues = queues
        self.clock = clock
        self._waiting: dict[Any, tuple[str, float]] = {}

    def queued(self, call: Any, queue: str) -> None:
        self._waiting[call] = (queue, self.clock())
        self.queues.entered(queue)

    def connected(self, call: Any) -> None:
        self._end(call, ANSWERED)

    def finished(self, call: Any) -> None:
        self._end(call, self._ENDED_AS.get(call.outcome))

    def handed_over(self, call: Any) -> None:
        self._waiting.pop(call, None)

    def _end(self, call: Any, outcome: str | None) -> None:
        entry = self._waiting.pop(call, None)
        if entry is not None and outcome is not None:
            queue, since = entry
            self.queues.wait_ended(queue, outcome, self.clock() - since)
