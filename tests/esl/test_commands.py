"""engine.esl.commands: what we build comes back out of FreeSWITCH's parsers (modelled in
engine/simulator/fsparse.py) as exactly the values we put in, and what cannot be made safe is refused."""
from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine.errors import UnsafeValue
from engine.esl import commands
from engine.simulator import fsparse

UUID = "f63cb31d-7674-4f7d-b9d5-cbca733e9196"
OTHER = "1525ecd9-0c28-419a-b11b-290bf2a07239"

# Anything printable, with the characters that mean something to FreeSWITCH's parsers boosted.
_special = st.sampled_from(list(" ,'\"{}^=\\|:;[]<>&()%$@#!\t") + ["^^", "\\n", "\\s", "''", "{}"])
_text = st.lists(st.one_of(_special, st.characters(blacklist_categories=("Cs",),
                                                   blacklist_characters="\r\n\0")), max_size=25).map("".join)
safe_value = _text.filter(lambda v: not fsparse.has_variable(v) and ":_:" not in v and fsparse.find_end_paren("{" + v + "}", "{", "}") == len(v) + 1)
var_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)


@settings(max_examples=400)
@given(st.dictionaries(var_name, safe_value, max_size=5))
@example({"origination_caller_id_name": "O'Brien, Pat {VIP} C:\\new ^^;x"})
@example({"x": " leading and trailing "})
def test_originate_variables_reach_freeswitch_unchanged(variables):
    line = commands.originate("sofia/gateway/gw1/+442071234567", variables, app="park")
    name, dial, target = fsparse.api_args(line)
    assert name == "originate"
    parsed, endpoint = fsparse.dial_string(dial)
    assert parsed == variables
    assert endpoint == "sofia/gateway/gw1/+442071234567"
    assert target == "&park()"


@given(safe_value.filter(lambda v: v and ")" not in v))
def test_originate_application_argument_survives_the_api_split(arg):
    line = commands.originate("loopback/9999/default", {"origination_uuid": UUID}, app="playback", app_arg=arg)
    assert fsparse.api_args(line)[2] == f"&playback({arg})"


@given(safe_value)
def test_setvar_value_reaches_freeswitch_unchanged(value):
    line = commands.setvar(UUID, "caller_note", value)
    args = fsparse.api_args(line, limit=3)
    assert args[:3] == ["uuid_setvar", UUID, "caller_note"]
    assert (args[3] if len(args) > 3 else "") == value  # empty unsets, as in FreeSWITCH


@settings(max_examples=300)
@given(st.dictionaries(var_name, safe_value, min_size=1, max_size=6))
@example({"park_timeout": "3600:RECOVERY_ON_TIMER_EXPIRE", "note": "a;b=c 'd' \\s ;"})
def test_setvar_multi_values_reach_freeswitch_unchanged(values):
    line = commands.setvar_multi(UUID, values)
    name, _, rest = line.partition(" ")
    uuid, _, items = rest.partition(" ")  # mod_commands cuts the uuid at the first space, no cleanup
    assert (name, uuid) == ("uuid_setvar_multi", UUID)
    parsed = dict(item.partition("=")[::2] for item in fsparse.separate_string(items, ";", 64))
    assert parsed == values  # an empty value unsets, as in FreeSWITCH


@pytest.mark.parametrize("values", [{}, {f"v{i}": "x" for i in range(65)}, {"a;b": "x"}, {"a": "${uuid}"},
                                    {"a": "x\nb"}])
def test_setvar_multi_refuses_what_cannot_be_one_command(values):
    with pytest.raises(UnsafeValue):
        commands.setvar_multi(UUID, values)


@given(safe_value.filter(bool))
def test_broadcast_path_is_one_argument(path):
    assert fsparse.api_args(commands.broadcast(UUID, path, "both")) == ["uuid_broadcast", UUID, path, "both"]


@given(_text, st.sampled_from(["\r", "\n", "\0"]), _text)
def test_line_breakers_are_refused_everywhere(head, bad, tail):
    value = head + bad + tail
    builders = [
        lambda: commands.originate("user/1001", {"x": value}),
        lambda: commands.originate("user/1001" + value),
        lambda: commands.setvar(UUID, "x", value),
        lambda: commands.broadcast(UUID, value),
        lambda: commands.api("status" + value),
        lambda: commands.bgapi("status" + value, UUID),
        lambda: commands.sendmsg_execute(UUID, "playback", value, event_uuid=OTHER),
    ]
    for build in builders:
        with pytest.raises(UnsafeValue):
            build()


