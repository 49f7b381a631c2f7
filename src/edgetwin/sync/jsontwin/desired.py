"""Pending desired values: what the cloud asked for that the device has not reported yet.

The cloud wins on desired values (the last desired value for a point replaces the one
before), the device on reported ones (a desired value is never shown as the point's value).
A desired value stays pending until the device reports it or the safety policy denies it;
the twin snapshot shows the pending ones and the computed delta (FACTS §2.3).

Invariants:
- at most one pending value per point, and only for points the decoder knew, so the size is
  bounded by the configuration;
- a denial clears only the value of the command it answers: a newer desired value for the
  same point stays pending;
- nothing is persisted: after a restart no desired value is pending, as no command is
  resumed after a restart (FACTS §7.2 step 12).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from edgetwin.core.types import (
    Command,
    PointState,
    Quality,
    Value,
    Verdict,
    asset_of,
    point_name_of,
)

# A float32 register holds about 7 significant digits: 1450.3 reads back as 1450.300048828125.
REL_TOL = 1e-6
ABS_TOL = 1e-9

# A stale or bad reading does not show that the device holds the value now.
_TRUSTED = frozenset({Quality.GOOD, Quality.UNCERTAIN})


@dataclass(frozen=True, slots=True)
class PendingDesired:
    """One desired value waiting for the device to report it."""

    value: Value
    ts_ms: int  # when the gateway received it (ms since the epoch, UTC)
    command_id: str


def same_value(desired: Value | None, reported: Value | None) -> bool:
    """Whether a reported value satisfies a desired one.

    Numbers compare within ``REL_TOL``/``ABS_TOL`` (so 1450 equals 1450.0 and a float32
    read-back); a bool equals only a bool and a string only the same string.
    """
    if isinstance(desired, bool) or isinstance(reported, bool):
        return type(desired) is type(reported) and desired == reported
    if isinstance(desired, int) and isinstance(reported, int):
        return desired == reported  # exact, and no float overflow for huge integers
    if isinstance(desired, int | float) and isinstance(reported, int | float):
        try:
            return math.isclose(desired, reported, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        except OverflowError:  # an integer beyond the float range is never close to a float
            return False
    if isinstance(desired, str) and isinstance(reported, str):
        return desired == reported
    return False


class DesiredState:
    """The pending desired values of every asset of one gateway.

    The session calls it from its one task: ``want`` for each Command decoded from a desired
    topic, ``withdraw`` for each point a desired message set to null, ``verdict`` for every
    verdict, ``reported`` with the twin's state of an asset before each snapshot of it.
    """

    def __init__(self) -> None:
        self._pending: dict[str, dict[str, PendingDesired]] = {}  # asset -> name -> pending

    def want(self, command: Command) -> None:
        """Records a desired value; it replaces a pending one for the same point."""
        by_name = self._pending.setdefault(asset_of(command.point), {})
        by_name[point_name_of(command.point)] = PendingDesired(
            command.value, command.received_ns // 1_000_000, command.id)

    def withdraw(self, point: str) -> bool:
        """Drops the pending value of a point (desired set to null); True when there was one."""
        return self._drop(point, None)

    def verdict(self, command: Command, verdict: Verdict) -> bool:
        """Drops the command's pending value when the policy denied it; True when it did."""
        return not verdict.accepted and self._drop(command.point, command.id)

    def reported(self, asset: str, state: Mapping[str, PointState]) -> bool:
        """Drops the pending values the device now reports; True when any was dropped.

        Args:
            asset: the asset ``state`` belongs to.
            state: point name -> state, a delta's changes or the asset's whole twin.
        """
        by_name = self._pending.get(asset)
        if not by_name:
            return False
        done = [name for name, pending in by_name.items()
                if (s := state.get(name)) is not None and s.quality in _TRUSTED
                and same_value(pending.value, s.value)]
        for name in done:
            del by_name[name]
        if not by_name:
            del self._pending[asset]
        return bool(done)

    def pending(self, asset: str) -> dict[str, PendingDesired]:
        """The asset's pending values by point name, for its snapshot."""
        return dict(self._pending.get(asset, {}))

    def retain(self, points: Collection[str]) -> None:
        """Forgets points that are no longer configured (after a reload)."""
        for asset in list(self._pending):
            by_name = self._pending[asset]
            for name in [n for n in by_name if f"{asset}/{n}" not in points]:
                del by_name[name]
            if not by_name:
                del self._pending[asset]

    def _drop(self, point: str, command_id: str | None) -> bool:
        asset, name = asset_of(point), point_name_of(point)
        by_name = self._pending.get(asset, {})
        pending = by_name.get(name)
        if pending is None or (command_id is not None and pending.command_id != command_id):
            return False
        del by_name[name]
        if not by_name:
            del self._pending[asset]
        return True
