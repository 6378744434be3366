"""The Router as a pure function of what it is told: strategies, skills and their relaxation, tier
rules, several queues sharing agents, capacity, the agent's life (delays, max-no-answer, wrap-up,
On Demand), ring-all and ring-progressively, and the "why" of each decision."""
from __future__ import annotations

import pytest

from engine.acd.model import (
    Agent, AgentState, AgentStatus, Member, MemberState, Queue, RelaxStep, Strategy, Tier, TierRules,
)
from engine.acd.routing import DECISION_FREE_KEPT, Router, RoutingError

T0 = 1_000.0


def centre(queues, agents, tiers, *, available=True, seed=1) -> Router:
    router = Router(queues, agents, tiers, seed=seed)
    if available:
        for agent in agents:
            router.set_status(agent.id, AgentStatus.AVAILABLE, T0)
    return router


def join(router: Router, uuid: str, queue: str, at: float, **kw) -> None:
    router.member_joined(Member(uuid, queue, joined_at=at, **kw), at)


def offered(router: Router, now: float) -> list[tuple[str, str]]:
    return [(o.call_uuid, o.agent) for o in router.assignments(now)]


def serve(router: Router, uuid: str, agent: str, answered: float, ended: float) -> None:
    router.offer_answered(uuid, agent, answered)
    router.call_ended(uuid, ended)


def one_queue(strategy: Strategy, n: int = 3, **queue_kw) -> Router:
    agents = [Agent(f"a{i}") for i in range(1, n + 1)]
    tiers = [Tier(a.id, "q", level=1, position=n + 1 - i) for i, a in enumerate(agents, 1)]  # a3 is position 1
    return centre([Queue("q", strategy=strategy, **queue_kw)], agents, tiers)


# ---------------------------------------------------------------------------- strategies
def test_longest_idle_agent_gets_the_call():
    router = one_queue(Strategy.LONGEST_IDLE_AGENT)
    join(router, "c1", "q", T0 + 1)
    first = offered(router, T0 + 1)
    serve(router, "c1", first[0][1], T0 + 2, T0 + 10)
    join(router, "c2", "q", T0 + 11)
    second = offered(router, T0 + 11)
    assert second[0][1] != first[0][1]  # the agent who just finished has been idle the shortest


def test_fewest_calls_and_least_talk_time_count_what_agents_did():
    for strategy in (Strategy.FEWEST_CALLS, Strategy.LEAST_TALK_TIME):
        router = one_queue(strategy, n=2)
        # a1 takes two short calls while a2 is on break, then a2 one long call while a1 is
        for uuid, agent, other, start, end in (("x", "a1", "a2", 1, 2), ("y", "a1", "a2", 3, 4),
                                               ("z", "a2", "a1", 5, 105)):
            router.set_status(other, AgentStatus.ON_BREAK, T0 + start)
            router.set_status(agent, AgentStatus.AVAILABLE, T0 + start)
            join(router, uuid, "q", T0 + start)
            assert offered(router, T0 + start) == [(uuid, agent)]
            serve(router, uuid, agent, T0 + start, T0 + end)
        router.set_status("a1", AgentStatus.AVAILABLE, T0 + 150)
        join(router, "c", "q", T0 + 200)
        expected = "a2" if strategy is Strategy.FEWEST_CALLS else "a1"
        assert offered(router, T0 + 200) == [("c", expected)], strategy


def test_top_down_starts_at_position_one_and_moves_past_agents_that_missed_the_call():
    router = one_queue(Strategy.TOP_DOWN)
    join(router, "c", "q", T0)
    assert offered(router, T0) == [("c", "a3")]           # position 1
    router.offer_failed("c", "a3", "NO_ANSWER", T0 + 20)
    assert offered(router, T0 + 20) == [("c", "a2")]      # a3 is free again but missed this call
    join(router, "d", "q", T0 + 21)
    assert offered(router, T0 + 21) == [("d", "a3")]      # every new call starts from the top


def test_round_robin_remembers_where_it_stopped():
    router = one_queue(Strategy.ROUND_ROBIN)
    seen = []
    for i in range(4):
        join(router, f"c{i}", "q", T0 + i)
        ((_, agent),) = offered(router, T0 + i)
        serve(router, f"c{i}", agent, T0 + i, T0 + i + 0.5)
        seen.append(agent)
    assert seen == ["a3", "a2", "a1", "a3"]  # position order, continuing after the last one


