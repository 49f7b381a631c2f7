"""CPU cost of plcsim's vibration waveforms: several sensors, each with its own fault.

Every sensor captures 1 s blocks (``capture_samples == sample_rate_hz``) once per second of
plant time while the plant ticks at 100 ms, as in ``Sim.step``; the bench measures the CPU
time of the whole run (``time.process_time``) against the simulated time. numpy is kept on
one thread whatever the environment says, so the figure is per core. It prints one human
line and one JSON line for machines.
"""
# ruff: noqa: E402  (the thread limits must be set before numpy is imported)

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy is imported: one core, comparable runs

import argparse
import json
import platform
import time
from typing import Any

import numpy as np

from plcsim.faults import Fault
from plcsim.vibration import VibrationSensor

TICK_S = 0.1
TARGET_CORE_FRACTION = 0.5  # all sensors together must stay under half a core
SHAFT_HZ = 1450.0 / 60.0
# One fault per sensor; the last two are a healthy bearing and a run-to-failure outer race.
FAULTS: list[dict[str, object] | None] = [
    {"mode": "outer", "severity": 0.5},
    {"mode": "inner", "severity": 0.5},
    {"mode": "ball", "severity": 0.5},
    {"mode": "imbalance", "severity": 0.5},
    {"mode": "misalignment", "severity": 0.5},
    {"mode": "looseness", "severity": 0.5},
    None,
    {"mode": "outer", "severity": 0.1, "growth_per_s": 0.05},
]


def run(sensors: int, sample_rate_hz: float, seconds: float) -> dict[str, Any]:
    """Tick ``sensors`` sensors through ``seconds`` of plant time; CPU seconds per plant second."""
    bank = []
    for i in range(sensors):
        params = FAULTS[i % len(FAULTS)]
        name = f"vib_{i}"
        faults = [Fault(i + 1, "bearing", name, dict(params), 0.0)] if params else []
        sensor = VibrationSensor(seed=i, name=name, sample_rate_hz=sample_rate_hz,
                                 capture_samples=round(sample_rate_hz), capture_interval_s=1.0)
        sensor.advance(0.0, TICK_S, SHAFT_HZ, faults)  # warm the kernel caches, untimed
        bank.append((sensor, faults))
    ticks = round(seconds / TICK_S)
    started = time.process_time()
    for tick in range(1, ticks + 1):
        now_s = tick * TICK_S
        for sensor, faults in bank:
            sensor.advance(now_s, TICK_S, SHAFT_HZ, faults)
    cpu_s = time.process_time() - started
    captures = sum(sensor.capture_counter - 1 for sensor, _ in bank)
    simulated_s = ticks * TICK_S
    return {
        "sensors": sensors, "sample_rate_hz": sample_rate_hz, "simulated_s": simulated_s,
        "captures": captures, "cpu_s": round(cpu_s, 4),
        "cpu_s_per_simulated_s": round(cpu_s / simulated_s, 4),
        "ms_per_sensor_second": round(cpu_s / captures * 1000, 3) if captures else None,
        "target_cpu_s_per_simulated_s": TARGET_CORE_FRACTION,
        "under_target": cpu_s / simulated_s < TARGET_CORE_FRACTION,
        "rms_g": [round(float(np.sqrt(np.mean(s.capture**2))), 3) for s, _ in bank],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--rate", type=float, default=25600.0, help="sample rate in Hz")
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated seconds")
    args = parser.parse_args()
    result = run(args.sensors, args.rate, args.seconds)
    share = result["cpu_s_per_simulated_s"]
    print(f"waveforms  {args.sensors} sensors x {args.rate:.0f} Hz: {share:.3f} s CPU per"
          f" simulated second ({share * 100:.1f} % of one core);"
          f" {result['ms_per_sensor_second']} ms per sensor-second, {result['captures']} captures")
    print(json.dumps({"bench": "waveforms", "python": platform.python_version(),
                      "numpy": np.__version__, "machine": platform.machine(), **result}))


if __name__ == "__main__":
    main()
