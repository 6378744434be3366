"""The composition root: builds the engine's parts from a Config, wires them, runs them.

Nothing else constructs long-lived objects; every package receives what it needs here.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
import uuid
from typing import Any

import gevent
from gevent.event import Event as GEvent

from engine.acd.config import AcdConfig, load_acd
from engine.acd.features import ENTRY as FEATURE_ENTRY
from engine.acd.features import AgentFeatures
from engine.acd.persistence import AgentStatusStore
from engine.acd.service import Acd
from engine.api import AdminApi
from engine.calls import CallRegistry, CallStats
from engine.calls.registry import by_entry
from engine.cdr import RecordWriter
from engine.cdr.journal import CallJournal
from engine.config import Config, Secret
from engine.db import Database, migrate
from engine.dialer.runner import DIALER_ENTRY, Dialer
from engine.errors import DatabaseError
from engine.esl import Node, NodeConfig
from engine.ha import LeaderElection, RelayLegs
from engine.ivr import Checks, FlowErrors, FlowRunner, FlowsHolder, IvrRoute, IvrStore, RunnerSettings
from engine.metrics import AcdQueues, EngineMetrics, MetricsServer

log = logging.getLogger(__name__)

# The events the engine reads, by name (never ALL): what the call model folds into its legs.
SUBSCRIBED_EVENTS = (
    "CHANNEL_PARK", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "DTMF", "BACKGROUND_JOB", "HEARTBEAT",
)
TOKEN_FILE = "api.token"
EXIT_FENCED = 75  # EX_TEMPFAIL: lost the lead; the supervisor restarts the process, which comes back as a standby


def api_token(config: Config) -> Secret:
    """The configured admin API token, else one generated once and kept in the data dir (0600)."""
    if config.api.token:
        return config.api.token
    path = config.data_dir / TOKEN_FILE
    if path.exists():
        return Secret(path.read_text().strip())
    config.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return Secret(token)


class Engine:
    def __init__(self, config: Config, *, with_database: bool = True, with_api: bool = True,
                 with_metrics: bool = True) -> None:
        self.config = config
        self.instance_id = str(uuid.uuid4())
        self.started_at = time.time()
        self.database = Database(config.database_dsn, config.data_dir) if with_database else None
        self.writer: RecordWriter | None = None  # started once the database is known (start())
        self.journal = CallJournal(None)
        acd_config = load_acd(config.acd.file) if config.acd.file else AcdConfig((), (), ())
        # Flows may only send callers to queues the ACD has (checked at start and at every reload).
        self.flows = FlowsHolder(config.dialplans, Checks(
            queues=frozenset(q.name for q in acd_config.queues) if config.acd.file else None))
        self.metrics = EngineMetrics(lambda: self.nodes, lambda: self.registry.calls,
                                     node_names=tuple(fs.name for fs in config.freeswitch),
                                     queues=self.flows.current.queues(), report=config.reports)
        self.stats = CallStats(listener=self.metrics.calls_feed)
        self.ivr_store = IvrStore(self.database.connect if self.database else None)
        # The registry is the ACD's way to the calls, and the route (built on the ACD) the registry's:
        # the ACD gets it once both exist.
        self.agent_statuses = AgentStatusStore(self.database.connect) if self.database else None
        self.acd = Acd(acd_config, None, config.acd,
                       config.acd.recordings_dir or config.data_dir / "recordings" / "queues",
                       status_listener=self._agent_status_changed,
                       flow_names=lambda: self.flows.current.flows)
        runner = FlowRunner(self.acd, self.ivr_store,
                            RunnerSettings(recordings_dir=config.data_dir / "recordings"),
                            on_node_error=self.metrics.ivr.node_error)
        route = IvrRoute(self.flows, runner, park_timeout_seconds=config.route.park_timeout_seconds)
        self.dialer = (Dialer(self.database.connect, self.acd, lambda: self.nodes, config.dialer,
                              flows=self.flows, ivr=runner)
                       if self.database else None)
        entries = {FEATURE_ENTRY: AgentFeatures(self.acd)}
        if self.dialer is not None:
            entries[DIALER_ENTRY] = self.dialer.handle
        self.registry = CallRegistry(by_entry(entries, route), self.stats, self.journal,
                                     lost_after=config.esl.node_lost_after)
        self.acd.registry = self.registry
        self.relay_legs = RelayLegs(self.journal)
        self.nodes: list[Node] = []
        for fs in config.freeswitch:
            node = Node(
                NodeConfig(name=fs.name, host=fs.host, port=fs.port, password=fs.password.reveal(),
                           events=SUBSCRIBED_EVENTS, command_timeout=config.esl.command_timeout,
                           connect_timeout=config.esl.connect_timeout,
                           heartbeat_timeout=config.esl.heartbeat_timeout,
                           backoff_initial=config.esl.backoff_initial, backoff_max=config.esl.backoff_max),
                on_event=self._on_event,
                on_up=self.registry.reconcile,
                on_down=self.registry.node_down,
                observer=self.metrics.esl,
            )
            self.registry.nodes[fs.name] = node
            self.nodes.append(node)
        self.metrics.add_queue_source(AcdQueues(self.acd, time.time))
        if self.dialer is not None:
            self.metrics.add_campaign_source(self.dialer.snapshots)
        self.metrics_server = (MetricsServer(self.metrics.registry, config.metrics_listen)
                               if with_metrics and config.metrics_listen else None)
        self.api = (AdminApi(config.api.host, config.api.port, api_token(config), self.status, self.reload,
                             acd=self.acd, dialer=self.dialer)
                    if with_api else None)
        # With ha.enabled the call handling (nodes, ACD) starts only once this engine leads.
        self.election = (LeaderElection(self.database.dsn, self.instance_id, config.ha,
                                        on_elected=self._lead, on_lost=self._fence)
                         if config.ha.enabled and self.database is not None else None)
        self.fenced = False
        self._stopped = GEvent()

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.database is not None:
            self._prepare_database()
        if self.api is not None:
            self.api.start()
            log.info("admin API on http://%s:%d", self.config.api.host, self.api.port)
        if self.metrics_server is not None:
            self.metrics_server.start()
            log.info("metrics on http://%s:%d/metrics", self.metrics_server.host, self.metrics_server.port)
        if self.election is not None:
            log.info("standby: the call handling starts once this engine leads")
            self.election.start()
        else:
            self._lead()

    def _lead(self, term: int | None = None) -> None:
        """Take the calls: agents' status as last written (by whichever engine), then the nodes,
        whose reconcile adopts the calls in progress from their channel variables."""
        if self.agent_statuses is not None:
            self.acd.restore(self.agent_statuses.load())
        for node in self.nodes:
            log.info("connecting to FreeSWITCH %s at %s:%d", node.config.name, node.config.host, node.config.port)
            node.start()
        self.acd.start()
        if self.dialer is not None:
            self.dialer.start()

    def _fence(self, reason: str) -> None:
        """Lost the lead: cut every switch first, so nothing more reaches a call another engine may
        control now, leave the calls up for it, and shut down (exit EXIT_FENCED)."""
        self.fenced = True
        gevent.joinall([gevent.spawn(node.stop) for node in self.nodes])
        self.acd.stop()
        gevent.spawn(self.stop, 0.0)

    def _prepare_database(self) -> None:
        assert self.database is not None
        log.info("database: %s", self.database.describe())
        with self.database.connect(autocommit=True) as conn:
            for name in migrate(conn):
                log.info("database migrated: %s", name)
            conn.execute("INSERT INTO engine_instance (id, hostname) VALUES (%s, %s)",
                         (self.instance_id, socket.gethostname()))
        self.writer = RecordWriter(self.database.dsn(), self.config.data_dir / "cdr-spool", self.config.cdr)
        self.writer.start()
        self.journal.sink = self.writer
        self.metrics.watch_cdr_writer(self.writer.stats)

    def _on_event(self, event: Any) -> None:
        """Every event of every node: the calls' first, then the far legs of cross-node calls."""
        self.registry.dispatch(event)
        self.relay_legs.observe(event)

    def _agent_status_changed(self, agent_id: str) -> None:
        if self.agent_statuses is not None:
            self.agent_statuses.save(self.acd.router.agents[agent_id])

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: take no new calls, let calls in progress finish up to `grace`."""
        grace = self.config.shutdown_grace_seconds if grace is None else grace
        log.info("shutting down: %d calls in progress, waiting up to %.0f s", len(self.registry.calls), grace)
        if self.dialer is not None:
            self.dialer.stop()  # no new calls; those in progress finish, or a restarted engine adopts them
        self.registry.drain(grace)
        self.acd.stop()
        for node in self.nodes:
            node.stop()
        if self.election is not None:
            self.election.stop()  # only now that this engine acts no more: a standby may take over
        if self.api is not None:
            self.api.stop()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        self.ivr_store.flush()
        if self.agent_statuses is not None:
            self.agent_statuses.flush()
        if self.writer is not None:
            self.writer.stop()  # drains to PostgreSQL, or to the spool if it is away
        if self.database is not None:
            try:
                with self.database.connect(autocommit=True) as conn:
                    conn.execute("UPDATE engine_instance SET stopped_at = now() WHERE id = %s", (self.instance_id,))
            except DatabaseError as exc:
                log.warning("could not record the shutdown: %s", exc)
        self._stopped.set()

    def run_until_signalled(self) -> None:
        """Block until SIGTERM/SIGINT (graceful stop) ; SIGHUP reloads."""
        gevent.signal_handler(signal.SIGTERM, lambda: gevent.spawn(self.stop))
        gevent.signal_handler(signal.SIGINT, lambda: gevent.spawn(self.stop))
        gevent.signal_handler(signal.SIGHUP, lambda: gevent.spawn(self.reload))
        self._stopped.wait()
        if self.fenced:
            raise SystemExit(EXIT_FENCED)

    def reload(self) -> dict[str, Any]:
        """Swap in the call flows if, and only if, every file validates (calls in progress keep theirs)."""
        try:
            self.flows.reload()
        except FlowErrors as exc:
            log.error("flows not reloaded, the running ones stay:\n%s", exc)
            self.metrics.reloads.reloaded(False)
            return {"reloaded": False, "errors": [str(e) for e in exc.errors], "version": self.flows.current.version}
        log.info("flows reloaded: %s", self.flows.current.version)
        self.metrics.reloads.reloaded(True)
        return {"reloaded": True, "errors": [], "version": self.flows.current.version}

    # --- what the admin API and the demo show ---------------------------------------------------------
    def status(self) -> dict[str, Any]:
        stages: dict[str, int] = {}
        for call in self.registry.calls:
            stage = call.caller.variables.get("callrouter_stage", "new")
            stages[stage] = stages.get(stage, 0) + 1
        return {
            "instance": self.instance_id,
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "nodes": [{"name": n.config.name, "host": n.config.host, "port": n.config.port, "up": n.up}
                      for n in self.nodes],
            "calls_by_stage": stages,
            "ha": self.election.status() if self.election is not None else {"role": "active", "term": None},
            **self.acd.summary(),
            **self.stats.summary(),
            **self.metrics.wallboard(),
        }

