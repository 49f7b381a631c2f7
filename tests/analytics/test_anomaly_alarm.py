"""Alarm hysteresis, checked step by step against its definition over random score sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgetwin.analytics.anomaly import AlarmMachine, Transition


def check_against_definition(raise_after: int, clear_after: int,
                             steps: list[bool | None]) -> list[Transition | None]:
    """Run the machine; assert every transition (and every missing one) step by step.

    ``None`` in ``steps`` is an update without a score: it is not fed to the machine,
    exactly as the scorer does, and so it neither extends nor breaks a run.
    """
    machine = AlarmMachine(raise_after, clear_after)
    scored: list[bool] = []
    out: list[Transition | None] = []
    for above in steps:
        if above is None:
            out.append(None)
            continue
        was_active = machine.active
        transition = machine.step(above)
        scored.append(above)
        last_raise, last_clear = scored[-raise_after:], scored[-clear_after:]
        should_raise = not was_active and len(last_raise) == raise_after and all(last_raise)
        should_clear = was_active and len(last_clear) == clear_after and not any(last_clear)
        assert (transition is Transition.RAISED) == should_raise
        assert (transition is Transition.CLEARED) == should_clear
        assert machine.active == (was_active != (transition is not None))
        out.append(transition)
    return out


@settings(max_examples=300, deadline=None)
@given(raise_after=st.integers(1, 6), clear_after=st.integers(1, 6),
       steps=st.lists(st.one_of(st.booleans(), st.none()), max_size=80))
def test_alarms_follow_the_hysteresis_definition(raise_after: int, clear_after: int,
                                                 steps: list[bool | None]) -> None:
    """Raised only after raise_after consecutive highs, cleared only after clear_after lows."""
    transitions = [t for t in check_against_definition(raise_after, clear_after, steps) if t]
    # They alternate, starting with a raise.
    assert transitions[::2] == [Transition.RAISED] * len(transitions[::2])
    assert transitions[1::2] == [Transition.CLEARED] * len(transitions[1::2])


@pytest.mark.parametrize(("steps", "expected"), [
    ([True, True, True], [None, None, Transition.RAISED]),
    ([True, True, False, True, True, True], [None, None, None, None, None, Transition.RAISED]),
    ([True, None, True, None, True], [None, None, None, None, Transition.RAISED]),
    ([True] * 3 + [False] * 4 + [True] + [False] * 5,
     [None, None, Transition.RAISED] + [None] * 9 + [Transition.CLEARED]),
])
def test_known_sequences_with_raise_after_3_and_clear_after_5(
        steps: list[bool | None], expected: list[Transition | None]) -> None:
    """A dip breaks a run; a missing score does not; a high score restarts the clear count."""
    assert check_against_definition(3, 5, steps) == expected


def test_raise_after_and_clear_after_must_be_positive() -> None:
    """Zero would raise without any score."""
    with pytest.raises(ValueError, match="must be >= 1"):
        AlarmMachine(0, 5)
