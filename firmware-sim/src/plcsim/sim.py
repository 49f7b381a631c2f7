"""One simulated skid as every face sees it: plant, vibration sensor, faults, write log, clock.

Faces (Modbus TCP/RTU, OPC UA, the line device) hold a ``Sim`` and never touch the plant
directly: reads go through ``signal`` (so injected sensor faults apply), writes through
``write`` (so the PLC logic decides and the write log records), and connection-level faults
through ``faults`` (dropout, latency, exceptions, disconnects, reboots). What they served
of the recorded signals (the counter) goes into ``served``.

Time: ``now_s`` is plant time. ``run`` ticks in real time times ``speedup``; ``step``
advances by hand, for deterministic tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from plcsim.faults import Fault, FaultSet
from plcsim.plant import NOMINAL_SPEED_RPM, PumpSkid, WriteResult
from plcsim.served import ServedLog
from plcsim.vibration import VibrationSensor
from plcsim.writelog import WriteLog

DEFAULT_TICK_S = 0.1


def call_in_loop(loop: asyncio.AbstractEventLoop | None, action: Callable[[], None]) -> None:
    """Run ``action`` in ``loop``: now when called from it, else soon (from any thread).

    Fault listeners fire wherever the fault was added (the control API's loop, a test's
    thread); a face's connections may only be touched from the face's own loop.
    """
    if loop is None or loop.is_closed():
        return
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if current is loop:
        action()
    else:
        loop.call_soon_threadsafe(action)


class Face(Protocol):
    """A protocol face of the simulator.

    ``start`` binds (or creates its pty) and returns what a gateway needs to reach it, e.g.
    ``{"protocol": "modbus", "host": "127.0.0.1", "port": 5020}`` or
    ``{"protocol": "modbus_rtu", "device": "/dev/pts/7"}``; ``stop`` closes everything.
    """

    name: str

    async def start(self) -> dict[str, Any]:
        """Start serving; returns the listening description."""

    async def stop(self) -> None:
        """Stop serving and close every connection."""


class Sim:
    """The shared simulation behind every face."""

    def __init__(self, seed: int | None = None, *, speedup: float = 1.0,
                 tick_s: float = DEFAULT_TICK_S, vibration: VibrationSensor | None = None
                 ) -> None:
        if speedup <= 0:
            raise ValueError("speedup must be positive")
        self.seed = seed
        self.speedup = speedup
        self.tick_s = tick_s
        self.plant = PumpSkid(seed)
        self.faults = FaultSet(self.now_s, seed)
        self.writes = WriteLog()
        self.served = ServedLog()  # the counter values the faces handed out
        self.vibration = vibration or VibrationSensor(seed=seed)
        self._reboot_listeners: list[Callable[[], None]] = []
        self._disconnect_listeners: list[Callable[[str], None]] = []
        self._face_reports: dict[str, Callable[[], dict[str, Any]]] = {}
        self.faults.listeners.append(self._on_fault)
        self.ticked = asyncio.Event()  # set after every tick, for waiters
        # A first capture at power-on, so a waveform read before the first tick is a signal.
        self.vibration.advance(0.0, 0.0, self.plant.speed_rpm / 60.0, [])

    def now_s(self) -> float:
        """Plant time in seconds since the simulation started."""
        return self.plant.elapsed_s

    @property
    def rebooting(self) -> bool:
        """A PLC reboot is in progress: no face answers."""
        return bool(self.faults.active("reboot"))

    # -- time --------------------------------------------------------------------------------

    def step(self, dt_s: float) -> None:
        """Advance plant and sensors by ``dt_s`` seconds of plant time."""
        self.plant.tick(dt_s)
        shaft_hz = self.plant.speed_rpm / 60.0
        self.vibration.advance(self.now_s(), dt_s, shaft_hz, self.faults.active("bearing"))
        self.ticked.set()  # wakes every waiter; clearing at once keeps it edge-triggered
        self.ticked.clear()

    async def run(self) -> None:
        """Tick forever on a drift-free real-time grid; cancel to stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.tick_s
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            self.step(self.tick_s * self.speedup)

    # -- reads and writes --------------------------------------------------------------------

    def signal(self, name: str) -> float:
        """A process value as the (possibly faulty) sensor reports it.

        Names: counter, speed, speed_setpoint, current, motor_temp, flow, pressure,
        tank_level, valve_position (numbers); run, tripped, level_low, running (0/1).
        """
        return self.faults.signal(name, self._raw(name))

    def _raw(self, name: str) -> float:
        plant = self.plant
        raw: dict[str, float] = {
            "counter": plant.counter,
            "speed": plant.speed_rpm,
            "speed_setpoint": plant.speed_setpoint_rpm,
            "current": plant.motor_current_a,
            "motor_temp": plant.temp_sensor_c,
            "flow": plant.flow_m3h,
            "pressure": plant.pressure_bar,
            "tank_level": plant.level_sensor_pct,
            "valve_position": plant.valve_position_pct,
            "run": float(plant.run),
            "running": float(plant.running),
            "tripped": float(plant.tripped),
            "level_low": float(plant.level_low),
        }
        return raw[name]

    def write(self, face: str, target: str, name: str, value: float | bool) -> WriteResult:
        """A write from ``face`` to plant input ``name``: the PLC logic decides; it is logged."""
        if self.rebooting:
            result = WriteResult(False, "PLC is rebooting")
        elif name == "reset_trip":
            # A push button: writing it false (releasing it) does nothing.
            result = self.plant.reset_trip() if value else WriteResult(True)
        else:
            result = self.plant.write(name, value)
        self.writes.record(face, target, name, value, accepted=result.accepted,
                           reason=result.reason)
        return result

    def refuse(self, face: str, target: str, value: Any, reason: str) -> None:
        """Log a write that no plant input takes (read-only or unmapped address)."""
        self.writes.record(face, target, "", value, accepted=False, reason=reason)

    # -- connection events -------------------------------------------------------------------

    def on_reboot(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when a reboot starts (faces cut their connections).

        Returns a function that removes the callback again (for a face that stops).
        """
        self._reboot_listeners.append(callback)
        return lambda: self._reboot_listeners.remove(callback)

    def on_disconnect(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(face)`` when a disconnect fault starts for a face (or ``*``).

        Returns a function that removes the callback again.
        """
        self._disconnect_listeners.append(callback)
        return lambda: self._disconnect_listeners.remove(callback)

    def report_face(self, name: str, describe: Callable[[], dict[str, Any]]) -> None:
        """Show ``describe()`` (what face ``name`` saw on the wire) in ``state()["faces"]``.

        A judge reads there what a gateway did to the device: the connections it opened,
        the requests it sent. A face registered again under its name replaces the first.
        """
        self._face_reports[name] = describe

    def _on_fault(self, fault: Fault) -> None:
        if fault.kind == "stuck" and fault.target in _ATTR:
            # Stuck at the value the sensor had when the fault began, unless one was given.
            fault.state["value"] = fault.params.get("value", self._raw(fault.target))
        if fault.kind == "reboot":
            self.plant.reboot()
            for callback in self._reboot_listeners:
                callback()
        elif fault.kind == "disconnect":
            for on_disconnect in self._disconnect_listeners:
                on_disconnect(fault.target)

    def state(self) -> dict[str, Any]:
        """The true plant state (no sensor faults), for the control API and judges."""
        names = ("counter", "speed", "speed_setpoint", "current", "motor_temp", "flow",
                 "pressure", "tank_level", "valve_position", "run", "running", "tripped",
                 "level_low")
        plant = self.plant
        return {
            "t_s": round(self.now_s(), 3),
            "values": {n: getattr(plant, _ATTR[n]) for n in names},
            "trip_reason": plant.trip_reason,
            "interlock_reason": plant.interlock_reason,
            "rebooting": self.rebooting,
            "vibration": self.vibration.describe(),
            "nominal_speed_rpm": NOMINAL_SPEED_RPM,
            "faces": {name: describe() for name, describe in self._face_reports.items()},
        }


_ATTR = {
    "counter": "counter", "speed": "speed_rpm", "speed_setpoint": "speed_setpoint_rpm",
    "current": "motor_current_a", "motor_temp": "motor_temp_c", "flow": "flow_m3h",
    "pressure": "pressure_bar", "tank_level": "tank_level_pct",
    "valve_position": "valve_position_pct", "run": "run", "running": "running",
    "tripped": "tripped", "level_low": "level_low",
}
