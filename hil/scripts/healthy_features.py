"""Vibration features of healthy pump runs from firmware-sim's model, as a CSV for training.

``edgetwin train --csv`` fits the default anomaly model (``config/models/pump1_bearing``) on
the file this writes: one row per 4,096-sample capture of the drive-end accelerometer, one
column per feature point (``pump1/vib_de.velocity_rms`` ...), the shaft speed drawn from the
skid's operating range so the model knows that healthy vibration grows with speed.

The features come from the gateway's own code (``edgetwin.analytics.vibration``) on the
same entry as ``config/example.yaml`` and on int16 samples of 0.001 g, as the gateway reads
them over Modbus: a model is only valid for the exact feature definitions it was trained on.

``--fault MODE:SEVERITY`` writes rows of a faulty machine instead, to check what the model
detects (``hil/bench/bench_anomaly.py`` does not need it; the README's detection table does).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from edgetwin.analytics.vibration import build_plan, extract
from edgetwin.config.model import BearingConfig, MachineConfig, VibrationConfig, VibrationFeature
from plcsim.vibration import MODES, FaultSpec, synthesize

POINT = "pump1/vib_de"
FEATURES = ("velocity_rms", "kurtosis", "bpfo", "bpfi")
SAMPLE_RATE_HZ = 12000.0  # firmware-sim's drive-end sensor, as the gateway reads it
WINDOW_SAMPLES = 4096  # vibration[].window in config/example.yaml
ENVELOPE_BAND_HZ = (2000.0, 5000.0)  # vibration[].envelope_band in config/example.yaml


ENTRY = VibrationConfig(
    point=POINT, window=WINDOW_SAMPLES, envelope_band=ENVELOPE_BAND_HZ,
    machine=MachineConfig(shaft_hz_point="pump1/shaft_hz"),
    bearing=BearingConfig(n_balls=9, ball_diameter=7.94, pitch_diameter=39.04),
    features=tuple(VibrationFeature(f) for f in FEATURES),
)
PLAN = build_plan(ENTRY, SAMPLE_RATE_HZ)
COUNTS_PER_G = 1000.0  # the Modbus block: int16 counts of 0.001 g


def features(accel_g: np.ndarray, shaft_hz: float) -> dict[str, float]:
    """The default model's four inputs for one capture, as the gateway computes them."""
    counts = np.clip(np.rint(accel_g * COUNTS_PER_G), -32768, 32767)
    found = extract(PLAN, counts / COUNTS_PER_G, shaft_hz)
    return {name: found.values[name] for name in FEATURES}


def rows(count: int, seed: int, speed_rpm: tuple[float, float],
         faults: list[FaultSpec]) -> list[dict[str, float]]:
    """``count`` captures at speeds drawn uniformly from ``speed_rpm``, seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        shaft_hz = rng.uniform(*speed_rpm) / 60.0
        t0_s = rng.uniform(0.0, 86400.0)  # any moment of a day: the shaft phase varies
        accel_g = synthesize(WINDOW_SAMPLES, SAMPLE_RATE_HZ, t0_s, shaft_hz, faults, rng)
        out.append(features(accel_g, shaft_hz))
    return out


def _fault(text: str) -> FaultSpec:
    mode, _, severity = text.partition(":")
    if mode not in MODES:
        raise argparse.ArgumentTypeError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    return FaultSpec(mode, float(severity or 0.5))


def _speed_range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    return float(low), float(high or low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--speed-rpm", type=_speed_range, default=(1200.0, 1650.0),
                        help="LOW:HIGH shaft speed range (default 1200:1650, nominal 1450)")
    parser.add_argument("--fault", type=_fault, action="append", default=[],
                        help="MODE:SEVERITY, e.g. outer:0.1 (repeatable; default: healthy)")
    parser.add_argument("--out", type=Path, help="CSV file (default: stdout)")
    args = parser.parse_args(argv)
    data = rows(args.rows, args.seed, args.speed_rpm, args.fault)
    columns = [f"{POINT}.{name}" for name in FEATURES]
    with (args.out.open("w", newline="") if args.out else sys.stdout) as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for row in data:
            writer.writerow([f"{row[name]:.6g}" for name in FEATURES])
    return 0


if __name__ == "__main__":
    sys.exit(main())
