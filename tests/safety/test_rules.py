"""Value checks: coercion without loss, range, allowed values, step, rate, read-back."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.config.model import CommandRule, ValueType
from edgetwin.core.types import PointState, Quality
from edgetwin.safety.rules import (
    Denial,
    RateLimiter,
    coerce,
    range_problem,
    read_back_matches,
    step_problem,
)

INT, FLOAT, BOOL, STRING = ValueType.INT, ValueType.FLOAT, ValueType.BOOL, ValueType.STRING


@pytest.mark.parametrize(("value", "value_type", "expected"), [
    (5, INT, 5), (5.0, INT, 5), (5.5, INT, "lossy"), (True, INT, "wrong_type"),
    ("5", INT, "wrong_type"), (5, FLOAT, 5.0), (5.5, FLOAT, 5.5), (2**53 + 1, FLOAT, "lossy"),
    (10**400, FLOAT, "lossy"), (math.inf, FLOAT, "wrong_type"), (math.nan, INT, "wrong_type"),
    (False, FLOAT, "wrong_type"), (True, BOOL, True), (1, BOOL, "wrong_type"),
    ("on", BOOL, "wrong_type"), ("auto", STRING, "auto"), (1, STRING, "wrong_type"),
    ([1], INT, "wrong_type"),
])
def test_coercion_never_loses_anything(value: object, value_type: ValueType,
                                       expected: object) -> None:
    """An int is a float when exact, a whole float an int; bool and str stay what they are."""
    result = coerce(value, value_type)
    if isinstance(result, Denial):
        assert result.code == expected
    else:
        assert (type(result), result) == (type(expected), expected)


@given(st.one_of(st.booleans(), st.integers(), st.floats(), st.text()),
       st.sampled_from(list(ValueType)))
def test_coercion_is_exact_or_denied(value: object, value_type: ValueType) -> None:
    """Whatever comes in, a coerced value equals it and has the rule's type, or it is denied."""
    result = coerce(value, value_type)
    if isinstance(result, Denial):
        return
    wanted = {INT: int, FLOAT: float, BOOL: bool, STRING: str}[value_type]
    assert type(result) is wanted
    assert result == value
    assert isinstance(value, bool) == (value_type is BOOL)


def test_range_and_allowed_keep_bools_and_numbers_apart() -> None:
    """Allowed [1, 2] does not allow true; allowed [true] does not allow 1."""
    numbers = CommandRule(point="a/b", allowed=[1, 2])
    assert range_problem(numbers, 1) is None
    assert range_problem(numbers, 1.0) is None
    assert range_problem(numbers, True) is not None
    flags = CommandRule(point="a/b", allowed=[True])
    assert range_problem(flags, True) is None
    assert range_problem(flags, 1) is not None
    bounded = CommandRule(point="a/b", min=0, max=10)
    assert [range_problem(bounded, v) is None for v in (0, 10, -0.001, 10.001)] == [
        True, True, False, False]


def test_step_reads_the_current_value() -> None:
    """|new - current| <= max_step with a GOOD numeric current value, else denied."""
    rule = CommandRule(point="a/b", max_step=10)
    current = PointState(100, 0, Quality.GOOD, 1)
    assert step_problem("a/b", rule, 110, current)[0] is None
    denial, read = step_problem("a/b", rule, 110.5, current)
    assert denial is not None and denial.code == "step"
    assert read == {"v": 100, "q": "GOOD", "ts": 0}
    for bad in (None, PointState(100, 0, Quality.STALE, 1), PointState(True, 0, Quality.GOOD, 1),
                PointState(math.nan, 0, Quality.GOOD, 1)):
        denial, _ = step_problem("a/b", rule, 100, bad)
        assert denial is not None and denial.code == "step_input"
    assert step_problem("a/b", CommandRule(point="a/b"), 1e9, None) == (None, None)


def test_rate_limiter_is_a_sliding_window() -> None:
    """N writes in any window of 60 s; allows only looks, record counts."""
    limiter = RateLimiter(2)
    assert limiter.allows("p", 0.0) is None
    limiter.record("p", 0.0)
    limiter.record("p", 30.0)
    assert limiter.allows("p", 59.9) is not None
    assert limiter.allows("q", 59.9) is None
    assert limiter.allows("p", 60.0) is None
    limiter.record("p", 60.0)
    assert limiter.allows("p", 89.9) is not None
    assert limiter.allows("p", 90.0) is None


@pytest.mark.parametrize(("written", "read_back", "matches"), [
    (1500, 1500, True), (1500, 1500.0, True), (1500, 1499, False), (42.3, 42.29999923706055, True),
    (42.3, 42.4, False), (True, True, True), (True, 1, False), (1, True, False),
    ("auto", "auto", True), ("auto", "Auto", False), (1, None, False), (1, [1], False),
])
def test_read_back_comparison(written: object, read_back: object, matches: bool) -> None:
    """Numbers within 1e-6 relative (a float32 register), bools and strings exactly."""
    assert read_back_matches(written, read_back) is matches


def test_rate_limit_change_keeps_counting() -> None:
    """A reload that raises or lowers the limit keeps the writes already made."""
    limiter = RateLimiter(2)
    for t in (0.0, 1.0):
        limiter.record("p", t)
    limiter.set_limit(4)
    limiter.record("p", 2.0)
    limiter.record("p", 3.0)
    assert limiter.allows("p", 4.0) is not None  # four in the window: the new limit holds
    limiter.set_limit(1)
    assert limiter.allows("p", 59.0) is not None
    assert limiter.allows("p", 63.5) is None


def test_a_huge_integer_is_denied_with_a_readable_reason() -> None:
    """An integer past Python's digit limit is out of range, and the reason still prints."""
    denial = range_problem(CommandRule(point="a/b", max=10), 10**5000)
    assert denial is not None
    assert denial.reason.startswith("value an integer of 16610 bits is above max")
