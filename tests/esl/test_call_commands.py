"""The builders engine/calls uses for park, media break and digit collection: what they send,
and what they refuse (anything that would shift arguments or break the line)."""
from __future__ import annotations

import pytest

from engine.errors import UnsafeValue
from engine.esl import commands

UUID = "914b207d-013f-4b49-a228-01503f0f3769"


def test_park_and_break_take_only_a_uuid():
    assert commands.park(UUID) == f"uuid_park {UUID}"
    assert commands.break_media(UUID) == f"uuid_break {UUID} all"
    for bad in ("", "x y", UUID + "\nexit", "../../etc"):
        with pytest.raises(UnsafeValue):
            commands.park(bad)
        with pytest.raises(UnsafeValue):
            commands.break_media(bad)


def test_play_and_get_digits_argument_is_in_mod_dptools_order():
    # The capture's own argument (reference/call-lifecycle.txt), rebuilt.
    arg = commands.play_and_get_digits(1, 4, 1, 8000, "#", "silence_stream://250", "silence_stream://250",
                                       "esl_ref_digits", r"\d+", 3000)
    assert arg == r"1 4 1 8000 # silence_stream://250 silence_stream://250 esl_ref_digits \d+ 3000"


@pytest.mark.parametrize("field, value", [
    ("prompt", "my prompt.wav"), ("prompt", "a\nb"), ("prompt", "${system(rm)}"), ("prompt", ""),
    ("regex", "[0-9] "), ("invalid_prompt", "x\ry"), ("terminators", "#x"), ("var", "bad var"),
])
def test_play_and_get_digits_refuses_what_would_shift_or_break_the_arguments(field, value):
    args = dict(min_digits=1, max_digits=1, tries=1, timeout_ms=1000, terminators="#", prompt="p.wav",
                invalid_prompt="i.wav", var="digits", regex=r"\d", digit_timeout_ms=1000)
    args[field] = value
    with pytest.raises(UnsafeValue):
        commands.play_and_get_digits(**args)


@pytest.mark.parametrize("numbers", [(0, 1, 1), (2, 1, 1), (1, 1, 0)])
def test_play_and_get_digits_refuses_impossible_counts(numbers):
    lo, hi, tries = numbers
    with pytest.raises(UnsafeValue):
        commands.play_and_get_digits(lo, hi, tries, 1000, "#", "p", "i", "v", r"\d", 1000)


# -- IVR builders ------------------------------------------------------------------------------

def test_say_argument_is_module_type_method_text():
    assert commands.say("en", "NUMBER", "PRONOUNCED", "42") == "en NUMBER PRONOUNCED 42"
    assert commands.say("ru", "CURRENCY", "PRONOUNCED", "1990.50") == "ru CURRENCY PRONOUNCED 1990.50"


@pytest.mark.parametrize("args", [
    ("en", "NUMBER", "PRONOUNCED", "4 2"), ("en", "NUMBER", "PRONOUNCED", "1\n2"),
    ("en", "NUMBER", "PRONOUNCED", "${system(x)}"), ("en", "NUMBER", "PRONOUNCED", ""),
    ("english", "NUMBER", "PRONOUNCED", "1"), ("en", "SYSTEM", "PRONOUNCED", "1"), ("en", "NUMBER", "LOUD", "1"),
])
def test_say_refuses_text_that_could_carry_anything_but_a_value(args):
    with pytest.raises(UnsafeValue):
        commands.say(*args)


def test_record_argument_and_its_refusals():
    assert commands.record("/var/rec/vm/a.wav", 120) == "/var/rec/vm/a.wav 120 200 5"
    for bad in ("/var/rec/my file.wav", "/x\n.wav", "", "http://x/y.wav", "/r/${uuid}.wav"):
        with pytest.raises(UnsafeValue):
            commands.record(bad, 60)
    with pytest.raises(UnsafeValue):
        commands.record("/r/a.wav", 0)


def test_uuid_transfer_takes_only_dialplan_words():
    uuid = "0f6d2f5e-8f0b-4d6e-9d3e-2c1a0b9e8d7c"
    assert commands.uuid_transfer(uuid, "1000", "XML", "default") == f"uuid_transfer {uuid} 1000 XML default"
    for dest in ("10 00", "1000\n", "${x}", "", "a;b"):
        with pytest.raises(UnsafeValue):
            commands.uuid_transfer(uuid, dest)
    with pytest.raises(UnsafeValue):
        commands.uuid_transfer("not-a-uuid", "1000")


def test_file_string_joins_sounds_and_refuses_separators_inside_them():
    assert commands.file_string(["a.wav"]) == "a.wav"
    assert commands.file_string(["a.wav", "tone_stream://%(100,0,440)"]) == "file_string://a.wav!tone_stream://%(100,0,440)"
    for bad in (["a!b.wav"], ["a b.wav"], [], [""]):
        with pytest.raises(UnsafeValue):
            commands.file_string(bad)
