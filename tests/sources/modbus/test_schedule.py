"""Poll deadlines: the driver's pure scheduling function."""

from __future__ import annotations

import pytest

from edgetwin.sources.modbus.driver import next_deadline


def test_on_time_cycles_keep_the_grid() -> None:
    """A cycle that finishes early schedules the next deadline one interval on."""
    assert next_deadline(10.0, 0.5, 10.1) == (10.5, 0)
    assert next_deadline(10.0, 0.5, 10.5) == (10.5, 0)


def test_a_late_cycle_runs_the_next_at_once_without_drift() -> None:
    """Late by less than an interval: run now, on the grid, nothing skipped."""
    assert next_deadline(10.0, 0.5, 10.7) == (10.5, 0)


def test_deadlines_that_passed_entirely_are_skipped_and_counted() -> None:
    """Late by 2.3 intervals: two whole deadlines are skipped; the grid phase is kept."""
    deadline, skipped = next_deadline(10.0, 1.0, 13.3)
    assert skipped == 2
    assert deadline == pytest.approx(13.0)
