"""Why this agent and not the others: the Router's reasons for one call, per agent of its queue.

For a waiting call the reasons are live: what keeps each agent from it now. For a call already
offered they are those of the decision (the skill and tier levels in force then, the free agents
in strategy order then); an agent that was not free then is shown with its status and state now.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from engine.acd.model import Agent, MemberState, Tier
from engine.acd.relaxation import required_levels, tier_level_in_force

if TYPE_CHECKING:
    from engine.acd.routing import Router


@dataclass(frozen=True)
class AgentVerdict:
    agent: str
    name: str
    status: str
    break_reason: str
    state: str
    tier_level: int
    tier_position: int
    skills: dict[str, tuple[int, int]]   # required skill -> (the agent's level, level in force)
    capacity: tuple[int, int]            # (in use, max concurrent calls)
    eligible: bool
    rank: int | None                     # place among the eligible free agents in strategy order
    chosen: bool
    reasons: tuple[str, ...]             # what kept it from the call (empty when eligible)


@dataclass(frozen=True)
class Explanation:
    call_uuid: str
    queue: str
    strategy: str
    state: str
    priority: int
    waited: float
    position: int | None
    need: dict[str, int]
    max_tier_level: float | None         # None: tier rules off
    decided_at: float | None
    summary: str
    agents: tuple[AgentVerdict, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unavailability(agent: Agent, now: float) -> list[str]:
    reasons = []
    if not agent.status.takes_calls:
        reasons.append(f"status {agent.status.value}" + (f" ({agent.break_reason})" if agent.break_reason else ""))
    if agent.on_demand_idle:
        reasons.append("Idle: On Demand, has not asked for the next call")
    if agent.used >= agent.max_calls:
        reasons.append(f"{agent.state.value}: {agent.used} of {agent.max_calls} call(s) in use")
    if agent.ready_time > now:
        reasons.append(f"held back {agent.ready_time - now:.0f} s more after a missed call")
    return reasons


def _fit(agent: Agent, tier: Tier, need: dict[str, int], max_level: float) -> list[str]:
    reasons = []
    if tier.level > max_level:
        reasons.append(f"tier level {tier.level} not reached yet (up to {max_level:g} in force)")
    for skill, level in sorted(need.items()):
        have = agent.skills.get(skill, 0)
        if have < level:
            reasons.append(f"skill {skill} {have} < {level} required" if have else f"no skill {skill} (needs {level})")
    return reasons


def explain(router: "Router", uuid: str, now: float) -> Explanation:
    member = router.member(uuid)
    queue = router.queues[member.queue].queue
    decision = router.decisions.get(uuid) if member.state is not MemberState.WAITING else None
    if decision is not None:
        need, max_level, considered, waited = decision.need, decision.max_tier_level, decision.considered, decision.waited
        chosen = set(decision.agents)
    else:
        waited = now - member.joined_at
        need = required_levels(queue, member, waited)
        max_level = tier_level_in_force(queue.tier_rules, router.tier_levels(queue.name), waited)
        considered, chosen = tuple(router.available(queue.name)), set()
    free = {agent_id: i for i, agent_id in enumerate(considered)}
    verdicts = []
    for agent_id, tier in router.tiers(queue.name).items():
        agent = router.agents[agent_id]
        if agent_id in free:
            reasons = _fit(agent, tier, need, max_level)
        elif decision is not None:
            then = ("was not free at the decision" if decision.free_count <= len(considered) else
                    f"not among the first {len(considered)} of {decision.free_count} free agents at the decision")
            reasons = [then] + [f"now: {r}" for r in _unavailability(agent, now)]
        else:
            reasons = _unavailability(agent, now) or ["not free"]
        verdicts.append((free.get(agent_id, len(free)), agent_id, agent, tier, reasons))
    verdicts.sort(key=lambda v: (v[0], v[1]))
    out, rank = [], 0
    for _, agent_id, agent, tier, reasons in verdicts:
        eligible = not reasons
        rank += eligible
        out.append(AgentVerdict(
            agent=agent_id, name=agent.name, status=agent.status.value, break_reason=agent.break_reason,
            state=agent.state.value, tier_level=tier.level, tier_position=tier.position,
            skills={s: (agent.skills.get(s, 0), lvl) for s, lvl in sorted(need.items())},
            capacity=(agent.used, agent.max_calls), eligible=eligible, rank=rank if eligible else None,
            chosen=agent_id in chosen, reasons=tuple(reasons)))
    return Explanation(
        call_uuid=uuid, queue=queue.name, strategy=queue.strategy.value, state=member.state.value,
        priority=member.priority or 0, waited=waited, position=router.position(uuid), need=dict(need),
        max_tier_level=max_level if queue.tier_rules.apply else None,
        decided_at=decision.at if decision else None,
        summary=_summary(member.state, queue.strategy.value, decision, out, router.position(uuid)),
        agents=tuple(out))


def _summary(state: MemberState, strategy: str, decision, verdicts: list[AgentVerdict], position: int | None) -> str:
    eligible = [v for v in verdicts if v.eligible]
    if decision is not None:
        names = ", ".join(decision.agents)
        return (f"offered to {names} after {decision.waited:.0f} s of waiting: "
                f"{len(eligible)} eligible free agent(s), ordered by {strategy}")
    if not eligible:
        return "waiting: no free agent meets its needs" + ("" if verdicts else " (the queue has no agents)")
    return (f"waiting at position {position}: {len(eligible)} eligible free agent(s), "
            "taken by calls ahead of it or about to be offered")
