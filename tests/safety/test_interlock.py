"""Interlock expressions: what parses, what is refused and why, and how they evaluate."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.core.types import PointState, Quality
from edgetwin.safety.interlock import InterlockError, parse_interlock

POINTS = {"pump1/run", "pump1/motor_temp", "tank1/level", "pump1/vib_de.velocity_rms",
          "skid-2/valve_pos", "pump1/mode"}


def twin(**values: object) -> dict[str, PointState]:
    base: dict[str, object] = {"pump1/run": True, "pump1/motor_temp": 60.0, "tank1/level": 50.0,
                               "pump1/vib_de.velocity_rms": 2.5, "skid-2/valve_pos": 40}
    base.update({k.replace("__", "/"): v for k, v in values.items()})
    return {p: PointState(v, 0, Quality.GOOD, 1) for p, v in base.items()}


def holds(text: str, states: dict[str, PointState] | None = None) -> bool:
    outcome = parse_interlock(text, POINTS).evaluate((states or twin()).get)
    assert outcome.code in ("ok", "interlock"), outcome
    return outcome.ok


@pytest.mark.parametrize(("text", "expected"), [
    ("pump1/run == true and pump1/motor_temp < 90 and tank1/level > 10", True),
    ("tank1/level > 60 or pump1/run", True),
    ("not pump1/run", False),
    ("10 < tank1/level <= 50", True),
    ("10 < tank1/level < 50", False),
    ("abs(pump1/motor_temp - 0) > 1", None),  # arithmetic is refused below, not here
    ("abs(-pump1/motor_temp) >= 60", True),
    ("min(tank1/level, pump1/motor_temp) > 40 and max(1, 2, skid-2/valve_pos) == 40", True),
    ("pump1/vib_de.velocity_rms < 4.5", True),
    ("pump1/run != false", True),
    ("True == pump1/run", True),
    ("(tank1/level > 10) == (pump1/motor_temp < 90)", True),
    ("-1e3 < tank1/level", True),
    ("  tank1/level > 10  ", True),
])
def test_allowed_constructs(text: str, expected: bool | None) -> None:
    """Comparisons (chained too), and/or/not, unary minus, abs/min/max, numbers, booleans."""
    if expected is None:
        with pytest.raises(InterlockError):
            parse_interlock(text, POINTS)
        return
    assert holds(text) is expected


@pytest.mark.parametrize(("text", "message"), [
    ("(tank1/level).real > 1", "attribute access (x.y) is not allowed"),
    ("pump1/run.__class__", "unknown point 'pump1/run.__class__'"),
    ("tank1/level[0] > 1", "subscripts (x[i]) is not allowed"),
    ("(lambda: 1)() > 0", "only abs, min and max may be called, not lambda"),
    ("lambda: 1", "lambda is not allowed"),
    ("__import__('os').system('x')",
     "only abs, min and max may be called, not attribute access (x.y)"),
    ("round(tank1/level) > 1", "only abs, min and max may be called, not round"),
    ("tank1/level + 1 > 2", "arithmetic (+ - * / ...) is not allowed"),
    ("level > 10", "unknown name 'level'"),
    ("tank9/level > 10", "unknown point 'tank9/level'"),
    ("tank1/level > 'x'", "the constant 'x' is not allowed"),
    ("tank1/level > None", "the constant None is not allowed"),
    ("tank1/level in [1, 2]", "lists is not allowed"),
    ("tank1/level is 1", "comparison 'is' is not allowed"),
    ("abs(tank1/level, 2) > 1", "abs() takes exactly one argument"),
    ("min(tank1/level) > 1", "min() takes two or more arguments"),
    ("max(*tank1/level) > 1", "max() takes two or more arguments"),
    ("abs(x=1) > 1", "abs() takes no keyword arguments"),
    ("abs > 1", "abs is a function"),
    ("tank1/level", None),  # a point alone is fine (it must be a boolean at run time)
    ("tank1/level + 1", "arithmetic"),
    ("5", "is a number, not a condition"),
    ("true < 1", "< takes numbers, not a boolean"),
    ("true == 1", "== and != compare a boolean with a boolean or a number with a number"),
    ("not 5", "not takes booleans, not a number"),
    ("-true > 1", "unary minus takes numbers, not a boolean"),
    ("1 and tank1/level", "and takes booleans, not a number"),
    ("~tank1/level", "unary ~ is not allowed"),
    ("tank1/level > 1 if true else false", "conditional expressions"),
    ("x := 1", "not a valid expression"),
    ("tank1/level > 10; import os", "not a valid expression"),
    ("", "the interlock is empty"),
    ("1j == 1", "the constant 1j is not allowed"),
    ("1e999 > tank1/level", "the constant inf is not allowed"),
    ("tank1/level > 1\x00", "not a valid expression"),
    ("not " * 40 + "pump1/run", "nested more than 32 deep"),
    ("(" * 300 + "1 > 0" + ")" * 300, "not a valid expression: too many nested parentheses"),
    ("-" * 900 + "1 > 0", "nested more than 32 deep"),
    ("tank1/level > 1 " + "and tank1/level > 1 " * 60, "characters; at most 1000"),
])
def test_refused_constructs(text: str, message: str | None) -> None:
    """Everything outside the allowlist is refused with a message naming it."""
    if message is None:
        parse_interlock(text, POINTS)
        return
    with pytest.raises(InterlockError, match=re.escape(message)):
        parse_interlock(text, POINTS)


def test_false_interlock_names_the_failing_part_and_its_values() -> None:
    """The first false conjunct, as written, with the values it read."""
    interlock = parse_interlock(
        "pump1/run == true and pump1/motor_temp < 90 and tank1/level > 10", POINTS)
    assert interlock.points == ("pump1/run", "pump1/motor_temp", "tank1/level")
    outcome = interlock.evaluate(twin(tank1__level=7.2).get)
    assert (outcome.ok, outcome.code) == (False, "interlock")
    assert outcome.reason == "interlock tank1/level > 10 is false (tank1/level=7.2)"
    assert outcome.reads["pump1/motor_temp"] == {"v": 60.0, "q": "GOOD", "ts": 0}
    whole = parse_interlock("tank1/level > 60 or not pump1/run", POINTS)
    assert whole.evaluate(twin().get).reason == (
        "interlock tank1/level > 60 or not pump1/run is false (tank1/level=50.0, "
        "pump1/run=true)")


def test_every_input_must_be_good_even_when_the_rest_decides() -> None:
    """`a or b` with b STALE denies although a alone is true: every input is read, fail safe."""
    interlock = parse_interlock("pump1/run or tank1/level > 10", POINTS)
    states = twin()
    states["tank1/level"] = PointState(50.0, 0, Quality.STALE, 2)
    outcome = interlock.evaluate(states.get)
    assert (outcome.ok, outcome.code) == (False, "interlock_input")
    assert outcome.reason.endswith("cannot be evaluated: tank1/level is STALE")
    states["pump1/run"] = PointState(None, 0, Quality.BAD, 3)
    del states["tank1/level"]
    outcome = interlock.evaluate(states.get)
    assert outcome.reason.endswith(
        "pump1/run is BAD; tank1/level is missing (no value in the twin)")
    assert outcome.reads["tank1/level"] == {"v": None, "q": "MISSING", "ts": None}


@pytest.mark.parametrize(("text", "values", "why"), [
    ("pump1/run", {"pump1__run": 1}, "not a boolean"),
    ("tank1/level > 10", {"tank1__level": "high"}, "not a number"),
    ("tank1/level > 10", {"tank1__level": True}, "not a number"),
    ("tank1/level > 10", {"tank1__level": float("nan")}, "not a finite number"),
    ("pump1/run and tank1/level > 1", {"pump1__run": 0.0}, "not a boolean"),
    ("abs(pump1/run) > 1", {}, "not a number"),
])
def test_runtime_type_errors_deny(text: str, values: dict[str, object], why: str) -> None:
    """A twin value of the wrong type denies (interlock_type); nothing is coerced."""
    outcome = parse_interlock(text, POINTS).evaluate(twin(**values).get)
    assert (outcome.ok, outcome.code) == (False, "interlock_type")
    assert why in outcome.reason


def test_point_ids_are_read_greedily() -> None:
    """`tank1/level-5` is one (unknown) id; with spaces it is a comparison operand."""
    with pytest.raises(InterlockError, match="unknown point 'tank1/level-5'"):
        parse_interlock("tank1/level-5 > 1", POINTS)
    assert parse_interlock("skid-2/valve_pos > -5", POINTS).points == ("skid-2/valve_pos",)


def test_placeholders_cannot_be_forged() -> None:
    """A name that looks like the parser's placeholder is still an unknown name."""
    with pytest.raises(InterlockError, match="unknown name"):
        parse_interlock("_pt0 > 1 and tank1/level > 1", POINTS)


