"""The simulated switch's call behaviour through its Python API (the population's view):
hangup causes and dispositions, park_timeout, bridge outcomes, transfers, uuid_bridge, and a
whole call on the VirtualClock."""
from __future__ import annotations

import gevent
import pytest

from engine.simulator.clock import VirtualClock
from engine.simulator.switch import Switch
from tests.simulator.conftest import ScriptedEndpoint, wait_until


class Recorder:
    def __init__(self, switch: Switch) -> None:
        self.events = []
        switch.subscribe(self.events.append)

    def of(self, uuid: str, *names: str) -> list:
        return [e for e in self.events if e.unique_id == uuid and (not names or e.name in names)]

    def complete(self, uuid: str):
        found = self.of(uuid, "CHANNEL_HANGUP_COMPLETE")
        return found[0] if found else None


def _parked(switch: Switch, endpoint=None, variables=None):
    channel = switch.inbound_call(endpoint or ScriptedEndpoint(), "5551234", "Bob", "7000", variables)
    wait_until(lambda: channel.parked)
    return channel


def test_dialplan_sets_variables_then_parks(switch):
    rec = Recorder(switch)
    switch.park_variables = {"callrouter": "1"}
    channel = _parked(switch, variables={"queue": "sales"})
    executes = [(e.get("Application"), e.get("Application-Data")) for e in rec.of(channel.uuid, "CHANNEL_EXECUTE")]
    assert executes == [("set", "callrouter=1"), ("set", "queue=sales"), ("park", None)]
    park = rec.of(channel.uuid, "CHANNEL_PARK")[0]
    assert park.get("variable_callrouter") == "1" and park.get("variable_queue") == "sales"
    assert park.get("Caller-Caller-ID-Name") == "Bob" and park.get("Call-Direction") == "inbound"


def test_caller_cancel_before_answer(switch):
    rec = Recorder(switch)
    caller = ScriptedEndpoint()
    channel = _parked(switch, caller)
    channel.hangup("NORMAL_CLEARING")
    wait_until(lambda: rec.complete(channel.uuid) is not None)
    done = rec.complete(channel.uuid)
    assert done.get("Hangup-Cause") == "ORIGINATOR_CANCEL"
    assert done.get("variable_sip_hangup_disposition") == "recv_cancel"
    assert done.get("variable_billsec") == "0"
    wait_until(lambda: caller.seen("hangup"))
    assert caller.seen("hangup") == [("hangup", channel.uuid, "ORIGINATOR_CANCEL", True)]


@pytest.mark.timeout(10)
def test_park_timeout_hangs_up_and_is_read_once(switch):
    rec = Recorder(switch)
    switch.park_variables = {"park_timeout": "1"}
    channel = _parked(switch)
    assert "park_timeout" not in channel.variables      # FreeSWITCH clears it when it parks
    wait_until(lambda: rec.complete(channel.uuid) is not None)
    assert rec.complete(channel.uuid).get("Hangup-Cause") == "NORMAL_CLEARING"


@pytest.mark.parametrize("spec, seconds, cause", [
    ("30", 30, "NORMAL_CLEARING"),                 # no cause: switch_ivr_park's default
    ("30:USER_BUSY", 30, "USER_BUSY"),
    ("30:user_busy", 30, "USER_BUSY"),             # str2cause compares names without case
    ("30:17", 30, "USER_BUSY"),                    # ... or takes a Q.850 code
    ("30:NOT_A_CAUSE", 30, "NORMAL_CLEARING"),
    ("30:", 30, "NORMAL_CLEARING"),
    ("2.9:CALL_REJECTED", 2, "CALL_REJECTED"),     # atoi: whole seconds
    ("0:USER_BUSY", 0, "USER_BUSY"),               # 0 is a deadline: now
    ("soon", 0, "NORMAL_CLEARING"),                # atoi("soon") == 0
    ("-1:USER_BUSY", None, None),                  # negative: parked with no deadline
])
def test_park_timeout_is_read_as_switch_ivr_park_reads_it(spec, seconds, cause):
    clock = VirtualClock(start=1_800_000_000.0)
    switch = Switch(clock=clock, seed=1)
    switch.park_variables = {"park_timeout": spec}
    rec = Recorder(switch)
    channel = switch.inbound_call(ScriptedEndpoint(), "5551234", "Bob", "7000")
    clock.run_until(clock.now() + 3600)
    gevent.sleep(0.01)
    [park] = rec.of(channel.uuid, "CHANNEL_PARK")
    hangups = rec.of(channel.uuid, "CHANNEL_HANGUP")
    if seconds is None:
        assert channel.is_up and channel.parked and not hangups
    else:
        [hangup] = hangups
        parked_us = int(hangup.get("Event-Date-Timestamp")) - int(park.get("Event-Date-Timestamp"))
        assert (parked_us, hangup.get("Hangup-Cause")) == (seconds * 1_000_000, cause)
    switch.shutdown()


