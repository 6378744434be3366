"""The ACD's YAML: queues, agents and tiers, read with engine.yamlfile so every mistake is reported
at its file:line:col.

    queues:
      support:
        strategy: longest-idle-agent      # mod_callcenter's names; also fewest-calls,
                                          # least-talk-time, skills-best-match
        skills: {english: 5}              # required skill: minimum level (1-10)
        priority: 0                       # calls' priority unless the flow gives one
        service_level: {seconds: 20, target: 0.8}
        max_wait: 600                     # seconds; 0 = no limit
        max_wait_no_agent: 60
        overflow: "queue:sales"           # or "flow:NAME"
        announcements: {every: 30, position: true, estimated_wait: true, sound: ..., to_agent: true}
        moh: local_stream://moh
        wrap_up_time: 10                  # overrides the agents'
        recording: {mode: sampled, percent: 20, announce: ivr/recorded.wav}   # all | none | sampled
        tier_rules: {apply: true, wait_second: 30, multiply_level: true, no_agent_no_wait: true}
        relax: [{after: 30, min_level: 3}, {after: 90, min_level: 1, skills: [english]}]
        ring_progressively_delay: 10
        starvation_limit: 3
    agents:
      "1001":
        name: Alice Martin
        status: Available                 # the first status, until the database holds one
        contacts: {fs1: user/1001}        # dial string per FreeSWITCH node
        skills: {english: 8, billing: 4}
        max_calls: 1
        wrap_up_time: 10
        max_no_answer: 3                  # then On Break (no-answer); 0 = never
        reject_delay_time: 10
        busy_delay_time: 60
        no_answer_delay_time: 30
    tiers:
      - {agent: "1001", queue: support, level: 1, position: 1}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.acd.model import Agent, AgentStatus, Announcements, Queue, Recording, RelaxStep, Strategy, Tier, TierRules
from engine.yamlfile import Mark, YamlList, YamlMap, check_keys, expect_list, expect_map, load

STRATEGIES = {s.value: s for s in Strategy} | {"fewest-calls": Strategy.FEWEST_CALLS,
                                               "least-talk-time": Strategy.LEAST_TALK_TIME}
_QUEUE_KEYS = frozenset({"strategy", "skills", "priority", "service_level", "max_wait", "max_wait_no_agent",
                         "overflow", "announcements", "moh", "wrap_up_time", "recording", "tier_rules", "relax",
                         "ring_progressively_delay", "starvation_limit"})
_AGENT_KEYS = frozenset({"name", "status", "contacts", "skills", "max_calls", "wrap_up_time", "max_no_answer",
                         "reject_delay_time", "busy_delay_time", "no_answer_delay_time"})


@dataclass(frozen=True)
class AcdConfig:
    queues: tuple[Queue, ...]
    agents: tuple[Agent, ...]
    tiers: tuple[Tier, ...]


def load_acd(path: str | Path) -> AcdConfig:
    """Read and check an ACD file; ConfigError with file:line:col on any mistake."""
    root = load(path)
    return parse_acd(expect_map(root, Mark(str(path), 1, 1), "the ACD file"))


def parse_acd(root: YamlMap) -> AcdConfig:
    check_keys(root, {"queues", "agents", "tiers"}, "the ACD file")
    queues = {name: _queue(name, expect_map(v, root["queues"].mark_of(name), f"queue '{name}'"))
              for name, v in _mapping(root, "queues").items()}
    agents = {name: _agent(name, expect_map(v, root["agents"].mark_of(name), f"agent '{name}'"))
              for name, v in _mapping(root, "agents").items()}
    tiers = []
    listed = expect_list(root["tiers"], root.mark_of("tiers"), "tiers") if "tiers" in root else YamlList()
    for i, item in enumerate(listed):
        tier = expect_map(item, listed.mark_of(i), "a tier")
        check_keys(tier, {"agent", "queue", "level", "position"}, "a tier", required=("agent", "queue"))
        agent, queue = _id(tier, "agent"), _id(tier, "queue")
        if agent not in agents:
            raise tier.mark_of("agent").error(f"no agent '{agent}' under agents:")
        if queue not in queues:
            raise tier.mark_of("queue").error(f"no queue '{queue}' under queues:")
        tiers.append(Tier(agent, queue, _int(tier, "level", 1, minimum=1), _int(tier, "position", 1, minimum=1)))
    for name, queue in queues.items():
        kind, _, target = queue.overflow.partition(":")
        if kind == "queue" and target not in queues:
            raise root["queues"][name].mark_of("overflow").error(f"overflow to a queue that does not exist: '{target}'")
    return AcdConfig(tuple(queues.values()), tuple(agents.values()), tuple(tiers))


def staff_every_queue(agents: Iterable[str], queues: Iterable[str], *, skills: Mapping[str, int] | None = None,
                      **queue: Any) -> dict[str, Any]:
    """An ACD file's content (for yaml.safe_dump) with every agent Available in every queue: what a
    demo or a test against the simulator's population of agents needs. `queue`: settings of each."""
    agents = list(agents)
    queues = list(queues)
    return {"queues": {q: dict(queue) for q in queues},
            "agents": {a: {"status": AgentStatus.AVAILABLE.value, "skills": dict(skills or {})} for a in agents},
            "tiers": [{"agent": a, "queue": q} for q in queues for a in agents]}


