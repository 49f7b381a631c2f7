"""Accelerometer waveforms of the pump's drive-end bearing (placeholder: 1x only).

Contract used by ``Sim`` and the faces:
- ``VibrationSensor(seed=None, name="vib_de", sample_rate_hz=12000.0, capture_samples=4096,
  capture_interval_s=1.0)``;
- ``advance(now_s, dt_s, shaft_hz, bearing_faults)`` is called every plant tick; when a
  capture interval has passed it makes a new ``capture`` (float64 array, in g) and
  increments ``capture_counter``;
- ``describe()`` returns a JSON-ready summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from plcsim.faults import Fault


class VibrationSensor:
    """One accelerometer making periodic captures."""

    def __init__(self, seed: int | None = None, name: str = "vib_de",
                 sample_rate_hz: float = 12000.0, capture_samples: int = 4096,
                 capture_interval_s: float = 1.0) -> None:
        self.name = name
        self.sample_rate_hz = sample_rate_hz
        self.capture_samples = capture_samples
        self.capture_interval_s = capture_interval_s
        self.capture = np.zeros(capture_samples)
        self.capture_counter = 0
        self._rng = np.random.default_rng(seed)
        self._next_capture_s = 0.0

    def advance(self, now_s: float, dt_s: float, shaft_hz: float,
                bearing_faults: Sequence[Fault]) -> None:
        """Make a new capture when its interval has passed."""
        del dt_s, bearing_faults
        if now_s < self._next_capture_s:
            return
        self._next_capture_s = now_s + self.capture_interval_s
        t = now_s + np.arange(self.capture_samples) / self.sample_rate_hz
        self.capture = 0.5 * np.sin(2 * np.pi * shaft_hz * t) + self._rng.normal(
            0, 0.02, self.capture_samples)
        self.capture_counter += 1

    def describe(self) -> dict[str, Any]:
        """Summary for the control API."""
        return {"name": self.name, "sample_rate_hz": self.sample_rate_hz,
                "capture_samples": self.capture_samples, "capture_counter": self.capture_counter}