def test_uuid_kill_cause_and_send_bye(switch):
    rec = Recorder(switch)
    channel = _parked(switch)
    switch.api(f"uuid_answer {channel.uuid}")
    assert switch.api(f"uuid_kill {channel.uuid} CALL_REJECTED") == "+OK\n"
    wait_until(lambda: rec.complete(channel.uuid) is not None)
    done = rec.complete(channel.uuid)
    assert done.get("Hangup-Cause") == "CALL_REJECTED"
    assert done.get("variable_sip_hangup_disposition") == "send_bye"
    assert done.get("variable_hangup_cause_q850") == "21"


def test_unknown_application_hangs_up_destination_out_of_order(switch):
    rec = Recorder(switch)
    channel = _parked(switch)
    assert switch.execute(channel.uuid, "no_such_app", "x")
    wait_until(lambda: rec.complete(channel.uuid) is not None)
    assert not [e for e in rec.of(channel.uuid, "CHANNEL_EXECUTE") if e.get("Application") == "no_such_app"]
    assert rec.complete(channel.uuid).get("Hangup-Cause") == "DESTINATION_OUT_OF_ORDER"


@pytest.mark.parametrize("agent, cause, disposition", [
    (ScriptedEndpoint(on_offer="refuse", refuse_cause="USER_BUSY"), "USER_BUSY", "recv_refuse"),
    (ScriptedEndpoint(on_offer="ignore"), "NO_ANSWER", "send_cancel"),
    (None, "USER_NOT_REGISTERED", None),
])
@pytest.mark.timeout(10)
def test_failed_bridge_returns_to_park_with_the_cause(switch, agent, cause, disposition):
    rec = Recorder(switch)
    switch.register_user("1001", agent or ScriptedEndpoint())
    if agent is None:
        switch.unregister_user("1001")
    channel = _parked(switch)
    switch.api(f"uuid_answer {channel.uuid}")
    switch.execute(channel.uuid, "set", "call_timeout=0.3")
    switch.execute(channel.uuid, "set", "continue_on_fail=true")  # as freeswitch/'s dialplan sets it
    switch.execute(channel.uuid, "bridge", "{origination_uuid=bbbbbbbb-0000-4000-8000-000000000001}user/1001")
    wait_until(lambda: any(e.get("Application") == "bridge" for e in rec.of(channel.uuid, "CHANNEL_EXECUTE_COMPLETE")))
    done = [e for e in rec.of(channel.uuid, "CHANNEL_EXECUTE_COMPLETE") if e.get("Application") == "bridge"][0]
    assert done.get("variable_originate_disposition") == cause
    assert channel.is_up and channel.parked and channel.callstate == "ACTIVE"
    if disposition:
        wait_until(lambda: rec.complete("bbbbbbbb-0000-4000-8000-000000000001") is not None)
        leg = rec.complete("bbbbbbbb-0000-4000-8000-000000000001")
        assert leg.get("Hangup-Cause") == cause
        assert leg.get("variable_sip_hangup_disposition") == disposition


@pytest.mark.timeout(10)
def test_failed_bridge_without_continue_on_fail_hangs_up_with_the_cause(switch):
    """switch_channel_handle_cause: unless continue_on_fail says otherwise, only NO_ANSWER,
    NO_USER_RESPONSE and ORIGINATOR_CANCEL leave the caller up."""
    rec = Recorder(switch)
    switch.register_user("1001", ScriptedEndpoint(on_offer="refuse", refuse_cause="USER_BUSY"))
    channel = _parked(switch)
    switch.api(f"uuid_answer {channel.uuid}")
    switch.execute(channel.uuid, "bridge", "user/1001")
    wait_until(lambda: rec.complete(channel.uuid) is not None)
    assert rec.complete(channel.uuid).get("Hangup-Cause") == "USER_BUSY"


