"""The branch expression language: parsing, evaluation, and that no text can crash it."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from engine.ivr import expr

FUNCS = {
    "agents_available": lambda q: {"sales": 2, "support": 0}[q],
    "estimated_wait": lambda q: {"sales": 30.0, "support": 900.0}[q],
    "len": len,
    "starts_with": lambda v, p: str(v).startswith(p),
}


def check(text: str, **variables: str) -> bool:
    return expr.test(expr.parse(text), variables, FUNCS)


@pytest.mark.parametrize("text, variables, expected", [
    ("digits == 1", {"digits": "1"}, True),  # text that reads as a number compares as one
    ("digits > 5", {"digits": "10"}, True),  # 10 > 5 as numbers, not as text
    ("tier in ['gold', 'platinum']", {"tier": "gold"}, True),
    ("tier not in ['gold', 'platinum']", {"tier": "gold"}, False),
    ("'44' in caller_id", {"caller_id": "+4420"}, True),
    ("agents_available('sales') > 0 and estimated_wait('sales') < 60", {}, True),
    ("agents_available('support') > 0 or estimated_wait('support') > 600", {}, True),
    ("not (dnis == '8005550100')", {"dnis": "8005550100"}, False),
    ("unset == ''", {}, True),  # a variable nobody set is ''
    ("name > 5", {"name": "bob"}, False),  # text is neither below nor above a number
    ("starts_with(caller_id, '+44') and len(caller_id) == 13", {"caller_id": "+442071234567"}, True),
    ("a == 'x' or b == 'y' and c == 'z'", {"a": "x"}, True),  # and binds tighter than or
    ("-1 < n", {"n": "0"}, True),
    ("flag", {"flag": "false"}, False),
])
def test_conditions_mean_what_an_operator_expects(text, variables, expected):
    assert check(text, **variables) is expected


@pytest.mark.parametrize("text, where, words", [
    ("", 0, "empty"),
    ("a ==", 4, "expected a value"),
    ("a == 'x", 5, "never closed"),
    ("(a == 1", 7, "')'"),
    ("a == 1 b", 7, "missing 'and' or 'or'"),
    ("1 < a < 3", 6, "cannot be chained"),
    ("exec('x')", 0, "unknown function"),
    ("len()", 0, "takes 1 argument"),
    ("a = 1", 2, "unexpected character"),
    ("__import__('os')", 0, "unknown function"),
    ("a in [b]", 5, "only hold numbers and quoted text"),
])
def test_syntax_errors_say_where_and_what(text, where, words):
    with pytest.raises(expr.ExprError) as caught:
        expr.parse(text)
    assert caught.value.offset == where and words in caught.value.message


def test_a_failing_function_is_an_evaluation_error_not_a_crash():
    with pytest.raises(expr.EvalError):
        expr.evaluate(expr.parse("agents_available('nope') > 0"), {}, FUNCS)


ALPHABET = st.sampled_from(list("ab_1 9.()[],'\"=!<>-") + ["and ", "or ", "not ", "in ", "len(", "true"])


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=25).map("".join) | st.text(max_size=40))
def test_parser_never_crashes_only_reports(text):
    try:
        tree = expr.parse(text)
    except expr.ExprError as exc:
        assert 0 <= exc.offset <= len(text)
        return
    try:
        expr.evaluate(tree, {"a": "1", "b": "x"}, {"len": len})
    except expr.EvalError:
        pass