def test_sequentially_by_agent_order_uses_tier_level_then_position():
    agents = [Agent("x"), Agent("y"), Agent("z")]
    tiers = [Tier("x", "q", level=2, position=1), Tier("y", "q", level=1, position=2), Tier("z", "q", level=1, position=1)]
    router = centre([Queue("q", strategy=Strategy.SEQUENTIALLY_BY_AGENT_ORDER)], agents, tiers)
    for i in range(3):
        join(router, f"c{i}", "q", T0 + i)
    assert [a for _, a in offered(router, T0 + 3)] == ["z", "y", "x"]


def test_random_is_seeded_and_spreads_calls():
    def picks(seed: int) -> list[str]:
        router = Router([Queue("q", strategy=Strategy.RANDOM)], [Agent(f"a{i}") for i in range(10)],
                        [Tier(f"a{i}", "q") for i in range(10)], seed=seed)
        for i in range(10):
            router.set_status(f"a{i}", AgentStatus.AVAILABLE, T0)
        out = []
        for i in range(30):
            join(router, f"c{i}", "q", T0 + i)
            ((_, agent),) = offered(router, T0 + i)
            serve(router, f"c{i}", agent, T0 + i, T0 + i)
            out.append(agent)
        return out

    assert picks(5) == picks(5)
    assert picks(5) != picks(6)
    assert len(set(picks(5))) >= 6


def test_skills_best_match_prefers_the_highest_level_then_the_longest_idle():
    agents = [Agent("lo", skills={"fr": 4}), Agent("hi1", skills={"fr": 9}), Agent("hi2", skills={"fr": 9})]
    router = Router([Queue("q", strategy=Strategy.SKILLS_BEST_MATCH, skills={"fr": 3})], agents,
                    [Tier(a.id, "q") for a in agents])
    router.set_status("hi2", AgentStatus.AVAILABLE, T0)
    router.set_status("hi1", AgentStatus.AVAILABLE, T0 + 5)
    router.set_status("lo", AgentStatus.AVAILABLE, T0 - 100)
    for i in range(3):
        join(router, f"c{i}", "q", T0 + 10 + i)
    assert [a for _, a in offered(router, T0 + 20)] == ["hi2", "hi1", "lo"]


def test_ring_all_rings_every_eligible_agent_and_the_first_answer_wins():
    router = one_queue(Strategy.RING_ALL, skills={"en": 5})
    router.add_agent(Agent("a1", skills={"en": 5}))
    router.add_agent(Agent("a2", skills={"en": 7}))
    router.add_agent(Agent("a3", skills={"en": 2}))
    join(router, "c", "q", T0)
    assert sorted(offered(router, T0)) == [("c", "a1"), ("c", "a2")]
    assert router.agents["a1"].state is AgentState.RECEIVING
    assert router.offer_answered("c", "a2", T0 + 3) == ["a1"]  # the driver stops a1's ringing
    assert router.agents["a1"].state is AgentState.WAITING
    assert router.agents["a2"].state is AgentState.IN_A_QUEUE_CALL


def test_ring_progressively_adds_an_agent_every_delay_and_keeps_the_others_ringing():
    router = one_queue(Strategy.RING_PROGRESSIVELY, ring_progressively_delay=5)
    join(router, "c", "q", T0)
    assert offered(router, T0) == [("c", "a3")]
    assert router.next_wakeup() == T0 + 5
    assert offered(router, T0 + 4) == []
    assert offered(router, T0 + 5) == [("c", "a2")]
    assert router.members["c"].offers == {"a3", "a2"}
    assert offered(router, T0 + 10) == [("c", "a1")]
    assert router.offer_answered("c", "a1", T0 + 11) == ["a2", "a3"]


# ---------------------------------------------------------------------------- order of calls
def test_priority_then_join_time_orders_the_queue():
    router = one_queue(Strategy.LONGEST_IDLE_AGENT, n=1)
    router.set_status("a1", AgentStatus.ON_BREAK, T0, "lunch")
    join(router, "early", "q", T0 + 1)
    join(router, "late", "q", T0 + 2)
    join(router, "vip", "q", T0 + 3, priority=5)
    join(router, "restored", "q", T0 - 50)  # a restarted engine restores the original join time
    assert [m.uuid for m in router.waiting("q")] == ["vip", "restored", "early", "late"]
    assert router.position("early") == 3
    router.set_status("a1", AgentStatus.AVAILABLE, T0 + 4)
    assert offered(router, T0 + 4) == [("vip", "a1")]