def _mapping(parent: YamlMap, key: str) -> YamlMap:
    if key not in parent:
        empty = YamlMap()
        empty.mark, empty.key_marks, empty.value_marks = parent.mark, {}, {}
        return empty
    return expect_map(parent[key], parent.mark_of(key), key)


def _id(m: YamlMap, key: str) -> str:
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise m.mark_of(key).error(f"{key} must be a name or number")
    return str(value)


def _number(m: YamlMap, key: str, default: float, *, minimum: float = 0.0) -> float:
    if key not in m:
        return default
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise m.mark_of(key).error(f"{key} must be a number of at least {minimum:g}, not {value!r}")
    return float(value)


def _int(m: YamlMap, key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    if key not in m:
        return default
    value = m[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum else f"of at least {minimum}"
        raise m.mark_of(key).error(f"{key} must be a whole number {bounds}, not {value!r}")
    return value


def _bool(m: YamlMap, key: str, default: bool) -> bool:
    if key not in m:
        return default
    if not isinstance(m[key], bool):
        raise m.mark_of(key).error(f"{key} must be true or false, not {m[key]!r}")
    return m[key]


def _text(m: YamlMap, key: str, default: str = "") -> str:
    if key not in m:
        return default
    if not isinstance(m[key], str):
        raise m.mark_of(key).error(f"{key} must be text (quote it), not {m[key]!r}")
    return m[key]


def _skills(m: YamlMap, key: str) -> dict[str, int]:
    skills = _mapping(m, key)
    return {name: _int(skills, name, 1, minimum=1, maximum=10) for name in skills}


def _queue(name: str, m: YamlMap) -> Queue:
    check_keys(m, _QUEUE_KEYS, f"queue '{name}'")
    strategy_name = _text(m, "strategy", Strategy.LONGEST_IDLE_AGENT.value)
    if strategy_name not in STRATEGIES:
        raise m.mark_of("strategy").error(f"unknown strategy '{strategy_name}'; one of: {', '.join(STRATEGIES)}")
    sl = _mapping(m, "service_level")
    check_keys(sl, {"seconds", "target"}, "service_level")
    target = _number(sl, "target", 0.8)
    if target > 1:
        raise sl.mark_of("target").error("target is a share of calls, between 0 and 1 (0.8 = 80 %)")
    overflow = _text(m, "overflow")
    if overflow and overflow.partition(":")[0] not in ("queue", "flow"):
        raise m.mark_of("overflow").error("overflow must be queue:NAME or flow:NAME")
    ann = _mapping(m, "announcements")
    check_keys(ann, {"every", "position", "estimated_wait", "sound", "to_agent"}, "announcements")
    rules = _mapping(m, "tier_rules")
    check_keys(rules, {"apply", "wait_second", "multiply_level", "no_agent_no_wait"}, "tier_rules")
    return Queue(
        name=name, strategy=STRATEGIES[strategy_name], skills=_skills(m, "skills"),
        priority=_int(m, "priority", 0, minimum=-1000), service_level_seconds=_number(sl, "seconds", 20.0),
        service_level_target=target, max_wait=_number(m, "max_wait", 0.0),
        max_wait_no_agent=_number(m, "max_wait_no_agent", 0.0), overflow=overflow,
        announcements=Announcements(_number(ann, "every", 0.0), _bool(ann, "position", False),
                                    _bool(ann, "estimated_wait", False), _text(ann, "sound"),
                                    _bool(ann, "to_agent", False)),
        moh=_text(m, "moh", "local_stream://moh"),
        wrap_up_time=_number(m, "wrap_up_time", 0.0) if "wrap_up_time" in m else None,
        recording=_recording(m),
        tier_rules=TierRules(_bool(rules, "apply", False), _number(rules, "wait_second", 300.0),
                             _bool(rules, "multiply_level", True), _bool(rules, "no_agent_no_wait", True)),
        relax=_relax(m),
        ring_progressively_delay=_number(m, "ring_progressively_delay", 10.0),
        starvation_limit=_int(m, "starvation_limit", 3, minimum=1))


def _recording(m: YamlMap) -> Recording:
    rec = _mapping(m, "recording")
    check_keys(rec, {"mode", "percent", "announce"}, "recording")
    mode = _text(rec, "mode", "none")
    if mode not in ("all", "none", "sampled"):
        raise rec.mark_of("mode").error(f"recording mode must be all, none or sampled, not '{mode}'")
    percent = _number(rec, "percent", 0.0)
    if percent > 100:
        raise rec.mark_of("percent").error("percent is between 0 and 100")
    return Recording(mode, percent, _text(rec, "announce"))


def _relax(m: YamlMap) -> tuple[RelaxStep, ...]:
    if "relax" not in m:
        return ()
    steps: list[RelaxStep] = []
    listed = expect_list(m["relax"], m.mark_of("relax"), "relax")
    for i, item in enumerate(listed):
        step = expect_map(item, listed.mark_of(i), "a relax step")
        check_keys(step, {"after", "min_level", "skills"}, "a relax step", required=("after", "min_level"))
        after = _number(step, "after", 0.0)
        if steps and after <= steps[-1].after:
            raise step.mark_of("after").error("relax steps must come in order of increasing 'after'")
        names: Any = step.get("skills", YamlList())
        names = expect_list(names, step.mark_of("skills"), "skills") if "skills" in step else names
        steps.append(RelaxStep(after, _int(step, "min_level", 1, minimum=1, maximum=10),
                               frozenset(str(n) for n in names)))
    return tuple(steps)


def _agent(agent_id: str, m: YamlMap) -> Agent:
    check_keys(m, _AGENT_KEYS, f"agent '{agent_id}'")
    contacts = _mapping(m, "contacts")
    status = _text(m, "status", AgentStatus.LOGGED_OUT.value)
    if status not in {s.value for s in AgentStatus}:
        raise m.mark_of("status").error(f"unknown status '{status}'; one of: {', '.join(s.value for s in AgentStatus)}")
    return Agent(
        id=agent_id, name=_text(m, "name", agent_id), status=AgentStatus(status),
        contacts={node: _text(contacts, node) for node in contacts}, skills=_skills(m, "skills"),
        max_calls=_int(m, "max_calls", 1, minimum=1), wrap_up_time=_number(m, "wrap_up_time", 0.0),
        max_no_answer=_int(m, "max_no_answer", 0), reject_delay_time=_number(m, "reject_delay_time", 0.0),
        busy_delay_time=_number(m, "busy_delay_time", 0.0),
        no_answer_delay_time=_number(m, "no_answer_delay_time", 0.0))