def test_agent_hangup_ends_bridge_and_caller_stays_parked(switch):
    rec = Recorder(switch)
    agent = ScriptedEndpoint("agent:1001")
    caller = ScriptedEndpoint("caller")
    switch.register_user("1001", agent)
    channel = _parked(switch, caller)
    switch.api(f"uuid_answer {channel.uuid}")
    switch.execute(channel.uuid, "bridge", "user/1001")
    wait_until(lambda: channel.bridged_to is not None)
    b = channel.bridged_to
    wait_until(lambda: caller.seen("bridge") and agent.seen("bridge"))
    assert caller.seen("bridge") == [("bridge", channel.uuid, "agent:1001")]
    b.hangup("NORMAL_CLEARING")
    wait_until(lambda: caller.seen("unbridge"))
    assert channel.is_up and channel.parked
    unbridge = rec.of(channel.uuid, "CHANNEL_UNBRIDGE")[0]
    assert unbridge.get("Bridge-B-Unique-ID") == b.uuid
    assert rec.complete(b.uuid).get("variable_sip_hangup_disposition") == "recv_bye"


def test_hangup_after_bridge_takes_the_caller_down(switch):
    rec = Recorder(switch)
    switch.register_user("1001", ScriptedEndpoint())
    channel = _parked(switch, variables={"hangup_after_bridge": "true"})
    switch.execute(channel.uuid, "bridge", "user/1001")
    wait_until(lambda: channel.bridged_to is not None)
    channel.bridged_to.hangup()
    wait_until(lambda: rec.complete(channel.uuid) is not None)
    assert rec.complete(channel.uuid).get("variable_sip_hangup_disposition") == "send_bye"


def test_uuid_bridge_then_survivor_hung_up(switch):
    rec = Recorder(switch)
    switch.register_user("1001", ScriptedEndpoint())
    caller = _parked(switch)
    switch.api(f"uuid_answer {caller.uuid}")
    agent_uuid = switch.api("originate user/1001 &park()").split()[1]
    assert switch.api(f"uuid_bridge {agent_uuid} {caller.uuid}") == f"+OK {caller.uuid}\n"
    wait_until(lambda: rec.of(agent_uuid, "CHANNEL_BRIDGE"))
    execute = [e for e in rec.of(agent_uuid, "CHANNEL_EXECUTE") if e.get("Application") == "uuid_bridge"][0]
    assert execute.get("Application-Data") == caller.uuid
    assert execute.get("Event-Calling-Function") == "uuid_bridge_on_soft_execute"
    caller.hangup()
    wait_until(lambda: rec.complete(agent_uuid) is not None)
    assert [e.name for e in rec.of(caller.uuid, "CHANNEL_UNPARK")] == ["CHANNEL_UNPARK"]


@pytest.mark.timeout(10)
def test_uuid_bridge_sent_before_the_originated_leg_parks_still_bridges(switch):
    # originate &park() answers +OK before the new leg has started its park: a uuid_bridge
    # straight after it is a pending state change the park must honour, not lose.
    rec = Recorder(switch)
    switch.register_user("1001", ScriptedEndpoint())
    caller = _parked(switch)
    switch.api(f"uuid_answer {caller.uuid}")
    agent_uuid = switch.api("originate {ignore_early_media=true}user/1001 &park()").split()[1]
    assert not rec.of(agent_uuid, "CHANNEL_PARK"), "the race this test is about: the leg has not parked yet"
    assert switch.api(f"uuid_bridge {caller.uuid} {agent_uuid}") == f"+OK {agent_uuid}\n"
    wait_until(lambda: rec.of(caller.uuid, "CHANNEL_BRIDGE"))
    switch.clock.sleep(0.3)
    assert not rec.of(caller.uuid, "CHANNEL_UNBRIDGE") and switch.channels[agent_uuid].bridged_to is caller


