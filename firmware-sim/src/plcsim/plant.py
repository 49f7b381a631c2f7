"""The pump skid's physics and its PLC logic: plain state advanced by ``tick``; no protocol.

The skid: an inlet valve fills a tank, a centrifugal pump driven by an induction motor
empties it. Deliberately small models, each a textbook first-order or algebraic law, so a
test can predict what it should see:

- motor speed follows its target (the setpoint while running, 0 when stopped) with a ramp
  limit; current is the no-load current plus a share that grows with pump power (∝ n³);
- motor temperature is first order: it relaxes towards ambient plus a rise proportional to
  the square of the load current (copper losses), with a time constant of minutes;
- pump flow and head follow the affinity laws (flow ∝ n, head ∝ n²) against a system curve;
- the tank integrates inflow (valve opening x supply, with a slow upstream swing) minus the
  pump's flow;
- the PLC's own logic — independent of any gateway — refuses to start the pump below the
  low-level limit, stops it when the level falls there (dry-run protection), and trips on
  over-temperature until someone resets the trip.

Everything is deterministic for a seed and a sequence of ``tick`` calls.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

NOMINAL_SPEED_RPM = 1450.0
MAX_SPEED_RPM = 1800.0
RAMP_RPM_PER_S = 300.0
NOMINAL_FLOW_M3H = 12.0  # at nominal speed, valve fully used
NOMINAL_HEAD_BAR = 3.0  # pump discharge pressure at nominal speed and flow
NO_LOAD_CURRENT_A = 3.0
NOMINAL_CURRENT_A = 11.0  # at nominal speed
AMBIENT_C = 25.0
NOMINAL_TEMP_C = 60.0  # steady motor temperature at nominal load
THERMAL_TAU_S = 600.0
TRIP_TEMP_C = 95.0
RESET_BELOW_C = 85.0  # a trip can be reset only once the motor cooled below this
TANK_CAPACITY_M3 = 2.0
SUPPLY_MAX_M3H = 24.0  # inflow at a fully open inlet valve
SUPPLY_SWING = 0.5  # upstream pressure swing: ±50 % of the supply ...
SUPPLY_PERIOD_S = 600.0  # ... over this period (the level swings about ±8 %)
LOW_LEVEL_PCT = 10.0  # the PLC interlock: no pumping below this
LEVEL_LOW_ALARM_PCT = 25.0
COUNTER_MODULUS = 2**32
TEMP_SENSOR_NOISE_C = 0.05  # standard deviation of the temperature reading
LEVEL_SENSOR_NOISE_PCT = 0.05  # standard deviation of the level reading


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the PLC logic made of a write: accepted, or refused with its reason."""

    accepted: bool
    reason: str | None = None