@settings(max_examples=500)
@given(st.text(max_size=120))
def test_arbitrary_text_parses_or_is_refused_cleanly(text: str) -> None:
    """Any string: an Interlock or an InterlockError, never another exception."""
    try:
        parse_interlock(text, POINTS)
    except InterlockError as err:
        message = str(err)
        assert message


TOKENS = ["pump1/run", "tank1/level", "pump1/motor_temp", "pump9/x", "and", "or", "not",
          "==", "!=", "<", "<=", ">", ">=", "(", ")", "abs(", "min(", "max(", ",", "-", "+",
          "true", "false", "10", "2.5", "-1", "x", ".", "[", "]", "lambda", ":", "'s'", "*"]


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(TOKENS), max_size=14), st.sampled_from([
    True, False, 0, 7.5, 95.0, "text", None]))
def test_token_soup_parses_or_is_refused_and_evaluates_safely(
    tokens: list[str], odd: object
) -> None:
    """Near-miss expressions: clean refusal, and anything parsed evaluates without raising."""
    try:
        interlock = parse_interlock(" ".join(tokens), POINTS)
    except InterlockError:
        return
    for states in (twin(), twin(tank1__level=odd), {}):
        outcome = interlock.evaluate(states.get)
        assert outcome.ok in (True, False)
        assert outcome.ok or outcome.reason
        if outcome.ok:
            assert all(s is not None for s in map(states.get, interlock.points))
