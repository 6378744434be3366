"""The sample flows end to end: the engine runs dialplans/ against the simulated FreeSWITCH over
TCP; scripted callers press valid, invalid and no digits and hang up at every node. What is
asserted comes from the simulator's ground truth (what the caller heard, pressed, who answered,
who hung up), the caller channel's final CHANNEL_HANGUP_COMPLETE (what the CDR is built from),
and the IVR's rows in PostgreSQL."""
from __future__ import annotations

import datetime as dt

import gevent
import psycopg
import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

UTC = dt.timezone.utc
OPEN = dt.datetime(2026, 6, 10, 14, 0, tzinfo=UTC)  # a Wednesday: 10:00 in New York, 17:00 in Moscow
CLOSED = dt.datetime(2026, 6, 14, 14, 0, tzinfo=UTC)  # a Sunday

SCENARIO = """
seed: 5
nodes: [{{name: sim1, port: 0}}]
park_variables: {{callrouter_entry: {entry}, park_timeout: "30"}}
inbound:
  arrivals:
    calls:
{calls}
  numbers: ["+15550100000"]
  dnis: "+18005550100"
  kinds:
{kinds}
agents:
  - ids: ["1001", "1002"]
    ring: 0.2
    answer_probability: 1.0
    talk: 0.5
    hangup_share: 1.0
"""


def scenario(entry: str, calls: list[tuple[float, str, str]], kinds: dict[str, str]) -> str:
    call_lines = "\n".join(f'      - {{at: {at}, kind: {kind}, number: "{number}"}}' for at, kind, number in calls)
    kind_lines = "\n".join(f"    {name}: {{{spec}}}" for name, spec in kinds.items())
    return SCENARIO.format(entry=entry, calls=call_lines, kinds=kind_lines)


def rows(dsn: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params).fetchall()


class Seen:
    """The engine's calls as the IVR entered their nodes (the registry forgets finished calls)."""

    def __init__(self, hang_up_at: dict[str, str] | None = None, centre=None) -> None:
        self.calls: dict[str, object] = {}
        self.path: dict[str, list[str]] = {}
        self.hang_up_at = hang_up_at or {}
        self.centre = centre

    def __call__(self, call, flow: str, node: str) -> None:
        number = call.caller.caller_id_number
        self.calls[number] = call
        self.path.setdefault(number, []).append(f"{flow}.{node}")
        if self.hang_up_at.get(number) == f"{flow}.{node}":
            # The caller puts the phone down at this node; the node's first wait sees it go.
            gevent.spawn(self.centre.switch.channels[call.uuid].hangup, "NORMAL_CLEARING")
            call.wait_for(lambda item: False, 10.0, "the caller's hangup")

    def final(self, number: str, name: str) -> str | None:
        event = self.calls[number].caller.final_event
        return event.get("variable_" + name) if event is not None else None


def by_number(centre) -> dict:
    return {r.caller: r for r in centre.truth.finished}


def test_caller_takes_sales_talks_to_an_agent_then_answers_the_csat_survey(centre_factory, ivr_engine, ivr_db):
    centre = centre_factory(scenario("hotline", [(0.5, "happy", "+15550000001")],
                                     {"happy": 'digits: ["1", "4", "1"], think: 0.1, patience: 60'}))
    seen = Seen()
    engine, store = ivr_engine(centre, OPEN, seen)
    wait_until(lambda: centre.truth.count == 1, timeout=40, what="the call to end")
    wait_until(lambda: engine.stats.finished_calls == 1, what="the engine to close the call")
    record = centre.truth.finished[0]
    assert record.answered_at is not None and record.agent in ("1001", "1002")
    assert record.pressed == ["1", "4", "1"]
    assert [h.detail for h in record.heard][0] == "ivr/welcome.wav"
    # The thanks node hung up (the simulator names the agent for any end after an agent's hangup).
    assert record.hung_up_by != "caller" and record.hangup_cause == "NORMAL_CLEARING"
    number = "+15550000001"
    assert seen.path[number] == ["main.welcome", "main.hours", "main.who_is_calling", "main.main_menu",
                                 "main.sales_priority", "main.sales", "main.to_survey", "csat.intro",
                                 "csat.questions", "csat.thanks"]
    assert seen.final(number, "callrouter_flow") == "csat" and seen.final(number, "callrouter_ivr_node") == "thanks"
    store.flush()
    answers = rows(ivr_db, "SELECT question, answer, survey, flow FROM survey_answer WHERE call_uuid = %s "
                           "ORDER BY question", record.uuid)
    assert answers == [("resolved", "1", "csat", "csat"), ("satisfaction", "4", "csat", "csat")]
    assert engine.stats.answered == 1 and engine.stats.outcomes == {"answered": 1}