@pytest.mark.timeout(10)
def test_transfer_reruns_the_dialplan_and_rereads_park_timeout(switch):
    rec = Recorder(switch)
    switch.park_variables = {"park_timeout": "30"}
    channel = _parked(switch)
    assert switch.api(f"uuid_transfer {channel.uuid} 9000 XML default") == "+OK\n"
    wait_until(lambda: len(rec.of(channel.uuid, "CHANNEL_PARK")) == 2)
    parks = rec.of(channel.uuid, "CHANNEL_PARK")
    assert parks[1].get("Caller-Destination-Number") == "9000"
    assert parks[1].get("Caller-RDNIS") == "7000"
    assert [e.name for e in rec.of(channel.uuid, "CHANNEL_UNPARK")] == ["CHANNEL_UNPARK"]


def test_gateway_routes_and_refuses(switch):
    dest = ScriptedEndpoint("dest:+442071234567")
    switch.add_gateway("pstn", lambda number: dest if number.startswith("+44") else None)
    assert switch.api("originate sofia/gateway/pstn/+15550000 &park()") == "-ERR NO_ROUTE_DESTINATION\n"
    ok = switch.api("originate {ignore_early_media=true}sofia/gateway/pstn/+442071234567 &park()")
    uuid = ok.split()[1]
    assert switch.channels[uuid].name == "sofia/gateway/pstn/+442071234567"
    assert switch.channels[uuid].answered


def test_show_calls_pairs_the_bridged_legs(switch):
    switch.register_user("1001", ScriptedEndpoint())
    channel = _parked(switch)
    switch.execute(channel.uuid, "bridge", "user/1001")
    wait_until(lambda: channel.bridged_to is not None)
    import json
    calls = json.loads(switch.api("show calls as json"))
    assert calls["row_count"] == 1
    assert calls["rows"][0]["uuid"] == channel.uuid
    assert calls["rows"][0]["b_uuid"] == channel.bridged_to.uuid
    assert json.loads(switch.api("show channels as json"))["row_count"] == 2


def test_a_call_on_the_virtual_clock():
    """The same code on a VirtualClock: a 30 s park_timeout expires without real waiting."""
    clock = VirtualClock(start=1_800_000_000.0)
    switch = Switch(clock=clock, seed=1)
    switch.park_variables = {"park_timeout": "30"}
    rec = Recorder(switch)
    caller = ScriptedEndpoint()
    channel = switch.inbound_call(caller, "5551234", "Bob", "7000")
    clock.run_until(clock.now() + 10)
    assert channel.parked and channel.is_up
    clock.run_until(clock.now() + 25)
    gevent.sleep(0.01)
    done = rec.complete(channel.uuid)
    assert done is not None and done.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert done.get("variable_duration") == "30"
    switch.shutdown()


def test_api_arguments_arrive_as_freeswitch_parses_them(switch):
    """uuid_setvar / uuid_setvar_multi split and unescape their arguments as mod_commands does
    (switch_separate_string), so what engine.esl.commands escapes arrives as the value it was."""
    from engine.esl import commands

    channel = _parked(switch)
    value = "O'Brien, \\ \"Ltd\" {x} a=b;c"
    assert switch.api(commands.setvar(channel.uuid, "who", value)) == "+OK\n"
    assert channel.variables["who"] == value
    switch.api(f"uuid_setvar_multi {channel.uuid} a=one\\stwo;b=three")
    assert (channel.variables["a"], channel.variables["b"]) == ("one two", "three")


def test_events_keep_the_variables_as_they_were_when_fired(switch):
    """Events are built when first read, after the channel has moved on: each must still show
    the variables of its own moment (events fired between two changes share one copy)."""
    rec = Recorder(switch)
    channel = _parked(switch)
    switch.api(f"uuid_setvar {channel.uuid} note first")
    switch.api(f"uuid_hold {channel.uuid}")
    switch.api(f"uuid_setvar_multi {channel.uuid} note=second;extra=1")
    switch.api(f"uuid_hold off {channel.uuid}")
    switch.api(f"uuid_setvar {channel.uuid} note")
    events = rec.of(channel.uuid, "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_CALLSTATE")
    held = events[[e.name for e in events].index("CHANNEL_HOLD"):]
    seen = [(e.name, e.get("variable_note"), e.get("variable_extra")) for e in held]
    assert seen == [("CHANNEL_HOLD", "first", None), ("CHANNEL_CALLSTATE", "first", None),
                    ("CHANNEL_UNHOLD", "second", "1"), ("CHANNEL_CALLSTATE", "second", "1")]
