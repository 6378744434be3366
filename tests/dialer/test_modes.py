"""Broadcast, survey, preview and click-to-call run live: a real Engine on the simulated switch over
TCP and a real PostgreSQL. Each campaign runs to completion over answered, busy, no-answer, machine
and invalid numbers; every attempt row is checked against the DNC list, the calling window and the
retry rules; the called parties press their keys through the switch (uuid_recv_dtmf)."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import gevent
import psycopg
import pytest

from engine.dialer import store
from engine.dialer.model import Campaign, Mode, RetryRule
from tests.dialer.live import (
    TOKEN, WINDOW, add_campaign, api, channel_of, check_compliance, outbound_truth, press_when_prompted, rows,
    start_engine, wait_closed, zone_where,
)
from tests.engine.conftest import Centre
from tests.waiting import wait_until

CALLROUTER = str(Path(sys.executable).with_name("callrouter"))
# People are patient here: a broadcast's message and its key wait take a while.
SCENARIO = """
seed: 5
nodes: [{name: sim1, port: 0}]
agents:
  - ids: "1001-1002"
    ring: 0.2
    talk: 1.0
    hangup_share: 1.0
outbound:
  gateway: carrier
  destinations:
    - {match: '^\\+1555100', answer: 1, answer_delay: 0.3, greeting: 0.4, patience: 30, talk: 1}
    - {match: '^\\+1555200', busy: 1}
    - {match: '^\\+1555300', no_answer: 1}
    - {match: '^\\+1555400', machine: 1, answer_delay: 0.3, machine_greeting: 0.5}
    - {match: '^\\+1555500', invalid: 1}
    - {match: '^\\+1212', answer: 1, answer_delay: 0.3, greeting: 0.4, patience: 30, talk: 1}
"""
BROADCAST = "tone_stream://%(1500,0,700)"
OPT_OUT_DONE = "tone_stream://%(300,0,800)"
MACHINE_MESSAGE = "tone_stream://%(500,0,900)"
Q_RECOMMEND, Q_AGAIN = "tone_stream://%(800,0,500)", "tone_stream://%(800,0,600)"
SURVEY_FLOW = f"""
flow: outbound_nps
start: questions
nodes:
  questions:
    type: survey
    survey: nps
    questions:
      - {{id: recommend, prompt: "{Q_RECOMMEND}", answers: "0123456789"}}
      - {{id: contact_again, prompt: "{Q_AGAIN}", answers: "12"}}
    invalid_prompt: silence_stream://100
    tries: 1
    timeout: 3
    next: bye
  bye:
    type: hangup