def test_invalid_and_missing_digits_get_their_prompts_then_the_fallback(centre_factory, ivr_engine, ivr_db):
    centre = centre_factory(scenario("hotline", [(0.5, "fumbler", "+15550000002"), (0.6, "silent", "+15550000003")],
                                     {"fumbler": 'digits: ["9", "2"], think: 0.1, patience: 60',
                                      "silent": "digits: none, patience: 60"}))
    seen = Seen()
    engine, store = ivr_engine(centre, OPEN, seen)
    wait_until(lambda: centre.truth.count == 2, timeout=60, what="both calls to end")
    truth = by_number(centre)
    fumbler, silent = truth["+15550000002"], truth["+15550000003"]
    heard = [h.detail for h in fumbler.heard]
    assert "ivr/invalid_option.wav" in heard, "an invalid key is answered with the invalid prompt"
    assert seen.path["+15550000002"][:6] == ["main.welcome", "main.hours", "main.who_is_calling", "main.main_menu",
                                             "main.support", "main.to_survey"]
    assert fumbler.agent is not None
    silent_heard = [h.detail for h in silent.heard]
    assert silent_heard.count("ivr/no_input.wav") == 3, "three tries, each timeout told so"
    assert "main.support" in seen.path["+15550000003"], "after the tries the menu falls back to support"
    store.flush()
    assert rows(ivr_db, "SELECT call_uuid, question, answer FROM survey_answer WHERE call_uuid IN (%s, %s)",
                fumbler.uuid, silent.uuid) == [], (fumbler.uuid, fumbler.pressed, silent.uuid)
    for record in (fumbler, silent):
        assert record.hangup_cause == "NORMAL_CLEARING"


# Where each scripted caller hangs up, on the way through the hotline and the survey while open.
OPEN_PATH = ["main.welcome", "main.hours", "main.who_is_calling", "main.main_menu", "main.sales_priority",
             "main.sales", "main.to_survey", "csat.intro", "csat.questions", "csat.thanks"]
CLOSED_PATH = ["main.hours", "main.after_hours", "main.voicemail"]


@pytest.mark.parametrize("now, nodes", [(OPEN, OPEN_PATH), (CLOSED, CLOSED_PATH)], ids=["open", "closed"])
def test_a_hangup_at_any_node_ends_the_flow_cleanly_and_the_cdr_says_where(centre_factory, ivr_engine, now, nodes):
    numbers = {f"+1555000{i:04d}": node for i, node in enumerate(nodes)}
    calls = [(0.5 + 0.1 * i, "caller", number) for i, number in enumerate(numbers)]
    centre = centre_factory(scenario("hotline", calls, {"caller": 'digits: ["1", "4", "1"], think: 0.1, '
                                                                  'patience: 60'}))
    seen = Seen(numbers, centre)
    engine, _ = ivr_engine(centre, now, seen)
    wait_until(lambda: centre.truth.count == len(numbers), timeout=60, what="every call to end")
    wait_until(lambda: engine.stats.finished_calls == len(numbers), what="the engine to close every call")
    truth = by_number(centre)
    for number, node in numbers.items():
        flow, name = node.split(".")
        assert truth[number].hung_up_by == "caller", (node, truth[number])
        assert seen.path[number][-1] == node, (node, seen.path[number])
        assert seen.calls[number].labels["ivr_node"] == name
        assert (seen.final(number, "callrouter_flow"), seen.final(number, "callrouter_ivr_node")) == (flow, name)
    assert "error" not in engine.stats.outcomes, engine.stats.outcomes
    assert not engine.registry.calls


def test_after_hours_caller_leaves_a_voicemail_with_its_metadata(centre_factory, ivr_engine, ivr_db):
    centre = centre_factory(scenario("hotline", [(0.5, "talker", "+15550000031")],
                                     {"talker": "digits: none, patience: 3"}))
    engine, store = ivr_engine(centre, CLOSED, Seen())
    wait_until(lambda: centre.truth.count == 1, timeout=20, what="the call to end")
    wait_until(lambda: engine.stats.finished_calls == 1, what="the engine to close the call")
    record = centre.truth.finished[0]
    kinds = [(h.kind, h.detail.rsplit("/", 1)[-1]) for h in record.heard]
    assert ("playback", "closed.wav") in kinds and kinds[-1][0] == "record"
    store.flush()
    saved = rows(ivr_db, "SELECT mailbox, path, seconds, caller_id FROM ivr_recording WHERE call_uuid = %s",
                 record.uuid)
    assert len(saved) == 1 and saved[0][0] == "hotline" and saved[0][3] == "+15550000031"
    assert saved[0][1] == record.heard[-1].detail, "the row names the file FreeSWITCH recorded"
    assert saved[0][2] > 0
    assert engine.stats.outcomes == {"message_left": 1}


def test_promo_line_reads_the_offer_and_takes_a_callback_request(centre_factory, ivr_engine, ivr_db):
    centre = centre_factory(scenario("promo", [(0.5, "interested", "+79161234567")],
                                     {"interested": 'digits: ["3", "1"], think: 0.1, patience: 60'}))
    seen = Seen()
    engine, _ = ivr_engine(centre, OPEN, seen)
    wait_until(lambda: centre.truth.count == 1, timeout=30, what="the call to end")
    record = centre.truth.finished[0]
    assert ("say", "1990") in [(h.kind, h.detail.split()[-1]) for h in record.heard], "the price was read out"
    assert seen.path["+79161234567"] == ["promo.promo_hours", "promo.offer", "promo.choice", "promo.callback",
                                         "promo.goodbye"]
    wait_until(lambda: engine.stats.finished_calls == 1, what="the engine to close the call")
    requests = rows(ivr_db, "SELECT queue, number, flow, status FROM callback_request WHERE call_uuid = %s",
                    record.uuid)
    assert requests == [("sales", "+79161234567", "promo", "pending")]
    assert engine.stats.outcomes == {"callback_requested": 1}
