"""The scenario YAML of the simulator: who calls, who answers, which numbers exist, on which nodes.

`load_scenario(path)` reads and validates a scenario into plain frozen dataclasses. The YAML is read
as engine.yamlfile.Value nodes: every value keeps its file:line:column for error messages,
duplicate keys are refused, and YAML 1.1's implicit typing never applies: a scalar is a string
unless the schema asks for a number, so `on`, `9:30` and `010` stay what the operator wrote.

Keys (times in seconds; a distribution is a number or one of `fixed: N`, `uniform: {min, max}`,
`exponential: {mean}`, `lognormal: {mean, sd}`; scenarios/demo.yaml shows them all):
  seed, duration (of inbound traffic), start_time (HH:MM the simulated day starts at)
  nodes: [{name, port, password}]              one simulated FreeSWITCH each
  park_variables: {name: value}                what the dialplan sets on inbound calls before park
  inbound: arrivals (per_hour | profile: [{from: HH:MM, per_hour}] | calls: [{at, number, dnis, kind}]),
           numbers (caller id patterns, X = a digit), names, dnis (number or {number: weight}),
           nodes, kinds: {name: {weight, digits, think, patience, talk}}
  agents: [{ids ("1001-1008" or a list), node, ring, answer_probability, busy_probability,
            talk, hangup_share}]
  outbound: gateway, destinations: [{match (regex), answer, busy, no_answer, machine, invalid,
            answer_delay, greeting, machine_greeting, patience, talk}]
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from engine.yamlfile import Value, load_node as compose_file

BUNDLED_DIR = Path(__file__).with_name("scenarios")
DTMF_CHARS = frozenset("0123456789*#ABCD")
DEFAULT_PASSWORD = "ClueCon"


# --------------------------------------------------------------------------- distributions
@dataclass(frozen=True)
class Fixed:
    value: float

    def draw(self, rng: random.Random) -> float:
        return self.value


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Exponential:
    mean: float

    def draw(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True)
class LogNormal:
    """Given by the mean and standard deviation of the times themselves (what an AHT report shows)."""

    mean: float
    sd: float

    def draw(self, rng: random.Random) -> float:
        sigma2 = math.log(1.0 + (self.sd / self.mean) ** 2)
        return rng.lognormvariate(math.log(self.mean) - sigma2 / 2.0, math.sqrt(sigma2))


Distribution = Union[Fixed, Uniform, Exponential, LogNormal]


def _distribution(value: Value) -> Distribution:
    """Seconds: a bare number, or one of fixed / uniform {min, max} / exponential {mean} /
    lognormal {mean, sd}."""
    if not value.is_mapping():
        return Fixed(value.number(minimum=0))
    items = value.fields(optional=("fixed", "uniform", "exponential", "lognormal"))
    if len(items) != 1:
        raise value.error(f"{value.path} must name exactly one distribution: "
                          "fixed, uniform, exponential or lognormal")
    (kind, spec), = items.items()
    if kind == "fixed":
        return Fixed(spec.number(minimum=0))
    if kind == "uniform":
        bounds = spec.fields(required=("min", "max"))
        low, high = bounds["min"].number(minimum=0), bounds["max"].number(minimum=0)
        if high < low:
            raise bounds["max"].error(f"{bounds['max'].path} must not be below min ({low:g})")
        return Uniform(low, high)
    if kind == "exponential":
        return Exponential(spec.fields(required=("mean",))["mean"].number(above=0))
    params = spec.fields(required=("mean", "sd"))
    return LogNormal(params["mean"].number(above=0), params["sd"].number(minimum=0))


# --------------------------------------------------------------------------- the scenario model
@dataclass(frozen=True)
class NodeSpec:
    name: str
    port: int
    password: str = DEFAULT_PASSWORD


@dataclass(frozen=True)
class PoissonArrivals:
    per_hour: float


@dataclass(frozen=True)
class ProfileArrivals:
    """Piecewise-constant Poisson rate by time of day; each step holds until the next, wrapping at midnight."""

    steps: tuple[tuple[int, float], ...]  # (seconds after midnight, calls per hour), ascending

    def rate_at(self, time_of_day: float) -> float:
        rate = self.steps[-1][1]
        for start, per_hour in self.steps:
            if start <= time_of_day:
                rate = per_hour
        return rate

    def next_change(self, time_of_day: float) -> float:
        """Seconds of the day at which the rate next changes (may be past 86400: tomorrow)."""
        for start, _ in self.steps:
            if start > time_of_day:
                return float(start)
        return 86400.0 + self.steps[0][0]


@dataclass(frozen=True)
class ScriptedCall:
    at: float
    number: str | None
    dnis: str | None
    kind: str | None


@dataclass(frozen=True)
class ScriptedArrivals:
    calls: tuple[ScriptedCall, ...]  # ascending by `at`


Arrivals = Union[PoissonArrivals, ProfileArrivals, ScriptedArrivals]


@dataclass(frozen=True)
class CallerKind:
    name: str
    weight: float
    digits: tuple[str, ...]  # what is pressed at the n-th prompt; "" = nothing (let it time out)
    think: Distribution      # before pressing
    patience: Distribution   # how long the caller waits for an agent before hanging up
    talk: Distribution       # how long it stays on a bridge no simulated agent ends


@dataclass(frozen=True)
class InboundSpec:
    arrivals: Arrivals
    numbers: tuple[str, ...]  # caller id patterns; X is a random digit
    names: tuple[str, ...]
    dnis: tuple[tuple[str, float], ...]
    kinds: tuple[CallerKind, ...]
    nodes: tuple[str, ...]    # the nodes inbound calls arrive on, chosen at random per call


@dataclass(frozen=True)
class AgentSpec:
    ids: tuple[str, ...]
    node: str
    ring: Distribution
    answer_probability: float
    busy_probability: float  # refuses with USER_BUSY; the rest let it ring out (NO_ANSWER)
    talk: Distribution       # handling time once bridged
    hangup_share: float      # share of conversations the agent ends (the caller ends the others)


@dataclass(frozen=True)
class DestinationSpec:
    match: re.Pattern[str]
    outcomes: tuple[tuple[str, float], ...]  # OUTCOMES with their probabilities, summing to 1
    answer_delay: Distribution
    greeting: Distribution
    machine_greeting: Distribution
    patience: Distribution   # a human who hears nobody after answering hangs up after this
    talk: Distribution


OUTCOMES = ("answer", "busy", "no_answer", "machine", "invalid")


@dataclass(frozen=True)
class OutboundSpec:
    gateway: str
    destinations: tuple[DestinationSpec, ...]

    def destination_for(self, number: str) -> DestinationSpec | None:
        return next((d for d in self.destinations if d.match.search(number)), None)


@dataclass(frozen=True)
class Scenario:
    source: str
    seed: int | None
    duration: float | None  # seconds of inbound traffic; None = until stopped
    start_time: int         # the time of day the simulation starts at, seconds after midnight
    nodes: tuple[NodeSpec, ...]
    park_variables: tuple[tuple[str, str], ...]
    inbound: InboundSpec | None
    agents: tuple[AgentSpec, ...]
    outbound: OutboundSpec | None

    def agent_count(self) -> int:
        return sum(len(a.ids) for a in self.agents)


# --------------------------------------------------------------------------- schema
def bundled(name: str) -> Path:
    """A scenario shipped with the engine: demo, smoke."""
    return BUNDLED_DIR / f"{name}.yaml"


def load_scenario(path: str | Path) -> Scenario:
    root = compose_file(path)
    top = root.fields(required=("nodes",),
                      optional=("seed", "duration", "start_time", "park_variables", "inbound", "agents",
                                "outbound"))
    nodes = _nodes(top["nodes"])
    node_names = tuple(n.name for n in nodes)
    return Scenario(
        source=str(path),
        seed=top["seed"].integer(minimum=0) if "seed" in top else None,
        duration=top["duration"].number(above=0) if "duration" in top else None,
        start_time=top["start_time"].time_of_day() if "start_time" in top else 9 * 3600,
        nodes=nodes,
        park_variables=_park_variables(top["park_variables"]) if "park_variables" in top else (),
        inbound=_inbound(top["inbound"], node_names) if "inbound" in top else None,
        agents=_agents(top["agents"], node_names) if "agents" in top else (),
        outbound=_outbound(top["outbound"]) if "outbound" in top else None,
    )


def _nonempty(value: Value) -> list[Value]:
    items = value.sequence()
    if not items:
        raise value.error(f"{value.path} must not be empty")
    return items


def _nodes(value: Value) -> tuple[NodeSpec, ...]:
    nodes: list[NodeSpec] = []
    for item in _nonempty(value):
        f = item.fields(required=("name", "port"), optional=("password",))
        name = f["name"].text()
        if any(n.name == name for n in nodes):
            raise f["name"].error(f"node name '{name}' is used twice")
        port = f["port"].integer(minimum=0, maximum=65535)
        if port and any(n.port == port for n in nodes):
            raise f["port"].error(f"port {port} is used by another node")
        nodes.append(NodeSpec(name, port, f["password"].text() if "password" in f else DEFAULT_PASSWORD))
    return tuple(nodes)


def _node_ref(value: Value, node_names: tuple[str, ...]) -> str:
    name = value.text()
    if name not in node_names:
        raise value.error(f"{value.path}: no node named '{name}' (nodes: {', '.join(node_names)})")
    return name


def _park_variables(value: Value) -> tuple[tuple[str, str], ...]:
    return tuple((name, var.text()) for name, var in value.mapping().items())


def _inbound(value: Value, node_names: tuple[str, ...]) -> InboundSpec:
    f = value.fields(required=("arrivals", "numbers", "dnis", "kinds"), optional=("names", "nodes"))
    kinds = _caller_kinds(f["kinds"])
    dnis = _weighted(f["dnis"])
    return InboundSpec(
        arrivals=_arrivals(f["arrivals"], {k.name for k in kinds}),
        numbers=tuple(_caller_number(v) for v in _nonempty(f["numbers"])),
        names=tuple(v.text() for v in _nonempty(f["names"])) if "names" in f else (),
        dnis=dnis,
        kinds=kinds,
        nodes=tuple(_node_ref(v, node_names) for v in _nonempty(f["nodes"])) if "nodes" in f else node_names,
    )


def _caller_number(value: Value) -> str:
    number = value.text()
    if not re.fullmatch(r"\+?[0-9X]+", number):
        raise value.error(f"{value.path} must be digits (X = any digit, optional leading +), not '{number}'")
    return number


def _weighted(value: Value) -> tuple[tuple[str, float], ...]:
    """A single value, or a mapping of value -> relative weight."""
    if not value.is_mapping():
        return ((value.text(), 1.0),)
    items = tuple((name, weight.number(minimum=0)) for name, weight in value.mapping().items())
    if not items or sum(w for _, w in items) <= 0:
        raise value.error(f"{value.path} needs at least one entry with a weight above 0")
    return items


def _arrivals(value: Value, kind_names: set[str]) -> Arrivals:
    f = value.fields(optional=("per_hour", "profile", "calls"))
    if len(f) != 1:
        raise value.error(f"{value.path} must give exactly one of per_hour (Poisson rate), "
                          "profile (rate by time of day) or calls (an explicit list)")
    (kind, spec), = f.items()
    if kind == "per_hour":
        return PoissonArrivals(spec.number(minimum=0))
    if kind == "profile":
        steps: list[tuple[int, float]] = []
        for item in _nonempty(spec):
            step = item.fields(required=("from", "per_hour"))
            start = step["from"].time_of_day()
            if steps and start <= steps[-1][0]:
                raise step["from"].error(f"{step['from'].path} must be later than the step before it")
            steps.append((start, step["per_hour"].number(minimum=0)))
        return ProfileArrivals(tuple(steps))
    calls: list[ScriptedCall] = []
    for item in _nonempty(spec):
        call = item.fields(required=("at",), optional=("number", "dnis", "kind"))
        at = call["at"].number(minimum=0)
        if calls and at < calls[-1].at:
            raise call["at"].error(f"{call['at'].path} must not be earlier than the call before it")
        kind_name = call["kind"].text() if "kind" in call else None
        if kind_name is not None and kind_name not in kind_names:
            raise call["kind"].error(f"{call['kind'].path}: no caller kind named '{kind_name}'")
        calls.append(ScriptedCall(at, _caller_number(call["number"]) if "number" in call else None,
                                  call["dnis"].text() if "dnis" in call else None, kind_name))
    return ScriptedArrivals(tuple(calls))


def _caller_kinds(value: Value) -> tuple[CallerKind, ...]:
    kinds = []
    for name, spec in value.mapping().items():
        f = spec.fields(optional=("weight", "digits", "think", "patience", "talk"))
        kinds.append(CallerKind(
            name=name,
            weight=f["weight"].number(minimum=0) if "weight" in f else 1.0,
            digits=_digits(f["digits"]) if "digits" in f else (),
            think=_distribution(f["think"]) if "think" in f else Uniform(1.0, 3.0),
            patience=_distribution(f["patience"]) if "patience" in f else Exponential(120.0),
            talk=_distribution(f["talk"]) if "talk" in f else LogNormal(180.0, 90.0),
        ))
    if not kinds or sum(k.weight for k in kinds) <= 0:
        raise value.error(f"{value.path} needs at least one caller kind with a weight above 0")
    return tuple(kinds)


def _digits(value: Value) -> tuple[str, ...]:
    """`none` (never presses), one DTMF string for the first prompt, or a list: one entry per
    prompt, each DTMF digits or `none` to let that prompt time out."""
    entries = value.sequence() if value.is_sequence() else [value]
    presses = []
    for entry in entries:
        raw = entry.text()
        if raw == "none":
            presses.append("")
        elif set(raw) <= DTMF_CHARS:
            presses.append(raw)
        else:
            raise entry.error(f"{entry.path} must be DTMF digits (0-9 * # A-D) or none, not '{raw}'")
    return tuple(presses)


def _expand_ids(value: Value) -> tuple[str, ...]:
    """A list of user ids, or a range `1001-1008`."""
    if value.is_sequence():
        return tuple(v.text() for v in _nonempty(value))
    raw = value.text()
    match = re.fullmatch(r"(\d+)-(\d+)", raw)
    if not match:
        return (raw,)
    first, last = int(match[1]), int(match[2])
    if last < first:
        raise value.error(f"{value.path}: the range {raw} ends before it starts")
    width = len(match[1])
    return tuple(str(n).zfill(width) for n in range(first, last + 1))


def _agents(value: Value, node_names: tuple[str, ...]) -> tuple[AgentSpec, ...]:
    groups: list[AgentSpec] = []
    seen: set[str] = set()
    for item in _nonempty(value):
        f = item.fields(required=("ids",), optional=("node", "ring", "answer_probability", "busy_probability",
                                                     "talk", "hangup_share"))
        ids = _expand_ids(f["ids"])
        for agent_id in ids:
            if agent_id in seen:
                raise f["ids"].error(f"agent {agent_id} is listed twice")
            seen.add(agent_id)
        if "node" in f:
            node = _node_ref(f["node"], node_names)
        elif len(node_names) == 1:
            node = node_names[0]
        else:
            raise item.error(f"{item.path} must say which node its agents register on (node: ...)")
        answer = f["answer_probability"].probability() if "answer_probability" in f else 1.0
        busy = f["busy_probability"].probability() if "busy_probability" in f else 0.0
        if answer + busy > 1.0 + 1e-9:
            raise item.error(f"{item.path}: answer_probability + busy_probability must not exceed 1")
        groups.append(AgentSpec(
            ids=ids, node=node,
            ring=_distribution(f["ring"]) if "ring" in f else Uniform(2.0, 6.0),
            answer_probability=answer, busy_probability=busy,
            talk=_distribution(f["talk"]) if "talk" in f else LogNormal(240.0, 120.0),
            hangup_share=f["hangup_share"].probability() if "hangup_share" in f else 0.5,
        ))
    return tuple(groups)


def _outbound(value: Value) -> OutboundSpec:
    f = value.fields(required=("gateway", "destinations"))
    gateway = f["gateway"].text()
    destinations = []
    for item in _nonempty(f["destinations"]):
        d = item.fields(required=("match",),
                        optional=(*OUTCOMES, "answer_delay", "greeting", "machine_greeting", "patience", "talk"))
        try:
            pattern = re.compile(d["match"].text())
        except re.error as exc:
            raise d["match"].error(f"{d['match'].path} is not a valid regular expression: {exc}") from exc
        outcomes = tuple((o, d[o].probability()) for o in OUTCOMES if o in d)
        total = sum(p for _, p in outcomes)
        if abs(total - 1.0) > 1e-6:
            raise item.error(f"{item.path}: the probabilities of {', '.join(OUTCOMES)} must add up to 1 "
                             f"(they add up to {total:g}; a missing one counts as 0)")
        destinations.append(DestinationSpec(
            match=pattern, outcomes=outcomes,
            answer_delay=_distribution(d["answer_delay"]) if "answer_delay" in d else Uniform(3.0, 12.0),
            greeting=_distribution(d["greeting"]) if "greeting" in d else Uniform(0.8, 2.0),
            machine_greeting=_distribution(d["machine_greeting"]) if "machine_greeting" in d else Uniform(6.0, 15.0),
            patience=_distribution(d["patience"]) if "patience" in d else Uniform(3.0, 6.0),
            talk=_distribution(d["talk"]) if "talk" in d else LogNormal(120.0, 60.0),
        ))
    return OutboundSpec(gateway, tuple(destinations))