@pytest.mark.parametrize("value", ["${system(rm -rf /)}", "a${uuid_kill(x)}", "$${hold_music}", "a}b", "{a", "}{", "x:_:y",
                                   "$\\{x}", "a$\\\\{b}"])
def test_values_freeswitch_would_expand_or_cut_are_refused(value):
    with pytest.raises(UnsafeValue):
        commands.dial_string("user/1001", {"x": value})


@given(_text)
def test_a_display_text_never_holds_what_freeswitch_takes_for_a_variable(value):
    assert not fsparse.has_variable(commands.display_text(value, limit=1000))


def test_a_display_text_keeps_all_but_the_variable_reference():
    assert commands.display_text("Bob ${x} $\\{y} $5 {z}") == "Bob $ {x} $ \\{y} $5 {z}"


def test_balanced_braces_in_a_value_are_kept():
    parsed, rest = fsparse.dial_string(commands.dial_string("user/1001", {"json": '{"a": {"b": 1}}'}))
    assert parsed == {"json": '{"a": {"b": 1}}'}
    assert rest == "user/1001"


@pytest.mark.parametrize("check,value", [
    (commands.check_uuid, "f63cb31d-7674-4f7d-b9d5-cbca733e919"),
    (commands.check_uuid, UUID + "\n"),
    (commands.check_uuid, UUID + " x"),
    (commands.check_app, "play back"),
    (commands.check_app, "playback\nexecute-app-name: hangup"),
    (commands.check_var_name, "a=b"),
    (commands.check_var_name, "a,b"),
    (commands.check_var_name, ""),
    (commands.check_cause, "normal clearing"),
])
def test_identifiers_are_validated(check, value):
    with pytest.raises(UnsafeValue):
        check(value)


@pytest.mark.parametrize("endpoint", ["", "user/1001 &park()", "{x=1}user/1001", "user/10\t01"])
def test_endpoints_that_would_reshape_the_command_are_refused(endpoint):
    with pytest.raises(UnsafeValue):
        commands.dial_string(endpoint, {})


def test_sendmsg_execute_puts_the_argument_in_a_counted_body():
    frame = commands.sendmsg_execute(UUID, "playback", "/sounds/é x.wav\\", event_uuid=OTHER)
    head, body = frame.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.split("\n")[1:])
    assert head.split("\n")[0] == f"sendmsg {UUID}"
    assert headers["execute-app-name"] == "playback"
    assert headers["Event-UUID"] == OTHER
    assert headers["event-lock"] == "true"
    assert int(headers["content-length"]) == len(body.encode()) and body == "/sounds/é x.wav\\"


def test_sendmsg_without_argument_or_lock_is_headers_only():
    frame = commands.sendmsg_execute(UUID, "answer", "", event_uuid=OTHER, lock=False)
    assert frame.endswith("\n\n") and "event-lock" not in frame and "content-length" not in frame


def test_subscribe_by_name_with_custom_subclasses():
    line = commands.subscribe(["CHANNEL_PARK", "BACKGROUND_JOB", "CHANNEL_PARK"], ["callcenter::info"])
    assert line == "event plain CHANNEL_PARK BACKGROUND_JOB CUSTOM callcenter::info\n\n"
    with pytest.raises(UnsafeValue):
        commands.subscribe(["ALL"])
    with pytest.raises(UnsafeValue):
        commands.subscribe(["CHANNEL_PARK\nexit"])


@given(st.text(alphabet=" ,=;ab{}|x\t", max_size=40), st.sampled_from([" ", ",", "=", ";"]),
       st.integers(min_value=1, max_value=5))
def test_the_parsers_fast_path_splits_as_the_character_walk_does(line, delim, limit):
    """fsparse.separate_string skips the per-character walk for lines with nothing escaped or
    quoted: it must give what FreeSWITCH's walk gives."""
    walked = fsparse._split_blank(line, limit) if delim == " " else fsparse._split_char(line, delim, limit)
    assert fsparse.separate_string(line, delim, limit) == walked