"""
# One number per outcome beside the people; no-answer and machine are not retried (a second 15 s
# ring would only lengthen the test), busy once.
OTHERS = ("+15552000001", "+15553000001", "+15554000001", "+15555000001")
RULES = (RetryRule("busy", 1.0, 1), RetryRule("no-answer", 1.0, 0), RetryRule("machine", 1.0, 0))


@pytest.fixture
def centre(tmp_path):
    centre = Centre(SCENARIO, tmp_path)
    centre.start()
    yield centre
    centre.stop()


def by_phone(attempts: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for a in sorted(attempts, key=lambda a: a.started_at):
        out.setdefault(a.phone, []).append(a)
    return out


def check_others(attempts: dict[str, list], centre: Centre) -> None:
    """The busy, no-answer, machine and invalid numbers, as every mode closes them."""
    assert [a.disposition for a in attempts["+15552000001"]] == ["busy", "busy"]
    assert [a.disposition for a in attempts["+15553000001"]] == ["no-answer"]
    assert [a.disposition for a in attempts["+15555000001"]] == ["invalid"]
    [machine] = attempts["+15554000001"]
    assert (machine.disposition, machine.amd_result, machine.message_played) == ("machine", "MACHINE", MACHINE_MESSAGE)
    # Left after AMD heard the greeting end: the machine recorded it.
    [record] = outbound_truth(centre)["+15554000001"]
    assert MACHINE_MESSAGE in [h.detail for h in record.heard]


@pytest.mark.timeout(90)
def test_broadcast_plays_its_message_connects_on_1_and_opts_out_on_9(database, tmp_path, centre):
    zone = zone_where(datetime.now(timezone.utc), True)
    listens, wants_agent, opts_out = "+15551000001", "+15551000002", "+15551000003"
    phones = {p: zone for p in (listens, wants_agent, opts_out, *OTHERS)}
    campaign = Campaign("live", mode=Mode.BROADCAST, gateway="carrier", queue="sales", window=WINDOW,
                        message=BROADCAST, agent_key="1", opt_out_key="9", opt_out_message=OPT_OUT_DONE,
                        machine_message=MACHINE_MESSAGE, ring_timeout=15, retry_rules=RULES)
    add_campaign(database, campaign, phones)
    engine = start_engine(centre, tmp_path, database)
    try:
        presses = [gevent.spawn(press_when_prompted, centre, wants_agent, [(BROADCAST, "1")]),
                   gevent.spawn(press_when_prompted, centre, opts_out, [(BROADCAST, "9")])]
        gevent.joinall(presses, raise_error=True)
        wait_closed(database)
        wait_until(lambda: store_state(database) == "done", what="the campaign to end itself")
    finally:
        engine.stop(grace=0)
    attempts, contacts = rows(database)
    check_compliance(campaign, attempts, contacts, [])
    mine = by_phone(attempts)
    check_others(mine, centre)
    [heard], [connected], [opted] = mine[listens], mine[wants_agent], mine[opts_out]
    assert (heard.disposition, heard.message_played, heard.agent) == ("answered", BROADCAST, "")
    assert connected.disposition == "answered" and connected.agent in ("1001", "1002")
    assert opted.disposition == "DNC" and not opted.abandoned
    assert {c.phone: c.state.value for c in contacts.values()}[opts_out] == "dnc"
    with psycopg.connect(database) as conn:
        assert store.on_dnc(conn, "another", opts_out)   # the internal list: every campaign
        source = conn.execute("SELECT source FROM dnc_number WHERE phone = %s", (opts_out,)).fetchone()[0]
    assert source == f"opt-out:{opted.uuid}"
    truth = outbound_truth(centre)
    for phone in (listens, wants_agent, opts_out):
        assert BROADCAST in [h.detail for h in truth[phone][0].heard], phone
    assert OPT_OUT_DONE in [h.detail for h in truth[opts_out][0].heard]
    assert truth[wants_agent][0].agent in ("1001", "1002") and truth[listens][0].agent is None


def store_state(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return store.load_campaign(conn, "live").state.value


@pytest.mark.timeout(90)
def test_survey_runs_its_flow_and_stores_the_answers_per_attempt(database, tmp_path, centre):
    zone = zone_where(datetime.now(timezone.utc), True)
    full, partial, opts_out = "+15551000001", "+15551000002", "+15551000003"
    phones = {p: zone for p in (full, partial, opts_out, *OTHERS)}
    campaign = Campaign("live", mode=Mode.SURVEY, gateway="carrier", flow="outbound_nps", window=WINDOW,
                        message=BROADCAST, opt_out_key="9", opt_out_message=OPT_OUT_DONE,
                        machine_message=MACHINE_MESSAGE, ring_timeout=15, retry_rules=RULES)
    add_campaign(database, campaign, phones)
    engine = start_engine(centre, tmp_path, database, flows={"nps.yaml": SURVEY_FLOW})
    try:
        # The introduction offers the opt-out; 9 there is not an answer to the survey's 0-9 question.
        gevent.joinall([gevent.spawn(press_when_prompted, centre, full, [(Q_RECOMMEND, "7"), (Q_AGAIN, "1")]),
                        gevent.spawn(press_when_prompted, centre, partial, [(Q_RECOMMEND, "3")]),
                        gevent.spawn(press_when_prompted, centre, opts_out, [(BROADCAST, "9")])], raise_error=True)
        wait_closed(database)
        engine.ivr_store.flush()
    finally:
        engine.stop(grace=0)
    attempts, contacts = rows(database)
    check_compliance(campaign, attempts, contacts, [])
    mine = by_phone(attempts)
    check_others(mine, centre)
    with psycopg.connect(database) as conn:
        answers = conn.execute("SELECT call_uuid, question, answer FROM survey_answer WHERE survey = 'nps'").fetchall()
    assert sorted(answers) == sorted([(mine[full][0].uuid, "recommend", "7"), (mine[full][0].uuid, "contact_again", "1"),
                                      (mine[partial][0].uuid, "recommend", "3")])
    assert all(mine[p][0].disposition == "answered" and mine[p][0].connected_at for p in (full, partial))
    [opted] = mine[opts_out]
    assert (opted.disposition, opted.message_played) == ("DNC", BROADCAST)
    assert {c.phone: c.state.value for c in contacts.values()}[opts_out] == "dnc"
    assert OPT_OUT_DONE in [h.detail for h in outbound_truth(centre)[opts_out][0].heard]


@pytest.mark.timeout(90)
def test_preview_rings_the_agent_first_then_the_contact_and_click_to_call_from_the_cli(database, tmp_path, centre):
    zone = zone_where(datetime.now(timezone.utc), True)
    phones = {"+15551000001": zone, "+15552000001": zone}
    campaign = Campaign("live", mode=Mode.PREVIEW, gateway="carrier", caller_id="+15550000000", window=WINDOW,
                        ring_timeout=15, retry_rules=(RetryRule("busy", 3600.0, 1),))
    add_campaign(database, campaign, phones, dnc=["+12125550100"])
    engine = start_engine(centre, tmp_path, database)
    agent_answered_first: list[bool] = []

    def watch(phone: str, agent_leg: str) -> None:
        wait_until(lambda: channel_of(centre, phone) is not None, timeout=20)
        agent = centre.switch.channels.get(agent_leg)
        agent_answered_first.append(agent is not None and agent.answer_state == "answered")

    try:
        wait_until(lambda: engine.dialer.runners.get("live") and engine.dialer.runners["live"].dialling)
        offer = api(engine, "/campaigns/preview?campaign=live&agent=1001")
        assert offer["contact"]["phone"] == "+15551000001"   # fresh contacts in import order
        assert api(engine, "/campaigns/preview?campaign=live&agent=1001")["contact"] == offer["contact"]
        assert api(engine, "/campaigns/preview?campaign=live&agent=1002")["contact"]["phone"] == "+15552000001"
        # Nothing is dialled until the agent accepts.
        assert rows(database)[0] == [] and not outbound_truth(centre)
        ringing = api(engine, "/campaigns/preview?campaign=live&agent=1001&action=accept", "POST")
        watcher = gevent.spawn(watch, "+15551000001", ringing["agent_leg"])
        busy = api(engine, "/campaigns/preview?campaign=live&agent=1002&action=accept", "POST")
        watcher.join()
        wait_until(lambda: [a.ended_at is not None for a in rows(database)[0]] == [True, True], timeout=30)
        assert api(engine, "/campaigns/preview?campaign=live&agent=1001")["contact"] is None  # busy waits an hour
        # Click-to-call from the shell: a number on the DNC list is refused, another is called.
        config = tmp_path / "cli.yaml"
        config.write_text(f"data_dir: {tmp_path / 'cli-data'}\ndatabase:\n  dsn: '{database}'\n"
                          f"api:\n  listen: 127.0.0.1:{engine.api.port}\n  token: {TOKEN}\n")
        refused = subprocess.run([CALLROUTER, "campaign", "call", "--agent", "1002", "(212) 555-0100", "--campaign",
                                  "live", "--config", str(config)], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and "do-not-call" in refused.stderr
        done = subprocess.run([CALLROUTER, "campaign", "call", "--agent", "1002", "+12125550199", "--gateway",
                               "carrier", "--config", str(config)], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        agent_leg = done.stdout.split("(leg ")[1].split(")")[0]
        watch("+12125550199", agent_leg)
        wait_until(lambda: outbound_truth(centre).get("+12125550199"), timeout=30)
    finally:
        engine.stop(grace=0)
    attempts, contacts = rows(database)
    check_compliance(campaign, attempts, contacts, ["+12125550100"])
    mine = by_phone(attempts)
    [talked], [refused_busy] = mine["+15551000001"], mine["+15552000001"]
    assert (talked.uuid, talked.disposition, talked.agent) == (ringing["agent_leg"], "answered", "1001")
    assert (refused_busy.uuid, refused_busy.disposition, refused_busy.agent) == (busy["agent_leg"], "busy", "1002")
    assert agent_answered_first == [True, True]
    truth = outbound_truth(centre)
    assert truth["+15551000001"][0].agent == "1001" and truth["+12125550199"][0].agent == "1002"
    assert "+12125550100" not in truth and "+12125550199" not in mine   # click-to-call is no attempt


@pytest.mark.timeout(60)
def test_a_contacts_fields_reach_the_agents_phone_as_call_data_and_nothing_raw_reaches_the_switch(
        database, tmp_path, centre):
    zone = zone_where(datetime.now(timezone.utc), True)
    hostile = "{4711}' ^^:x|y&z;\r\nuuid_kill all ${system(id)}"
    fields = {"Name": "Carol; O'Hara, \"VIP\"", "Account No.": hostile, "empty": ""}
    campaign = Campaign("live", mode=Mode.PROGRESSIVE, gateway="carrier", queue="sales", caller_id="+15550000000",
                        window=WINDOW, ring_timeout=15)
    add_campaign(database, campaign, {"+15551000001": zone}, fields={"+15551000001": fields})
    engine = start_engine(centre, tmp_path, database)
    try:
        def agent_leg():
            return next((c for c in list(centre.switch.channels.values())
                         if c.variables.get("callrouter_agent") and c.is_up), None)
        wait_until(lambda: agent_leg() is not None, timeout=30, what="the agent's leg")
        shown = {k: v for k, v in agent_leg().variables.items() if k.startswith("callrouter_data_")}
        wait_closed(database)
    finally:
        engine.stop(grace=0)
    [attempt] = rows(database)[0]
    assert attempt.disposition == "answered" and attempt.agent in ("1001", "1002")
    # Column names as a dial string can carry them; values as written but for what could act on the switch.
    assert set(shown) == {"callrouter_data_name", "callrouter_data_account_no"}
    assert shown["callrouter_data_name"] == fields["Name"]
    account = shown["callrouter_data_account_no"]
    assert "\r" not in account and "\n" not in account and "${" not in account and "{" not in account
    assert "^^:x|y&z;" in account and "uuid_kill all" in account