def test_a_call_needing_a_skill_nobody_free_has_does_not_block_the_calls_behind_it():
    agents = [Agent("en", skills={"en": 5})]
    router = centre([Queue("q")], agents, [Tier("en", "q")])
    join(router, "german", "q", T0, skills={"de": 5})
    join(router, "english", "q", T0 + 1, skills={"en": 3})
    assert offered(router, T0 + 2) == [("english", "en")]
    assert router.members["german"].state is MemberState.WAITING


# ---------------------------------------------------------------------------- relaxation
def test_skill_levels_relax_with_the_wait():
    agents = [Agent("junior", skills={"billing": 3})]
    queue = Queue("q", skills={"billing": 7}, relax=(RelaxStep(after=30, min_level=5), RelaxStep(after=60, min_level=3)))
    router = centre([queue], agents, [Tier("junior", "q")])
    join(router, "c", "q", T0)
    assert offered(router, T0 + 1) == []
    assert router.next_wakeup() == T0 + 30  # the router says when to look again
    assert offered(router, T0 + 30) == []
    assert router.next_wakeup() == T0 + 60
    assert offered(router, T0 + 60) == [("c", "junior")]
    assert router.decisions["c"].need == {"billing": 3}


def test_tier_rules_reach_further_levels_after_waiting():
    def agents():  # the Router owns its agents' live fields: a fresh set per router
        return [Agent("l1"), Agent("l2"), Agent("l3")]

    tiers = [Tier("l1", "q", level=1), Tier("l2", "q", level=2), Tier("l3", "q", level=3)]
    rules = TierRules(apply=True, wait_second=10, multiply_level=True, no_agent_no_wait=False)
    router = centre([Queue("q", tier_rules=rules)], agents(), tiers)
    router.set_status("l1", AgentStatus.ON_BREAK, T0)
    join(router, "c", "q", T0)
    assert offered(router, T0 + 5) == []
    assert offered(router, T0 + 20) == [("c", "l2")]        # level 2 after 2 x 10 s
    why = {v.agent: v.reasons for v in router.explain("c", T0 + 21).agents}
    assert why["l3"] == ("tier level 3 not reached yet (up to 2 in force)",)
    assert why["l1"][0] == "was not free at the decision" and "now: status On Break" in why["l1"][1]
    # with no_agent_no_wait a level with nobody logged in is skipped at once
    rules = TierRules(apply=True, wait_second=10, multiply_level=True, no_agent_no_wait=True)
    router = centre([Queue("q", tier_rules=rules)], agents(), tiers)
    router.set_status("l1", AgentStatus.LOGGED_OUT, T0)
    join(router, "c", "q", T0)
    assert offered(router, T0 + 1) == [("c", "l2")]


# ---------------------------------------------------------------------------- several queues
def test_a_shared_agent_goes_to_the_queue_whose_head_call_needs_it_most():
    agents = [Agent("shared")]
    queues = [Queue("sales", service_level_seconds=20), Queue("support", service_level_seconds=60)]
    router = centre(queues, agents, [Tier("shared", "sales"), Tier("shared", "support")], available=False)
    join(router, "s1", "sales", T0 + 10)     # waits 20 s by T0+30: 1.0 of its target
    join(router, "p1", "support", T0)        # waits 30 s: 0.5 of its target
    router.set_status("shared", AgentStatus.AVAILABLE, T0 + 30)
    assert offered(router, T0 + 30) == [("s1", "shared")]
    serve(router, "s1", "shared", T0 + 30, T0 + 31)
    join(router, "p2", "support", T0 + 31, priority=3)  # priority beats normalised wait
    join(router, "s2", "sales", T0 + 20)
    assert offered(router, T0 + 40) == [("p2", "shared")]


def test_a_queue_sharing_agents_with_a_busier_one_does_not_starve():
    agents = [Agent("shared")]
    queues = [Queue("vip", priority=10), Queue("basic", starvation_limit=3)]
    router = centre(queues, agents, [Tier("shared", "vip"), Tier("shared", "basic")], available=False)
    router.set_status("shared", AgentStatus.AVAILABLE, T0)
    join(router, "b", "basic", T0)
    served = []
    now = T0
    for i in range(10):
        join(router, f"v{i}", "vip", now)    # a VIP call is always waiting
        ((uuid, _),) = offered(router, now)
        served.append(uuid)
        if uuid == "b":
            break
        serve(router, uuid, "shared", now, now + 1)
        now += 1
    assert served[-1] == "b" and len(served) == 4  # passed over 3 times, then served