class PumpSkid:
    """State of one pump skid and its PLC; ``tick`` advances it, ``write`` changes inputs.

    Inputs (through ``write``): ``run``, ``speed_setpoint_rpm``, ``valve_position_pct``.
    Outputs (read them): ``speed_rpm``, ``motor_current_a``, ``motor_temp_c``, ``flow_m3h``,
    ``pressure_bar``, ``tank_level_pct`` (physical values) and ``temp_sensor_c``,
    ``level_sensor_pct`` (what the instruments read, with measurement noise),
    ``level_low``, ``tripped``, ``trip_reason``, ``interlock_reason``, ``counter`` (ticks)
    and ``elapsed_s``.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # measurement noise, not cryptography
        self.elapsed_s = 0.0
        self.counter = 0
        self.run = True
        self.speed_setpoint_rpm = NOMINAL_SPEED_RPM
        self.valve_position_pct = 50.0
        self.speed_rpm = NOMINAL_SPEED_RPM
        self.motor_temp_c = NOMINAL_TEMP_C
        self.tank_level_pct = 50.0
        self.tripped = False
        self.trip_reason: str | None = None
        self.interlock_reason: str | None = None
        self.motor_current_a = 0.0
        self.temp_sensor_c = self.motor_temp_c
        self.level_sensor_pct = self.tank_level_pct
        self.flow_m3h = 0.0
        self.pressure_bar = 0.0
        self._outputs()

    # -- PLC logic -------------------------------------------------------------------------

    def write(self, name: str, value: float | bool) -> WriteResult:
        """Apply a write the way the skid's PLC would; refused writes change nothing."""
        if name == "run":
            if not value:
                self.run = False
                return WriteResult(True)
            if self.tripped:
                return WriteResult(False, f"tripped ({self.trip_reason}); reset the trip first")
            if self.tank_level_pct < LOW_LEVEL_PCT:
                return WriteResult(False, "interlock: tank level below the low limit")
            self.run = True
            self.interlock_reason = None
            return WriteResult(True)
        if name == "speed_setpoint_rpm":
            if not 0 <= float(value) <= MAX_SPEED_RPM:
                return WriteResult(False, f"setpoint outside 0..{MAX_SPEED_RPM:g} rpm")
            self.speed_setpoint_rpm = float(value)
            return WriteResult(True)
        if name == "valve_position_pct":
            if not 0 <= float(value) <= 100:
                return WriteResult(False, "valve position outside 0..100 %")
            self.valve_position_pct = float(value)
            return WriteResult(True)
        return WriteResult(False, f"{name} is not writable")

    def reset_trip(self) -> WriteResult:
        """Clear an over-temperature trip once the motor has cooled."""
        if not self.tripped:
            return WriteResult(True)
        if self.motor_temp_c >= RESET_BELOW_C:
            return WriteResult(False, f"motor still at {self.motor_temp_c:.1f} degC;"
                                      f" reset below {RESET_BELOW_C:g}")
        self.tripped = False
        self.trip_reason = None
        return WriteResult(True)

    def reboot(self) -> None:
        """A PLC restart: volatile state back to its power-on defaults, the pump stopped.

        The physics (tank, temperature) carry on; the counter restarts from 0.
        """
        self.counter = 0
        self.run = False
        self.speed_setpoint_rpm = NOMINAL_SPEED_RPM
        self.interlock_reason = None

    @property
    def level_low(self) -> bool:
        """The low-level alarm (an alarm, not yet the interlock)."""
        return self.tank_level_pct < LEVEL_LOW_ALARM_PCT

    @property
    def running(self) -> bool:
        """The motor is commanded on and allowed to run."""
        return self.run and not self.tripped

    # -- physics ---------------------------------------------------------------------------

    def tick(self, dt_s: float) -> None:
        """Advance the skid by ``dt_s`` seconds of plant time."""
        self.elapsed_s += dt_s
        self.counter = (self.counter + 1) % COUNTER_MODULUS
        target = self.speed_setpoint_rpm if self.running else 0.0
        step = RAMP_RPM_PER_S * dt_s
        self.speed_rpm += max(-step, min(step, target - self.speed_rpm))

        rise_c = (NOMINAL_TEMP_C - AMBIENT_C) * (self.motor_current_a / NOMINAL_CURRENT_A) ** 2
        alpha = 1.0 - math.exp(-dt_s / THERMAL_TAU_S)
        self.motor_temp_c += (AMBIENT_C + rise_c - self.motor_temp_c) * alpha
        if self.motor_temp_c > TRIP_TEMP_C and not self.tripped:
            self.tripped = True
            self.trip_reason = "motor over-temperature"
            self.run = False

        supply = SUPPLY_MAX_M3H * (1 + SUPPLY_SWING * math.sin(
            2 * math.pi * self.elapsed_s / SUPPLY_PERIOD_S))
        inflow_m3h = supply * self.valve_position_pct / 100.0
        volume_m3 = TANK_CAPACITY_M3 * self.tank_level_pct / 100.0
        volume_m3 += (inflow_m3h - self.flow_m3h) * dt_s / 3600.0
        self.tank_level_pct = max(0.0, min(100.0, 100.0 * volume_m3 / TANK_CAPACITY_M3))
        if self.run and self.tank_level_pct < LOW_LEVEL_PCT:
            self.run = False  # dry-run protection
            self.interlock_reason = "tank level fell below the low limit"
        self._outputs()

    def _outputs(self) -> None:
        # What the instruments read: the physical value plus a little measurement noise,
        # drawn once per tick so every face reads the same number within a tick.
        self.temp_sensor_c = self.motor_temp_c + self._rng.gauss(0, TEMP_SENSOR_NOISE_C)
        self.level_sensor_pct = self.tank_level_pct + self._rng.gauss(0, LEVEL_SENSOR_NOISE_PCT)
        ratio = self.speed_rpm / NOMINAL_SPEED_RPM
        self.flow_m3h = max(0.0, NOMINAL_FLOW_M3H * ratio + self._rng.gauss(0, 0.02) * (ratio > 0))
        self.pressure_bar = max(0.0, NOMINAL_HEAD_BAR * ratio**2 + self._rng.gauss(0, 0.005))
        self.motor_current_a = (
            NO_LOAD_CURRENT_A * min(1.0, ratio * 4)
            + (NOMINAL_CURRENT_A - NO_LOAD_CURRENT_A) * ratio**3
        )
