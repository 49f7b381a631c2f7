"""The pump skid's physics: plain state advanced by ``tick``; knows nothing about Modbus.

Deliberately simple (a later issue brings the full plant model): slow sines plus a little
seeded noise, so values move visibly but stay inside documented bands.
"""

from __future__ import annotations

import math
import random

NOMINAL_SPEED_RPM = 1450
NOMINAL_FLOW_M3H = 12.0  # flow at nominal speed
COUNTER_MODULUS = 2**32  # the counter is a uint32 and wraps
VIBRATION_SAMPLE_RATE_HZ = 2560.0
VIBRATION_SAMPLES = 256  # one block, refreshed every tick


class PumpSkid:
    """State of one pump skid: a motor, a pump and the tank it draws from.

    Bands the values stay in (tests and the README rely on them): ``motor_temp_c`` 60 ± 5.5,
    ``tank_level_pct`` 20..80, ``flow_m3h`` 0 when stopped, else about 12 per 1450 rpm,
    ``vibration_g`` within ±0.65 g (1x shaft 0.5 g, 3x 0.1 g, noise 0.02 g; 0 when stopped).
    """

    TEMP_MEAN_C = 60.0
    TEMP_SWING_C = 5.0
    TEMP_PERIOD_S = 60.0
    TEMP_NOISE_C = 0.2
    LEVEL_MEAN_PCT = 50.0
    LEVEL_SWING_PCT = 30.0
    LEVEL_PERIOD_S = 120.0
    FLOW_NOISE_M3H = 0.05
    VIB_1X_G = 0.5
    VIB_3X_G = 0.1
    VIB_NOISE_G = 0.02

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # simulation noise, not cryptography
        self.elapsed_s = 0.0
        self.counter = 0
        self.run = True
        self.speed_setpoint_rpm = NOMINAL_SPEED_RPM
        self.motor_temp_c = self.TEMP_MEAN_C
        self.tank_level_pct = self.LEVEL_MEAN_PCT
        self.flow_m3h = NOMINAL_FLOW_M3H
        self.vibration_g: list[float] = [0.0] * VIBRATION_SAMPLES
        self._update_signals()

    @property
    def level_low(self) -> bool:
        """Low-level alarm: the tank is below 25 %."""
        return self.tank_level_pct < 25.0

    def tick(self, dt_s: float) -> None:
        """Advance the skid by ``dt_s`` seconds; the counter counts ticks, not seconds."""
        self.elapsed_s += dt_s
        self.counter = (self.counter + 1) % COUNTER_MODULUS
        self._update_signals()

    def _update_signals(self) -> None:
        t = self.elapsed_s
        self.motor_temp_c = (
            self.TEMP_MEAN_C
            + self.TEMP_SWING_C * math.sin(2 * math.pi * t / self.TEMP_PERIOD_S)
            + self._rng.uniform(-self.TEMP_NOISE_C, self.TEMP_NOISE_C)
        )
        self.tank_level_pct = self.LEVEL_MEAN_PCT + self.LEVEL_SWING_PCT * math.sin(
            2 * math.pi * t / self.LEVEL_PERIOD_S
        )
        if self.run:
            flow = NOMINAL_FLOW_M3H * self.speed_setpoint_rpm / NOMINAL_SPEED_RPM
            self.flow_m3h = max(0.0, flow + self._rng.uniform(-1, 1) * self.FLOW_NOISE_M3H)
        else:
            self.flow_m3h = 0.0
        self.vibration_g = self._vibration_block()

    def _vibration_block(self) -> list[float]:
        """The latest block of acceleration samples, continuous in phase from tick to tick."""
        if not self.run:
            return [0.0] * VIBRATION_SAMPLES
        shaft_hz = self.speed_setpoint_rpm / 60.0
        start_s = self.elapsed_s
        block = []
        for i in range(VIBRATION_SAMPLES):
            t = start_s + i / VIBRATION_SAMPLE_RATE_HZ
            block.append(
                self.VIB_1X_G * math.sin(2 * math.pi * shaft_hz * t)
                + self.VIB_3X_G * math.sin(2 * math.pi * 3 * shaft_hz * t)
                + self._rng.uniform(-self.VIB_NOISE_G, self.VIB_NOISE_G)
            )
        return block
