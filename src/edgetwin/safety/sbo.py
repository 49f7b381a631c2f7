"""Select-before-operate: a select reserves a point for one operate of one value, briefly.

Modelled on DNP3 SELECT/OPERATE and IEC 61850 "SBO with enhanced security" (FACTS §7.2
step 7): a select that passes every check returns a random token; only an operate naming
that token, the same point, the same value and the same key, before the timeout, goes on.

Invariants:
- at most one active select per point; a second select while one is active is refused;
- a token is 128 random bits, used once: the operate that consumes it ends the select,
  whatever then becomes of the write;
- selects live in memory only: after a restart nothing is selected (FACTS §7.2 step 12);
- an operate is checked again in full (steps 1-7 and 9), so interlock inputs that changed
  since the select are judged on their new values.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from edgetwin.core.types import Command, Value
from edgetwin.safety.rules import Denial, describe

_TOKEN_IN_REASON = re.compile(r"\btoken=([0-9a-f]{32})\b")


def new_token() -> str:
    """A select token: 32 hex digits from the OS's random source."""
    return secrets.token_hex(16)


def token_from_reason(reason: str) -> str | None:
    """The token in an accepted select's verdict reason (``selected: token=...``), if any."""
    match = _TOKEN_IN_REASON.search(reason)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Selection:
    """One active select."""

    token: str
    point: str
    value: Value
    key_id: str | None
    command_id: str
    deadline: float  # monotonic seconds


class Selections:
    """The active selects of one policy, keyed by point.

    Args:
        timeout_s: how long a token stays valid.
        new_token: makes tokens (tests may pass a fixed sequence).
    """

    def __init__(self, timeout_s: float, new_token: Callable[[], str] = new_token) -> None:
        self.timeout_s = timeout_s
        self._new_token = new_token
        self._by_point: dict[str, Selection] = {}

    def __len__(self) -> int:
        return len(self._by_point)

    def _active(self, point: str, now: float) -> Selection | None:
        selection = self._by_point.get(point)
        if selection is not None and now > selection.deadline:
            del self._by_point[point]
            return None
        return selection

    def busy(self, point: str, now: float) -> Denial | None:
        """None when ``point`` may be selected now."""
        active = self._active(point, now)
        if active is None:
            return None
        return Denial("sbo_busy", f"{point} is already selected by command {active.command_id!r} "
                                  f"for {active.deadline - now:.1f} s more; one select per point")

    def select(self, command: Command, value: Value, now: float) -> Selection:
        """Reserve the point for ``value``; call only after ``busy`` returned None."""
        selection = Selection(self._new_token(), command.point, value, command.key_id,
                              command.id, now + self.timeout_s)
        self._by_point[command.point] = selection
        return selection

    def check(self, command: Command, value: Value, now: float) -> Denial | None:
        """None when ``command`` (an operate) matches the point's active select."""
        if command.token is None:
            return Denial("sbo_no_token", f"{command.point} needs select-before-operate: send "
                                          f"op select first, then operate with its token")
        active = self._active(command.point, now)
        if active is None:
            return Denial("sbo_no_select", f"no active select for {command.point} (never "
                                           f"selected, timed out after {self.timeout_s:g} s, or "
                                           f"already operated)")
        if not secrets.compare_digest(active.token, command.token):
            return Denial("sbo_token", f"token does not match the active select of "
                                       f"{command.point}")
        if active.key_id != command.key_id:
            return Denial("sbo_key", f"the select of {command.point} was signed by key "
                                     f"{active.key_id!r}, the operate by {command.key_id!r}")
        if type(active.value) is not type(value) or active.value != value:  # both coerced
            return Denial("sbo_value", f"operate value {describe(value)} differs from the "
                                       f"selected {describe(active.value)}")
        return None

    def consume(self, point: str) -> None:
        """End the point's select (its operate is going ahead)."""
        self._by_point.pop(point, None)

    def clear(self) -> None:
        """Drop every select (a reconfiguration)."""
        self._by_point.clear()
