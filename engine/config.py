"""The daemon's configuration: plain dataclasses, loaded from YAML with file:line errors.

`config.example.yaml` at the top of the repository documents every key; `load_config` is the
only way in, so the CLI's quick-start flags and a config file end up in the same objects.
Secrets (ESL passwords, database DSN, API token) are wrapped in `Secret` so they never show
in logs, reprs or error messages.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.cdr.reports import ReportSettings, ServiceLevelDefinition
from engine.cdr.writer import WriterSettings
from engine.errors import ConfigError
from engine.yamlfile import Mark, YamlMap, check_keys, expect_list, expect_map, load


class Secret:
    """A secret that never formats itself into logs, reprs or error messages.

    Written inline it holds its value; written as `env:VARIABLE` it is read from the environment
    only when used, so a command that needs no ESL password (`callrouter status`) does not
    require it to be set. `reveal()` returns the value.
    """

    __slots__ = ("_value", "_env", "_mark")

    def __init__(self, value: str | None = None, *, env: str | None = None, mark: Mark | None = None) -> None:
        self._value, self._env, self._mark = value, env, mark

    def reveal(self) -> str:
        if self._env is None:
            return self._value or ""
        if self._env not in os.environ:
            where = f"{self._mark}: " if self._mark else ""
            raise ConfigError(f"{where}the environment variable {self._env} is not set")
        return os.environ[self._env]

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class FreeswitchNode:
    name: str
    host: str
    port: int
    password: Secret


@dataclass(frozen=True)
class EslSettings:
    command_timeout: float = 5.0
    connect_timeout: float = 3.0
    heartbeat_timeout: float = 60.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    node_lost_after: float = 120.0  # a node away this long: its calls are written off as lost


@dataclass(frozen=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8088
    token: Secret | None = None  # None: the API is not started


@dataclass(frozen=True)
class RouteSettings:
    park_timeout_seconds: int = 3600  # FreeSWITCH's own safety net while the engine has the call


@dataclass(frozen=True)
class AcdSettings:
    """The ACD (engine/acd): queues, agents and tiers defined in `file` (engine/acd/config.py);
    agents' status and skills as changed since live in PostgreSQL and win over the file's."""

    file: Path | None = None  # None: no queues; every queue node of a flow takes its on_no_agents exit
    ring_seconds: int = 20  # ring an agent this long before it counts as a no-answer
    assumed_handle_seconds: float = 180.0  # the estimated wait's handle time until a queue has its own
    recordings_dir: Path | None = None  # None: data_dir/recordings/queues


@dataclass(frozen=True)
class DialerSettings:
    """The live dialer (engine/dialer/runner.py, campaign.py): campaigns and contacts live in PostgreSQL."""

    enabled: bool = True  # False: this engine places no outbound campaign calls
    poll_seconds: float = 2.0  # how often campaign states (CLI, API) and due contacts are re-read
    amd_timeout: float = 30.0  # an answered call with no AMD result by then is treated as a person
    priority: int = 100  # an answered campaign call's priority in its queue (inbound queues come first)


@dataclass(frozen=True)
class HaSettings:
    """Active/standby (engine/ha): engines sharing one PostgreSQL, one active at a time."""

    enabled: bool = False  # False: this engine acts at once, alone
    poll_interval: float = 1.0  # a standby tries for the lead, the leader checks it holds it, this often
    fence_after: float = 3.0  # the leader stops acting if it cannot confirm its lead this long


@dataclass(frozen=True)
class Config:
    freeswitch: tuple[FreeswitchNode, ...]
    data_dir: Path = Path("var")
    dialplans: Path = Path("dialplans")
    database_dsn: Secret | None = None  # None: embedded PostgreSQL under data_dir
    log_level: str = "INFO"
    log_format: str = "text"
    shutdown_grace_seconds: float = 30.0
    esl: EslSettings = field(default_factory=EslSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    metrics_listen: str = "127.0.0.1:9180"  # Prometheus's /metrics ("" = not served)
    route: RouteSettings = field(default_factory=RouteSettings)
    acd: AcdSettings = field(default_factory=AcdSettings)
    cdr: WriterSettings = field(default_factory=WriterSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)
    ha: HaSettings = field(default_factory=HaSettings)
    dialer: DialerSettings = field(default_factory=DialerSettings)
    source: str = "<defaults>"

    def with_overrides(self, **changes: Any) -> "Config":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check_secrets(self) -> None:
        """Fail now, with the file:line, if a secret the daemon needs is not set."""
        for secret in (*(n.password for n in self.freeswitch), self.database_dsn, self.api.token):
            if secret is not None:
                secret.reveal()


_NODE_SPEC = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[^:\s]+):(?P<port>\d{1,5}):(?P<password>.+)$")


def parse_node_spec(spec: str, index: int) -> FreeswitchNode:
    """HOST:PORT:PASSWORD from the command line (the password may itself hold colons)."""
    match = _NODE_SPEC.match(spec)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ConfigError(f"--freeswitch expects HOST:PORT:PASSWORD (e.g. 127.0.0.1:8021:ClueCon), got '{_mask(spec)}'")
    return FreeswitchNode(f"fs{index + 1}", match["host"].strip("[]"), int(match["port"]), Secret(match["password"]))


def _mask(spec: str) -> str:
    head, _, _ = spec.rpartition(":")
    return f"{head}:***" if head else "***"


def _get(mapping: YamlMap, key: str, kind: type | tuple[type, ...], default: Any, what: str) -> Any:
    if key not in mapping or mapping[key] is None:
        return default
    value = mapping[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise mapping.mark_of(key).error(f"{what}.{key} must be a {_words(names)}, got {value!r}")
    return value


def _words(type_names: str) -> str:
    return type_names.replace("str", "text").replace("int", "whole number").replace("float", "number")


def _positive(mapping: YamlMap, key: str, value: float, what: str) -> float:
    if value <= 0:
        raise mapping.mark_of(key).error(f"{what}.{key} must be greater than 0")
    return value


def _secret_value(mapping: YamlMap, key: str, what: str) -> Secret | None:
    """A secret is written inline or as `env:VARIABLE` (kept out of the file)."""
    raw = _get(mapping, key, (str, int), None, what)
    if raw is None:
        return None
    raw = str(raw)
    if raw.startswith("env:"):
        name = raw[4:]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise mapping.mark_of(key).error(f"{what}.{key}: '{name}' is not an environment variable name")
        return Secret(env=name, mark=mapping.mark_of(key))
    return Secret(raw)


def _load_nodes(doc: YamlMap) -> tuple[FreeswitchNode, ...]:
    if "freeswitch" not in doc:
        return ()
    items = expect_list(doc["freeswitch"], doc.mark_of("freeswitch"), "freeswitch")
    nodes: list[FreeswitchNode] = []
    for i, item in enumerate(items):
        where = f"freeswitch[{i}]"
        entry = expect_map(item, items.mark_of(i), where)
        check_keys(entry, {"name", "host", "port", "password"}, where, required=("host", "password"))
        port = _get(entry, "port", int, 8021, where)
        if not 0 < port < 65536:
            raise entry.mark_of("port").error(f"{where}.port must be between 1 and 65535")
        name = str(_get(entry, "name", (str, int), f"fs{i + 1}", where))
        if any(n.name == name for n in nodes):
            raise entry.mark_of("name").error(f"two FreeSWITCH nodes are named '{name}'; names must be unique")
        password = _secret_value(entry, "password", where)
        nodes.append(FreeswitchNode(name, str(_get(entry, "host", str, "", where)), port, password or Secret("")))
    return tuple(nodes)


def _section(doc: YamlMap, key: str) -> YamlMap:
    if key not in doc or doc[key] is None:
        empty = YamlMap()
        empty.mark, empty.key_marks, empty.value_marks = doc.mark, {}, {}
        return empty
    return expect_map(doc[key], doc.mark_of(key), key)


def _load_esl(doc: YamlMap) -> EslSettings:
    sec = _section(doc, "esl")
    names = ("command_timeout", "connect_timeout", "heartbeat_timeout", "backoff_initial", "backoff_max",
             "node_lost_after")
    check_keys(sec, set(names), "esl")
    defaults = EslSettings()
    values = {n: _positive(sec, n, _get(sec, n, float, getattr(defaults, n), "esl"), "esl") for n in names}
    return EslSettings(**values)


def parse_listen(listen: str, what: str = "the address") -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets); port 0 picks a free one."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:9180), got '{listen}'")
    return host.strip("[]"), int(port)


def _listen(sec: YamlMap, default: str, what: str) -> str:
    listen = _get(sec, "listen", str, default, what)
    try:
        parse_listen(listen, f"{what}.listen")
    except ConfigError as exc:
        raise sec.mark_of("listen").error(str(exc)) from None
    return listen


def _load_api(doc: YamlMap) -> ApiSettings:
    sec = _section(doc, "api")
    check_keys(sec, {"listen", "token"}, "api")
    host, port = parse_listen(_listen(sec, "127.0.0.1:8088", "api"))
    return ApiSettings(host, port, _secret_value(sec, "token", "api"))


def _load_metrics(doc: YamlMap) -> str:
    sec = _section(doc, "metrics")
    check_keys(sec, {"listen"}, "metrics")
    return _listen(sec, Config.metrics_listen, "metrics")


def _load_route(doc: YamlMap) -> RouteSettings:
    sec = _section(doc, "route")
    check_keys(sec, {"park_timeout_seconds"}, "route")
    default = RouteSettings.park_timeout_seconds
    return RouteSettings(int(_positive(sec, "park_timeout_seconds",
                                       _get(sec, "park_timeout_seconds", int, default, "route"), "route")))


def _load_acd(doc: YamlMap, base: Path) -> AcdSettings:
    sec = _section(doc, "acd")
    check_keys(sec, {"file", "ring_seconds", "assumed_handle_seconds", "recordings_dir"}, "acd")
    file = _get(sec, "file", str, None, "acd")
    recordings = _get(sec, "recordings_dir", str, None, "acd")
    return AcdSettings(
        file=base / file if file else None,
        ring_seconds=int(_positive(sec, "ring_seconds", _get(sec, "ring_seconds", int, 20, "acd"), "acd")),
        assumed_handle_seconds=_positive(sec, "assumed_handle_seconds",
                                         _get(sec, "assumed_handle_seconds", float, 180.0, "acd"), "acd"),
        recordings_dir=base / recordings if recordings else None)


def _load_cdr(doc: YamlMap) -> WriterSettings:
    sec = _section(doc, "cdr")
    defaults = WriterSettings()
    counts = ("queue_size", "batch_size", "segment_bytes")
    seconds = ("flush_interval", "fsync_interval", "connect_timeout", "write_timeout", "retry_initial", "retry_max")
    check_keys(sec, {*counts, *seconds, "retention_days"}, "cdr")
    values: dict[str, Any] = {n: int(_positive(sec, n, _get(sec, n, int, getattr(defaults, n), "cdr"), "cdr"))
                              for n in counts}
    values.update({n: _positive(sec, n, _get(sec, n, float, getattr(defaults, n), "cdr"), "cdr") for n in seconds})
    retention = _get(sec, "retention_days", int, None, "cdr")
    values["retention_days"] = None if retention is None else int(_positive(sec, "retention_days", retention, "cdr"))
    return WriterSettings(**values)


def _load_reports(doc: YamlMap) -> ReportSettings:
    sec = _section(doc, "reports")
    defaults = ReportSettings()
    counts = ("service_level_seconds", "short_abandon_seconds", "repeat_call_window_hours")
    check_keys(sec, {*counts, "service_level_definition"}, "reports")
    values: dict[str, Any] = {n: int(_positive(sec, n, _get(sec, n, int, getattr(defaults, n), "reports"), "reports"))
                              for n in counts}
    definition = _get(sec, "service_level_definition", str, defaults.service_level_definition.value, "reports")
    known = [d.value for d in ServiceLevelDefinition]
    if definition not in known:
        raise sec.mark_of("service_level_definition").error(
            f"reports.service_level_definition must be one of {', '.join(known)}")
    values["service_level_definition"] = ServiceLevelDefinition(definition)
    return ReportSettings(**values)


def _load_dialer(doc: YamlMap) -> DialerSettings:
    sec = _section(doc, "dialer")
    check_keys(sec, {"enabled", "poll_seconds", "amd_timeout", "priority"}, "dialer")
    defaults = DialerSettings()
    seconds = {n: _positive(sec, n, _get(sec, n, float, getattr(defaults, n), "dialer"), "dialer")
               for n in ("poll_seconds", "amd_timeout")}
    return DialerSettings(enabled=_get(sec, "enabled", bool, True, "dialer"),
                          priority=int(_get(sec, "priority", int, defaults.priority, "dialer")), **seconds)


def _load_ha(doc: YamlMap) -> HaSettings:
    sec = _section(doc, "ha")
    check_keys(sec, {"enabled", "poll_interval", "fence_after"}, "ha")
    defaults = HaSettings()
    seconds = {n: _positive(sec, n, _get(sec, n, float, getattr(defaults, n), "ha"), "ha")
               for n in ("poll_interval", "fence_after")}
    if seconds["fence_after"] <= seconds["poll_interval"]:
        raise sec.mark_of("fence_after").error("ha.fence_after must be longer than ha.poll_interval")
    enabled = _get(sec, "enabled", bool, False, "ha")
    if enabled and _section(doc, "database").get("dsn") is None:
        # The embedded PostgreSQL lives in one engine's data_dir: no other engine can share it.
        raise sec.mark_of("enabled").error("ha.enabled needs database.dsn: the engines must share one PostgreSQL")
    return HaSettings(enabled=enabled, **seconds)


_TOP_KEYS = {"freeswitch", "data_dir", "dialplans", "database", "logging", "shutdown_grace_seconds",
             "esl", "api", "metrics", "route", "acd", "cdr", "reports", "ha", "dialer"}


def config_from_yaml(doc: Any, source: str) -> Config:
    if doc is None:
        doc = YamlMap()
        doc.mark, doc.key_marks, doc.value_marks = Mark(source, 1, 1), {}, {}
    doc = expect_map(doc, getattr(doc, "mark", Mark(source, 1, 1)), "the configuration")
    check_keys(doc, _TOP_KEYS, "the configuration")
    base = Path(source).parent if source not in ("<defaults>", "<string>") else Path(".")
    db = _section(doc, "database")
    check_keys(db, {"dsn"}, "database")
    logging_sec = _section(doc, "logging")
    check_keys(logging_sec, {"level", "format"}, "logging")
    level = str(_get(logging_sec, "level", str, "INFO", "logging")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise logging_sec.mark_of("level").error("logging.level must be one of DEBUG, INFO, WARNING, ERROR")
    fmt = _get(logging_sec, "format", str, "text", "logging")
    if fmt not in ("text", "json"):
        raise logging_sec.mark_of("format").error("logging.format must be 'text' or 'json'")
    return Config(
        freeswitch=_load_nodes(doc),
        data_dir=base / _get(doc, "data_dir", str, "var", "config"),
        dialplans=base / _get(doc, "dialplans", str, "dialplans", "config"),
        database_dsn=_secret_value(db, "dsn", "database"),
        log_level=level,
        log_format=fmt,
        shutdown_grace_seconds=float(_positive(doc, "shutdown_grace_seconds",
                                               _get(doc, "shutdown_grace_seconds", float, 30.0, "config"), "config")),
        esl=_load_esl(doc),
        api=_load_api(doc),
        metrics_listen=_load_metrics(doc),
        route=_load_route(doc),
        acd=_load_acd(doc, base),
        cdr=_load_cdr(doc),
        reports=_load_reports(doc),
        ha=_load_ha(doc),
        dialer=_load_dialer(doc),
        source=source,
    )


def load_config(path: str | Path | None) -> Config:
    """The configuration from a file, or the defaults when path is None."""
    if path is None:
        return config_from_yaml(None, "<defaults>")
    return config_from_yaml(load(path), str(path))