# ---------------------------------------------------------------------------- capacity and the agent's life
def test_an_agent_with_capacity_n_gets_at_most_n_calls():
    router = centre([Queue("chat")], [Agent("multi", max_calls=2)], [Tier("multi", "chat")])
    for i in range(4):
        join(router, f"c{i}", "chat", T0 + i)
    assert len(offered(router, T0 + 5)) == 2
    router.offer_answered("c0", "multi", T0 + 6)
    assert offered(router, T0 + 6) == []
    router.call_ended("c0", T0 + 20)
    assert offered(router, T0 + 20) == [("c2", "multi")]


def test_no_answer_delays_the_agent_and_max_no_answer_puts_it_on_break():
    agent = Agent("a", no_answer_delay_time=30, busy_delay_time=60, max_no_answer=2)
    router = centre([Queue("q")], [agent], [Tier("a", "q")])
    join(router, "c", "q", T0)
    assert offered(router, T0) == [("c", "a")]
    router.offer_failed("c", "a", "USER_BUSY", T0 + 1)
    assert offered(router, T0 + 60) == []                    # busy delay: 60 s
    assert offered(router, T0 + 61) == [("c", "a")]
    router.offer_failed("c", "a", "NO_ANSWER", T0 + 81)
    assert router.agents["a"].status is AgentStatus.AVAILABLE
    assert offered(router, T0 + 111) == [("c", "a")]         # no-answer delay: 30 s
    router.offer_failed("c", "a", "NO_ANSWER", T0 + 131)
    assert router.agents["a"].status is AgentStatus.ON_BREAK
    assert router.agents["a"].break_reason == "no-answer"
    assert offered(router, T0 + 1000) == []
    assert router.members["c"].state is MemberState.WAITING and router.position("c") == 1


def test_wrap_up_holds_the_agent_back_and_can_end_early():
    router = centre([Queue("q", wrap_up_time=30)], [Agent("a", wrap_up_time=5)], [Tier("a", "q")])
    join(router, "c1", "q", T0)
    offered(router, T0)
    serve(router, "c1", "a", T0, T0 + 60)
    assert router.agents["a"].state is AgentState.WRAP_UP and router.agents["a"].callcenter_state() == "Waiting"
    join(router, "c2", "q", T0 + 61)
    assert offered(router, T0 + 80) == []                    # the queue's 30 s wins over the agent's 5 s
    assert offered(router, T0 + 90) == [("c2", "a")]
    serve(router, "c2", "a", T0 + 90, T0 + 100)
    join(router, "c3", "q", T0 + 101)
    router.wrap_up_done("a", T0 + 102)
    assert offered(router, T0 + 102) == [("c3", "a")]


def test_an_on_demand_agent_goes_idle_after_a_call_until_it_asks_for_another():
    router = centre([Queue("q")], [Agent("a")], [Tier("a", "q")], available=False)
    router.set_status("a", AgentStatus.AVAILABLE_ON_DEMAND, T0)
    join(router, "c1", "q", T0)
    offered(router, T0)
    serve(router, "c1", "a", T0, T0 + 10)
    assert router.agents["a"].state is AgentState.IDLE
    join(router, "c2", "q", T0 + 11)
    assert offered(router, T0 + 20) == []
    router.set_ready("a", T0 + 21)
    assert offered(router, T0 + 21) == [("c2", "a")]


def test_a_caller_leaving_stops_the_ringing_and_frees_the_agent():
    router = one_queue(Strategy.RING_ALL, n=2)
    join(router, "c", "q", T0)
    offered(router, T0)
    assert router.member_left("c", T0 + 3) == ["a1", "a2"]
    assert all(a.state is AgentState.WAITING for a in router.agents.values())
    join(router, "d", "q", T0 + 4)
    assert len(offered(router, T0 + 4)) == 2


def test_unknown_ids_are_refused_with_what_to_do():
    router = one_queue(Strategy.TOP_DOWN)
    with pytest.raises(RoutingError, match="no queue 'nope'"):
        join(router, "c", "nope", T0)
    with pytest.raises(RoutingError, match="no agent 'zz'"):
        router.set_status("zz", AgentStatus.AVAILABLE, T0)


