"""Alarm hysteresis: raise after N consecutive high scores, clear after M consecutive low ones.

Invariants:
- an alarm is raised only on a score that ends a run of ``raise_after`` consecutive scores
  above the threshold, and cleared only on one that ends a run of ``clear_after``
  consecutive scores at or below it;
- raise and clear alternate, starting with raise;
- only scores count: an update that gave no score (BAD input) neither extends nor breaks a
  run, and never clears an alarm, because no evidence is not good news.
"""

from __future__ import annotations

import enum


class Transition(enum.Enum):
    """What one score did to the alarm."""

    RAISED = "raised"
    CLEARED = "cleared"


class AlarmMachine:
    """The hysteresis of one alarm; pure, no clock, no I/O."""

    def __init__(self, raise_after: int, clear_after: int, *, active: bool = False) -> None:
        if raise_after < 1 or clear_after < 1:
            msg = f"raise_after and clear_after must be >= 1, not {raise_after}, {clear_after}"
            raise ValueError(msg)
        self.raise_after = raise_after
        self.clear_after = clear_after
        self.active = active
        self.run_above = 0  # consecutive scores above the threshold, up to now
        self.run_below = 0  # consecutive scores at or below it

    def step(self, above: bool) -> Transition | None:
        """Count one score (``above``: it exceeded the threshold); the transition, if any."""
        if above:
            self.run_above += 1
            self.run_below = 0
            if not self.active and self.run_above >= self.raise_after:
                self.active = True
                return Transition.RAISED
        else:
            self.run_below += 1
            self.run_above = 0
            if self.active and self.run_below >= self.clear_after:
                self.active = False
                return Transition.CLEARED
        return None

    def reset(self) -> None:
        """Forget the runs and any active alarm (the caller reports the clear itself)."""
        self.active = False
        self.run_above = 0
        self.run_below = 0
