"""What a waiting call accepts after waiting so long: skill levels (app_queue penalty rules,
as skill levels) and tier levels (mod_callcenter tier rules). Pure functions of the wait."""
from __future__ import annotations

import math
from typing import Iterable, Mapping

from engine.acd.model import Member, Queue, TierRules


def required_levels(queue: Queue, member: Member, waited: float) -> Mapping[str, int]:
    """Skill -> minimum level in force after `waited` seconds. A member's own need for a skill the
    queue also asks for raises the bar; relaxation only ever lowers it."""
    if not member.skills and not queue.relax:
        return queue.skills
    need = dict(queue.skills)
    for skill, level in member.skills.items():
        need[skill] = max(level, need.get(skill, 0))
    for step in queue.relax:
        if waited < step.after:
            break
        for skill in (step.skills & need.keys() if step.skills else need.keys()):
            need[skill] = min(need[skill], step.min_level)
    return need


def tier_level_in_force(rules: TierRules, levels: Iterable[tuple[int, int]], waited: float) -> float:
    """The highest tier level a call may reach; `levels` are (level, agents staffed) ascending.

    Without tier rules every level is reachable (math.inf).
    """
    if not rules.apply:
        return math.inf
    reached = None
    staffed_before = 0
    for level, staffed in levels:
        if reached is not None:
            wait = level * rules.wait_second if rules.multiply_level else rules.wait_second
            if not (rules.no_agent_no_wait and staffed_before == 0) and waited < wait:
                break
        reached = level
        staffed_before = staffed
    return math.inf if reached is None else reached


def next_change(queue: Queue, levels: Iterable[int], waited: float) -> float | None:
    """Seconds of waiting at which what the call accepts next changes (None: never again)."""
    moments = [step.after for step in queue.relax]
    if queue.tier_rules.apply:
        rules = queue.tier_rules
        moments += [level * rules.wait_second if rules.multiply_level else rules.wait_second for level in levels]
    later = [m for m in moments if m > waited]
    return min(later) if later else None


def meets(skills: Mapping[str, int], need: Mapping[str, int]) -> bool:
    for skill, level in need.items():  # a loop: called per candidate agent, twice as fast as all()
        if skills.get(skill, 0) < level:
            return False
    return True
