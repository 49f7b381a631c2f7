"""Value checks of a command rule: type and lossless coercion, range, allowed values, step.

Every check returns None when it passes, or a ``Denial`` (a stable code and a readable
reason); nothing here raises for a bad value. A bool is never a number here, although it is
an int to Python.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

from edgetwin.config.model import CommandRule, ValueType
from edgetwin.core.types import PointState, Quality, Value

# A float32 register holds about 7 significant digits: 1450.3 reads back as 1450.30004883.
READ_BACK_REL_TOL = 1e-6


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a step refused a command: ``code`` for machines, ``reason`` for people."""

    code: str
    reason: str


def describe(value: object) -> str:
    """A value as it appears in reasons: JSON-like (true, 1450, 1450.0, "auto")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return "null"
    try:
        return str(value)
    except ValueError:  # an int over Python's 4300-digit str limit
        return f"an integer of {value.bit_length() if isinstance(value, int) else '?'} bits"


def type_of(value: object) -> ValueType | None:
    """The rule type a twin value has (used when a rule names no ``type``)."""
    if isinstance(value, bool):
        return ValueType.BOOL
    if isinstance(value, int):
        return ValueType.INT
    if isinstance(value, float):
        return ValueType.FLOAT
    if isinstance(value, str):
        return ValueType.STRING
    return None


def coerce(value: Value, value_type: ValueType) -> Value | Denial:
    """``value`` as ``value_type`` when that loses nothing, else a Denial.

    An int is a fine float when the float holds it exactly; a float is a fine int when it
    is whole (5.0 -> 5); a bool is only a bool and a string only a string.
    """
    kind = _kind(value)
    if isinstance(value, float) and not math.isfinite(value):
        return Denial("wrong_type", f"value {describe(value)} is not a finite number")
    if value_type is ValueType.BOOL:
        return value if kind == "bool" else _wrong(value, kind, value_type)
    if value_type is ValueType.STRING:
        return value if kind == "str" else _wrong(value, kind, value_type)
    if kind not in ("int", "float"):
        return _wrong(value, kind, value_type)
    if value_type is ValueType.INT:
        if kind == "int":
            return int(value)
        if float(value).is_integer():
            return int(value)
        return Denial("lossy", f"value {describe(value)} is not a whole number; the point "
                               f"takes an int")
    if kind == "float":
        return float(value)
    try:
        exact = float(value)
    except OverflowError:
        exact = math.inf
    if exact != value:  # an int beyond 2**53 that a float cannot hold
        return Denial("lossy", f"value {describe(value)} cannot be held exactly by a float")
    return exact


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _wrong(value: object, kind: str, value_type: ValueType) -> Denial:
    shown = describe(value) if kind in ("bool", "int", "float", "str") else "of this type"
    return Denial("wrong_type", f"value {shown} is {_a(kind)}; the point takes "
                                f"{_a(value_type.value)}")


def range_problem(rule: CommandRule, value: Value) -> Denial | None:
    """``min``, ``max`` and ``allowed`` on an already coerced value."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if rule.min is not None and value < rule.min:
            return Denial("out_of_range", f"value {describe(value)} is below min "
                                          f"{describe(rule.min)}")
        if rule.max is not None and value > rule.max:
            return Denial("out_of_range", f"value {describe(value)} is above max "
                                          f"{describe(rule.max)}")
    if rule.allowed is not None and not any(_same(value, a) for a in rule.allowed):
        shown = ", ".join(describe(a) for a in rule.allowed)
        return Denial("not_allowed", f"value {describe(value)} is not one of the allowed "
                                     f"values ({shown})")
    return None


def _same(value: object, other: object) -> bool:
    """Equality that keeps bools apart from numbers (True == 1 to Python, not here)."""
    if isinstance(value, bool) or isinstance(other, bool):
        return isinstance(value, bool) and isinstance(other, bool) and value is other
    return bool(value == other)


def step_problem(
    point: str, rule: CommandRule, value: Value, current: PointState | None
) -> tuple[Denial | None, dict[str, Any] | None]:
    """``max_step`` against the point's current twin state, and what was read for the audit.

    The current value must be GOOD and a number: a stale, uncertain or bad reading says
    nothing about how far the new value is from what the device holds.
    """
    if rule.max_step is None:
        return None, None
    read = state_doc(current)
    if current is None:
        return Denial("step_input", f"max_step needs the current value of {point}, and the "
                                    f"twin has none"), read
    if current.quality is not Quality.GOOD:
        return Denial("step_input", f"max_step needs the current value of {point}, which is "
                                    f"{current.quality.value}"), read
    now = current.value
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        return Denial("step_input", f"max_step needs a number; {point} is "
                                    f"{describe(now)}"), read
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Denial("step_input", f"max_step applies to numbers, not {describe(value)}"), read
    step = abs(value - now)
    if step > rule.max_step:
        return Denial("step", f"step {describe(now)} -> {describe(value)} of {step:g} is over "
                              f"max_step {rule.max_step:g} ({point}={describe(now)})"), read
    return None, read


def state_doc(state: PointState | None) -> dict[str, Any]:
    """A twin state as the audit records it: value, quality, time (ms)."""
    if state is None:
        return {"v": None, "q": "MISSING", "ts": None}
    return {"v": json_value(state.value), "q": state.quality.value, "ts": state.ts_ns // 10**6}


def json_value(value: object) -> Any:
    """A value JSON can hold: a non-finite float becomes null, anything exotic its repr."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return repr(value)[:200]


def read_back_matches(written: Value, read_back: object) -> bool:
    """Whether a read-back shows the written value (numbers within a relative 1e-6)."""
    if isinstance(written, bool) or isinstance(read_back, bool):
        return isinstance(written, bool) and isinstance(read_back, bool) and \
            written is read_back
    if isinstance(written, str) or isinstance(read_back, str):
        return isinstance(written, str) and written == read_back
    if not isinstance(written, int | float) or not isinstance(read_back, int | float):
        return False
    if isinstance(written, int) and isinstance(read_back, int):
        return written == read_back
    try:
        return math.isclose(written, read_back, rel_tol=READ_BACK_REL_TOL)
    except OverflowError:
        return False


class RateLimiter:
    """Writes per point in a sliding window, on the monotonic clock.

    ``allows`` only looks; ``record`` counts a write. Memory per point is bounded by the
    limit. A starting policy records the last minute's writes again from its audit log.
    """

    def __init__(self, per_window: int, window_s: float = 60.0) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._times: dict[str, collections.deque[float]] = {}

    def _recent(self, point: str, now: float) -> collections.deque[float]:
        times = self._times.setdefault(point, collections.deque(maxlen=self.per_window))
        while times and now - times[0] >= self.window_s:
            times.popleft()
        return times

    def set_limit(self, per_window: int) -> None:
        """Take a new limit (a reload), keeping the writes already counted."""
        self.per_window = per_window
        self._times = {point: collections.deque(times, maxlen=per_window)
                       for point, times in self._times.items()}

    def allows(self, point: str, now: float) -> Denial | None:
        """None when one more write of ``point`` now stays within the limit."""
        times = self._recent(point, now)
        if len(times) >= self.per_window:
            wait = self.window_s - (now - times[0])
            return Denial("rate_limited", f"rate limited: {len(times)} writes of {point} in "
                                          f"the last {self.window_s:g} s (limit "
                                          f"{self.per_window}); next in {wait:.1f} s")
        return None

    def record(self, point: str, now: float) -> None:
        """Count one write of ``point`` at ``now``."""
        self._recent(point, now).append(now)
