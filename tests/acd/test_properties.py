"""Properties of the Router over random centres and random days (hypothesis).

The test plays the driving side: calls join and leave, agents change status, offers are answered
or missed, calls end, wrap-ups finish; after every decision it checks, with its own bookkeeping
and its own reading of the rules (not the Router's):
- an agent is offered a call only with a tier in its queue, at a tier level the tier rules have
  opened, and with every required skill at the level in force after the call's wait;
- no agent ever holds more offers and calls than its capacity;
- no waiting call of the same queue that is ahead (priority, then join time) and could have
  taken that agent was passed over;
- a queue sharing agents with higher-priority queues is served within bounded decisions.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.acd.estimator import HandleTimes
from engine.acd.model import Agent, AgentStatus, Member, MemberState, Queue, RelaxStep, Strategy, Tier, TierRules
from engine.acd.routing import Router
from engine.acd.strategies import entry_key

pytestmark = pytest.mark.timeout(120)
SKILLS = ("en", "fr", "billing")


@st.composite
def centres(draw):
    n_queues = draw(st.integers(1, 3))
    queues = []
    for q in range(n_queues):
        skills = draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10), max_size=2))
        steps = sorted(draw(st.lists(st.tuples(st.integers(1, 120), st.integers(1, 10)), max_size=2,
                                     unique_by=lambda s: s[0])))
        queues.append(Queue(
            f"q{q}", strategy=draw(st.sampled_from(list(Strategy))), skills=skills,
            priority=draw(st.integers(0, 3)), service_level_seconds=draw(st.sampled_from([10.0, 20.0, 60.0])),
            relax=tuple(RelaxStep(after, level) for after, level in steps),
            tier_rules=TierRules(apply=draw(st.booleans()), wait_second=draw(st.sampled_from([5.0, 30.0])),
                                 multiply_level=draw(st.booleans()), no_agent_no_wait=False),
            ring_progressively_delay=draw(st.sampled_from([2.0, 10.0])),
            wrap_up_time=draw(st.sampled_from([None, 0.0, 5.0]))))
    agents, tiers = [], []
    for a in range(draw(st.integers(1, 6))):
        agents.append(Agent(f"a{a}", skills=draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10))),
                            max_calls=draw(st.integers(1, 3)), wrap_up_time=draw(st.sampled_from([0.0, 3.0])),
                            no_answer_delay_time=draw(st.sampled_from([0.0, 4.0])),
                            max_no_answer=draw(st.integers(0, 3))))
        for queue in queues:
            if draw(st.booleans()):
                tiers.append(Tier(f"a{a}", queue.name, level=draw(st.integers(1, 3)), position=draw(st.integers(1, 5))))
    return queues, agents, tiers


def need_after(queue: Queue, member: Member, waited: float) -> dict[str, int]:
    """The rule as written in the issue: the member's and the queue's levels, lowered to a
    step's level once the call has waited that step's time."""
    need = {**queue.skills}
    for skill, level in member.skills.items():
        need[skill] = max(level, need.get(skill, 0))
    for step in queue.relax:
        if waited >= step.after:
            need = {skill: min(level, step.min_level) for skill, level in need.items()}
    return need


def tier_open(queue: Queue, tier: Tier, levels: list[int], waited: float) -> bool:
    rules = queue.tier_rules
    if not rules.apply or tier.level == min(levels):
        return True
    # every level up to this one must have been reached in turn
    return all(waited >= (lvl * rules.wait_second if rules.multiply_level else rules.wait_second)
               for lvl in levels if min(levels) < lvl <= tier.level)


def may_take(router: Router, queues: dict, tiers: dict, agent_id: str, member: Member, now: float) -> bool:
    queue = queues[member.queue]
    tier = tiers.get((agent_id, member.queue))
    if tier is None:
        return False
    levels = sorted({t.level for (a, q), t in tiers.items() if q == member.queue})
    waited = now - member.joined_at
    skills = router.agents[agent_id].skills
    return (tier_open(queue, tier, levels, waited)
            and all(skills.get(s, 0) >= lvl for s, lvl in need_after(queue, member, waited).items()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(centre=centres(), data=st.data())
def test_offers_respect_skills_capacity_and_order(centre, data):
    queues, agents, tier_list = centre
    router = Router(queues, agents, tier_list, seed=data.draw(st.integers(0, 2**32 - 1)))
    queue_by_name = {q.name: q for q in queues}
    tiers = {(t.agent, t.queue): t for t in tier_list}
    capacity = {a.id: a.max_calls for a in agents}
    holding: dict[str, set[str]] = defaultdict(set)   # agent -> calls offered or connected (our view)
    ringing: dict[str, set[str]] = defaultdict(set)   # call -> agents ringing
    connected: dict[str, str] = {}                    # call -> agent
    joined: dict[str, Member] = {}
    now = 0.0
    for step in range(data.draw(st.integers(5, 60))):
        now += data.draw(st.sampled_from([0.0, 0.5, 3.0, 11.0, 40.0]))
        action = data.draw(st.sampled_from(["join", "join", "status", "answer", "miss", "end", "leave", "ready"]))
        if action == "join":
            uuid = f"c{step}"
            member = Member(uuid, data.draw(st.sampled_from(list(queue_by_name))),
                            joined_at=now - data.draw(st.sampled_from([0.0, 0.0, 50.0])),  # some restored
                            priority=data.draw(st.sampled_from([None, 0, 2])),
                            skills=data.draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10), max_size=1)))
            joined[uuid] = member
            router.member_joined(member, now)
        elif action == "status":
            agent = data.draw(st.sampled_from(agents)).id
            router.set_status(agent, data.draw(st.sampled_from(list(AgentStatus))), now, "break")
        elif action in ("answer", "miss") and ringing:
            uuid = data.draw(st.sampled_from(sorted(ringing)))
            agent = data.draw(st.sampled_from(sorted(ringing[uuid])))
            if action == "answer":
                for other in router.offer_answered(uuid, agent, now):
                    holding[other].discard(uuid)
                assert ringing.pop(uuid) >= {agent}
                connected[uuid] = agent
            else:
                router.offer_failed(uuid, agent, data.draw(st.sampled_from(["NO_ANSWER", "USER_BUSY"])), now)
                holding[agent].discard(uuid)
                ringing[uuid].discard(agent)
                if not ringing[uuid]:
                    del ringing[uuid]
        elif action == "end" and connected:
            uuid = data.draw(st.sampled_from(sorted(connected)))
            router.call_ended(uuid, now)
            holding[connected.pop(uuid)].discard(uuid)
        elif action == "leave" and joined:
            uuid = data.draw(st.sampled_from(sorted(joined)))
            stopped = router.member_left(uuid, now)
            assert set(stopped) == ringing.pop(uuid, set())
            for agent in stopped:
                holding[agent].discard(uuid)
            if uuid in connected:
                holding[connected.pop(uuid)].discard(uuid)
            del joined[uuid]
        elif action == "ready":
            agent = data.draw(st.sampled_from(agents)).id
            router.wrap_up_done(agent, now)
            router.set_ready(agent, now)

        waiting_before = {u for u, m in joined.items() if m.state is MemberState.WAITING}
        for offer in router.assignments(now):
            member = joined[offer.call_uuid]
            agent = router.agents[offer.agent]
            assert agent.status.takes_calls
            assert may_take(router, queue_by_name, tiers, offer.agent, member, now), (offer, router.decisions.get(offer.call_uuid))
            holding[offer.agent].add(offer.call_uuid)
            ringing[offer.call_uuid].add(offer.agent)
            assert len(holding[offer.agent]) <= capacity[offer.agent]
            if offer.call_uuid in waiting_before:
                waiting_before.discard(offer.call_uuid)
                mine = (-member.priority, member.joined_at)
                for other in waiting_before:
                    ahead = joined[other]
                    if ahead.queue == member.queue and (-ahead.priority, ahead.joined_at) < mine:
                        assert not may_take(router, queue_by_name, tiers, offer.agent, ahead, now), \
                            f"{offer.call_uuid} took {offer.agent} before {other}"
        for agent_id, calls in holding.items():
            assert router.agents[agent_id].used - len(router.agents[agent_id].wrap_ups) == len(calls)


@settings(max_examples=60, deadline=None)
@given(priorities=st.lists(st.integers(0, 5), min_size=2, max_size=4), agents=st.integers(1, 3),
       limit=st.integers(1, 4), order=st.randoms(use_true_random=False))
def test_no_queue_sharing_agents_starves(priorities, agents, limit, order):
    """Every queue always has calls waiting, the higher-priority ones too; one agent frees up per
    decision. The head of every queue gets an agent within starvation_limit + (number of queues)
    offers: passed over `limit` times it comes first, after at most the other starving heads."""
    queues = [Queue(f"q{i}", priority=p, starvation_limit=limit) for i, p in enumerate(priorities)]
    pool = [Agent(f"a{i}") for i in range(agents)]
    router = Router(queues, pool, [Tier(a.id, q.name) for a in pool for q in queues])
    logged_in, serial, offers_made, now = 0, 0, 0, 0.0
    head_since: dict[str, int] = {}
    for _ in range(200):
        for q in queues:
            while len(router.waiting(q.name)) < 2:  # no queue ever runs dry
                serial += 1
                router.member_joined(Member(f"{q.name}-{serial}", q.name, joined_at=now), now)
            head_since.setdefault(router.waiting(q.name)[0].uuid, offers_made)
        if logged_in < agents:  # one more agent free: a login, else the end of a call
            router.set_status(pool[logged_in].id, AgentStatus.AVAILABLE, now)
            logged_in += 1
        else:
            busy = sorted(uuid for uuid, m in router.members.items() if m.state is MemberState.ANSWERED)
            router.call_ended(order.choice(busy), now)
        (offer,) = router.assignments(now)
        offers_made += 1
        assert offers_made - head_since.pop(offer.call_uuid) <= limit + len(queues), offer
        router.offer_answered(offer.call_uuid, offer.agent, now)
        for head, since in head_since.items():
            assert offers_made - since <= limit + len(queues), f"{head} starves"
        now += order.choice([0.0, 1.0, 5.0])


def waiting_order(router: Router, joined: dict[str, Member], order: dict[str, int], queue: str) -> list[str]:
    """Our reading of a queue's line: its waiting calls by priority, then join time, then the order
    they were put in."""
    mine = [u for u, m in joined.items() if m.queue == queue and m.state is MemberState.WAITING]
    return sorted(mine, key=lambda u: (-joined[u].priority, joined[u].joined_at, order[u]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(centre=centres(), data=st.data())
def test_indexes_follow_reconfiguration_and_leave_no_match_behind(centre, data):
    """Agents' skills and capacity, tiers, queues' strategies and skills change while calls wait and
    agents talk. After every decision: each queue's free agents are exactly its tiered agents that
    can take a call, in its strategy's order; its line is its waiting calls in order; and no waiting call could take one of
    its queue's free agents (the Router offered every match there was, so no agent or skill the
    indexes lost track of leaves a call waiting)."""
    queues, agents, tier_list = centre
    router = Router(queues, agents, tier_list, seed=data.draw(st.integers(0, 2**32 - 1)))
    queue_by_name = {q.name: q for q in queues}
    tiers = {(t.agent, t.queue): t for t in tier_list}
    joined: dict[str, Member] = {}
    order: dict[str, int] = {}
    ringing: dict[str, set[str]] = defaultdict(set)   # call -> agents ringing
    connected: set[str] = set()
    now = 0.0
    for step in range(data.draw(st.integers(5, 50))):
        now += data.draw(st.sampled_from([0.0, 0.5, 3.0, 11.0, 40.0]))
        action = data.draw(st.sampled_from(["join", "join", "status", "answer", "miss", "end", "leave",
                                            "skills", "skills", "tier", "untier", "queue"]))
        agent_id = data.draw(st.sampled_from(agents)).id
        queue = data.draw(st.sampled_from(queues))
        if action == "join":
            uuid = f"c{step}"
            member = Member(uuid, queue.name, joined_at=now - data.draw(st.sampled_from([0.0, 50.0])),
                            priority=data.draw(st.sampled_from([None, 0, 2])),
                            skills=data.draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10), max_size=2)))
            joined[uuid], order[uuid] = member, step
            router.member_joined(member, now)
        elif action == "status":
            router.set_status(agent_id, data.draw(st.sampled_from(list(AgentStatus))), now)
        elif action in ("answer", "miss") and ringing:
            uuid = data.draw(st.sampled_from(sorted(ringing)))
            agent = data.draw(st.sampled_from(sorted(ringing[uuid])))
            if action == "answer":
                router.offer_answered(uuid, agent, now)
                del ringing[uuid]
                connected.add(uuid)
            else:
                router.offer_failed(uuid, agent, "NO_ANSWER", now)
                ringing[uuid].discard(agent)
                if not ringing[uuid]:
                    del ringing[uuid]
        elif action == "end" and connected:
            uuid = data.draw(st.sampled_from(sorted(connected)))
            router.call_ended(uuid, now)
            connected.discard(uuid)
            del joined[uuid]
        elif action == "leave" and joined:
            uuid = data.draw(st.sampled_from(sorted(joined)))
            router.member_left(uuid, now)
            ringing.pop(uuid, None)
            connected.discard(uuid)
            del joined[uuid]
        elif action == "skills":
            old = router.agents[agent_id]
            router.add_agent(Agent(agent_id, skills=data.draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10))),
                                   max_calls=data.draw(st.integers(1, 3)), wrap_up_time=old.wrap_up_time,
                                   no_answer_delay_time=old.no_answer_delay_time, max_no_answer=old.max_no_answer))
        elif action == "tier":
            tier = Tier(agent_id, queue.name, level=data.draw(st.integers(1, 3)), position=data.draw(st.integers(1, 5)))
            tiers[(agent_id, queue.name)] = tier
            router.set_tier(tier)
        elif action == "untier":
            tiers.pop((agent_id, queue.name), None)
            router.remove_tier(agent_id, queue.name)
        elif action == "queue":
            queue = dataclasses.replace(queue, strategy=data.draw(st.sampled_from(list(Strategy))),
                                        skills=data.draw(st.dictionaries(st.sampled_from(SKILLS), st.integers(1, 10),
                                                                         max_size=2)))
            queue_by_name[queue.name] = queue
            queues = [queue if q.name == queue.name else q for q in queues]
            router.add_queue(queue)

        for offer in router.assignments(now):
            member = joined[offer.call_uuid]
            assert may_take(router, queue_by_name, tiers, offer.agent, member, now), offer
            ringing[offer.call_uuid].add(offer.agent)
        for name, queue in queue_by_name.items():
            free = router.available(name)
            # kept incrementally, the free list is what a from-scratch sort of the agents free now gives
            entry = entry_key(queue)
            assert free == [e[-1] for e in sorted(entry(router.agents[a], t.level, t.position)
                                                  for (a, q), t in tiers.items()
                                                  if q == name and router.agents[a].can_take_call(now))]
            line = waiting_order(router, joined, order, name)
            assert [m.uuid for m in router.waiting(name)] == line
            assert router.waiting_count(name) == len(line)
            for uuid in line:
                for agent in free:
                    assert not may_take(router, queue_by_name, tiers, agent, joined[uuid], now), \
                        f"{uuid} waits in {name} while {agent} is free for it"


@settings(max_examples=200, deadline=None)
@given(keep=st.integers(1, 6), horizon=st.sampled_from([10.0, 100.0]),
       steps=st.lists(st.tuples(st.sampled_from([0.0, 1.0, 7.0, 60.0]), st.booleans(), st.floats(0, 600)),
                      max_size=60))
def test_handle_times_are_the_mean_of_the_last_calls_within_the_horizon(keep, horizon, steps):
    times = HandleTimes(keep=keep, horizon=horizon)
    seen: list[tuple[float, float]] = []
    now = 0.0
    for advance, add, seconds in steps:
        now += advance
        if add:
            times.add(now, seconds)
            seen.append((now, seconds))
        else:
            recent = [s for ended, s in seen[-keep:] if ended >= now - horizon]
            mean = times.mean(now)
            assert (mean is None) if not recent else mean == pytest.approx(sum(recent) / len(recent))
