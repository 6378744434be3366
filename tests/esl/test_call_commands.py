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
