"""Injected faults: what is wrong with the simulated plant right now, and for how long.

A fault has a kind, a target and parameters. The target is a signal name (``motor_temp``,
``vib_de``), a face (``modbus_tcp``, ``modbus_rtu``, ``opcua``, ``line``) or ``*`` for all.
Faces and signal renderers ask the ``FaultSet`` at every access; the set is the one place
that knows what is active, so the control API, scenario files and tests all agree.

Kinds and their parameters:

| kind | target | parameters | effect |
|---|---|---|---|
| stuck | signal | value (optional: the current one) | the signal stops changing |
| noise | signal | sigma | Gaussian noise added |
| spikes | signal | magnitude, rate_hz | occasional spikes of ±magnitude |
| drift | signal | rate_per_s | offset growing with time |
| dropout | face | unit (optional) | requests (for that unit id only) get no answer |
| exception | face | code (default 4), address (optional) | Modbus exception responses |
| latency | face | delay_s, unit (optional) | every answer (for that unit id) is delayed |
| disconnect | face | — | open connections are cut; new ones are accepted |
| garbage | face | rate_hz, size | random bytes injected on a serial line |
| uncertain | opcua | code (0x40900000) | values served with that Uncertain status |
| reboot | * | — | registers reset, connections cut, no answers until it ends |
| bearing | sensor | mode, severity, growth_per_s | a mechanical fault in the vibration model |

Bearing modes: outer, inner, ball, imbalance, misalignment, looseness (see vibration.py).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KINDS = frozenset({
    "stuck", "noise", "spikes", "drift", "dropout", "exception", "latency", "disconnect",
    "garbage", "reboot", "bearing", "uncertain",
})
SIGNAL_KINDS = frozenset({"stuck", "noise", "spikes", "drift", "bearing"})
FACE_KINDS = frozenset({"dropout", "exception", "latency", "disconnect", "garbage", "uncertain"})


class FaultError(ValueError):
    """A fault request that cannot be applied (unknown kind, bad parameter)."""


@dataclass(slots=True)
class Fault:
    """One active fault. ``started_s``/``until_s`` are plant time (``Sim.now_s``)."""

    id: int
    kind: str
    target: str
    params: dict[str, Any]
    started_s: float
    until_s: float | None = None  # None: until cleared
    state: dict[str, Any] = field(default_factory=dict)  # e.g. the value a stuck signal holds

    def covers(self, target: str) -> bool:
        """Whether this fault applies to ``target``."""
        return self.target in ("*", target)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"id": self.id, "kind": self.kind, "target": self.target,
                "params": self.params, "started_s": self.started_s, "until_s": self.until_s}


class FaultSet:
    """The active faults, queried by faces and renderers; thread-safe."""

    def __init__(self, clock: Callable[[], float], seed: int | None = None) -> None:
        """``clock`` returns plant time in seconds."""
        self._clock = clock
        self._faults: dict[int, Fault] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)  # simulation, not cryptography
        self.listeners: list[Callable[[Fault], None]] = []  # told when a fault starts

    def add(self, kind: str, target: str = "*", duration_s: float | None = None,
            **params: Any) -> Fault:
        """Start a fault now; it ends after ``duration_s`` of plant time, or when cleared."""
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        if duration_s is not None and duration_s <= 0:
            raise FaultError("duration_s must be positive")
        if kind in SIGNAL_KINDS and target == "*":
            raise FaultError(f"a {kind} fault needs a signal as target")
        unit = params.get("unit")
        if kind in ("dropout", "latency") and unit is not None and (
                isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit <= 255):
            raise FaultError(f"{kind} unit must be a unit id 0..255, not {unit!r}")
        code = params.get("code")
        if kind == "uncertain" and code is not None and (
                isinstance(code, bool) or not isinstance(code, int)
                or code >> 30 != 1 or code >= 2**32):
            raise FaultError(f"uncertain code must be an OPC UA Uncertain status "
                             f"(0x4xxxxxxx), not {code!r}")
        now = self._clock()
        fault = Fault(0, kind, target, dict(params), now,
                      None if duration_s is None else now + duration_s)
        if kind == "bearing":
            from plcsim.vibration import FaultSpec  # the model owns what a bearing fault means

            try:
                FaultSpec.from_fault(fault, now)
            except (ValueError, TypeError) as err:
                raise FaultError(f"bearing fault: {err}") from None
        with self._lock:
            fault.id = next(self._ids)
            self._faults[fault.id] = fault
        for listener in self.listeners:
            listener(fault)
        return fault

    def clear(self, fault_id: int | None = None) -> int:
        """End one fault (or all with None); returns how many ended."""
        with self._lock:
            if fault_id is None:
                count = len(self._faults)
                self._faults.clear()
                return count
            return 1 if self._faults.pop(fault_id, None) is not None else 0

    def active(self, kind: str | None = None, target: str | None = None) -> list[Fault]:
        """Faults active now, optionally of one kind and covering one target."""
        now = self._clock()
        with self._lock:
            for expired in [f.id for f in self._faults.values()
                            if f.until_s is not None and now >= f.until_s]:
                del self._faults[expired]
            return [f for f in self._faults.values()
                    if (kind is None or f.kind == kind)
                    and (target is None or f.covers(target))]

    def first(self, kind: str, target: str) -> Fault | None:
        """The oldest active fault of ``kind`` covering ``target``."""
        found = self.active(kind, target)
        return found[0] if found else None

    # -- signal faults -----------------------------------------------------------------------

    def signal(self, name: str, value: float) -> float:
        """``value`` of signal ``name`` as a faulty sensor would report it now."""
        faults = [f for f in self.active(target=name) if f.kind in SIGNAL_KINDS]
        if not faults:
            return value
        now = self._clock()
        for fault in faults:
            if fault.kind == "stuck":
                held = fault.state.setdefault("value", fault.params.get("value", value))
                value = float(held)
            elif fault.kind == "noise":
                value += self._rng.gauss(0.0, float(fault.params.get("sigma", 1.0)))
            elif fault.kind == "spikes":
                rate_hz = float(fault.params.get("rate_hz", 0.2))
                last = fault.state.setdefault("last_s", fault.started_s)
                if now - last >= 1.0 / rate_hz:
                    fault.state["last_s"] = now
                    value += self._rng.choice((-1, 1)) * float(fault.params.get("magnitude", 10))
            elif fault.kind == "drift":
                value += float(fault.params.get("rate_per_s", 0.01)) * (now - fault.started_s)
        return value

    # -- face faults -------------------------------------------------------------------------

    def silent(self, face: str, unit: int | None = None) -> bool:
        """Requests to ``face`` (for unit id ``unit``) must go unanswered.

        A reboot silences everything; a dropout the whole face, or with a ``unit``
        parameter only requests for that unit id (a dead slave behind a TCP-to-RTU
        gateway). Without ``unit`` (the line as a whole) only whole-face dropouts count.
        """
        if self.active("reboot"):
            return True
        return any(
            (wanted := f.params.get("unit")) is None or wanted == unit
            for f in self.active("dropout", face)
        )

    def delay_s(self, face: str, unit: int | None = None) -> float:
        """Added response latency for ``face`` (a latency with ``unit`` delays only that id)."""
        return sum(float(f.params.get("delay_s", 0.5)) for f in self.active("latency", face)
                   if (wanted := f.params.get("unit")) is None or wanted == unit)

    def exception_code(self, face: str, address: int | None = None) -> int | None:
        """The Modbus exception code ``face`` must answer with for ``address``, if any."""
        for fault in self.active("exception", face):
            wanted = fault.params.get("address")
            if wanted is None or address is None or int(wanted) == address:
                return int(fault.params.get("code", 4))
        return None

    def garbage(self, face: str, elapsed_s: float) -> bytes:
        """Random bytes to inject on ``face`` for the last ``elapsed_s`` seconds."""
        out = b""
        for fault in self.active("garbage", face):
            expected = float(fault.params.get("rate_hz", 1.0)) * elapsed_s
            bursts = int(expected) + (self._rng.random() < expected % 1)
            size = int(fault.params.get("size", 8))
            out += bytes(self._rng.getrandbits(8) for _ in range(bursts * size))
        return out
