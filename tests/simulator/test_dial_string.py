"""Dial strings reach a simulated originated leg as FreeSWITCH 1.10.12 sets them: the expected
values below were worked out by hand from switch_ivr_originate.c, switch_event.c
(switch_event_create_brackets) and switch_utils.c (switch_separate_string's cleanup), and are read
back with uuid_getvar, over the Event Socket or the api entry point the server calls."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.errors import UnsafeValue
from engine.esl import commands
from tests.simulator.conftest import ScriptedEndpoint

A = "6d5c6041-ea7e-406d-b581-353aca346d17"
B = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


@pytest.fixture
def phone(switch):
    switch.register_user("1001", ScriptedEndpoint())
    return "user/1001"


def _getvar(switch, uuid: str, name: str) -> str:
    return switch.api(f"uuid_getvar {uuid} {name}")


def _originate(switch, dial: str) -> str:
    """`dial` as originate's parser receives it (escaped for the API argument split before it)."""
    reply = switch.api(f"originate {commands.api_arg(dial)} &park()")
    assert reply.startswith("+OK "), reply
    return reply.split()[1]


def test_escaped_values_arrive_unescaped_over_the_event_socket(phone, client):
    hostile = "O'Brien, Pat {VIP} C:\\new ^^:x=1 | [a] <b> \"q\" 'single' ;"
    line = commands.originate(phone, {"origination_uuid": A, "note": hostile, "tail": "  padded  "})
    assert client.command(f"api {line}").body == f"+OK {A}\n".encode()
    assert client.command(f"api uuid_getvar {A} note").body == hostile.encode()
    assert client.command(f"api uuid_getvar {A} tail").body == b"  padded  "


_special = st.sampled_from(list(" ,'\"{}^=\\|:;[]<>&()%$@#!\t") + ["^^:", "\\n", "\\s", "\\,", "''", "{}"])
_text = st.lists(st.one_of(_special, st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0")),
                 min_size=1, max_size=20).map("".join)


def _buildable(value: str) -> bool:
    try:
        commands.dial_string("user/1001", {"x": value})
    except UnsafeValue:
        return False
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.from_regex(r"v_[a-z0-9_]{1,8}", fullmatch=True), _text.filter(_buildable),
                       min_size=1, max_size=4))
@example({"v_json": '{"a": {"b": [1, 2]}}', "v_path": "\\\\server\\share\\a b.wav"})
def test_what_the_engine_builds_reads_back_unchanged(switch, phone, variables):
    uuid = commands.new_uuid()
    line = commands.originate(phone, {"origination_uuid": uuid, **variables})
    assert switch.api(line) == f"+OK {uuid}\n"
    try:
        for name, value in variables.items():
            assert _getvar(switch, uuid, name) == value
    finally:
        switch.api(f"uuid_kill {uuid}")


@pytest.mark.parametrize("block,name,expected", [
    ("{a=1,b='x,y'}", "b", "x,y"),                       # quoted comma: one item
    ("{b=x\\,y}", "b", "x,y"),                           # escaped comma, unescaped by the item split
    ("{^^:a=1,2:b=3}", "a", "1,2"),                      # ^^: makes ':' the separator
    ("{x=a=b}", "x", "a=b"),                             # split at the first '='
    ("{x=' a '}", "x", "a"),                             # quotes go in the item split, spaces in the value's
    ("{x=\\' a \\'}", "x", " a "),                       # escaped quotes keep the edge spaces
    ("{x= a }", "x", "a"),                               # unquoted edge spaces are trimmed
    ("{x=a\\sb}", "x", "a b"),                           # \s is a space
    ("{x={\"k\":1}}", "x", '{"k":1}'),                   # balanced braces stay in the value
    ("{a=1}{b=2}", "b", "2"),                            # several blocks
    ("<u=1>{g=2}", "u", "1"),                            # <...> globals before {...}
    ("[c=2\\,3,d=4]", "c", "2,3"),                       # escaped comma in a per-leg block
    ("[^^;a=x,y;b=2]", "a", "x,y"),                      # custom separator in a per-leg block
    ("[a=\\'x,y\\']", "a", "x,y"),                       # escaped quotes survive to quote the comma
    # The `|` failover split cleans the endpoint part up first: bare quotes in a [...] block are
    # gone before its commas are looked at, so the comma separates.
    ("[a='x,y']", "a", "x"),
])
def test_variable_blocks_read_as_freeswitch_sets_them(switch, phone, block, name, expected):
    uuid = _originate(switch, f"{block}{phone}")
    assert _getvar(switch, uuid, name) == expected


def test_global_variables_win_over_per_leg_ones_unless_local_var_clobber(switch, phone):
    # The new channel is created from the per-leg values (its uuid), but the {} values are set
    # on it after the [] ones, so the global one is what the channel reads.
    uuid = _originate(switch, f"{{origination_uuid={A},g=global}}[origination_uuid={B},g=local]{phone}")
    assert uuid == B
    assert (_getvar(switch, B, "g"), _getvar(switch, B, "origination_uuid")) == ("global", A)
    uuid = _originate(switch, f"{{local_var_clobber=true,g=global}}[g=local]{phone}")
    assert _getvar(switch, uuid, "g") == "local"


def test_empty_and_expanding_values_are_not_set(switch, phone):
    uuid = _originate(switch, f"{{a=,b='',c=$\\{{x}},d=${{x}},e=ok}}{phone}")
    assert [_getvar(switch, uuid, name) for name in "abcde"] == ["_undef_"] * 4 + ["ok"]
    uuid = _originate(switch, f"{{origination_nested_vars=true,d=${{x}}}}{phone}")
    assert _getvar(switch, uuid, "d") == "${x}"


def test_the_first_endpoint_of_the_first_group_is_dialled_with_its_own_variables(switch, phone):
    uuid = _originate(switch, f"{{g=1}}[l=first]{phone},[l=second]user/1002|user/1003")
    assert (_getvar(switch, uuid, "g"), _getvar(switch, uuid, "l")) == ("1", "first")
    assert _getvar(switch, uuid, "dialed_user") == "1001"


def test_an_unclosed_block_dials_nothing(switch, phone):
    for dial in (f"{{a=1{phone}", f"[a=1{phone}", f"{{a=1}}[b=2{phone}"):
        assert switch.api(f"originate {dial} &park()") == "-ERR DESTINATION_OUT_OF_ORDER\n"
    assert not switch.channels