# ---------------------------------------------------------------------------- explain and estimate
def test_explain_says_why_this_agent_and_not_the_others():
    agents = [Agent("chosen", name="Ann", skills={"en": 8}), Agent("weak", skills={"en": 2}),
              Agent("away", skills={"en": 9}), Agent("busy", skills={"en": 9})]
    router = centre([Queue("q", skills={"en": 5})], agents, [Tier(a.id, "q") for a in agents])
    router.set_status("away", AgentStatus.ON_BREAK, T0, "lunch")
    join(router, "x", "q", T0)
    assert offered(router, T0) == [("x", "busy")]            # longest idle among the eligible
    router.offer_answered("x", "busy", T0)
    join(router, "c", "q", T0 + 1)
    why = router.explain("c", T0 + 1)
    assert why.state == "Waiting" and why.need == {"en": 5}
    by_agent = {v.agent: v for v in why.agents}
    assert by_agent["chosen"].eligible and by_agent["chosen"].rank == 1
    assert by_agent["weak"].reasons == ("skill en 2 < 5 required",)
    assert by_agent["away"].reasons == ("status On Break (lunch)",)
    assert by_agent["busy"].reasons == ("In a queue call: 1 of 1 call(s) in use",)
    assert offered(router, T0 + 2) == [("c", "chosen")]
    why = router.explain("c", T0 + 2).to_dict()
    assert why["decided_at"] == T0 + 2 and "offered to chosen" in why["summary"]
    chosen = next(v for v in why["agents"] if v["agent"] == "chosen")
    assert chosen["chosen"] and chosen["skills"] == {"en": (8, 5)}


def test_estimated_wait_follows_handle_times_and_staffing():
    router = centre([Queue("q")], [Agent("a"), Agent("b")], [Tier("a", "q"), Tier("b", "q")])
    for i, talk in enumerate((100, 300)):
        join(router, f"h{i}", "q", T0)
        (offer, *_) = router.assignments(T0)
        serve(router, f"h{i}", offer.agent, T0, T0 + talk)
    for i in range(2):
        join(router, f"busy{i}", "q", T0 + 400)
    for o in router.assignments(T0 + 400):
        router.offer_answered(o.call_uuid, o.agent, T0 + 400)
    for i in range(3):
        join(router, f"w{i}", "q", T0 + 401 + i)
    # 2 agents staffed, both busy, AHT (100 + 300) / 2 = 200 s: the 3rd in line waits ~3 x 200 / 2
    assert router.estimated_wait("w2", T0 + 405) == pytest.approx(300.0)
    assert router.estimated_wait("w0", T0 + 405) == pytest.approx(100.0)


def test_ring_progressively_starts_over_at_its_own_pace_after_every_agent_missed():
    router = one_queue(Strategy.RING_PROGRESSIVELY, n=2, ring_progressively_delay=10)
    join(router, "c", "q", T0)
    assert offered(router, T0) == [("c", "a2")]
    router.offer_failed("c", "a2", "NO_ANSWER", T0 + 4)    # back in the queue, offered again at once
    assert offered(router, T0 + 4) == [("c", "a1")]
    assert offered(router, T0 + 10) == []                  # the first attempt's timer adds nobody
    assert offered(router, T0 + 14) == [("c", "a2")]


def test_a_decision_keeps_the_head_of_the_free_list_and_explain_says_so_for_the_rest():
    ids = [f"a{i:02d}" for i in range(DECISION_FREE_KEPT + 10)]
    router = centre([Queue("q", strategy=Strategy.TOP_DOWN)], [Agent(i) for i in ids],
                    [Tier(i, "q") for i in ids])
    join(router, "c", "q", T0)
    [(_, chosen)] = offered(router, T0 + 1)
    decision = router.decisions["c"]
    assert (len(decision.free), decision.free_count) == (DECISION_FREE_KEPT, len(ids))
    verdicts = router.explain("c", T0 + 2).agents
    kept = [v for v in verdicts if v.eligible]
    assert len(kept) == DECISION_FREE_KEPT and kept[0].agent == chosen and kept[0].chosen
    rest = [v for v in verdicts if not v.eligible]
    assert len(rest) == 10 and all(
        v.reasons[0] == f"not among the first {DECISION_FREE_KEPT} of {len(ids)} free agents at the decision"
        for v in rest)
